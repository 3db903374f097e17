"""Property tests of the pure SGLD function."""

from __future__ import annotations

import dataclasses

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from torch import nn

from ebmguide.sampling import LangevinSettings, LangevinStep, langevin_dynamics


def quadratic(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x.flatten(1).square().sum(1)


shapes = st.sampled_from([(4, 2), (3, 1, 5, 5), (2, 3, 4, 4), (5, 7)])


@settings(max_examples=25, deadline=None)
@given(shape=shapes, steps=st.integers(0, 4), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_shape_and_dtype_kept(shape: tuple[int, ...], steps: int, dtype: torch.dtype) -> None:
    x = torch.rand(shape, dtype=dtype)
    out = langevin_dynamics(quadratic, x,
                            LangevinSettings(n_steps=steps, step_size=0.1, noise_scale=0.01),
                            generator=torch.Generator().manual_seed(0))
    assert out.samples.shape == x.shape and out.samples.dtype == dtype
    assert out.finite.shape == (shape[0],) and bool(out.finite.all())
    assert not out.samples.requires_grad


def test_zero_steps_is_identity_copy() -> None:
    x = torch.rand(6, 3, 4, 4)
    out = langevin_dynamics(quadratic, x,
                            LangevinSettings(n_steps=0, step_size=1.0, noise_scale=1.0))
    assert torch.equal(out.samples, x)
    out.samples.add_(1.0)
    assert not torch.equal(out.samples, x), "the input must not alias the output"


@pytest.mark.parametrize("steps", [0, 2])
@pytest.mark.parametrize("shape", [(0, 2), (0, 3, 4, 4)])
def test_an_empty_batch_gives_empty_results(shape: tuple[int, ...], steps: int) -> None:
    out = langevin_dynamics(quadratic, torch.zeros(shape),
                            LangevinSettings(n_steps=steps, step_size=1.0, noise_scale=0.1),
                            generator=torch.Generator().manual_seed(0))
    assert out.samples.shape == shape
    for per_chain in (out.finite, out.drift, out.drift_to_noise, out.displacement):
        assert per_chain.shape == (0,)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_one_noiseless_step_on_quadratic_is_exact(seed: int) -> None:
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(seed))
    out = langevin_dynamics(quadratic, x,
                            LangevinSettings(n_steps=1, step_size=0.5, noise_scale=0.0, clamp=None))
    assert torch.equal(out.samples, (1 - 0.5) * x)


def test_one_step_matches_formula_with_noise_clip_and_clamp() -> None:
    x = torch.rand(16, 3)
    eta, sigma, c = 3.0, 0.2, 0.25
    out = langevin_dynamics(quadratic, x,
                            LangevinSettings(n_steps=1, step_size=eta, noise_scale=sigma,
                                             grad_clip=c, clamp=(0.0, 1.0)),
                            generator=torch.Generator().manual_seed(7))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    expected = (x - eta * x.clamp(-c, c) + sigma * noise).clamp(0.0, 1.0)
    torch.testing.assert_close(out.samples, expected, rtol=0, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(clip=st.floats(1e-3, 1.0), eta=st.floats(0.01, 10.0))
def test_clipping_bounds_the_move(clip: float, eta: float) -> None:
    x = 10 * torch.randn(32, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = langevin_dynamics(quadratic, x,
                            LangevinSettings(n_steps=1, step_size=eta, noise_scale=0.0,
                                             grad_clip=clip, clamp=None))
    assert float((out.samples - x).abs().max()) <= eta * clip * (1 + 1e-9)


def test_clamping_holds_every_step() -> None:
    seen: list[torch.Tensor] = []

    def record(step: LangevinStep) -> None:
        seen.append(step.x.clone())

    x = torch.rand(10, 3, 4, 4)
    out = langevin_dynamics(lambda v: -100 * v.flatten(1).sum(1), x,
                            LangevinSettings(n_steps=4, step_size=1.0, noise_scale=0.5,
                                             clamp=(0.0, 1.0)),
                            callback=record, generator=torch.Generator().manual_seed(0))
    assert len(seen) == 4 and [s.shape for s in seen] == [x.shape] * 4
    for state in [*seen, out.samples]:
        assert float(state.min()) >= 0.0 and float(state.max()) <= 1.0
    assert float(out.samples.mean()) > 0.99  # the energy pushes everything to the top


def test_no_gradient_left_on_parameters() -> None:
    net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
    out = langevin_dynamics(lambda v: net(v).squeeze(1), torch.rand(5, 3),
                            LangevinSettings(n_steps=3, step_size=0.1, noise_scale=0.01),
                            generator=torch.Generator().manual_seed(0))
    assert all(p.grad is None for p in net.parameters())
    assert not out.samples.requires_grad


def test_same_seed_bit_identical_different_seed_differs() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Softplus(), nn.Flatten(),
                        nn.Linear(4 * 36, 1))
    x = torch.rand(4, 3, 6, 6)

    def run(seed: int) -> torch.Tensor:
        return langevin_dynamics(lambda v: net(v).squeeze(1), x,
                                 LangevinSettings(n_steps=5, step_size=0.5, noise_scale=0.05),
                                 generator=torch.Generator().manual_seed(seed)).samples

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_non_finite_chains_are_flagged_per_chain() -> None:
    def energy(v: torch.Tensor) -> torch.Tensor:
        shift = torch.tensor([-1.0, -1.0, 2.0, -1.0])  # chain 2 takes the root of a negative
        return quadratic(v) + torch.sqrt(v[:, 0] - shift)

    out = langevin_dynamics(energy, torch.rand(4, 3),
                            LangevinSettings(n_steps=2, step_size=0.1, noise_scale=0.0))
    assert out.finite.tolist() == [True, True, False, True]


def test_bf16_autocast_close_to_fp32() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 1))
    x = torch.rand(4, 3, 8, 8)
    settings = LangevinSettings(n_steps=3, step_size=0.5, noise_scale=0.0)
    ref = langevin_dynamics(lambda v: net(v).squeeze(1), x, settings)
    low = langevin_dynamics(lambda v: net(v).squeeze(1), x,
                            dataclasses.replace(settings, autocast_dtype=torch.bfloat16))
    assert low.samples.dtype == torch.float32
    torch.testing.assert_close(low.samples, ref.samples, rtol=0, atol=2e-2)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"n_steps": -1}, "n_steps"), ({"step_size": 0.0}, "step_size"),
     ({"noise_scale": -1.0}, "noise_scale"), ({"grad_clip": 0.0}, "grad_clip"),
     ({"clamp": (1.0, 0.0)}, "clamp")],
)
def test_bad_arguments_name_themselves(kwargs: dict[str, object], name: str) -> None:
    args: dict[str, object] = {"n_steps": 1, "step_size": 0.1, "noise_scale": 0.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        langevin_dynamics(quadratic, torch.rand(2, 2), LangevinSettings(**args))  # type: ignore[arg-type]


def test_energy_of_wrong_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match="one value per input"):
        langevin_dynamics(lambda v: v.sum(), torch.rand(3, 2),
                          LangevinSettings(n_steps=1, step_size=0.1, noise_scale=0.0))
