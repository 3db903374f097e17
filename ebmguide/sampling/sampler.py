"""SGLDSampler: the stateful wrapper that owns the replay buffer."""

from __future__ import annotations

import dataclasses
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
from ebmguide.sampling.buffer import BufferDraw, ReplayBuffer, uniform_states
from ebmguide.sampling.langevin import LangevinSettings, LangevinStep, langevin_dynamics

__all__ = ["SGLDSampler"]


class SGLDSampler:
    """SGLD with an augmented replay buffer: CLEL's negative sampler.

    Each call to :meth:`sample` draws B distinct buffer slots, re-initialises each drawn chain to
    uniform noise with probability ``reinit_prob``, applies ``augment`` to every drawn chain, runs
    ``n_steps`` of :func:`~ebmguide.sampling.langevin_dynamics` and writes the finite results back.
    All randomness comes from the ``generator`` passed to the call. :meth:`sweep` walks the whole
    buffer the same way (the paper's evaluation protocol); :meth:`sample_fresh` and
    :meth:`sample_from` run chains with the same settings without touching the buffer.

    The Langevin settings are given as keyword arguments and held as one frozen
    :class:`~ebmguide.sampling.LangevinSettings` record, ``sampler.settings``; code that already
    holds a record builds the sampler with :meth:`from_settings`.

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
        self.settings = LangevinSettings(n_steps, step_size, noise_scale, grad_clip, clamp,
                                         autocast_dtype, memory_format)
        check_number("reinit_prob (a probability)", reinit_prob, low=0.0, high=1.0)
        if clamp is None:
            check_range_pair("init_range", init_range)
        device = as_device(device)
        self.shape = check_shape("shape", shape)  # (3, 8.5, 8) is refused, never truncated
        self.reinit_prob = reinit_prob
        self.write_back = write_back
        if memory_format == torch.channels_last and len(self.shape) != 3:
            raise ValueError(f"memory_format=torch.channels_last needs image samples (C, H, W), "
                             f"but shape is {self.shape}; leave memory_format at its default "
                             f"(in a run configuration: sampler.memory_format = \"preserve\").")
        self.augment = self._resolve_augment(augment)
        low, high = self.settings.clamp if self.settings.clamp is not None else init_range
        self.buffer = ReplayBuffer(buffer_size, self.shape, low=low, high=high, device=device,
                                   dtype=dtype, generator=generator)

    @classmethod
    def from_settings(cls, shape: Sequence[int], settings: LangevinSettings,
                      **buffer_options: Any) -> SGLDSampler:
        """A sampler running ``settings``; ``buffer_options`` are the other keyword arguments.

        Args:
            shape: shape of one sample.
            settings: the Langevin settings of every call.
            **buffer_options: ``buffer_size``, ``init_range``, ``reinit_prob``, ``augment``,
                ``write_back``, ``device``, ``generator``, ``dtype``.
        """
        if not isinstance(settings, LangevinSettings):
            raise TypeError(f"settings must be a LangevinSettings record, got "
                            f"{type(settings).__name__}.")
        clash = sorted(set(buffer_options) & {f.name for f in dataclasses.fields(settings)})
        if clash:
            raise TypeError(f"{clash} are Langevin settings: set them in the LangevinSettings "
                            f"record, not as keyword arguments.")
        return cls(shape, **dataclasses.asdict(settings), **buffer_options)

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
        _check_energy_fn(energy_fn)
        draw = self.buffer.draw(batch_size, reinit_prob=self.reinit_prob, generator=generator)
        return self._advance(energy_fn, draw, self.settings, generator, callback,
                             write=self.write_back)

    def sweep(
        self,
        energy_fn: EnergyFn,
        *,
        chunk: int = 512,
        n_steps: int | None = None,
        generator: torch.Generator | None = None,
        on_chunk: Callable[[int], None] | None = None,
    ) -> None:
        """One pass over the whole buffer, slot by slot in chunks, each chunk as :meth:`sample`.

        The paper's evaluation protocol (a buffer of 50,000 uniform images, 10 passes in chunks
        of 512) is this method called once per pass: every chunk is re-initialised with
        ``reinit_prob``, augmented, run and its finite chains written back, exactly as in
        training. The buffer is written even when ``write_back`` is off.

        Args:
            energy_fn: ``(B, *shape) -> (B,)``.
            chunk: chains per batch.
            n_steps: steps per chunk (default: the settings' ``n_steps``).
            generator: source of re-initialisation, augmentation and noise.
            on_chunk: called with the number of chains after every chunk (e.g. a progress bar).
        """
        _check_energy_fn(energy_fn)
        check_int("chunk", chunk, low=1)
        settings, n, device = self.settings.with_steps(n_steps), self.buffer.capacity, \
            self.buffer.states.device
        for start in range(0, n, chunk):
            index = torch.arange(start, min(start + chunk, n), device=device)
            draw = self.buffer.draw_slots(index, reinit_prob=self.reinit_prob,
                                          generator=generator)
            self._advance(energy_fn, draw, settings, generator, None, write=True)
            if on_chunk is not None:
                on_chunk(len(index))

    def _advance(self, energy_fn: EnergyFn, draw: BufferDraw, settings: LangevinSettings,
                 generator: torch.Generator | None,
                 callback: Callable[[LangevinStep], None] | None, *, write: bool) -> LangevinResult:
        """Augment the drawn chains, run them and write the finite ones back (when ``write``)."""
        x = draw.x
        if self.augment is not None:
            x = apply_augment(self.augment, x, generator)
        result = langevin_dynamics(energy_fn, x, settings, generator=generator,
                                   callback=callback)
        if write:
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
            n_steps: steps to run (default: the settings' ``n_steps``).
            generator: source of the start states and noise.
            callback: per-step callback.

        Returns:
            :class:`~ebmguide.protocols.LangevinResult` with ``(B, *shape)`` detached samples.
        """
        check_int("batch_size", batch_size, low=1)
        states = self.buffer.states
        x = uniform_states((batch_size, *self.shape), self.buffer.low, self.buffer.high,
                           generator=generator, device=states.device, dtype=states.dtype)
        return self.sample_from(energy_fn, x, n_steps=n_steps, generator=generator,
                                callback=callback)

    def sample_from(
        self,
        energy_fn: EnergyFn,
        x: Tensor,
        *,
        n_steps: int | None = None,
        generator: torch.Generator | None = None,
        callback: Callable[[LangevinStep], None] | None = None,
    ) -> LangevinResult:
        """Run chains from the start states ``x`` ``(B, *shape)``; the buffer is left alone.

        No re-initialisation and no augmentation: the chains start exactly at ``x``.
        """
        _check_energy_fn(energy_fn)
        return langevin_dynamics(energy_fn, x, self.settings.with_steps(n_steps),
                                 generator=generator, callback=callback)

    def data_range(self) -> tuple[float, float] | None:
        """The clamp range of the chains (the data must lie in it), or ``None`` (unbounded)."""
        return self.settings.clamp

    def chains(self) -> Tensor:
        """The replay buffer's states ``(N, *shape)`` (the live tensor: read, do not modify)."""
        return self.buffer.states

    def state_dict(self) -> dict[str, Any]:
        """The replay buffer's state."""
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the replay buffer saved by :meth:`state_dict`."""
        if "buffer" not in state:
            raise ValueError("sampler state has no 'buffer' entry; pass SGLDSampler.state_dict().")
        self.buffer.load_state_dict(state["buffer"])
        check_states_in_clamp(self.buffer.states, self.settings.clamp)


def _check_energy_fn(energy_fn: object) -> None:
    if not callable(energy_fn):
        raise TypeError(f"energy_fn must be a callable (B, *shape) -> (B,), got "
                        f"{type(energy_fn).__name__}.")
