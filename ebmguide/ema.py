"""Exponential moving averages of networks, on ``torch.optim.swa_utils.AveragedModel``."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from ebmguide._validation import check_int, check_number

__all__ = ["ema_decay", "make_ema", "update_ema"]


def ema_decay(half_life_images: float, batch_size: int) -> float:
    """Per-iteration decay for a half-life counted in images: 0.5 ** (batch_size / half_life).

    CLEL: a half-life of 20,000 images at batch 64 gives 0.5^(64/20000) ≈ 0.99778.

    Example:
        >>> round(ema_decay(20_000, 64), 5)
        0.99778
    """
    check_number("half_life_images", half_life_images, low=0.0, strict=True)
    check_int("batch_size", batch_size, low=1)
    return float(0.5 ** (batch_size / half_life_images))


def make_ema(
    model: nn.Module,
    *,
    half_life_images: float = 20_000,
    batch_size: int = 64,
    copy_iterations: int = 312,
) -> AveragedModel:
    """An EMA copy of ``model`` that plainly copies the weights for the first updates.

    Args:
        model: the network to average.
        half_life_images: half-life of the average, in training images (20,000 in CLEL).
        batch_size: images per iteration, to turn the half-life into a per-update decay.
        copy_iterations: number of first updates that copy instead of averaging (312 in CLEL:
            about one half-life at batch 64).

    Returns:
        An ``AveragedModel``; call :func:`update_ema` after each optimizer step and use
        ``ema.module`` for evaluation.
    """
    decay = ema_decay(half_life_images, batch_size)
    check_int("copy_iterations", copy_iterations, low=0)

    def average(averaged: list[Tensor] | tuple[Tensor, ...],
                current: list[Tensor] | tuple[Tensor, ...], num_averaged: Tensor | int) -> None:
        # In place, all parameters at once (foreach): a per-parameter average allocated two
        # temporaries per tensor and cost ~7 % of a CLEL-small iteration. AveragedModel reads
        # the update count on the host anyway, so reading it here adds no synchronisation.
        if int(num_averaged) < copy_iterations:
            torch._foreach_copy_(averaged, current)
        else:
            torch._foreach_lerp_(averaged, current, 1.0 - decay)

    return AveragedModel(model, multi_avg_fn=average, use_buffers=False)


@torch.no_grad()
def update_ema(ema: AveragedModel, model: nn.Module) -> None:
    """Average the parameters into ``ema`` and copy the buffers.

    Buffers (BatchNorm statistics, spectral-norm power-iteration vectors) are copied rather than
    averaged: an average of unit vectors is not a unit vector.
    """
    ema.update_parameters(model)
    for averaged, current in zip(ema.module.buffers(), model.buffers(), strict=True):
        averaged.copy_(current)
