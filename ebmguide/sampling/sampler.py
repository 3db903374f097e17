"""SGLDSampler: the stateful wrapper that owns the replay buffer."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ebmguide._validation import (
    as_device,
    check_int,
    check_number,
    check_range_pair,
    check_shape,
)
from ebmguide.augment import Augment, apply_augment, make_augmentation
from ebmguide.protocols import EnergyFn, LangevinResult
from ebmguide.sampling._state_checks import check_states_in_clamp
from ebmguide.sampling.buffer import ReplayBuffer
from ebmguide.sampling.langevin import LangevinStep, langevin_dynamics, validate_langevin_args

__all__ = ["SGLDSampler"]


class SGLDSampler:
    """SGLD with an augmented replay buffer: CLEL's negative sampler.

    Each call to :meth:`sample` draws B distinct buffer slots, re-initialises each drawn chain to
    uniform noise with probability ``reinit_prob``, applies ``augment`` to every drawn chain, runs
    ``n_steps`` of :func:`~ebmguide.sampling.langevin_dynamics` and writes the finite results back.
    All randomness comes from the ``generator`` passed to the call.

    Paper values (CIFAR-10): ``buffer_size=10_000, n_steps=60, step_size=100, noise_scale=1e-3,
    reinit_prob=1e-3, augment="strong"``. The research code clipped gradients at c = η by accident;
    ``grad_clip`` is its own setting here (``None``: no clipping).

    Args:
        shape: shape of one sample, e.g. ``(3, 32, 32)`` or ``(2,)``.
        buffer_size: replay buffer capacity.
        n_steps: K, SGLD steps per call.
        step_size: η.
        noise_scale: σ.
        grad_clip: c, or ``None``.
        clamp: range of the states (also the uniform initialisation range), or ``None`` for
            unbounded data, in which case ``init_range`` sets the initialisation.
        init_range: (low, high) of the uniform initialisation when ``clamp`` is ``None``.
        reinit_prob: probability a drawn chain restarts from noise.
        augment: ``"strong"``, ``"weak"``, ``"flip"``, ``"none"``, any batched callable, or
            ``None`` (no augmentation). Names need image-shaped samples ``(C, H, W)``.
        write_back: write the chains back into the buffer (turn off to sample without changing
            state).
        autocast_dtype: e.g. ``torch.bfloat16`` for the energy gradient under autocast.
        memory_format: layout of the chains while they run, e.g. ``torch.channels_last`` for a
            convolutional energy (see :func:`~ebmguide.sampling.langevin_dynamics`); the buffer
            keeps the standard layout.
        device: where the buffer lives.
        generator: source of the buffer's initial states.
        dtype: floating dtype of the buffer and of the chains (``torch.float64`` runs the whole
            sampler in double precision, e.g. for gradient checks; default float32).
    """

    def __init__(
        self,
        shape: Sequence[int],
        *,
        buffer_size: int = 10_000,
        n_steps: int = 60,
        step_size: float = 100.0,
        noise_scale: float = 1e-3,
        grad_clip: float | None = None,
        clamp: tuple[float, float] | None = (0.0, 1.0),
        init_range: tuple[float, float] = (0.0, 1.0),
        reinit_prob: float = 1e-3,
        augment: str | Augment | None = None,
        write_back: bool = True,
        autocast_dtype: torch.dtype | None = None,
        memory_format: torch.memory_format = torch.preserve_format,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        validate_langevin_args(n_steps, step_size, noise_scale, grad_clip, clamp)
        check_number("reinit_prob (a probability)", reinit_prob, low=0.0, high=1.0)
        if clamp is None:
            check_range_pair("init_range", init_range)
        device = as_device(device)
        self.shape = check_shape("shape", shape)  # (3, 8.5, 8) is refused, never truncated
        self.n_steps = n_steps
        self.step_size = step_size
        self.noise_scale = noise_scale
        self.grad_clip = grad_clip
        self.clamp = clamp
        self.reinit_prob = reinit_prob
        self.write_back = write_back
        self.autocast_dtype = autocast_dtype
        if memory_format == torch.channels_last and len(self.shape) != 3:
            raise ValueError(f"memory_format=torch.channels_last needs image samples (C, H, W), "
                             f"but shape is {self.shape}; leave memory_format at its default.")
        self.memory_format = memory_format
        self.augment = self._resolve_augment(augment)
        low, high = clamp if clamp is not None else init_range
        self.buffer = ReplayBuffer(buffer_size, self.shape, low=low, high=high, device=device,
                                   dtype=dtype, generator=generator)

    def _resolve_augment(self, augment: str | Augment | None) -> Augment | None:
        if augment is None or augment == "none":
            return None
        if isinstance(augment, str):
            if len(self.shape) != 3:
                raise ValueError(
                    f"augmentation {augment!r} needs image samples (C, H, W), but shape is "
                    f"{self.shape}; use augment=None for non-image data."
                )
            module = make_augmentation(augment, self.shape[1:], channels=self.shape[0])
            return module
        if not callable(augment):
            raise TypeError(
                f"augment must be a name, a callable or None, got {type(augment).__name__}."
            )
        return augment

    def sample(
        self,
        energy_fn: EnergyFn,
        batch_size: int,
        *,
        generator: torch.Generator | None = None,
        callback: Callable[[LangevinStep], None] | None = None,
    ) -> LangevinResult:
        """Draw chains from the buffer, run SGLD, write back, return the samples and diagnostics.

        Args:
            energy_fn: ``(B, *shape) -> (B,)``.
            batch_size: B, at most the buffer size.
            generator: source of slot choice, re-initialisation, augmentation and noise.
            callback: per-step callback (see :class:`~ebmguide.sampling.LangevinStep`).

        Returns:
            :class:`~ebmguide.protocols.LangevinResult`: ``(B, *shape)`` detached samples, their
            ``(B,)`` finite flags and movement diagnostics. Non-finite chains are returned as
            they are (so the caller can see them) but never written into the buffer.
        """
        if not callable(energy_fn):
            raise TypeError(f"energy_fn must be a callable (B, *shape) -> (B,), got "
                            f"{type(energy_fn).__name__}.")
        draw = self.buffer.draw(batch_size, reinit_prob=self.reinit_prob, generator=generator)
        x = draw.x
        if self.augment is not None:
            x = apply_augment(self.augment, x, generator)
        result = self._run(energy_fn, x, self.n_steps, generator, callback)
        if self.write_back:
            self.buffer.write(draw.indices, result.samples, keep=result.finite)
        return result

    def sample_fresh(
        self,
        energy_fn: EnergyFn,
        batch_size: int,
        *,
        n_steps: int | None = None,
        generator: torch.Generator | None = None,
        callback: Callable[[LangevinStep], None] | None = None,
    ) -> LangevinResult:
        """Run chains from fresh uniform noise; the buffer is neither read nor written.

        Args:
            energy_fn: ``(B, *shape) -> (B,)``.
            batch_size: B.
            n_steps: steps to run (default: the sampler's ``n_steps``).
            generator: source of the start states and noise.
            callback: per-step callback.

        Returns:
            :class:`~ebmguide.protocols.LangevinResult` with ``(B, *shape)`` detached samples.
        """
        check_int("batch_size", batch_size, low=1)
        states = self.buffer.states
        x = torch.rand((batch_size, *self.shape), generator=generator, device=states.device,
                       dtype=states.dtype)
        x = x.mul_(self.buffer.high - self.buffer.low).add_(self.buffer.low)
        steps = self.n_steps if n_steps is None else n_steps
        return self._run(energy_fn, x, steps, generator, callback)

    def _run(self, energy_fn: EnergyFn, x: Tensor, n_steps: int,
             generator: torch.Generator | None,
             callback: Callable[[LangevinStep], None] | None) -> LangevinResult:
        return langevin_dynamics(
            energy_fn, x, n_steps=n_steps, step_size=self.step_size,
            noise_scale=self.noise_scale, grad_clip=self.grad_clip, clamp=self.clamp,
            generator=generator, autocast_dtype=self.autocast_dtype,
            memory_format=self.memory_format, callback=callback,
        )

    def state_dict(self) -> dict[str, Any]:
        """The replay buffer's state."""
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the replay buffer saved by :meth:`state_dict`."""
        if "buffer" not in state:
            raise ValueError("sampler state has no 'buffer' entry; pass SGLDSampler.state_dict().")
        self.buffer.load_state_dict(state["buffer"])
        check_states_in_clamp(self.buffer.states, self.clamp)
