"""Run configurations: TOML files mapped onto frozen dataclasses.

A configuration is plain data. :func:`load_config` reads a TOML file (with :mod:`tomllib`, never
evaluated), or one of the shipped recipes by name (``ebmguide/configs/<name>.toml``), applies
``key=value`` overrides whose values are TOML literals, and checks every key and value: an unknown
key or a value of the wrong type or range raises ``ValueError`` naming it.

TOML has no null: optional settings (``sampler.grad_clip``, ``sampler.clamp``) take the string
``"none"`` to mean None.

The dataclasses (:class:`RunConfig` and its sections) are defined in
:mod:`ebmguide.run.config_schema`
and importable from here.

Example:
    >>> cfg = load_config("demo", ["train.iterations=200", "sampler.n_steps=20"])
    >>> cfg.train.iterations, cfg.sampler.n_steps, cfg.model.backbone
    (200, 20, 'small_cnn')
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from ebmguide.run.config_schema import (
    _SECTIONS,
    DataConfig,
    EMAConfig,
    EvalConfig,
    GuideConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SamplerConfig,
    TrainConfig,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "DataConfig", "EMAConfig", "EvalConfig", "GuideConfig", "LossConfig", "ModelConfig",
    "OptimConfig", "RunConfig", "SamplerConfig", "TrainConfig", "config_from_dict",
    "config_to_dict", "dumps_toml", "load_config", "shipped_configs",
]


def _convert(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the type ``hint``; convert lists to tuples and ints to floats."""
    origin = get_origin(hint)
    if origin is Union or origin is types.UnionType:
        options = get_args(hint)
        if type(None) in options and isinstance(value, str) and value.lower() == "none":
            return None
        hint = next(a for a in options if a is not type(None))
        return _convert(key, value, hint)
    if origin is Literal:
        if value not in get_args(hint):
            raise ValueError(f"{key} must be one of {list(get_args(hint))}, got {value!r}.")
        return value
    if origin is tuple:
        args = get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ValueError(f"{key} must be a list of {len(args)} numbers, got {value!r}.")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_convert(f"{key}[{i}]", v, a) for i, (v, a) in pairs)
    if origin is dict:
        return _keyword_table(key, value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, int) and abs(value) > 2**1023:  # float() would raise OverflowError
            raise ValueError(f"{key} must be a finite number, got an integer of "
                             f"{len(str(abs(value)))} digits.")
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:
        return value
    raise ValueError(f"{key} must be of type {getattr(hint, '__name__', hint)}, got "
                     f"{value!r} ({type(value).__name__}).")


def _keyword_table(key: str, value: Any) -> dict[str, Any]:
    """A TOML table of keyword arguments: names to strings, numbers, booleans or lists of them."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} must be a table of keyword arguments ([{key}] in TOML), got "
                         f"{value!r}.")

    def plain(k: str, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(k, x) for x in v]
        if isinstance(v, (str, int, float, bool)):
            return v
        raise ValueError(f"{key}.{k} must be a string, number, boolean or list of them, got "
                         f"{v!r}.")

    for k in value:
        if not (isinstance(k, str) and k.isidentifier()):
            raise ValueError(f"{key} holds {k!r}, which is not a keyword argument name.")
    return {k: plain(k, v) for k, v in value.items()}


def _section(name: str, cls: type[Any], values: Any) -> Any:
    if not isinstance(values, Mapping):
        raise ValueError(f"[{name}] must be a table of settings, got {values!r}.")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(f'{name}.{k}' for k in unknown)}; "
                         f"[{name}] accepts {', '.join(hints)}.")
    return cls(**{k: _convert(f"{name}.{k}", v, hints[k]) for k, v in values.items()})


def config_from_dict(data: Mapping[str, Any]) -> RunConfig:
    """Build and check a :class:`RunConfig` from nested plain data (a parsed TOML file).

    Raises:
        ValueError: naming every unknown key, or the first bad value.
    """
    top = typing.get_type_hints(RunConfig)
    unknown = sorted(set(data) - set(top))
    if unknown:
        raise ValueError(f"unknown key(s) or section(s) {', '.join(unknown)}; a config has "
                         f"{', '.join(top)}.")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        kwargs[key] = (_section(key, _SECTIONS[key], value) if key in _SECTIONS
                       else _convert(key, value, top[key]))
    return RunConfig(**kwargs)


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Nested plain data (tuples as lists, None as "none"): TOML- and checkpoint-safe."""

    def plain(value: Any) -> Any:
        if value is None:
            return "none"
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return typing.cast(dict[str, Any], plain(dataclasses.asdict(cfg)))


def shipped_configs() -> list[str]:
    """Names of the recipes shipped in ``ebmguide/configs``."""
    folder = resources.files("ebmguide") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _read(name_or_path: str | Path) -> dict[str, Any]:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist; pass a path to a TOML "
                                    f"file or one of the shipped names: {shipped_configs()}.")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"config file {path} is not UTF-8 text ({err.reason} at byte "
                             f"{err.start}): pass a TOML file.") from None
    else:
        resource = resources.files("ebmguide") / "configs" / f"{name_or_path}.toml"
        if not resource.is_file():
            raise ValueError(f"no shipped config named {str(name_or_path)!r}; choose one of "
                             f"{shipped_configs()} or pass a path to a .toml file.")
        text = resource.read_text(encoding="utf-8")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config {name_or_path} is not valid TOML: {err}") from err


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``"section.key=value"``; the value is a TOML literal, else a bare string."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {item!r} must look like section.key=value, e.g. "
                         f"train.iterations=200.")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()  # a bare word such as shapes or cpu
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of nested ``data`` with ``key=value`` overrides applied."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    for item in overrides:
        parts, value = parse_override(item)
        if len(parts) == 1:
            out[parts[0]] = value
        elif len(parts) == 2:
            section = out.setdefault(parts[0], {})
            if not isinstance(section, dict):
                raise ValueError(f"{parts[0]} is not a section; cannot set {item!r}.")
            section[parts[1]] = value
        else:
            raise ValueError(f"override key {'.'.join(parts)!r} is too deep; use section.key.")
    return out


def load_config(name_or_path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a shipped recipe by name or a TOML file by path, apply overrides, check everything.

    Args:
        name_or_path: e.g. ``"demo"``, ``"cifar10_clel_base"`` or ``"my_run.toml"``.
        overrides: ``"section.key=value"`` strings; values are TOML literals (``200``, ``1e-4``,
            ``[0.0, 0.999]``, ``"none"``, ``true``); a bare word is taken as a string.

    Raises:
        ValueError: unknown recipe, invalid TOML, unknown key, or bad value (the message names it).
        FileNotFoundError: a path that does not exist.
    """
    data = _read(name_or_path)
    if not data:
        raise ValueError(f"config {name_or_path} is empty: every setting would be a default (a "
                         f"100,000-iteration run). Start from a recipe: ebmguide train --config "
                         f"demo --print-config > my_run.toml, then edit it.")
    return config_from_dict(apply_overrides(data, overrides))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes are valid in TOML basic strings, which also forbid a raw DEL: a name
        # holding a newline or a control character must read back.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML.")


def dumps_toml(cfg: RunConfig) -> str:
    """The configuration as TOML text that :func:`load_config` reads back to an equal config."""
    data = config_to_dict(cfg)
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for key, section in data.items():
        if isinstance(section, dict):
            lines += ["", f"[{key}]"] + [f"{k} = {_toml_value(v)}" for k, v in section.items()
                                         if not isinstance(v, dict)]
            for sub, table in section.items():
                if isinstance(table, dict) and table:  # keyword arguments of an import path
                    lines += ["", f"[{key}.{sub}]"] + [f"{k} = {_toml_value(v)}"
                                                       for k, v in table.items()]
    return "\n".join(lines) + "\n"
