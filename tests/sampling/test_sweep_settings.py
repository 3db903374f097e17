"""The settings record, the sweep over the whole buffer and the sampler's protocol methods."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ebmguide import LangevinSettings, SGLDSampler
from ebmguide.augment import apply_augment
from ebmguide.sampling import langevin_dynamics, uniform_states


def quadratic(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (x - 0.5).flatten(1).square().sum(1)


def image_sampler(**kwargs: object) -> SGLDSampler:
    options: dict[str, object] = {"buffer_size": 10, "n_steps": 2, "step_size": 0.5,
                                  "noise_scale": 0.05, "reinit_prob": 0.3, "augment": "flip",
                                  "generator": torch.Generator().manual_seed(0)}
    options.update(kwargs)
    return SGLDSampler((3, 4, 4), **options)  # type: ignore[arg-type]


def test_sweep_sends_every_slot_through_the_training_step_once() -> None:
    sampler, oracle = image_sampler(), image_sampler()
    g, h = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    seen: list[int] = []
    sampler.sweep(quadratic, chunk=4, generator=g, on_chunk=seen.append)
    assert seen == [4, 4, 2]
    for start in (0, 4, 8):  # the same steps by the public pieces: draw, augment, run, write
        index = torch.arange(start, min(start + 4, 10))
        draw = oracle.buffer.draw_slots(index, reinit_prob=0.3, generator=h)
        assert oracle.augment is not None
        x = apply_augment(oracle.augment, draw.x, h)
        out = langevin_dynamics(quadratic, x, oracle.settings, generator=h)
        oracle.buffer.write(draw.indices, out.samples, keep=out.finite)
    assert torch.equal(sampler.chains(), oracle.chains())
    assert torch.equal(g.get_state(), h.get_state())


def test_sweep_steps_override_and_zero_steps() -> None:
    sampler = image_sampler(reinit_prob=0.0, augment=None)
    before = sampler.chains().clone()
    sampler.sweep(quadratic, chunk=3, n_steps=0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(sampler.chains(), before)
    sampler.sweep(quadratic, chunk=3, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(sampler.chains(), before)


def test_sweep_keeps_the_memory_format_setting() -> None:
    """The old evaluation sweep dropped memory_format; the sweep runs the sampler's settings."""
    plain, last = image_sampler(), image_sampler(memory_format=torch.channels_last)
    seen: list[bool] = []
    last.sweep(lambda v: (seen.append(v.is_contiguous(memory_format=torch.channels_last))
                          or quadratic(v)), chunk=5, generator=torch.Generator().manual_seed(2))
    plain.sweep(quadratic, chunk=5, generator=torch.Generator().manual_seed(2))
    assert seen and all(seen)
    torch.testing.assert_close(last.chains(), plain.chains(), rtol=0, atol=1e-6)


def test_from_settings_is_the_keyword_sampler() -> None:
    settings = LangevinSettings(n_steps=3, step_size=0.2, noise_scale=0.01, grad_clip=0.5,
                                clamp=(0.0, 1.0))
    a = SGLDSampler.from_settings((2,), settings, buffer_size=8,
                                  generator=torch.Generator().manual_seed(0))
    b = SGLDSampler((2,), buffer_size=8, n_steps=3, step_size=0.2, noise_scale=0.01,
                    grad_clip=0.5, generator=torch.Generator().manual_seed(0))
    assert a.settings == b.settings == settings
    assert torch.equal(a.chains(), b.chains())
    with pytest.raises(TypeError, match="LangevinSettings record"):
        SGLDSampler.from_settings((2,), settings, n_steps=4)
    with pytest.raises(TypeError, match="LangevinSettings record"):
        SGLDSampler.from_settings((2,), {"n_steps": 3})  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "value", "error"), [
    ("n_steps", -1, ValueError), ("step_size", 0.0, ValueError), ("noise_scale", -1.0, ValueError),
    ("grad_clip", 0.0, ValueError), ("clamp", (1.0, 0.0), ValueError),
    ("autocast_dtype", torch.int8, TypeError), ("memory_format", "channels_last", TypeError)])
def test_settings_are_checked_when_built(field: str, value: object,
                                         error: type[Exception]) -> None:
    with pytest.raises(error, match=field):
        LangevinSettings(**{field: value})  # type: ignore[arg-type]


def test_settings_record() -> None:
    s = LangevinSettings(clamp=[0, 2])  # type: ignore[arg-type]  # a config's list
    assert s.clamp == (0.0, 2.0) and s == LangevinSettings(clamp=(0.0, 2.0))
    assert s.with_steps(None) is s and s.with_steps(4) == dataclasses.replace(s, n_steps=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.n_steps = 3  # type: ignore[misc]
    with pytest.raises(TypeError, match="LangevinSettings record"):
        langevin_dynamics(quadratic, torch.rand(2, 2), {"n_steps": 1})  # type: ignore[arg-type]


def test_uniform_states_and_the_fresh_chains() -> None:
    x = uniform_states((4000, 2), -3.0, 1.0, generator=torch.Generator().manual_seed(0))
    assert float(x.min()) >= -3.0 and float(x.max()) < 1.0
    assert abs(float(x.mean()) + 1.0) < 0.1  # mean -1, standard error 1.15/sqrt(8000) = 0.013
    sampler = SGLDSampler((2,), buffer_size=4, clamp=None, init_range=(-3.0, 1.0), n_steps=0)
    fresh = sampler.sample_fresh(quadratic, 4000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(fresh.samples, x)  # the one uniform initialisation
    assert sampler.data_range() is None


def test_sample_from_starts_at_the_given_states() -> None:
    sampler = image_sampler(reinit_prob=1.0)  # sample would restart every chain
    x = torch.full((3, 3, 4, 4), 0.25)
    out = sampler.sample_from(quadratic, x, n_steps=1, generator=torch.Generator())
    expected = langevin_dynamics(quadratic, x, sampler.settings.with_steps(1),
                                 generator=torch.Generator())
    assert torch.equal(out.samples, expected.samples)
