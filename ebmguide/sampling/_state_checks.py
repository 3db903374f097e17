"""Checks of a replay buffer's saved state, beyond its shape and finiteness.

A checkpoint is data from somewhere else: its buffer must have the capacity the run was built
with (else the run records one ``sampler.buffer_size`` and holds another number of chains), a
floating dtype, finite ordered bounds, and (under a clamping sampler) states inside the clamp.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from torch import Tensor

__all__ = ["check_loaded_buffer", "check_states_in_clamp"]


def check_loaded_buffer(state: Mapping[str, Any], capacity: int) -> None:
    """Refuse a buffer state of another capacity or dtype, or with bad bounds.

    Args:
        state: ``{"states", "low", "high"}`` from :meth:`ReplayBuffer.state_dict`.
        capacity: the receiving buffer's number of slots.

    Raises:
        TypeError: integer states, or bounds that are not numbers.
        ValueError: another capacity, or bounds that are not finite or not ordered.
    """
    states = state["states"]
    if not states.is_floating_point():
        raise TypeError(f"buffer state holds {states.dtype} states; a replay buffer stores "
                        f"floating-point samples: pass ReplayBuffer.state_dict() of a float "
                        f"buffer.")
    if states.shape[0] != capacity:
        raise ValueError(f"buffer state holds {states.shape[0]} chains but this buffer has "
                         f"{capacity} slots (sampler.buffer_size); build the sampler with "
                         f"buffer_size={states.shape[0]}, as the checkpoint was.")
    for key in ("low", "high"):
        value = state[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"buffer state {key!r} must be a number, got {value!r}; pass "
                            f"ReplayBuffer.state_dict().")
        if not math.isfinite(float(value)):
            raise ValueError(f"buffer state {key!r} must be a finite number, got {value!r}; "
                             f"load an earlier checkpoint.")
    if not float(state["low"]) < float(state["high"]):
        raise ValueError(f"buffer state bounds must satisfy low < high, got low={state['low']}, "
                         f"high={state['high']}; pass ReplayBuffer.state_dict().")


def check_states_in_clamp(states: Tensor, clamp: tuple[float, float] | None) -> None:
    """Refuse loaded states outside the sampler's clamp range (its chains never leave it)."""
    if clamp is None or states.numel() == 0:
        return
    low, high = float(states.min()), float(states.max())
    if low < clamp[0] or high > clamp[1]:
        raise ValueError(f"buffer state holds values in [{low:.4g}, {high:.4g}] but the sampler "
                         f"clamps its chains to [{clamp[0]}, {clamp[1]}]; load a checkpoint of "
                         f"a run with the same sampler.clamp.")


