"""The named input sets of ``ebmguide ood``, at a model's image size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ebmguide.data import dequantize, load_cifar10, make_shapes, make_shifted_shapes

__all__ = ["SETS", "load_set"]

SETS = ("shapes", "novel_colours", "novel_shapes", "noise")
"""Generated sets; ``cifar10:PATH`` names CIFAR-10 test images from a local folder or archive."""


def load_set(name: str, n: int, shape: tuple[int, ...], *, seed: int) -> Tensor:
    """``n`` images ``(n, C, H, W)`` in [0, 1] of a named set at the model's image size."""
    if n < 1:
        raise ValueError(f"--n must be a positive integer, got {n}.")
    size = shape[-1]
    # seeds far from the training stream; one per set so that sets never share images
    g = torch.Generator().manual_seed(10_007 * (seed + 1) + sum(map(ord, name)))
    if name == "shapes":
        return make_shapes(n, size=size, generator=g).images
    if name in SETS:
        return make_shifted_shapes(name, n, size=size, generator=g).images
    if name.startswith("cifar10:"):
        data = load_cifar10(name.split(":", 1)[1], "test")
        pick = torch.randperm(len(data.images), generator=g)[:n]
        # dequantized exactly as the training data: x = (pixel + U(0, 1)) / 256
        x = dequantize(data.images[pick], g)
        if tuple(x.shape[1:]) != tuple(shape):
            x = F.interpolate(x, size=tuple(shape[1:]), mode="bilinear", antialias=True,
                              align_corners=False).clamp(0, 1)
        return x
    raise ValueError(f"unknown set {name!r}; choose one of {', '.join(SETS)} or cifar10:PATH.")
