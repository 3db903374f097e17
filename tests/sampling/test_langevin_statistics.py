"""True Langevin dynamics (σ = √(2η)) on a Gaussian energy recovers the Gaussian's moments.

E(x) = Σ_i (x_i − μ_i)² / (2 s_i²) is the energy of N(μ, diag(s²)). One unadjusted step is
x ← x − η (x − μ)/s² + √(2η) ε, a linear recursion: the mean of a chain started at 0 moves to μ as
(1 − η/s²)^K, and its stationary variance is s² / (1 − η / (2 s²)) (the discretisation bias of
the unadjusted chain, 5.3 % for s² = 0.5 and η = 0.05).

Sizes: N = 10,000 independent chains, K = 600 steps: (1 − η/s²)^K ≤ 0.975^600 ≈ 3e-7, so the
start is forgotten. The final states are N independent draws, so the sample mean has standard
error s/√N (≤ 0.015 here) and the sample variance a relative standard error √(2/(N − 1)) ≈ 1.4 %.
Tolerances are 5 standard errors (a two-sided normal tail of 6e-7), plus the known
discretisation bias for the variance. The generator is seeded, so the test is deterministic; the
same tolerances reject a chain whose noise is too small (σ = √η halves the variance).
"""

from __future__ import annotations

import math

import torch

from ebmguide.sampling import LangevinSettings, langevin_dynamics

MEAN = torch.tensor([1.0, -2.0], dtype=torch.float64)
VAR = torch.tensor([0.5, 2.0], dtype=torch.float64)
ETA, STEPS, CHAINS = 0.05, 600, 10_000


def gaussian_energy(x: torch.Tensor) -> torch.Tensor:
    return ((x - MEAN).square() / (2 * VAR)).sum(dim=1)


def run(noise_scale: float) -> torch.Tensor:
    settings = LangevinSettings(n_steps=STEPS, step_size=ETA, noise_scale=noise_scale,
                                clamp=None)
    x0 = torch.zeros(CHAINS, 2, dtype=torch.float64)
    return langevin_dynamics(gaussian_energy, x0, settings,
                             generator=torch.Generator().manual_seed(0)).samples


def moments_match(samples: torch.Tensor) -> bool:
    """Mean within 5 standard errors of μ; variance within 5 of s², plus the known ULA bias."""
    mean, var = samples.mean(dim=0), samples.var(dim=0)
    mean_ok = ((mean - MEAN).abs() <= 5 * (VAR / CHAINS).sqrt()).all()
    bias = (ETA / (2 * VAR)) / (1 - ETA / (2 * VAR))  # relative excess of the ULA variance
    var_ok = ((var / VAR - 1).abs() <= 5 * math.sqrt(2 / (CHAINS - 1)) + bias).all()
    return bool(mean_ok and var_ok)


def test_true_langevin_recovers_mean_and_variance() -> None:
    samples = run(math.sqrt(2 * ETA))
    assert moments_match(samples), (samples.mean(0), samples.var(0))
    # The unadjusted chain's own stationary variance s²/(1 − η/(2s²)), to 5 standard errors.
    stationary = VAR / (1 - ETA / (2 * VAR))
    assert ((samples.var(0) / stationary - 1).abs() <= 5 * math.sqrt(2 / (CHAINS - 1))).all()


def test_the_check_rejects_too_little_noise() -> None:
    assert not moments_match(run(math.sqrt(ETA)))  # σ = √η: half the variance
