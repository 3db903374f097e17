"""The replay buffer of persistent SGLD chains."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ebmguide._validation import as_device, check_generator, check_int, check_number
from ebmguide.sampling._state_checks import check_loaded_buffer

__all__ = ["BufferDraw", "ReplayBuffer", "uniform_states"]


def uniform_states(
    size: Sequence[int], low: float, high: float, *, generator: torch.Generator | None = None,
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Fresh chain starts, uniform on [low, high]: the one home of the uniform initialisation.

    Args:
        size: ``(B, *shape)``.
        low: lower bound.
        high: upper bound.
        generator: source of the noise (on ``device``).
        device: where the states live.
        dtype: floating dtype of the states.

    Returns:
        ``(B, *shape)`` states ``low + (high − low)·U`` with U ~ U[0, 1).
    """
    u = torch.rand(tuple(size), generator=generator, device=device, dtype=dtype)
    return u.mul_(high - low).add_(low)


class BufferDraw(NamedTuple):
    """Chains drawn from a :class:`ReplayBuffer`.

    Attributes:
        indices: ``(B,)`` int64 distinct slot indices.
        x: ``(B, *shape)`` start states (a copy; re-initialised chains are fresh uniform noise).
        reinitialised: ``(B,)`` bool, which chains were re-initialised.
    """

    indices: Tensor
    x: Tensor
    reinitialised: Tensor


class ReplayBuffer:
    """A fixed-size store of chain states, initialised uniformly on [low, high].

    Args:
        capacity: number of slots (10,000 in the paper).
        shape: shape of one state, e.g. ``(3, 32, 32)``.
        low: lower bound of the uniform initialisation.
        high: upper bound of the uniform initialisation.
        device: where the states live.
        dtype: floating dtype of the states.
        generator: source of the initial states.

    Example:
        >>> buffer = ReplayBuffer(100, (3, 8, 8), generator=torch.Generator().manual_seed(0))
        >>> draw = buffer.draw(16, generator=torch.Generator().manual_seed(1))
        >>> draw.x.shape, bool(draw.reinitialised.any())
        (torch.Size([16, 3, 8, 8]), False)
        >>> buffer.write(draw.indices, torch.zeros(16, 3, 8, 8))
        >>> int((buffer.states.flatten(1).amax(dim=1) == 0).sum())
        16
    """

    def __init__(
        self,
        capacity: int,
        shape: Sequence[int],
        *,
        low: float = 0.0,
        high: float = 1.0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise ValueError(f"capacity (buffer_size) must be a positive int, got {capacity!r}.")
        if (isinstance(shape, (str, bytes)) or not shape
                or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1
                           for s in shape)):
            raise ValueError(f"shape must be a non-empty sequence of positive ints, got {shape!r}.")
        check_number("low", low)
        check_number("high", high)
        if not low < high:
            raise ValueError(f"low must be below high, got low={low}, high={high}.")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype such as torch.float32, got "
                            f"{dtype!r}.")
        device = as_device(device)
        check_generator("generator", generator)
        self.shape = tuple(int(s) for s in shape)
        self.low, self.high = float(low), float(high)
        self.states = uniform_states((capacity, *self.shape), self.low, self.high,
                                     generator=generator, device=device, dtype=dtype)

    @property
    def capacity(self) -> int:
        """Number of slots."""
        return int(self.states.shape[0])

    def draw(
        self, batch_size: int, *, reinit_prob: float = 0.0, generator: torch.Generator | None = None
    ) -> BufferDraw:
        """Draw ``batch_size`` distinct slots; re-initialise each with probability ``reinit_prob``.

        Args:
            batch_size: B, at most the capacity.
            reinit_prob: probability that a drawn chain restarts from uniform noise.
            generator: source of the slot choice and the re-initialisation.

        Returns:
            :class:`BufferDraw`; the buffer itself is not modified.
        """
        check_int("batch_size", batch_size, low=1)
        if not 1 <= batch_size <= self.capacity:
            raise ValueError(
                f"batch_size must be between 1 and the buffer capacity {self.capacity}, got "
                f"{batch_size}; enlarge the buffer or lower the batch size."
            )
        check_generator("generator", generator)
        indices = torch.randperm(self.capacity, generator=generator,
                                 device=self.states.device)[:batch_size]
        return self.draw_slots(indices, reinit_prob=reinit_prob, generator=generator)

    def draw_slots(
        self, indices: Tensor, *, reinit_prob: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> BufferDraw:
        """The start states of the given slots; each is re-initialised with ``reinit_prob``.

        Args:
            indices: ``(B,)`` int64 distinct slot indices on the buffer's device.
            reinit_prob: probability that a drawn chain restarts from uniform noise.
            generator: source of the re-initialisation.

        Returns:
            :class:`BufferDraw`; the buffer itself is not modified.
        """
        check_number("reinit_prob (a probability)", reinit_prob, low=0.0, high=1.0)
        check_generator("generator", generator)
        device, b = self.states.device, indices.shape[0]
        mask = torch.rand(b, generator=generator, device=device) < reinit_prob
        fresh = uniform_states((b, *self.shape), self.low, self.high, generator=generator,
                               device=device, dtype=self.states.dtype)
        view = (-1,) + (1,) * len(self.shape)
        x = torch.where(mask.view(view), fresh, self.states[indices])
        return BufferDraw(indices, x, mask)

    def write(self, indices: Tensor, x: Tensor, *, keep: Tensor | None = None) -> None:
        """Write states into slots; slots whose ``keep`` flag is False keep their old state.

        Args:
            indices: ``(B,)`` slot indices.
            x: ``(B, *shape)`` new states.
            keep: optional ``(B,)`` bool; False rows are not written (used for non-finite
                chains). No host synchronisation is needed.
        """
        if x.shape[1:] != self.states.shape[1:] or x.shape[0] != indices.shape[0]:
            raise ValueError(
                f"cannot write states of shape {tuple(x.shape)} at {indices.shape[0]} slots of a "
                f"buffer holding {tuple(self.states.shape[1:])}."
            )
        x = x.detach().to(self.states)
        if keep is not None:
            view = (-1,) + (1,) * len(self.shape)
            x = torch.where(keep.view(view), x, self.states[indices])
        self.states.index_copy_(0, indices, x)

    def state_dict(self) -> dict[str, Any]:
        """The states and bounds."""
        return {"states": self.states.clone(), "low": self.low, "high": self.high}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore states saved by :meth:`state_dict`; the stored shape must match.

        Raises:
            ValueError: a missing entry, a shape that does not fit, or non-finite states (a
                checkpoint written after the chains diverged).
        """
        missing = [k for k in ("states", "low", "high") if k not in state]
        if missing:
            raise ValueError(f"buffer state lacks {missing}; pass ReplayBuffer.state_dict().")
        states = state["states"]
        if not isinstance(states, Tensor) or states.shape[1:] != self.states.shape[1:]:
            got = tuple(states.shape) if isinstance(states, Tensor) else type(states).__name__
            raise ValueError(
                f"buffer state of shape {got} does not fit a buffer of states "
                f"{tuple(self.states.shape[1:])}; check the checkpoint's image size."
            )
        if not bool(torch.isfinite(states).all()):
            raise ValueError("buffer state holds non-finite values (NaN/inf): the chains had "
                             "diverged when it was saved; load an earlier checkpoint.")
        check_loaded_buffer(state, self.capacity)  # dtype, capacity, bounds
        self.states = states.to(self.states.device, self.states.dtype).clone()
        self.low, self.high = float(state["low"]), float(state["high"])
