"""Stochastic-gradient Langevin dynamics as a pure function over an energy callable (SPEC §4).

One step is ``x ← clamp(x − η·clip(∇ₓE(x), −c, c) + σ·ε, lo, hi)`` with ε ~ N(0, I).

Step size η and noise scale σ are decoupled, as is standard practice for short-run EBM samplers:
the paper uses η = 100 and σ = 0.001. The discretised Langevin diffusion that targets exp(−E) would
need σ = √(2η) (for η = 100 that is σ ≈ 14.1); with σ ≪ √(2η) the chain is a noisy gradient descent
whose samples are *not* draws from exp(−E) but the short-run distribution the EBM is trained
against. Set ``noise_scale=(2 * step_size) ** 0.5`` (and no clipping or clamping) for the true
chain.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from ebmguide.protocols import EnergyFn

__all__ = ["LangevinResult", "LangevinStep", "langevin_dynamics", "validate_langevin_args"]


class LangevinStep(NamedTuple):
    """What the per-step callback sees (after the update).

    Attributes:
        step: step number, from 0.
        x: ``(B, *shape)`` the chain after this step (do not modify in place).
        energy: ``(B,)`` detached energies before the step.
        grad: ``(B, *shape)`` the input gradient used, before clipping.
    """

    step: int
    x: Tensor
    energy: Tensor
    grad: Tensor


class LangevinResult(NamedTuple):
    """Result of :func:`langevin_dynamics`.

    Attributes:
        samples: ``(B, *shape)`` detached final states.
        finite: ``(B,)`` bool on the samples' device: the chain's every gradient and its final
            state were finite. Checked without a host sync per step.
    """

    samples: Tensor
    finite: Tensor


def validate_langevin_args(
    n_steps: int, step_size: float, noise_scale: float, grad_clip: float | None,
    clamp: tuple[float, float] | None,
) -> None:
    """Raise ``ValueError`` naming the argument when a sampler setting is out of range."""
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative int, got {n_steps!r}.")
    if not step_size > 0:
        raise ValueError(f"step_size must be positive, got {step_size!r}.")
    if not noise_scale >= 0:
        raise ValueError(f"noise_scale must be non-negative, got {noise_scale!r}.")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be positive or None (no clipping), got {grad_clip!r}.")
    if clamp is not None and not (len(clamp) == 2 and clamp[0] < clamp[1]):
        raise ValueError(f"clamp must be (low, high) with low < high or None, got {clamp!r}.")


def _energy_grad(
    energy_fn: EnergyFn, x: Tensor, autocast_dtype: torch.dtype | None
) -> tuple[Tensor, Tensor]:
    """Energies ``(B,)`` and their input gradient; no parameter gradients are computed."""
    x = x.detach().requires_grad_(True)
    autocast = (torch.autocast(device_type=x.device.type, dtype=autocast_dtype)
                if autocast_dtype is not None else contextlib.nullcontext())
    with torch.enable_grad(), autocast:
        energy = energy_fn(x)
    if energy.shape != x.shape[:1]:
        raise ValueError(
            f"the energy function must return one value per input, shape ({x.shape[0]},); "
            f"got {tuple(energy.shape)}."
        )
    (grad,) = torch.autograd.grad(energy.sum(), x)
    return energy.detach(), grad


def langevin_dynamics(
    energy_fn: EnergyFn,
    x: Tensor,
    *,
    n_steps: int,
    step_size: float,
    noise_scale: float,
    grad_clip: float | None = None,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
    autocast_dtype: torch.dtype | None = None,
    callback: Callable[[LangevinStep], None] | None = None,
) -> LangevinResult:
    """Run ``n_steps`` of SGLD from ``x``; ``x`` itself is not modified.

    Only the input gradient is computed (``torch.autograd.grad`` with ``x`` as the sole input), so
    no ``.grad`` is left on the energy's parameters and no weight-gradient kernels run.

    Args:
        energy_fn: ``(B, *shape) -> (B,)``.
        x: ``(B, *shape)`` floating-point start states.
        n_steps: K, number of steps (0 returns a copy of ``x``).
        step_size: η, multiplies the (clipped) gradient.
        noise_scale: σ, standard deviation of the added Gaussian noise.
        grad_clip: c, elementwise gradient clip to [−c, c]; ``None`` for none.
        clamp: (low, high) range the state is clamped to after every step; ``None`` for none.
        generator: source of the noise.
        autocast_dtype: e.g. ``torch.bfloat16`` to evaluate the energy and its gradient under
            autocast; the state, update and noise stay in ``x``'s dtype.
        callback: called after each step with a :class:`LangevinStep`.

    Returns:
        :class:`LangevinResult` with detached samples and a per-chain finiteness flag.
    """
    validate_langevin_args(n_steps, step_size, noise_scale, grad_clip, clamp)
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}.")
    state = x.detach().clone()
    finite = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    noise = torch.empty_like(state) if noise_scale > 0 else None
    for index in range(n_steps):
        energy, grad = _energy_grad(energy_fn, state, autocast_dtype)
        finite &= torch.isfinite(grad).flatten(1).all(dim=1)
        update = grad.clamp(-grad_clip, grad_clip) if grad_clip is not None else grad
        state.add_(update, alpha=-step_size)
        if noise is not None:
            torch.randn(state.shape, generator=generator, out=noise)
            state.add_(noise, alpha=noise_scale)
        if clamp is not None:
            state.clamp_(clamp[0], clamp[1])
        if callback is not None:
            callback(LangevinStep(index, state, energy, grad))
    finite &= torch.isfinite(state).flatten(1).all(dim=1)
    return LangevinResult(state, finite)
