"""Run configurations: TOML files mapped onto frozen dataclasses.

A configuration is plain data. :func:`load_config` reads a TOML file (with :mod:`tomllib`, never
evaluated), or one of the shipped recipes by name (``ebmguide/configs/<name>.toml``), applies
``key=value`` overrides whose values are TOML literals, and checks every key and value: an unknown
key or a value of the wrong type or range raises ``ValueError`` naming it.

TOML has no null: optional settings (``sampler.grad_clip``, ``sampler.clamp``) take the string
``"none"`` to mean None.

Example:
    >>> cfg = load_config("demo", ["train.iterations=200", "sampler.n_steps=20"])
    >>> cfg.train.iterations, cfg.sampler.n_steps, cfg.model.backbone
    (200, 20, 'small_cnn')
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "DataConfig", "EMAConfig", "EvalConfig", "GuideConfig", "LossConfig", "ModelConfig",
    "OptimConfig", "RunConfig", "SamplerConfig", "TrainConfig", "config_from_dict",
    "config_to_dict", "dumps_toml", "load_config", "shipped_configs",
]


@dataclass(frozen=True)
class DataConfig:
    """Training data. ``name``: "shapes" (embedded), "toy2d", "cifar10" or "image_folder"."""

    name: Literal["shapes", "toy2d", "cifar10", "image_folder"] = "shapes"
    path: str = ""  # cifar10 / image_folder: directory or .tar.gz (see ebmguide.data.load_cifar10)
    size: int = 16  # shapes: canvas side
    n_train: int = 20_000  # shapes / toy2d: number of generated training samples
    toy: str = "eight_gaussians"  # toy2d: one of ebmguide.data.TOY2D_NAMES


@dataclass(frozen=True)
class ModelConfig:
    """The EBM: a backbone inside :class:`~ebmguide.energy.SphericalEBM`."""

    backbone: Literal["small_cnn", "mlp", "clel_resnet_small", "clel_resnet_base",
                      "clel_resnet_large"] = "small_cnn"
    width: int = 32  # small_cnn: first conv's channels; mlp: hidden width
    latent_dim: int = 128  # d, shared with the guide
    hidden_dim: int = 2048  # width of the energy and projection heads
    spectral_norm: bool = True


@dataclass(frozen=True)
class GuideConfig:
    """The contrastive guide: an encoder inside :class:`~ebmguide.guide.SimCLRGuide`."""

    encoder: Literal["small_cnn", "mlp", "cifar_resnet18"] = "small_cnn"
    width: int = 32
    hidden_dim: int = 2048  # SimCLR projection head's hidden width
    augment: Literal["strong", "weak", "flip", "none", "jitter"] = "strong"
    jitter: float = 0.1  # std of the Gaussian "jitter" augmentation (vector data)
    temperature: float = 0.2
    extra_negatives: bool = True


@dataclass(frozen=True)
class SamplerConfig:
    """SGLD with a replay buffer (:class:`~ebmguide.sampling.SGLDSampler`)."""

    buffer_size: int = 10_000
    n_steps: int = 60
    step_size: float = 100.0
    noise_scale: float = 1e-3
    grad_clip: float | None = None
    clamp: tuple[float, float] | None = (0.0, 1.0)
    init_range: tuple[float, float] = (0.0, 1.0)
    reinit_prob: float = 1e-3
    augment: Literal["strong", "weak", "flip", "none"] = "strong"
    autocast: Literal["none", "bf16"] = "none"


@dataclass(frozen=True)
class LossConfig:
    """:class:`~ebmguide.losses.CLELLoss` weights."""

    alpha: float = 1.0
    beta: float = 0.01


@dataclass(frozen=True)
class OptimConfig:
    """:func:`~ebmguide.optim.clel_optimizers` settings."""

    ebm_lr: float = 1e-4
    ebm_betas: tuple[float, float] = (0.0, 0.999)
    warmup_iterations: int = 2_000
    guide_lr: float = 0.03
    guide_momentum: float = 0.9
    guide_weight_decay: float = 5e-4
    # "constant" after the warm-up (the paper); "cosine" decays the EBM's rate to 0 over the run,
    # which steadies short runs such as the demo
    ebm_schedule: Literal["constant", "cosine"] = "constant"


@dataclass(frozen=True)
class EMAConfig:
    """EMA of both networks (:func:`~ebmguide.ema.make_ema`)."""

    half_life_images: float = 20_000.0
    copy_iterations: int = 312


@dataclass(frozen=True)
class TrainConfig:
    """The training loop, logging, checkpoints and the divergence guard."""

    iterations: int = 100_000
    batch_size: int = 64
    log_every: int = 50
    sample_every: int = 5_000  # sample grid PNGs
    checkpoint_every: int = 5_000
    keep_checkpoints: int = 2
    num_threads: int = 0  # torch.set_num_threads on CPU; 0 leaves torch's default
    joint_forward: bool = True
    on_divergence: Literal["stop", "rollback"] = "stop"
    max_rollbacks: int = 3
    rollback_lr_factor: float = 0.5
    tensorboard: bool = True  # also log to TensorBoard when torch.utils.tensorboard imports


@dataclass(frozen=True)
class EvalConfig:
    """In-training evaluation (logged to metrics.jsonl) and the final one."""

    every: int = 0  # 0: only at the end (and at the start when > 0)
    n_samples: int = 500
    feature_net: Literal["auto", "shapes_classifier", "none"] = "auto"
    fresh_steps: int = 0  # SGLD steps of the fresh chains in grids; 0: sampler.n_steps
    grid_size: int = 64


@dataclass(frozen=True)
class RunConfig:
    """A whole run: every section of the TOML file."""

    name: str = "run"
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    guide: GuideConfig = field(default_factory=GuideConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        _check_ranges(self)


_POSITIVE = {"data.size", "data.n_train", "model.width", "model.latent_dim", "model.hidden_dim",
             "guide.width", "guide.hidden_dim", "guide.temperature", "sampler.buffer_size",
             "sampler.step_size", "optim.ebm_lr", "optim.guide_lr", "ema.half_life_images",
             "train.iterations", "train.batch_size", "train.log_every", "train.sample_every",
             "train.checkpoint_every", "train.keep_checkpoints", "train.rollback_lr_factor",
             "eval.n_samples", "eval.grid_size"}
_PROBABILITY = {"sampler.reinit_prob"}


def _check_ranges(cfg: RunConfig) -> None:
    if not 0 <= cfg.seed < 2**63:  # what torch.Generator.manual_seed takes without wrapping
        raise ValueError(f"seed must be an int in [0, 2**63), got {cfg.seed}.")
    flat = {f"{section}.{k}": v for section in _SECTIONS
            for k, v in dataclasses.asdict(getattr(cfg, section)).items()}
    for key, value in flat.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number, got {value!r}.")
        if key in _POSITIVE and not value > 0:
            raise ValueError(f"{key} must be positive, got {value!r}.")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ValueError(f"{key} must not be negative, got {value!r}.")
        if key in _PROBABILITY and not value <= 1:
            raise ValueError(f"{key} is a probability in [0, 1], got {value!r}.")
    if cfg.sampler.grad_clip is not None and not cfg.sampler.grad_clip > 0:
        raise ValueError("sampler.grad_clip must be positive, or \"none\" for no clipping.")
    for key, pair in (("sampler.clamp", cfg.sampler.clamp),
                      ("sampler.init_range", cfg.sampler.init_range)):
        if pair is not None and not pair[0] < pair[1]:
            raise ValueError(f"{key} must be [low, high] with low < high, got {list(pair)}.")
    if cfg.train.batch_size > cfg.sampler.buffer_size:
        raise ValueError(f"train.batch_size ({cfg.train.batch_size}) exceeds sampler.buffer_size "
                         f"({cfg.sampler.buffer_size}); enlarge the buffer.")
    if not cfg.train.rollback_lr_factor <= 1:
        raise ValueError("train.rollback_lr_factor must lie in (0, 1].")


_SECTIONS: dict[str, type[Any]] = {
    "data": DataConfig, "model": ModelConfig, "guide": GuideConfig, "sampler": SamplerConfig,
    "loss": LossConfig, "optim": OptimConfig, "ema": EMAConfig, "train": TrainConfig,
    "eval": EvalConfig,
}


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
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, int) and abs(value) > 2**1023:  # float() would raise OverflowError
            raise ValueError(f"{key} must be a finite number, got an integer of "
                             f"{len(str(abs(value)))} digits.")
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:
        return value
    raise ValueError(f"{key} must be of type {getattr(hint, '__name__', hint)}, got "
                     f"{value!r} ({type(value).__name__}).")


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
        text = path.read_text(encoding="utf-8")
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
    return config_from_dict(apply_overrides(_read(name_or_path), overrides))


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
            lines += ["", f"[{key}]"] + [f"{k} = {_toml_value(v)}" for k, v in section.items()]
    return "\n".join(lines) + "\n"
