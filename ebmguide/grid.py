"""Sample grids as PNG files (Pillow): image panels side by side, or 2-D point clouds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ebmguide._validation import check_finite

__all__ = ["image_grid", "save_panels", "to_uint8"]

_GAP = 6  # pixels between panels and between tiles
_HEADER = 14  # height of a panel's title line


def to_uint8(images: Tensor, what: str = "images") -> Tensor:
    """Images in [0, 1] to uint8 by floor(x · 256), clamped to 255 (the paper's quantization).

    Args:
        images: floating images.
        what: where they come from, named by the error.

    Raises:
        ValueError: ``images`` hold NaN or inf (never quantized to black or white pixels).
    """
    x = images.detach().float().cpu()
    check_finite(what, x)
    return (x * 256).floor().clamp(0, 255).to(torch.uint8)


def image_grid(images: Tensor, *, nrow: int | None = None, scale: int = 1) -> np.ndarray:
    """Tile ``(N, C, H, W)`` images in [0, 1] into an ``(rows·H, nrow·W, 3)`` uint8 array.

    Tiles are separated by one dark pixel and enlarged ``scale`` times (nearest neighbour).
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W), got {tuple(images.shape)}.")
    x = to_uint8(images, "images of a grid")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    n, _, h, w = x.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    canvas = torch.full((3, rows * (h + 1) + 1, nrow * (w + 1) + 1), 32, dtype=torch.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        canvas[:, 1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = x[i]
    if scale > 1:
        canvas = canvas.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    return canvas.permute(1, 2, 0).contiguous().numpy()


def _scatter(points: Tensor, size: int, bounds: tuple[float, float]) -> np.ndarray:
    """A ``(size, size, 3)`` white image with ``points`` ``(N, 2)`` drawn as dark dots."""
    canvas = np.full((size, size, 3), 255, dtype=np.uint8)
    low, high = bounds
    p = points.detach().float().cpu()
    check_finite("points of a scatter plot", p)
    ij = ((p - low) / (high - low) * (size - 1)).round().long()
    inside = ((ij >= 0) & (ij < size)).all(dim=1)
    cols, rows = ij[inside].numpy().T
    for dx in (0, 1):
        for dy in (0, 1):
            canvas[np.clip(size - 1 - rows - dy, 0, size - 1),
                   np.clip(cols + dx, 0, size - 1)] = (30, 60, 160)
    return canvas


def save_panels(panels: Sequence[tuple[str, Tensor]], path: str | Path, *, scale: int = 4,
                nrow: int | None = None, bounds: tuple[float, float] = (-4.0, 4.0)) -> Path:
    """Write titled panels side by side into one PNG.

    Args:
        panels: ``(title, samples)`` pairs; samples are ``(N, C, H, W)`` images in [0, 1] or
            ``(N, 2)`` points (drawn as a scatter plot over ``bounds`` on both axes).
        path: the PNG file to write (folders are created).
        scale: enlargement of image tiles.
        nrow: tiles per row (default: square).
        bounds: plotting range of 2-D points.

    Returns:
        The path written.
    """
    from PIL import Image, ImageDraw

    arrays = []
    for title, samples in panels:
        check_finite(f"panel {title!r} of {Path(path).name}", samples.detach())
        if samples.dim() == 2 and samples.shape[1] == 2:
            arrays.append(_scatter(samples, 256, bounds))
        else:
            arrays.append(image_grid(samples, nrow=nrow, scale=scale))
    height = max(a.shape[0] for a in arrays) + _HEADER + 2 * _GAP
    width = sum(a.shape[1] for a in arrays) + _GAP * (len(arrays) + 1)
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    x = _GAP
    for (title, _), array in zip(panels, arrays, strict=True):
        draw.text((x, _GAP // 2), title, fill=(0, 0, 0))
        image.paste(Image.fromarray(array), (x, _GAP + _HEADER))
        x += array.shape[1] + _GAP
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return out
