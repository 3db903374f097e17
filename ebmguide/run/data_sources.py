"""Where a run's data come from: built-in sets, image folders, any map-style ``Dataset``.

:func:`load_training_data` builds the :class:`~ebmguide.run.training_data.TrainingData` that
``cfg.data`` names (shapes, toy 2-D sets, CIFAR-10, an image folder, or an import path).

:func:`load_folder_data` (``data.name = "image_folder"``) reads the layouts of
:func:`~ebmguide.data.folder.scan_image_folder`: flat, by class, or split into ``train``/``test``,
any image size and channel count (grayscale stays 1 channel). :func:`dataset_training_data` wraps
any map-style dataset whose items are ``(C, H, W)`` tensors, PIL images or ``(image, label)``.

Both check everything before training starts: the files' headers (readable, one size), a
held-out split, and that ``eval.n_samples`` leaves an FD and its floor computable. When there is
no test split, ``data.held_out`` images (0: 10 %, at most 10,000, at least 2) are taken out of
the training images with the seed ``seed + 7907`` and never trained on; the run logs the sizes
and the seed (a ``"data"`` record in ``metrics.jsonl``). Data that decode to more than
``data.max_memory_mb`` are streamed from disk through a ``DataLoader`` with
``data.num_workers`` workers (:class:`~ebmguide.data.streaming.StreamingBatches`); smaller data
are decoded once into memory. Both give the same batches.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from ebmguide.data import average_pool, load_cifar10, make_shapes, toy2d
from ebmguide.data.folder import scan_image_folder
from ebmguide.data.streaming import LazyImages
from ebmguide.run.config import RunConfig
from ebmguide.run.config_schema import is_import_path
from ebmguide.run.imports import import_object
from ebmguide.run.training_data import TrainingData

__all__ = ["HELD_OUT_SEED_OFFSET", "dataset_training_data", "held_out_size", "load_folder_data",
           "load_training_data", "tensor_training_data"]

HELD_OUT_SEED_OFFSET = 7907
"""The held-out split taken from the training images is drawn with ``seed + 7907``."""


def held_out_size(n: int, requested: int = 0) -> int:
    """Images held out of ``n`` training images: ``requested``, or 10 % (2 to 10,000).

    Raises:
        ValueError: when fewer than 2 training images would remain.
    """
    k = requested if requested > 0 else min(10_000, max(2, n // 10))
    if n - k < 2:
        raise ValueError(f"holding out {k} of {n} images for evaluation leaves fewer than 2 to "
                         f"train on; add images, add a test split, or lower data.held_out.")
    return k


def _check_eval_sizes(cfg: RunConfig, n_train: int, n_held: int) -> None:
    """The FD and its floor must be computable at ``eval.n_samples`` (checked before training)."""
    if cfg.eval.feature_net == "none":
        return
    from ebmguide.run.real_sets import plan_real_sets

    try:
        plan_real_sets("held-out", cfg.eval.n_samples, {"train": n_train, "test": n_held})
    except ValueError as err:
        raise ValueError(f"{err} (data: {n_train} training and {n_held} held-out images; or set "
                         f"eval.feature_net = \"none\")") from err


def _in_memory(images: LazyImages, cfg: RunConfig) -> bool:
    itemsize = torch.empty((), dtype=images.dtype).element_size()
    size_mb = math.prod(images.shape) * itemsize / 2**20
    return bool(size_mb <= cfg.data.max_memory_mb)


def dataset_training_data(dataset: Dataset[Any], cfg: RunConfig, *,
                          test: Dataset[Any] | None = None, labels: Tensor | None = None,
                          info: dict[str, Any] | None = None) -> TrainingData:
    """A run's :class:`~ebmguide.run.training_data.TrainingData` from a map-style image dataset.

    Args:
        dataset: the training images; ``dataset[i]`` is a ``(C, H, W)`` uint8 tensor (or floats
            in [0, 1]), a PIL image, or a tuple starting with one.
        cfg: the run's configuration (``data.held_out``, ``data.max_memory_mb``,
            ``data.num_workers``, ``seed``, ``eval``).
        test: held-out images of the same shape; ``None``: taken out of ``dataset``.
        labels: ``(N,)`` int64 class labels of ``dataset`` (for the in-domain feature network).
        info: extra entries for the run's ``"data"`` record.

    Returns:
        The data, in memory or streamed (see the module docstring).

    Raises:
        ValueError: for too few images, a test split of another shape, or ``eval.n_samples``
            that leaves no FD floor.
    """
    d = cfg.data
    images = LazyImages(dataset, num_workers=d.num_workers)
    record: dict[str, Any] = {**(info or {}), "images": len(images),
                              "shape": list(images.shape[1:])}
    if test is None:
        k = held_out_size(len(images), d.held_out)
        g = torch.Generator().manual_seed(cfg.seed + HELD_OUT_SEED_OFFSET)
        order = torch.randperm(len(images), generator=g)
        train_index, held_index = order[k:].sort().values, order[:k].sort().values
        train, held = images.subset(train_index), images.subset(held_index)
        labels = None if labels is None else labels[train_index]
        record.update(held_out_from="training images",
                      held_out_seed=cfg.seed + HELD_OUT_SEED_OFFSET)
    else:
        train, held = images, LazyImages(test, num_workers=d.num_workers)
        if held.shape[1:] != train.shape[1:]:
            raise ValueError(f"the test images are {tuple(held.shape[1:])}, the training images "
                             f"{tuple(train.shape[1:])}: use one size and channel count.")
        record.update(held_out_from="test split")
    _check_eval_sizes(cfg, len(train), len(held))
    streamed = not _in_memory(images, cfg)
    record.update(train=len(train), held_out=len(held), streamed=streamed,
                  labelled=labels is not None)
    stored: Tensor | LazyImages = train if streamed else train[torch.arange(len(train))]
    held_store: Tensor | LazyImages = held if streamed else held[torch.arange(len(held))]
    return TrainingData(stored, tuple(train.shape[1:]), "image", cfg, labels=labels,
                        test=held_store, info=record)


def tensor_training_data(images: Tensor, labels: Tensor | None, cfg: RunConfig, *,
                         test: Tensor | None = None) -> TrainingData:
    """In-memory images (e.g. CIFAR-10) as a run's data; without ``test``, a split is held out.

    Args:
        images: ``(N, C, H, W)`` uint8 training images.
        labels: ``(N,)`` int64 labels, or ``None``.
        cfg: the run's configuration.
        test: ``(M, C, H, W)`` held-out images, or ``None`` (then ``data.held_out`` of
            ``images`` are held out, as for image folders).
    """
    if test is None:
        return dataset_training_data(TensorDataset(images), cfg, labels=labels,
                                     info={"source": cfg.data.path})
    _check_eval_sizes(cfg, len(images), len(test))
    return TrainingData(images, tuple(images.shape[1:]), "image", cfg, labels=labels,
                        test=test)


def load_folder_data(cfg: RunConfig) -> TrainingData:
    """The run's data from the image folder ``data.path`` (see the module docstring).

    Raises:
        ValueError: when ``data.path`` is empty, or for unreadable images, mixed sizes or a
            layout that mixes images and class folders.
        FileNotFoundError: when the folder does not exist or holds no images.
    """
    if not cfg.data.path:
        raise ValueError("data.path is required for data.name = \"image_folder\": a folder of "
                         "images (flat, by class, or train/ and test/), e.g. "
                         "--set data.path=/data/my_images.")
    splits = scan_image_folder(cfg.data.path)
    for split in (splits.train, splits.test):
        if split is not None:
            split.validate(cfg.data.num_workers or None)
    layout = "by class" if splits.train.labels is not None else "flat"
    info = {"source": str(Path(cfg.data.path)), "layout": layout, "mode": splits.train.mode,
            "classes": len(splits.train.classes)}
    return dataset_training_data(splits.train, cfg, test=splits.test, labels=splits.train.labels,
                                 info=info)


def _imported_data(cfg: RunConfig) -> TrainingData:
    """The data of the function ``data.name`` names, called with ``[data.args]``."""
    out = import_object(cfg.data.name, key="data.name")(**cfg.data.args)
    train, test = out if isinstance(out, (tuple, list)) and len(out) == 2 else (out, None)
    return TrainingData.from_tensors(train, cfg, test=test)


def load_training_data(cfg: RunConfig) -> TrainingData:
    """Generate or load the training set named by ``cfg.data`` (fails at once when absent)."""
    d = cfg.data
    if is_import_path(d.name):
        return _imported_data(cfg)
    g = torch.Generator().manual_seed(cfg.seed)
    if d.name == "shapes":
        images = make_shapes(d.n_train, size=d.size, generator=g).images
        return TrainingData(images, tuple(images.shape[1:]), "image", cfg)
    if d.name == "toy2d":
        points = toy2d(d.toy, d.n_train, generator=g)
        return TrainingData(points, (2,), "vector", cfg)
    if not d.path:
        raise ValueError(f"data.path is required for data.name = {d.name!r}: the folder or "
                         f".tar.gz holding the images (nothing is downloaded), e.g. "
                         f"--set data.path=/data/cifar10.")
    if d.name == "image_folder":
        return load_folder_data(cfg)
    images, labels = load_cifar10(d.path, "train")
    try:  # checked now, not after training: without a test split, one is held out of train
        test: Tensor | None = average_pool(load_cifar10(d.path, "test").images, d.downsample)
    except FileNotFoundError:
        test = None
    return tensor_training_data(average_pool(images, d.downsample), labels, cfg, test=test)
