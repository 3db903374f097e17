"""The chains' movement diagnostics: exact values on known energies, and the plain-words warning."""

from __future__ import annotations

import math

import pytest
import torch

from ebmguide.sampling import (
    ChainMovement,
    LangevinSettings,
    SGLDSampler,
    langevin_dynamics,
    movement_summary,
    movement_warning,
)


def linear(x: torch.Tensor) -> torch.Tensor:
    """E(x) = Σ c_i x_i with c = 1, 2, 3, ...: the gradient is the constant c everywhere."""
    c = torch.arange(1, x[0].numel() + 1, dtype=x.dtype).view(1, *x.shape[1:])
    return (x * c).flatten(1).sum(1)


def test_drift_is_the_root_mean_square_gradient_move() -> None:
    x = torch.full((3, 4), 10.0)
    out = langevin_dynamics(linear, x,
                            LangevinSettings(n_steps=5, step_size=0.1, noise_scale=0.0, clamp=None))
    expected = 0.1 * math.sqrt((1 + 4 + 9 + 16) / 4)  # η·rms(c), the same at every step
    torch.testing.assert_close(out.drift, torch.full((3,), expected))
    assert bool(torch.isinf(out.drift_to_noise).all()), "no noise: all drift"
    # no noise, no clamp: 5 steps of −η·c, so the displacement is 5·η·rms(c)
    torch.testing.assert_close(out.displacement, torch.full((3,), 5 * expected))


def test_drift_to_noise_and_clipping() -> None:
    x = torch.zeros(2, 4)
    out = langevin_dynamics(linear, x,
                            LangevinSettings(n_steps=3, step_size=2.0, noise_scale=0.5,
                                             grad_clip=1.0, clamp=None),
                            generator=torch.Generator().manual_seed(0))
    # clipped gradient is 1 in every element: drift = η·1 = 2, ratio = 2 / 0.5
    torch.testing.assert_close(out.drift, torch.full((2,), 2.0))
    torch.testing.assert_close(out.drift_to_noise, torch.full((2,), 4.0))


def test_zero_steps_report_no_movement() -> None:
    out = langevin_dynamics(linear, torch.rand(4, 2),
                            LangevinSettings(n_steps=0, step_size=1.0, noise_scale=0.1))
    assert torch.equal(out.drift, torch.zeros(4)) and torch.equal(out.displacement, torch.zeros(4))


def test_diagnostics_are_the_same_in_channels_last() -> None:
    x = torch.rand(2, 3, 4, 4)
    kwargs = {"n_steps": 3, "step_size": 0.3, "noise_scale": 0.01}
    a = langevin_dynamics(linear, x, LangevinSettings(**kwargs),
                          generator=torch.Generator().manual_seed(1))
    b = langevin_dynamics(linear, x, LangevinSettings(memory_format=torch.channels_last, **kwargs),
                          generator=torch.Generator().manual_seed(1))
    for field in ("drift", "drift_to_noise", "displacement"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field))


def test_sampler_returns_the_record_for_buffer_and_fresh_chains() -> None:
    sampler = SGLDSampler((3, 4, 4), buffer_size=8, n_steps=2, step_size=0.1, noise_scale=0.01,
                          generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    for out in (sampler.sample(linear, 4, generator=g),
                sampler.sample_fresh(linear, 4, generator=g)):
        assert out.samples.shape == (4, 3, 4, 4)
        assert out.drift.shape == out.drift_to_noise.shape == out.displacement.shape == (4,)
        assert bool((out.drift > 0).all())


def test_summary_averages_finite_chains_only() -> None:
    x = torch.zeros(3, 2)
    out = langevin_dynamics(linear, x,
                            LangevinSettings(n_steps=1, step_size=1.0, noise_scale=1.0, clamp=None),
                            generator=torch.Generator().manual_seed(0))
    broken = out._replace(finite=torch.tensor([True, False, True]),
                          drift=torch.tensor([1.0, float("nan"), 3.0]))
    summary = movement_summary(broken)
    assert summary.shape == (3,)
    assert summary[0].item() == pytest.approx(2.0)


@pytest.mark.parametrize(("movement", "kind"), [
    (ChainMovement(drift=1e-6, drift_to_noise=1e-4, displacement=0.01), "stuck"),
    (ChainMovement(drift=1e-3, drift_to_noise=0.01, displacement=0.1), "noise"),
    (ChainMovement(drift=0.3, drift_to_noise=30.0, displacement=0.2), "overshoot"),
])
def test_warning_names_the_problem_and_the_fix(movement: ChainMovement, kind: str) -> None:
    problem = movement_warning(movement, n_steps=40)
    assert problem is not None and problem.kind == kind
    assert "sampler.step_size" in problem.message
    assert f"{movement.drift:.2g} per step" in problem.message


def test_overshoot_is_relative_to_the_data_range() -> None:
    movement = ChainMovement(drift=0.3, drift_to_noise=30.0, displacement=0.2)
    assert movement_warning(movement, n_steps=40, data_range=255.0) is None


def test_healthy_chains_get_no_warning() -> None:
    assert movement_warning(ChainMovement(0.01, 1.0, 0.2), n_steps=40) is None


def test_travel_is_relative_to_the_data_range() -> None:
    movement = ChainMovement(drift=1e-3, drift_to_noise=1.0, displacement=0.05)
    assert movement_warning(movement, n_steps=40, data_range=1.0) is None
    problem = movement_warning(movement, n_steps=40, data_range=255.0)
    assert problem is not None and problem.kind == "stuck"


def test_warning_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_steps"):
        movement_warning(ChainMovement(1.0, 1.0, 1.0), n_steps=0)
    with pytest.raises(ValueError, match="data_range"):
        movement_warning(ChainMovement(1.0, 1.0, 1.0), n_steps=1, data_range=0.0)
