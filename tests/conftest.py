"""Shared fixtures: tiny networks and components sized for a CPU test suite."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ebmguide as eg


class TinyConv(nn.Module):
    """A small conv backbone for (B, 3, 8, 8) inputs."""

    def __init__(self, channels: int = 3, width: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.feature_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def tiny_parts() -> tuple[eg.SphericalEBM, eg.SimCLRGuide, eg.SGLDSampler]:
    torch.manual_seed(0)
    ebm = eg.SphericalEBM(TinyConv(), latent_dim=6, hidden_dim=16)
    guide = eg.SimCLRGuide(TinyConv(), latent_dim=6, hidden_dim=16, augment="strong")
    sampler = eg.SGLDSampler((3, 8, 8), buffer_size=32, n_steps=3, step_size=1.0,
                             noise_scale=0.01, augment="flip",
                             generator=torch.Generator().manual_seed(0))
    return ebm, guide, sampler


@pytest.fixture
def tiny_conv() -> type[TinyConv]:
    return TinyConv
