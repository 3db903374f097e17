"""Argument checks shared by the public functions: one sentence naming the argument and the fix."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "as_device",
    "check_batch_fits",
    "check_finite",
    "check_generator",
    "check_int",
    "check_number",
    "check_range_pair",
    "check_shape",
    "check_tensor",
]


def check_number(name: str, value: Any, *, low: float | None = None, strict: bool = False,
                 high: float | None = None) -> float:
    """A finite real number (not a bool) with ``value > low`` (``strict``) or ``>= low``.

    Raises:
        TypeError: not a real number.
        ValueError: not finite or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    if low is not None and (v <= low if strict else v < low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}, got {value!r}.")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}.")
    return v


def check_int(name: str, value: Any, *, low: int = 0) -> int:
    """An int (not a bool) ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__}).")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
    return int(value)


def check_range_pair(name: str, value: Any) -> tuple[float, float]:
    """``(low, high)``: two finite numbers with low < high."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name} must be (low, high) with low < high, got {value!r}.")
    low = check_number(f"{name}[0]", value[0])
    high = check_number(f"{name}[1]", value[1])
    if not low < high:
        raise ValueError(f"{name} must be (low, high) with low < high, got {value!r}.")
    return low, high


def check_tensor(name: str, value: Any, *, floating: bool = False) -> Tensor:
    """A ``torch.Tensor`` (floating-point when asked)."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}; convert it "
                        f"with torch.as_tensor(...).")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}; "
                        f"convert it with .float() (images scaled to [0, 1]).")
    return value


def as_device(device: Any) -> torch.device:
    """``torch.device(device)``, with a ValueError naming the argument for a bad name."""
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, (str, int)) or isinstance(device, bool):
        raise TypeError(f"device must be a torch.device or a name such as 'cpu' or 'cuda:0', got "
                        f"{type(device).__name__}.")
    try:
        return torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"device {device!r} is not a torch device; use 'cpu', 'cuda' or "
                         f"'cuda:<index>'.") from err


def check_finite(name: str, x: Tensor) -> None:
    """Refuse a tensor holding NaN or inf: such samples must never become numbers or pixels.

    Args:
        name: where the values come from, for the message (e.g. "samples of ebmguide sample").
        x: the values.

    Raises:
        ValueError: naming how many values (and samples) are not finite.
    """
    if not (x.is_floating_point() or x.is_complex()) or x.numel() == 0:
        return
    bad = ~x.isfinite()
    count = int(bad.sum())  # one host sync
    if count:
        rows = int(bad.reshape(len(x), -1).any(dim=1).sum()) if x.dim() > 1 else count
        raise ValueError(f"{name}: {count:,} of {x.numel():,} values ({rows:,} of {len(x):,} "
                         f"samples) are NaN or infinite; they are never turned into numbers or "
                         f"pixels. They come from a diverged model or sampler: use an earlier "
                         f"checkpoint, fewer SGLD steps or a smaller step size.")


def check_generator(name: str, generator: Any) -> None:
    """``TypeError`` unless ``generator`` is None or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got "
                        f"{type(generator).__name__} ({generator!r}); pass "
                        f"torch.Generator().manual_seed(seed), not the seed itself.")


def check_shape(name: str, shape: Any) -> tuple[int, ...]:
    """A sample shape as ints; ``ValueError`` for fractions, zeros, negatives or no entries."""
    if (isinstance(shape, (str, bytes)) or not isinstance(shape, (tuple, list, torch.Size))
            or not shape or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool)
                                    and int(s) >= 1 for s in shape)):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints such as "
                         f"(3, 32, 32), got {shape!r}.")
    return tuple(int(s) for s in shape)


def check_batch_fits(x: Tensor, chains: Tensor | None, ebm: object) -> None:
    """Refuse real data that do not match the sampler's chains ``(N, *shape)`` or the EBM's dtype.

    Raises ``ValueError`` (shape) or ``TypeError`` (dtype): torch would fail deep inside a layer
    with "Sizes of tensors must match" or a dtype mismatch.
    """
    shape = None if chains is None else tuple(chains.shape[1:])
    if shape is not None and tuple(x.shape[1:]) != shape:
        raise ValueError(f"x holds samples of shape {tuple(x.shape[1:])} but the sampler draws "
                         f"{shape}; resize the data or build the sampler with shape="
                         f"{tuple(x.shape[1:])} (config: data.size).")
    params = getattr(ebm, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    if isinstance(first, Tensor) and first.is_floating_point() and x.dtype != first.dtype:
        raise TypeError(f"x is {x.dtype} but the ebm's parameters are {first.dtype}; convert the "
                        f"data with x.to({first.dtype}) (or the networks with .to(dtype)).")
