"""Small torch helpers with one home: devices, eval mode for a block, row chunks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ebmguide._validation import as_device

__all__ = ["chunks", "eval_mode", "module_device", "native_bf16", "resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when available, else CPU; any other name as ``torch.device``.

    Raises:
        ValueError: the name is not a torch device, or it asks for CUDA where torch has none.
    """
    name = str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device {name!r} is not a torch device; use auto, cpu or cuda.") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for CUDA, which this torch cannot use; set "
                         f"device = \"cpu\" (or \"auto\").")
    return as_device(dev)


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` runs bfloat16 matrix and convolution kernels natively (so fast).

    CUDA: ``torch.cuda.is_bf16_supported()`` without emulation. CPU: the AVX512-BF16 or AMX-BF16
    instructions (from ``torch.cpu.get_capabilities()``). Without them torch emulates bfloat16 on
    a CPU, which made an SGLD step of a small CNN about 10× *slower* than float32 (measured on an
    AVX2-only CPU, docs/performance.md). Anything else (and a torch that cannot tell): ``False``.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_available()
                    and torch.cuda.is_bf16_supported(including_emulation=False))
    if dev.type != "cpu":
        return False
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:
        return False
    flags = capabilities()
    return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))


def module_device(module: object) -> torch.device | None:
    """The device of an ``nn.Module``'s first parameter (None for other objects or no params)."""
    if not isinstance(module, nn.Module):
        return None
    first = next(module.parameters(), None)
    return first.device if first is not None else None


@contextmanager
def eval_mode(*models: object, enabled: bool = True) -> Iterator[None]:
    """Put every ``nn.Module`` among ``models`` in eval mode for the block, then restore it.

    Objects that are not modules are passed over, and so is a module that has no mode to set
    (a ``torch.export`` module raises ``NotImplementedError`` on ``eval()``).

    Args:
        models: any objects; only ``nn.Module`` instances are switched.
        enabled: False leaves every mode as it is (for callers with an option).
    """
    switched: list[tuple[nn.Module, bool]] = []
    try:
        for m in models if enabled else ():
            if not isinstance(m, nn.Module):
                continue
            was_training = m.training
            try:
                m.eval()
            except NotImplementedError:
                continue
            switched.append((m, was_training))
        yield
    finally:
        for m, was_training in switched:
            m.train(was_training)


def chunks(x: Tensor, size: int) -> Iterator[Tensor]:
    """Consecutive slices of ``x`` (``(N, ...)``) along dim 0 with at most ``size`` rows."""
    if size < 1:
        raise ValueError(f"batch_size must be positive, got {size}.")
    for start in range(0, x.shape[0], size):
        yield x[start:start + size]
