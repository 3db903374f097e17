"""Stochastic-gradient Langevin dynamics as a pure function over an energy callable.

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
import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ebmguide._validation import check_generator, check_number, check_range_pair, check_tensor
from ebmguide.protocols import EnergyFn, LangevinResult

__all__ = [
    "LangevinResult",
    "LangevinSettings",
    "LangevinStep",
    "langevin_dynamics",
    "validate_langevin_args",
]


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


def validate_langevin_args(
    n_steps: int, step_size: float, noise_scale: float, grad_clip: float | None,
    clamp: tuple[float, float] | None,
) -> None:
    """Raise ``ValueError`` (``TypeError`` for a non-number) naming the bad sampler setting."""
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative int, got {n_steps!r}.")
    check_number("step_size", step_size, low=0.0, strict=True)
    check_number("noise_scale", noise_scale, low=0.0)
    if grad_clip is not None:
        check_number("grad_clip (None for no clipping)", grad_clip, low=0.0, strict=True)
    if clamp is not None:
        check_range_pair("clamp (None for unbounded data)", clamp)


@dataclasses.dataclass(frozen=True)
class LangevinSettings:
    """The settings of a run of Langevin chains: what :func:`langevin_dynamics` and samplers take.

    The defaults are the paper's CIFAR-10 values (K = 60, η = 100, σ = 0.001, states in [0, 1]).
    For the true Langevin chain that targets exp(−E), use ``noise_scale=(2 * step_size) ** 0.5``,
    ``grad_clip=None`` and ``clamp=None``. The record is checked when it is built, so a bad value
    fails where it is written, not deep inside a run.

    Attributes:
        n_steps: K, steps per run (0 returns the start states).
        step_size: η > 0, multiplies the (clipped) gradient.
        noise_scale: σ ≥ 0, standard deviation of the added Gaussian noise.
        grad_clip: c, elementwise gradient clip to [−c, c]; ``None`` for none.
        clamp: (low, high) range the states are clamped to after every step; ``None`` for
            unbounded data.
        autocast_dtype: e.g. ``torch.bfloat16`` to evaluate the energy and its gradient under
            autocast; the state, update and noise keep the chains' dtype.
        memory_format: layout of the chains while they run, e.g. ``torch.channels_last`` for a
            convolutional energy on ``(B, C, H, W)`` states.

    Example:
        >>> s = LangevinSettings(n_steps=20, step_size=1.0, noise_scale=0.005)
        >>> s.with_steps(5).n_steps, s.clamp
        (5, (0.0, 1.0))
    """

    n_steps: int = 60
    step_size: float = 100.0
    noise_scale: float = 1e-3
    grad_clip: float | None = None
    clamp: tuple[float, float] | None = (0.0, 1.0)
    autocast_dtype: torch.dtype | None = None
    memory_format: torch.memory_format = torch.preserve_format

    def __post_init__(self) -> None:
        validate_langevin_args(self.n_steps, self.step_size, self.noise_scale, self.grad_clip,
                               self.clamp)
        if self.clamp is not None:  # a list from a config becomes the documented pair
            object.__setattr__(self, "clamp", (float(self.clamp[0]), float(self.clamp[1])))
        if self.autocast_dtype is not None and not (
                isinstance(self.autocast_dtype, torch.dtype)
                and self.autocast_dtype.is_floating_point):
            raise TypeError(f"autocast_dtype must be a floating torch.dtype such as "
                            f"torch.bfloat16, or None; got {self.autocast_dtype!r}.")
        if not isinstance(self.memory_format, torch.memory_format):
            raise TypeError(f"memory_format must be a torch.memory_format such as "
                            f"torch.channels_last, got {self.memory_format!r}.")

    def with_steps(self, n_steps: int | None) -> LangevinSettings:
        """The same settings with ``n_steps`` steps (``None`` keeps these settings)."""
        return self if n_steps is None else dataclasses.replace(self, n_steps=n_steps)


@contextlib.contextmanager
def _frozen_parameters(energy_fn: EnergyFn) -> Iterator[None]:
    """``requires_grad=False`` on the parameters of the module behind ``energy_fn`` for the block.

    The module is ``energy_fn`` itself or the owner of a bound method such as ``ebm.energy``; a
    plain function is left alone. Autograd then records nothing for the weights during sampling
    (up to ~4 % less time per SGLD step on small networks, docs/performance.md); the flags are
    restored on exit.
    """
    owner = energy_fn if isinstance(energy_fn, nn.Module) else getattr(energy_fn, "__self__", None)
    params = ([p for p in owner.parameters() if p.requires_grad]
              if isinstance(owner, nn.Module) else [])
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


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
    if not energy.requires_grad:
        raise TypeError("the energy function returned energies without a gradient: compute them "
                        "from its input x with differentiable torch operations (no .detach(), "
                        "no torch.no_grad()).")
    (grad,) = torch.autograd.grad(energy.sum(), x)
    return energy.detach(), grad


def langevin_dynamics(
    energy_fn: EnergyFn,
    x: Tensor,
    settings: LangevinSettings,
    *,
    generator: torch.Generator | None = None,
    callback: Callable[[LangevinStep], None] | None = None,
) -> LangevinResult:
    """Run ``settings.n_steps`` of SGLD from ``x``; ``x`` itself is not modified.

    Only the input gradient is computed (``torch.autograd.grad`` with ``x`` as the sole input), so
    no ``.grad`` is left on the energy's parameters and no weight-gradient kernels run. When
    ``energy_fn`` is an ``nn.Module`` or one of its methods (``ebm.energy``), its parameters have
    ``requires_grad=False`` during the call (restored afterwards), so autograd does no bookkeeping
    for them either. The loop allocates nothing per step beyond the energy's own forward and
    backward, and never synchronises with the device.

    Args:
        energy_fn: ``(B, *shape) -> (B,)``.
        x: ``(B, *shape)`` floating-point start states.
        settings: steps, step size, noise, clip, clamp, autocast and layout (see
            :class:`LangevinSettings`). With ``memory_format=torch.channels_last`` the samples
            come back in that layout; the noise is drawn in the standard layout, so a seed
            gives the same chain in any layout.
        generator: source of the noise.
        callback: called after each step with a :class:`LangevinStep`.

    Returns:
        :class:`~ebmguide.protocols.LangevinResult` with detached samples, a per-chain
        finiteness flag and the per-chain movement diagnostics (``drift``, ``drift_to_noise``,
        ``displacement``), all computed on the device without a host sync.

    Example:
        One noiseless step on E(x) = ½‖x‖² moves x to (1 − η)·x:

        >>> def quadratic(x):
        ...     return 0.5 * x.square().sum(dim=1)
        >>> settings = LangevinSettings(n_steps=1, step_size=0.25, noise_scale=0.0, clamp=None)
        >>> out = langevin_dynamics(quadratic, torch.tensor([[1.0, -2.0]]), settings)
        >>> out.samples, out.finite
        (tensor([[ 0.7500, -1.5000]]), tensor([True]))

        The gradient move was 0.25·(1, −2), so its root mean square per element is 0.25·√2.5:

        >>> out.drift
        tensor([0.3953])
    """
    if not isinstance(settings, LangevinSettings):
        raise TypeError(f"settings must be a LangevinSettings record, got "
                        f"{type(settings).__name__}; build one with LangevinSettings(n_steps=..., "
                        f"step_size=..., noise_scale=...).")
    n_steps, step_size, noise_scale = settings.n_steps, settings.step_size, settings.noise_scale
    grad_clip, clamp = settings.grad_clip, settings.clamp
    check_tensor("x", x, floating=True)
    if not callable(energy_fn):
        raise TypeError(f"energy_fn must be a callable (B, *shape) -> (B,), got "
                        f"{type(energy_fn).__name__}.")
    if x.dim() < 2:
        raise ValueError(f"x must be a batch (B, *shape) with at least 2 dimensions, got shape "
                         f"{tuple(x.shape)}; hold scalar samples as (B, 1).")
    largest = torch.finfo(x.dtype).max  # e.g. η = 1e39 is finite but overflows float32
    bounds = zip(("clamp[0]", "clamp[1]"), clamp or (), strict=False)
    for name, value in (("step_size", step_size), ("noise_scale", noise_scale),
                        ("grad_clip", grad_clip), *bounds):
        if value is not None and abs(value) > largest:
            raise ValueError(f"{name} = {value!r} does not fit x's dtype {x.dtype} (largest "
                             f"{largest:.3g}); use a smaller value or a wider dtype.")
    check_generator("generator", generator)
    if generator is not None and noise_scale > 0 and generator.device.type != x.device.type:
        raise ValueError(f"generator is on {generator.device} but x is on {x.device}; create "
                         f"it with torch.Generator(device=x.device).")
    try:
        state = x.detach().clone(memory_format=settings.memory_format)
    except RuntimeError as exc:
        raise ValueError(f"memory_format {settings.memory_format} does not fit x of shape "
                         f"{tuple(x.shape)}: {exc}") from None
    # Buffers reused by every step. A NaN or inf in any gradient or energy of a chain turns its
    # entries of `bad_*` into NaN (0·inf = NaN): the check costs one in-place op per step and no
    # host sync.
    bad_grad = torch.zeros_like(state)
    bad_energy = torch.zeros(x.shape[0], dtype=state.dtype, device=x.device)
    # Σ_k ‖clip(∇E)‖² per chain, for the drift diagnostic: one (B,) reduction per step, no sync.
    drift_sq = torch.zeros(x.shape[0], dtype=state.dtype, device=x.device)
    element_dims = tuple(range(1, state.dim()))
    noise = (torch.empty(state.shape, dtype=state.dtype, device=state.device)
             if noise_scale > 0 else None)
    clipped = torch.empty_like(state) if grad_clip is not None and n_steps > 0 else None
    with _frozen_parameters(energy_fn):
        for index in range(n_steps):
            energy, grad = _energy_grad(energy_fn, state, settings.autocast_dtype)
            bad_grad.add_(grad, alpha=0.0)
            bad_energy.add_(energy, alpha=0.0)
            update = (torch.clamp(grad, -grad_clip, grad_clip, out=clipped)
                      if clipped is not None and grad_clip is not None else grad)
            drift_sq.add_(torch.linalg.vector_norm(update, dim=element_dims).square_())
            state.add_(update, alpha=-step_size)
            if noise is not None:
                torch.randn(state.shape, generator=generator, out=noise)
                state.add_(noise, alpha=noise_scale)
            if clamp is not None:
                state.clamp_(clamp[0], clamp[1])
            if callback is not None:
                callback(LangevinStep(index, state, energy, grad))
    bad_grad.add_(state, alpha=0.0)  # and the final state
    finite = torch.isfinite(bad_grad).flatten(1).all(dim=1) & torch.isfinite(bad_energy)
    return LangevinResult(state, finite, *_movement(drift_sq, state, x, n_steps, step_size,
                                                    noise_scale))


def _movement(drift_sq: Tensor, state: Tensor, start: Tensor, n_steps: int, step_size: float,
              noise_scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """``drift``, ``drift_to_noise`` and ``displacement`` of :class:`LangevinResult`, each ``(B,)``.

    Args:
        drift_sq: ``(B,)`` sum over steps of ‖clip(∇E)‖² per chain.
        state: ``(B, *shape)`` final states.
        start: ``(B, *shape)`` start states.
        n_steps: K.
        step_size: η.
        noise_scale: σ.
    """
    elements = max(math.prod(state.shape[1:]), 1)  # also for an empty batch (B = 0)
    drift = drift_sq.div(max(n_steps, 1) * elements).sqrt_().mul_(step_size)
    if noise_scale > 0:
        ratio = drift / noise_scale
    else:  # no noise: a moving chain is all drift
        ratio = torch.where(drift > 0, torch.inf, 0.0).to(drift.dtype)
    dims = tuple(range(1, state.dim()))
    displacement = torch.linalg.vector_norm(state - start.to(state.dtype), dim=dims)
    return drift, ratio, displacement.div_(elements ** 0.5)
