"""Hypothesis fuzzing: random arguments and configuration files raise only the documented errors.

The sampler's constructor and ``sample``, ``langevin_dynamics``, and the configuration parser
(``config_from_dict``, ``load_config`` on random TOML text, ``--set`` overrides) either work or
raise ``ValueError``/``TypeError`` (``FileNotFoundError`` for a missing file): never another
exception type, never a crash deep inside torch, and a value they accept gives a working object.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import typing
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebmguide.run.config import (
    RunConfig,
    config_from_dict,
    config_to_dict,
    dumps_toml,
    load_config,
)
from ebmguide.sampling import LangevinSettings, SGLDSampler, langevin_dynamics

ALLOWED = (ValueError, TypeError)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# -- values of every kind a user (or a typo) can pass -------------------------------------------

junk = st.one_of(st.none(), st.booleans(), st.text(max_size=5),
                 st.lists(st.integers(-2, 5), max_size=3), st.just(object()),
                 st.just(torch.ones(2)))
numbers = st.one_of(st.integers(-3, 200), st.floats(allow_nan=True, allow_infinity=True),
                    st.floats(-2.0, 3.0), st.sampled_from([0, 0.0, -0.0, 1e-300, 1e308]))
maybe_number = st.one_of(numbers, junk)
pairs = st.one_of(st.tuples(numbers, numbers), st.tuples(st.floats(-1, 1), st.floats(1, 2)),
                  st.lists(numbers, max_size=3), junk)


def quadratic(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x.flatten(1).square().sum(dim=1)


sampler_kwargs = st.fixed_dictionaries({}, optional={
    "buffer_size": st.one_of(st.integers(-2, 40), junk),
    "n_steps": st.one_of(st.integers(-2, 3), maybe_number),
    "step_size": maybe_number,
    "noise_scale": maybe_number,
    "grad_clip": st.one_of(st.none(), maybe_number),
    "clamp": st.one_of(st.none(), pairs),
    "init_range": pairs,
    "reinit_prob": maybe_number,
    "augment": st.one_of(st.sampled_from(["strong", "weak", "flip", "none", "blur", ""]),
                         st.none(), junk),
    "write_back": st.booleans(),
    "device": st.one_of(st.sampled_from(["cpu", "gpu", "cpu:0", "", "cuda:x"]), junk),
})
shapes = st.one_of(st.sampled_from([(3, 4, 4), (1, 4, 4), (2,), (2, 3)]),
                   st.lists(st.integers(-1, 4), max_size=4), junk)


@FUZZ
@given(shape=shapes, kwargs=sampler_kwargs, batch=st.one_of(st.integers(-1, 50), maybe_number),
       seed=st.integers(0, 2**32))
def test_sampler_arguments(shape: Any, kwargs: dict[str, Any], batch: Any, seed: int) -> None:
    try:
        sampler = SGLDSampler(shape, generator=torch.Generator().manual_seed(seed), **kwargs)
    except ALLOWED:
        return
    try:
        g = torch.Generator().manual_seed(seed)
        out = sampler.sample(quadratic, batch, generator=g).samples
    except ALLOWED:
        return
    # Accepted: a batch of the right shape, and the buffer holds only finite values.
    assert out.shape == (batch, *sampler.shape)
    assert bool(torch.isfinite(sampler.buffer.states).all())
    if sampler.settings.clamp is not None and bool(torch.isfinite(out).all()):
        low, high = sampler.settings.clamp  # the bounds are rounded to float32 by the clamp itself
        tol = 1e-6 * max(1.0, abs(low), abs(high))
        assert float(out.min()) >= low - tol and float(out.max()) <= high + tol


@FUZZ
@given(x=st.one_of(st.sampled_from([(2, 3), (1, 1), (3,), (0, 2), ()]), junk),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bfloat16]),
       n_steps=st.one_of(st.integers(-1, 3), maybe_number), step_size=maybe_number,
       noise_scale=maybe_number, grad_clip=st.one_of(st.none(), maybe_number),
       clamp=st.one_of(st.none(), pairs))
def test_langevin_arguments(x: Any, dtype: torch.dtype, n_steps: Any, step_size: Any,
                            noise_scale: Any, grad_clip: Any, clamp: Any) -> None:
    if isinstance(x, tuple):
        x = torch.zeros(x, dtype=dtype)
    try:
        out = langevin_dynamics(quadratic, x,
                                LangevinSettings(n_steps=n_steps, step_size=step_size,
                                                 noise_scale=noise_scale, grad_clip=grad_clip,
                                                 clamp=clamp),
                                generator=torch.Generator().manual_seed(0))
    except ALLOWED:
        return
    assert out.samples.shape == x.shape and out.finite.shape == x.shape[:1]


# -- configuration files ------------------------------------------------------------------------

def _known_keys() -> dict[str, list[str]]:
    hints = typing.get_type_hints(RunConfig)
    out: dict[str, list[str]] = {}
    for name, hint in hints.items():
        if dataclasses.is_dataclass(hint):
            out[name] = [f.name for f in dataclasses.fields(hint)]
    return out


KEYS = _known_keys()
TOP = ["name", "seed", "device"]

toml_scalars = st.one_of(
    st.integers(-2**70, 2**70), st.sampled_from([10**400, -(10**400), 2**63, -1]),
    st.integers(-5, 100_000), st.floats(allow_nan=True),
    st.booleans(), st.text(max_size=8), st.sampled_from(["none", "stop", "rollback", "strong",
                                                        "cpu", "auto", "shapes", "toy2d"]),
)
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)


@st.composite
def config_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly valid section/key names with random values, plus some random names."""
    data: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from([*KEYS, "bogus"]), max_size=4, unique=True)):
        names = KEYS.get(section, ["x"])
        keys = draw(st.lists(st.one_of(st.sampled_from(names), st.text(max_size=6)),
                             max_size=4, unique=True))
        data[section] = {k: draw(toml_values) for k in keys}
        if draw(st.booleans()) and draw(st.booleans()):
            data[section] = draw(toml_values)  # a section that is not a table
    for key in draw(st.lists(st.sampled_from(TOP), max_size=3, unique=True)):
        data[key] = draw(toml_values)
    return data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=config_dicts())
def test_config_from_dict(data: dict[str, Any]) -> None:
    try:
        cfg = config_from_dict(data)
    except ALLOWED:
        return
    # Accepted: plain data again, which round-trips through TOML text.
    again = config_from_dict(config_to_dict(cfg))
    assert again == cfg
    path = Path(tempfile.mkdtemp()) / "cfg.toml"
    path.write_text(dumps_toml(cfg), encoding="utf-8")
    assert load_config(path) == cfg


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(st.text(max_size=80),
                      st.builds(lambda s, k, v: f"[{s}]\n{k} = {v}\n",
                                st.sampled_from([*KEYS, "x"]), st.text(max_size=12),
                                st.text(max_size=12))))
def test_load_config_random_toml_text(text: str) -> None:
    path = Path(tempfile.mkdtemp()) / "random.toml"
    path.write_text(text, encoding="utf-8")
    try:
        cfg = load_config(path)
    except ALLOWED:
        return
    _assert_round_trips(cfg)  # accepted: a RunConfig that its own TOML text gives back


@settings(max_examples=200, deadline=None)
@given(overrides=st.lists(st.one_of(
    st.text(max_size=20),
    st.builds(lambda s, k, v: f"{s}.{k}={v}", st.sampled_from([*KEYS, "x"]),
              st.sampled_from([k for ks in KEYS.values() for k in ks] + ["zz"]),
              st.one_of(st.text(max_size=10), st.integers().map(str),
                        st.floats().map(repr), st.sampled_from(["none", "[0.0, 1.0]", "true",
                                                                "{a=1}", "nan", "inf",
                                                                "1" + "0" * 400])))),
    max_size=4))
def test_overrides(overrides: list[str]) -> None:
    try:
        cfg = load_config("demo", overrides)
    except ALLOWED:
        return
    _assert_round_trips(cfg)
    # Accepted overrides change only what they name: every other section is the demo's.
    named = {item.partition("=")[0].strip().partition(".")[0] for item in overrides}
    got, demo = config_to_dict(cfg), config_to_dict(load_config("demo"))
    assert set(got) == set(demo)
    for section in set(demo) - named:
        assert got[section] == demo[section], section


def _assert_round_trips(cfg: RunConfig) -> None:
    """An accepted config is a RunConfig whose plain data and TOML text give it back."""
    assert isinstance(cfg, RunConfig)
    assert config_from_dict(config_to_dict(cfg)) == cfg
    path = Path(tempfile.mkdtemp()) / "again.toml"
    path.write_text(dumps_toml(cfg), encoding="utf-8")
    assert load_config(path) == cfg


def test_config_file_is_never_evaluated(tmp_path: Path) -> None:
    """TOML is data: text that would be code in Python stays a string (and fails validation)."""
    marker = tmp_path / "marker"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    path = tmp_path / "evil.toml"
    path.write_text(f'name = "{code}"\n[train]\nbatch_size = "{code}"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"train\.batch_size must be of type int"):
        load_config(path)
    with pytest.raises(ValueError):
        load_config("demo", [f"train.iterations={code}"])
    cfg = load_config("demo", [f"name={code}"])
    assert cfg.name == code and not marker.exists()


def test_accepted_configs_hold_finite_numbers() -> None:
    for bad in ("nan", "inf", "-inf", "1" + "0" * 400):  # the last: OverflowError in float()
        with pytest.raises(ValueError, match="finite"):
            load_config("demo", [f"sampler.step_size={bad}"])
    assert math.isfinite(load_config("demo").sampler.step_size)


@pytest.mark.parametrize("seed", ["-1", str(2**63), str(2**70)])
def test_seed_out_of_the_generator_range(seed: str) -> None:
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*63\)"):
        load_config("demo", [f"seed={seed}"])


@pytest.mark.parametrize("name", ["\x1f", "a\nb", 'q"uote\\', "\x7f", "é✓", "tab\t"])
def test_written_config_reads_back_whatever_the_strings(tmp_path: Path, name: str) -> None:
    """Found by the fuzzer: a name with a control character was written as invalid TOML, so a
    run folder's config.toml could not be read back."""
    cfg = config_from_dict({**config_to_dict(load_config("demo")), "name": name})
    path = tmp_path / "config.toml"
    path.write_text(dumps_toml(cfg), encoding="utf-8")
    assert load_config(path) == cfg
