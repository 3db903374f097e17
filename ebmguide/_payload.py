"""What a checkpoint may hold: data that ``torch.load(weights_only=True)`` loads back.

:func:`check_state` walks a state before :func:`~ebmguide.checkpoint.save_checkpoint` writes it, so
that an object which would need unpickling code (a ``torch.Generator``, a numpy value, any class) is
refused with a message naming where it sits and how to store it instead, and nothing is written.
"""

from __future__ import annotations

import collections
from typing import Any

import torch

__all__ = ["check_state"]

_SCALARS = (bool, int, float, complex, str, bytes, type(None), torch.dtype, torch.device)
_TENSORS = (torch.Tensor, torch.nn.Parameter)
_SEQUENCES = (list, tuple, set, torch.Size)
_MAPPINGS = (dict, collections.OrderedDict)


def check_state(value: Any, where: str) -> None:
    """Raise TypeError unless ``value`` loads back with ``weights_only=True``.

    Args:
        value: the state, or a part of it (checked recursively).
        where: the path of ``value`` inside the state, e.g. ``"['rng']"`` (``""`` at the top),
            for the message.

    Raises:
        TypeError: naming the first object that is not a tensor, a scalar, or a list, tuple, set
            or dict of these.
    """
    kind = type(value)
    if kind in _SCALARS or kind in _TENSORS:
        return
    if kind in _SEQUENCES:
        for i, item in enumerate(value):
            check_state(item, f"{where}[{i}]")
        return
    if kind in _MAPPINGS:
        for key, item in value.items():
            check_state(key, f"{where} key {key!r}")
            check_state(item, f"{where}[{key!r}]")
        return
    hint = (" Store a torch.Generator as its get_state() tensor." if kind is torch.Generator
            else " Convert numpy values with torch.from_numpy(...) or float(...)."
            if kind.__module__.startswith("numpy") else "")
    raise TypeError(
        f"state{where} is a {kind.__module__.replace('torch._C', 'torch')}.{kind.__qualname__}: "
        f"a checkpoint may hold only tensors, numbers, strings, bools, None and "
        f"lists/tuples/dicts of these, so that it loads with torch.load(weights_only=True).{hint}"
    )
