"""An in-domain feature network for Fréchet distances on any image data without Inception weights.

:func:`train_in_domain_feature_net` trains a small CNN once on the user's *training* images: a
supervised classifier when labels exist, else a self-supervised rotation-prediction pretext task
(Gidaris et al., ICLR 2018: predict which of 0°, 90°, 180°, 270° an image was turned by). It is
never the run's guide, and it never sees samples. Its penultimate layer gives the features of an
"FD (features: in-domain …)"; the number is reported next to its real-vs-real floor and is never
called FID (that name belongs to the standard Inception-v3 weights).

:func:`in_domain_feature_net` caches the network in a file keyed by a hash of the training images,
their labels, the seed and the settings, so that training and ``ebmguide evaluate`` train it once.

On one CPU thread, the default settings train on 50,000 16×16 images in well under a minute
(measured in ``docs/recipes/cifar10.md``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["InDomainFeatureNet", "InDomainSettings", "in_domain_feature_net",
           "train_in_domain_feature_net"]

_FORMAT = "ebmguide-in-domain-feature-net"
_MIN_IMAGES = 8  # 2 held out, 6 to train on: enough to run, far too few to mean much
_VERSION = 1  # bump when the network or the training changes: old caches are then retrained


@dataclass(frozen=True)
class InDomainSettings:
    """How the in-domain feature network is built and trained (part of the cache key).

    Attributes:
        width: channels of the first convolution (then ``2·width`` and ``4·width``).
        feature_dim: size of the feature layer.
        iterations: optimizer steps (Adam, one-cycle learning rate).
        batch_size: images per step.
        lr: peak learning rate.
        held_out: fraction of the images kept out of training to measure the accuracy.
        max_held_out: at most this many held-out images.
        noise: images get Gaussian noise of a random std in [0, noise] while training, so the
            features stay meaningful on imperfect samples.
    """

    width: int = 16
    feature_dim: int = 128
    iterations: int = 800
    batch_size: int = 128
    lr: float = 4e-3
    held_out: float = 0.1
    max_held_out: int = 5000
    noise: float = 0.03


class InDomainFeatureNet(nn.Module):
    """A small CNN; its penultimate layer gives ``feature_dim`` features of ``(B, C, H, W)`` images.

    Args:
        in_channels: image channels (taken from the data: grayscale stays 1).
        num_classes: outputs of the training head (classes, or 4 rotations).
        width: channels of the first convolution.
        feature_dim: size of the feature layer.

    Attributes:
        task: ``"classes"`` or ``"rotation"`` once trained.
        held_out_accuracy: accuracy of the training task on held-out images (``nan`` untrained).
        chance: the accuracy of always guessing the most frequent held-out answer.
    """

    def __init__(self, in_channels: int, num_classes: int, *, width: int = 16,
                 feature_dim: int = 128) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16 * w, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = self.num_features = feature_dim
        self.config = {"in_channels": in_channels, "num_classes": num_classes, "width": width,
                       "feature_dim": feature_dim}
        self.task, self.held_out_accuracy, self.chance = "", math.nan, math.nan

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` images in [0, 1] → features ``(B, feature_dim)``."""
        out: Tensor = self.body(x)
        return out

    def logits(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` → ``(B, num_classes)`` logits of the training task."""
        out: Tensor = self.head(self.body(x))
        return out


def _as_float(images: Tensor) -> Tensor:
    """uint8 pixels → floats in [0, 1] (as the metrics quantize samples); floats unchanged."""
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def _held_out_size(n: int, settings: InDomainSettings) -> int:
    """Held-out images of ``n``: ``held_out · n``, at least 2, at most ``max_held_out``."""
    return max(2, min(settings.max_held_out, int(n * settings.held_out)))


def _check_inputs(images: Tensor, labels: Tensor | None, settings: InDomainSettings) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a (N, C, H, W) tensor, got "
                         f"{getattr(images, 'shape', type(images).__name__)}.")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"images must be uint8 pixels or floats in [0, 1], got {images.dtype}.")
    if len(images) < _MIN_IMAGES:
        raise ValueError(f"an in-domain feature network needs at least {_MIN_IMAGES} images, got "
                         f"{len(images)}; pass more images (thousands for a meaningful FD).")
    if labels is not None:
        if not isinstance(labels, Tensor) or labels.shape != (len(images),) \
                or labels.dtype != torch.int64:
            raise ValueError(f"labels must be an int64 tensor of shape ({len(images)},), or None "
                             f"for the self-supervised rotation task.")
        if int(labels.min()) < 0:
            raise ValueError("labels must be class indices >= 0.")


def _task_batch(x: Tensor, labels: Tensor | None, generator: torch.Generator
                ) -> tuple[Tensor, Tensor]:
    """Inputs and targets: the labels, or a random rotation (by 0/180 only when H != W)."""
    if labels is not None:
        return x, labels
    turns = 4 if x.shape[-1] == x.shape[-2] else 2
    k = torch.randint(turns, (len(x),), generator=generator)
    step = 4 // turns
    rotated = x
    for j in range(1, turns):
        mask = (k == j).view(-1, 1, 1, 1)
        rotated = torch.where(mask, torch.rot90(x, j * step, dims=(2, 3)), rotated)
    return rotated, k


def _augment(x: Tensor, settings: InDomainSettings, generator: torch.Generator,
             flip: bool) -> Tensor:
    """Random horizontal flips (not for the rotation task) and random-level Gaussian noise."""
    if flip:
        mask = torch.rand(len(x), 1, 1, 1, generator=generator) < 0.5
        x = torch.where(mask, x.flip(-1), x)
    level = settings.noise * torch.rand(len(x), 1, 1, 1, generator=generator)
    return (x + level * torch.randn(x.shape, generator=generator)).clamp(0, 1)


def _accuracy(net: InDomainFeatureNet, x: Tensor, y: Tensor) -> tuple[float, float]:
    """Accuracy of ``net`` on ``(x, y)`` and the chance level (most frequent answer)."""
    correct = 0
    with torch.no_grad():
        for xb, yb in zip(torch.split(x, 512), torch.split(y, 512), strict=True):
            correct += int((net.logits(xb).argmax(1) == yb).sum())
    return correct / len(y), float(torch.bincount(y).max()) / len(y)


def train_in_domain_feature_net(images: Tensor, labels: Tensor | None = None, *,
                                generator: torch.Generator,
                                settings: InDomainSettings | None = None) -> InDomainFeatureNet:
    """Train an in-domain feature network on training images (a classifier, or rotation pretext).

    A held-out part (``settings.held_out`` of the images, at least 2, at most ``max_held_out``)
    is drawn from ``generator`` and never trained on; the accuracy on it is stored on the
    network. Batches hold ``min(batch_size, training images)`` images.

    Args:
        images: ``(N, C, H, W)`` uint8 pixels or floats in [0, 1]; any channel count and size.
        labels: ``(N,)`` int64 class indices, or ``None`` for the rotation-prediction task.
        generator: source of all randomness (split, initialisation, batches, augmentation).
        settings: network and training settings (default :class:`InDomainSettings`).

    Returns:
        The network in eval mode, with ``feature_dim``, ``task``, ``held_out_accuracy`` and
        ``chance`` set.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> images = torch.rand(400, 1, 8, 8, generator=g)
        >>> net = train_in_domain_feature_net(images, generator=g,
        ...                                   settings=InDomainSettings(iterations=5))
        >>> net(images[:3]).shape, net.task
        (torch.Size([3, 128]), 'rotation')
    """
    settings = settings or InDomainSettings()
    _check_inputs(images, labels, settings)
    n_held = _held_out_size(len(images), settings)
    order = torch.randperm(len(images), generator=generator)
    held, train = order[:n_held], order[n_held:]
    num_classes = 4 if labels is None else int(labels.max()) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        net = InDomainFeatureNet(images.shape[1], num_classes, width=settings.width,
                                 feature_dim=settings.feature_dim)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr,
                                                   total_steps=settings.iterations)
    net.train()
    for _ in range(settings.iterations):
        index = train[torch.randint(len(train), (min(settings.batch_size, len(train)),),
                                    generator=generator)]
        x, y = _task_batch(_as_float(images[index]),
                           None if labels is None else labels[index], generator)
        x = _augment(x, settings, generator, flip=labels is not None)
        loss = F.cross_entropy(net.logits(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        schedule.step()
    net.eval()
    x, y = _task_batch(_as_float(images[held]), None if labels is None else labels[held],
                       generator)
    net.held_out_accuracy, net.chance = _accuracy(net, x, y)
    net.task = "rotation" if labels is None else "classes"
    return net


def _cache_key(images: Tensor, labels: Tensor | None, seed: int,
               settings: InDomainSettings) -> str:
    """sha256 of the images' bytes and shape, the labels, the seed and the settings."""
    h = hashlib.sha256()
    meta = {"version": _VERSION, "shape": list(images.shape), "dtype": str(images.dtype),
            "seed": seed, "settings": dataclasses.asdict(settings), "labels": labels is not None}
    h.update(json.dumps(meta, sort_keys=True).encode())
    h.update(images.detach().cpu().contiguous().numpy().tobytes())
    if labels is not None:
        h.update(labels.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _load_cached(path: Path, key: str) -> InDomainFeatureNet | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a broken or foreign file: train again and replace it
        return None
    if not isinstance(state, dict) or state.get("format") != _FORMAT or state.get("key") != key:
        return None
    net = InDomainFeatureNet(**state["config"])
    net.load_state_dict(state["weights"])
    net.task, net.held_out_accuracy, net.chance = (state["task"], state["held_out_accuracy"],
                                                   state["chance"])
    return net.eval()


def in_domain_feature_net(images: Tensor, labels: Tensor | None = None, *, seed: int,
                          cache: str | Path | None = None,
                          settings: InDomainSettings | None = None) -> InDomainFeatureNet:
    """The in-domain feature network of these training images: from ``cache``, or trained and saved.

    The cache file holds plain tensors and numbers (loaded with ``weights_only=True``) and the
    key: a hash of the images, labels, ``seed`` and ``settings``; a file with another key (other
    data, seed or settings) is retrained and replaced.

    Args:
        images: ``(N, C, H, W)`` training images (uint8, or floats in [0, 1]).
        labels: ``(N,)`` int64 class labels, or ``None`` (rotation pretext task).
        seed: seed of the training generator.
        cache: the cache file, or ``None`` to train without caching.
        settings: see :class:`InDomainSettings`.

    Returns:
        The network in eval mode (see :func:`train_in_domain_feature_net`).
    """
    settings = settings or InDomainSettings()
    key = _cache_key(images, labels, seed, settings)
    path = None if cache is None else Path(cache)
    if path is not None:
        cached = _load_cached(path, key)
        if cached is not None:
            return cached
    net = train_in_domain_feature_net(images, labels, generator=torch.Generator().manual_seed(seed),
                                      settings=settings)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload: dict[str, Any] = {
            "format": _FORMAT, "key": key, "config": net.config, "weights": net.state_dict(),
            "task": net.task, "held_out_accuracy": net.held_out_accuracy, "chance": net.chance}
        scratch = path.with_name(f".{path.name}.tmp")
        torch.save(payload, scratch)
        scratch.replace(path)
    return net
