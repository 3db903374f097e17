"""CLEL's optimizers and learning-rate schedules."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from ebmguide._validation import check_int, check_number

__all__ = ["Optimizers", "clel_optimizers", "linear_warmup", "warmup_cosine"]


class Optimizers(NamedTuple):
    """Both networks' optimizers and schedulers (step the schedulers once per iteration)."""

    ebm: torch.optim.Optimizer
    guide: torch.optim.Optimizer
    ebm_scheduler: LRScheduler
    guide_scheduler: LRScheduler


def clel_optimizers(
    ebm: nn.Module,
    guide: nn.Module,
    *,
    total_iterations: int,
    ebm_lr: float = 1e-4,
    ebm_betas: tuple[float, float] = (0.0, 0.999),
    warmup_iterations: int = 2_000,
    guide_lr: float = 0.03,
    guide_momentum: float = 0.9,
    guide_weight_decay: float = 5e-4,
) -> Optimizers:
    """Adam with linear warm-up for the EBM, SGD with cosine decay for the guide.

    Args:
        ebm: the energy model.
        guide: the contrastive guide.
        total_iterations: length of the run (the cosine schedule's period).
        ebm_lr: Adam learning rate (1e-4).
        ebm_betas: Adam betas ((0.0, 0.999)).
        warmup_iterations: linear warm-up length of the EBM's learning rate (2,000).
        guide_lr: SGD learning rate (0.03).
        guide_momentum: SGD momentum (0.9).
        guide_weight_decay: SGD weight decay (5e-4).

    Returns:
        :class:`Optimizers`.

    Example:
        >>> opts = clel_optimizers(nn.Linear(2, 2), nn.Linear(2, 2), total_iterations=100,
        ...                        warmup_iterations=10)
        >>> opts.ebm.param_groups[0]["lr"]  # 1e-4 times the warm-up factor 1/10
        1e-05
        >>> opts.guide.param_groups[0]["lr"]
        0.03
    """
    check_int("total_iterations", total_iterations, low=1)
    check_int("warmup_iterations", warmup_iterations, low=0)
    check_number("ebm_lr", ebm_lr, low=0.0, strict=True)
    check_number("guide_lr", guide_lr, low=0.0, strict=True)
    ebm_opt = torch.optim.Adam(ebm.parameters(), lr=ebm_lr, betas=ebm_betas)
    guide_opt = torch.optim.SGD(guide.parameters(), lr=guide_lr, momentum=guide_momentum,
                                weight_decay=guide_weight_decay)

    return Optimizers(ebm_opt, guide_opt, linear_warmup(ebm_opt, warmup_iterations),
                      warmup_cosine(guide_opt, 0, total_iterations))


def linear_warmup(optimizer: torch.optim.Optimizer, warmup: int) -> LambdaLR:
    """Learning rate times ``(it + 1) / warmup`` for the first ``warmup`` iterations, then 1.

    Args:
        optimizer: the optimizer whose learning rates are scheduled.
        warmup: the warm-up length in iterations (0: no warm-up).
    """
    check_int("warmup", warmup, low=0)

    def factor(it: int) -> float:
        return min(1.0, (it + 1) / warmup) if warmup > 0 else 1.0

    return LambdaLR(optimizer, factor)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> LambdaLR:
    """Linear warm-up over ``warmup`` iterations, then cosine decay to 0 at ``total``.

    Args:
        optimizer: the optimizer whose learning rates are scheduled.
        warmup: the warm-up length in iterations (0: cosine decay from the start).
        total: the iteration at which the factor reaches 0 (it stays 0 after it).
    """
    check_int("warmup", warmup, low=0)
    check_int("total", total, low=1)

    def factor(it: int) -> float:
        if it < warmup:
            return (it + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(it - warmup, total) / max(total - warmup, 1)))

    return LambdaLR(optimizer, factor)
