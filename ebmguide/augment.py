"""Augmentations of CLEL: "strong" (SimCLR), "weak" and "none", built on kornia.

kornia draws its random parameters from torch's global generator. :func:`apply_augment` runs any
batched callable inside a forked RNG seeded from an explicit ``torch.Generator``, so every
augmentation, ours or a user's, is reproducible from the caller's generator and leaves the global
RNG untouched.

Colour jitter (:class:`PerSampleColorJitter`): SimCLR, and so CLEL, was specified with
torchvision's ``ColorJitter`` applied image by image, so every image gets its own factors *and its
own random order* of the brightness, contrast, saturation and hue steps. kornia's ``ColorJitter``
(torchvision's formulas since kornia 0.6.6) draws per-sample factors but one order per batch;
ebmguide keeps kornia's formulas and draws the order per sample, which is what the paper's
augmentation specifies. The research code ran kornia 0.6.3, whose ``ColorJitter`` is today's
``ColorJiggle`` (other formulas, one order per batch): the recipe deliberately does not reproduce
that detail of the research code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import kornia.augmentation as K
import torch
from kornia.enhance import (
    adjust_brightness_accumulative,
    adjust_contrast_with_mean_subtraction,
    adjust_hue,
    adjust_saturation_with_gray_subtraction,
)
from torch import Tensor, nn

__all__ = ["AUGMENTATIONS", "Augment", "GaussianJitter", "JitterParams", "PerSampleColorJitter",
           "apply_augment", "make_augmentation"]

Augment = Callable[[Tensor], Tensor]
"""Any batched augmentation: ``(B, C, H, W) -> (B, C, H, W)``."""

AUGMENTATIONS = ("strong", "weak", "flip", "none")
"""The names :func:`make_augmentation` accepts."""


class _Clamp(nn.Module):
    """Clamp to [0, 1]: bicubic resampling overshoots the image range."""

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(0.0, 1.0)


class JitterParams(NamedTuple):
    """Per-sample parameters of :class:`PerSampleColorJitter` for a batch of B images.

    Attributes:
        applied: ``(B,)`` bool, which images are jittered (probability ``p``).
        factors: ``(B, S)`` factor of each step (brightness, contrast, saturation, hue; the first
            S of them), in the units of torchvision's ``ColorJitter`` (hue in turns, [-0.5, 0.5]).
        order: ``(B, S)`` each image's order of the steps, a permutation of ``0..S-1``.
    """

    applied: Tensor
    factors: Tensor
    order: Tensor


def _hue(x: Tensor, factor: Tensor) -> Tensor:
    return adjust_hue(x, factor * 2 * math.pi)  # kornia takes radians, torchvision turns


_STEPS = (adjust_brightness_accumulative, adjust_contrast_with_mean_subtraction,
          adjust_saturation_with_gray_subtraction, _hue)


class PerSampleColorJitter(nn.Module):
    """torchvision's ``ColorJitter`` per image: per-sample factors and per-sample step order.

    The formulas are kornia's torchvision-compatible ones (brightness multiplies, contrast and
    saturation blend with the grayscale mean and the grayscale image, hue shifts in HSV; results
    clamped to [0, 1]). Randomness comes from torch's global RNG, which
    :func:`apply_augment` seeds from the caller's generator. Each step runs once per image, on the
    images that take it at each position.

    Args:
        brightness: factor drawn from [max(0, 1 − b), 1 + b].
        contrast: factor drawn from [max(0, 1 − c), 1 + c].
        saturation: factor drawn from [max(0, 1 − s), 1 + s]; ``None`` leaves the step out
            (needed for non-RGB images).
        hue: shift drawn from [−h, h] turns, h ≤ 0.5; ``None`` leaves the step out.
        p: probability that an image is jittered.
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float | None = 0.4, hue: float | None = 0.1, p: float = 0.8) -> None:
        super().__init__()
        spreads = [brightness, contrast, *(v for v in (saturation, hue) if v is not None)]
        if saturation is None and hue is not None:
            raise ValueError("hue needs the saturation step too (RGB images); pass both or "
                             "neither.")
        if any(v < 0 for v in spreads) or (hue is not None and hue > 0.5) or not 0 <= p <= 1:
            raise ValueError(f"jitter strengths must be non-negative (hue at most 0.5) and p in "
                             f"[0, 1], got {spreads} and p={p}.")
        low = [max(0.0, 1 - v) for v in spreads[:3]] + [-v for v in spreads[3:]]
        high = [1 + v for v in spreads[:3]] + list(spreads[3:])
        self.low, self.high, self.p = torch.tensor(low), torch.tensor(high), p

    def generate_parameters(self, batch: int, device: torch.device | str = "cpu",
                            dtype: torch.dtype = torch.float32) -> JitterParams:
        """Draw :class:`JitterParams` for ``batch`` images from torch's global RNG."""
        steps = len(self.low)
        applied = torch.rand(batch, device=device) < self.p
        u = torch.rand(batch, steps, device=device, dtype=dtype)
        factors = self.low.to(device, dtype) + u * (self.high - self.low).to(device, dtype)
        order = torch.rand(batch, steps, device=device).argsort(dim=1)
        return JitterParams(applied, factors, order)

    def forward(self, x: Tensor, params: JitterParams | None = None) -> Tensor:
        """Jitter ``(B, C, H, W)`` images in [0, 1]; ``params`` default: freshly drawn."""
        if params is None:
            params = self.generate_parameters(x.shape[0], x.device, x.dtype)
        if x.shape[1] != 3 and params.factors.shape[1] > 2:
            raise ValueError(f"saturation and hue need RGB images, got {x.shape[1]} channels; "
                             f"use PerSampleColorJitter(saturation=None, hue=None).")
        view = (-1,) + (1,) * (x.dim() - 1)
        out = torch.where(params.applied.view(view), x.clamp(0, 1), x)
        factors = params.factors.to(x)
        for position in range(factors.shape[1]):
            for step in range(factors.shape[1]):
                # the images whose step at this position is `step` (one host sync, as kornia's
                # own per-batch checks); each step runs once per image in all
                rows = (params.applied & (params.order[:, position] == step)).nonzero()[:, 0]
                if rows.numel():
                    stepped = _STEPS[step](out[rows], factors[rows, step])
                    out = out.index_copy(0, rows, stepped)
        return out


def make_augmentation(name: str, size: int | Sequence[int], channels: int = 3) -> nn.Module:
    """Build a named augmentation for images of the given size.

    Args:
        name: ``"strong"`` (SimCLR: RandomResizedCrop scale (0.08, 1) bicubic, ColorJitter
            (0.4, 0.4, 0.4, 0.1) p=0.8, RandomGrayscale p=0.2, horizontal flip p=0.5),
            the colour jitter is :class:`PerSampleColorJitter` (its own step order per image);
            ``"weak"`` (random crop with 4-pixel reflect padding and horizontal flip),
            ``"flip"`` (horizontal flip only) or ``"none"`` (identity).
        size: output height and width (square when an int).
        channels: image channels; colour jitter's saturation and hue and the grayscale step need
            3 channels and are left out otherwise.

    Returns:
        A module mapping ``(B, C, H, W)`` in [0, 1] to the same shape, range kept; per-sample
        parameters.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be one of {AUGMENTATIONS}, got {type(name).__name__}; pass "
                        f"a callable as the augmentation itself instead of a name.")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}.")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(v, int) for v in hw) or min(hw) < 1:
        raise ValueError(f"size must be a positive int or (height, width), got {size!r}.")
    if name == "none":
        return nn.Identity()
    if name == "flip":
        flip: nn.Module = K.RandomHorizontalFlip(p=0.5)
        return flip
    if name == "weak":
        return nn.Sequential(
            K.RandomCrop(hw, padding=4, padding_mode="reflect"), K.RandomHorizontalFlip(p=0.5)
        )
    if name == "strong":
        if channels == 3:
            colour: list[nn.Module] = [
                PerSampleColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), K.RandomGrayscale(p=0.2)
            ]
        else:
            colour = [PerSampleColorJitter(0.4, 0.4, None, None, p=0.8)]
        return nn.Sequential(
            K.RandomResizedCrop(hw, scale=(0.08, 1.0), resample="BICUBIC"),
            *colour,
            K.RandomHorizontalFlip(p=0.5),
            _Clamp(),
        )
    raise ValueError(
        f"unknown augmentation {name!r}; choose one of {AUGMENTATIONS} or pass any batched "
        "callable."
    )


def apply_augment(augment: Augment, x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Apply a batched augmentation with randomness taken from ``generator``.

    The callable runs with torch's global RNG forked and seeded from one draw of ``generator``, so
    the result depends only on ``generator``'s state and the global RNG is left as it was.

    Args:
        augment: any callable ``(B, C, H, W) -> (B, C, H, W)``.
        x: ``(B, C, H, W)`` batch.
        generator: the explicit source of randomness; ``None`` uses the global RNG directly.

    Returns:
        The augmented batch, same shape as ``x``.

    Example:
        >>> augment = make_augmentation("strong", 16)
        >>> x = torch.rand(4, 3, 16, 16)
        >>> a = apply_augment(augment, x, torch.Generator().manual_seed(0))
        >>> b = apply_augment(augment, x, torch.Generator().manual_seed(0))
        >>> a.shape, torch.equal(a, b)
        (torch.Size([4, 3, 16, 16]), True)
    """
    if generator is None:
        return augment(x)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        out = augment(x)
    if out.shape != x.shape:
        raise ValueError(
            f"the augmentation changed the batch shape from {tuple(x.shape)} to "
            f"{tuple(out.shape)}; augmentations must keep (B, C, H, W)."
        )
    return out


class GaussianJitter(nn.Module):
    """The "jitter" augmentation for vector data: x + std · N(0, I).

    Its noise comes from the global RNG, which :func:`~ebmguide.augment.apply_augment` seeds from
    the run's generator.
    """

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = std

    def forward(self, x: Tensor) -> Tensor:
        """Add Gaussian noise of standard deviation ``std``."""
        return x + self.std * torch.randn(x.shape, dtype=x.dtype, device=x.device)
