"""Which feature network scores a run's samples (the ``eval.feature_net`` setting).

=====================  ==========================================================================
``"auto"``             the shapes classifier for the embedded shapes, the coordinates for vector
                       data, Inception-v3 when ``eval.inception_weights`` names a file, otherwise
                       the in-domain network
``"shapes_classifier"`` :func:`~ebmguide.feature_nets.shapes_feature_net` (shapes data only)
``"in_domain"``        :func:`~ebmguide.in_domain.in_domain_feature_net`, trained once on the run's
                       training split (a classifier with labels, rotation prediction without) and
                       cached in ``<run>/feature_net_in_domain.pt``
``"inception"``        the standard FID Inception-v3 from ``eval.inception_weights``
``"none"``             no FD
=====================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from ebmguide.data.streaming import LazyImages
from ebmguide.feature_nets import inception_features, shapes_feature_net
from ebmguide.in_domain import in_domain_feature_net

__all__ = [
    "FEATURE_NET_CHOICES",
    "INCEPTION_LABEL",
    "IN_DOMAIN_CACHE",
    "MAX_IN_DOMAIN_IMAGES",
    "choose_feature_net",
]

FEATURE_NET_CHOICES = ("auto", "shapes_classifier", "in_domain", "inception", "none")
"""The values of ``eval.feature_net``."""
IN_DOMAIN_CACHE = "feature_net_in_domain.pt"
"""The in-domain network's cache file in the run folder."""
INCEPTION_LABEL = "Inception-v3"
"""The feature label of the standard network: only then is the FD called FID."""
MAX_IN_DOMAIN_IMAGES = 50_000
"""At most this many training images (a fixed random subset) train the in-domain network."""
MIN_AUTO_IMAGES = 8
"""``"auto"`` trains no in-domain network on fewer training images (then no FD is logged)."""
_IN_DOMAIN_SEED_OFFSET = 104_729  # the in-domain network's seed: the run's seed + this


def _subset(images: Tensor | LazyImages, labels: Tensor | None, seed: int
            ) -> tuple[Tensor, Tensor | None]:
    """At most :data:`MAX_IN_DOMAIN_IMAGES` images as a tensor; one class counts as no labels."""
    if labels is not None and (len(labels) == 0 or bool((labels == labels[0]).all())):
        labels = None
    if len(images) <= MAX_IN_DOMAIN_IMAGES:
        return (images if isinstance(images, Tensor) else images[torch.arange(len(images))],
                labels)
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(images), generator=g)[:MAX_IN_DOMAIN_IMAGES].sort().values
    return images[index], None if labels is None else labels[index]


def choose_feature_net(choice: str, *, data_name: str, kind: str, size: int,
                       inception_weights: str,
                       training_images: Callable[[], tuple[Tensor | LazyImages, Tensor | None]],
                       run_dir: str | Path | None, seed: int) -> tuple[nn.Module, str] | None:
    """The feature network of ``choice`` and its label, or ``None`` for no FD.

    Args:
        choice: one of :data:`FEATURE_NET_CHOICES`.
        data_name: ``data.name`` of the run (``"shapes"`` gets the shapes classifier).
        kind: ``"image"`` or ``"vector"``.
        size: the shapes canvas side (``data.size``).
        inception_weights: path of a local Inception weights file, or ``""``.
        training_images: returns the training images ``(N, C, H, W)`` and labels ``(N,)`` or
            ``None``; called only when the in-domain network is trained or looked up.
        run_dir: the run folder holding the caches (``None``: no caching).
        seed: the run's seed.

    Returns:
        ``(network, label)``; the label is :data:`INCEPTION_LABEL` only for the standard network.

    Raises:
        ValueError: for an unknown choice or one that does not fit the data.
        FileNotFoundError: when the configured Inception weights file does not exist.
    """
    if choice not in FEATURE_NET_CHOICES:
        raise ValueError(f"eval.feature_net must be one of {', '.join(FEATURE_NET_CHOICES)}, got "
                         f"{choice!r}.")
    if choice == "none":
        return None
    folder = None if run_dir is None else Path(run_dir)
    auto = choice == "auto"
    if auto:
        choice = ("shapes_classifier" if data_name == "shapes" else "coordinates"
                  if kind == "vector" else "inception" if inception_weights else "in_domain")
    if choice == "coordinates":
        return nn.Identity(), "coordinates"
    if choice == "shapes_classifier":
        if data_name != "shapes":
            raise ValueError("eval.feature_net = \"shapes_classifier\" needs shapes data; use "
                             "\"in_domain\" (or \"auto\") for other images.")
        return shapes_feature_net(None if folder is None else folder / "feature_net.pt",
                                  size=size), "shapes-classifier"
    if kind != "image":
        raise ValueError(f"eval.feature_net = {choice!r} needs image data; vector data are scored "
                         f"on their coordinates (\"auto\").")
    if choice == "inception":
        if not inception_weights:
            raise ValueError("eval.feature_net = \"inception\" needs eval.inception_weights: the "
                             "path of a local weights-inception-2015-12-05-6726825d.pth file "
                             "(where it is published: \"The Inception weights file\" in "
                             "docs/cli.md).")
        return inception_features(inception_weights), INCEPTION_LABEL
    images, labels = _subset(*training_images(), seed)
    if auto and len(images) < MIN_AUTO_IMAGES:
        return None  # too few images for an FD worth reporting; "in_domain" forces one
    net = in_domain_feature_net(images, labels, seed=seed + _IN_DOMAIN_SEED_OFFSET,
                                cache=None if folder is None else folder / IN_DOMAIN_CACHE)
    return net, f"in-domain {'classifier' if net.task == 'classes' else 'rotation'}"
