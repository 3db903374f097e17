"""A user's own backbone, encoder and data set, named by import path in a TOML config."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TinyNet(nn.Module):
    """(B, C, H, W) -> (B, width) features; no normalisation layers (a valid EBM backbone)."""

    def __init__(self, channels: int = 3, width: int = 8) -> None:
        super().__init__()
        self.feature_dim = width
        self.body = nn.Sequential(nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.SiLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def blobs(n: int = 64, size: int = 8, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(train, test) uint8 images: a bright square on a dark canvas at random places."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n + 32, 3, size, size, dtype=torch.uint8)
    corners = torch.randint(0, size - 3, (n + 32, 2), generator=g)
    for i, (r, c) in enumerate(corners.tolist()):
        images[i, :, r:r + 3, c:c + 3] = 200
    return images[:n], images[n:]
