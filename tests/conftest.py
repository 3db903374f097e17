"""Shared fixtures: tiny networks and components sized for a CPU test suite."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

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
def small_feature_nets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluation networks trained for 30 steps of 16 images (seconds, not most of a minute).

    Both the in-domain network and the shapes classifier, for tests of the plumbing (caching,
    logging, the CLI, the examples); tests/test_in_domain.py and tests/core/test_metrics.py check
    the networks' training itself.
    """
    from ebmguide import feature_nets, in_domain

    monkeypatch.setattr(in_domain, "InDomainSettings",
                        functools.partial(in_domain.InDomainSettings, iterations=30,
                                          batch_size=16))
    monkeypatch.setattr(feature_nets, "train_shapes_feature_net",
                        functools.partial(feature_nets.train_shapes_feature_net, iterations=30,
                                          batch_size=16))


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


def write_image_folder(root: Path, *, train: int, test: int, size: int = 8,
                       classes: int = 2, seed: int = 0) -> Path:
    """A small CIFAR-style image folder ``root/{train,test}/<class>/NNNN.png`` (lossless PNG).

    Images are smooth random colour blobs, so real sets are alike but not identical.
    """
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        for i in range(count):
            folder = root / split / f"class{i % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            base = rng.integers(40, 216, (1, 1, 3))
            noise = rng.integers(-40, 40, (size, size, 3))
            image = np.clip(base + noise, 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture
def image_folder() -> Callable[..., Path]:
    """:func:`write_image_folder`, for tests that need a small image-folder dataset."""
    return write_image_folder
