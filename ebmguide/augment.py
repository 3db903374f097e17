"""Augmentations of CLEL: "strong" (SimCLR), "weak" and "none", built on kornia.

kornia draws its random parameters from torch's global generator. :func:`apply_augment` runs any
batched callable inside a forked RNG seeded from an explicit ``torch.Generator``, so every
augmentation, ours or a user's, is reproducible from the caller's generator and leaves the global
RNG untouched.

Colour jitter: kornia changed ``ColorJitter`` in 0.6.6 to follow torchvision's semantics (the old
behaviour is ``ColorJiggle``). SimCLR, and so CLEL, was specified with torchvision's transform, so
ebmguide uses ``ColorJitter`` deliberately.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import kornia.augmentation as K
import torch
from torch import Tensor, nn

__all__ = ["AUGMENTATIONS", "Augment", "apply_augment", "make_augmentation"]

Augment = Callable[[Tensor], Tensor]
"""Any batched augmentation: ``(B, C, H, W) -> (B, C, H, W)``."""

AUGMENTATIONS = ("strong", "weak", "flip", "none")
"""The names :func:`make_augmentation` accepts."""


class _Clamp(nn.Module):
    """Clamp to [0, 1]: bicubic resampling overshoots the image range."""

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(0.0, 1.0)


def make_augmentation(name: str, size: int | Sequence[int], channels: int = 3) -> nn.Module:
    """Build a named augmentation for images of the given size.

    Args:
        name: ``"strong"`` (SimCLR: RandomResizedCrop scale (0.08, 1) bicubic, ColorJitter
            (0.4, 0.4, 0.4, 0.1) p=0.8, RandomGrayscale p=0.2, horizontal flip p=0.5),
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
                K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), K.RandomGrayscale(p=0.2)
            ]
        else:
            colour = [K.ColorJitter(0.4, 0.4, p=0.8)]
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
