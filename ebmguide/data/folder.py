"""Image folders of any size and channel count, read lazily as a map-style ``Dataset``.

:func:`scan_image_folder` accepts three layouts under ``root`` (or a ``.tar.gz`` of one):

1. flat: ``root/*.png|jpg|…``, unlabelled;
2. by class: ``root/<class>/*.png|jpg|…`` (sorted class names give the labels);
3. split: ``root/train/…`` and optionally ``root/test/…``, each flat or by class.

The channel count comes from the first image: grayscale stays 1 channel (``L``), grayscale with
alpha 2, RGB 3, RGBA 4; every other image is converted to that mode. All images must share one
size: :meth:`ImageFolder.validate` reads every header (not the pixels) and names the first that
differs, before anything trains.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["IMAGE_SUFFIXES", "FolderSplits", "ImageFolder", "scan_image_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
"""File suffixes read as images (case-insensitive); hidden files are skipped."""

_MODES = {"1": "L", "L": "L", "P": "RGB", "I": "L", "I;16": "L", "F": "L", "LA": "LA",
          "RGBA": "RGBA", "PA": "RGBA"}  # any other mode (RGB, CMYK, YCbCr, ...) becomes RGB
_CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def _images_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_SUFFIXES)


def _open(path: Path) -> Any:
    from PIL import Image  # lazily: only image folders need Pillow

    try:
        return Image.open(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable image ({err}); remove or replace it.") from err


class ImageFolder(Dataset[Tensor]):
    """The images of one folder (flat or by class): ``dataset[i]`` is ``(C, H, W)`` uint8.

    Args:
        files: the image files, in order.
        labels: one class index per file, or ``None`` for a flat folder.
        classes: the class names (labels index them).

    Attributes:
        mode: the Pillow mode every image is converted to (``L``, ``LA``, ``RGB`` or ``RGBA``).
        shape: ``(C, H, W)`` of one image.
        labels: ``(N,)`` int64, or ``None``.
    """

    def __init__(self, files: list[Path], labels: list[int] | None,
                 classes: tuple[str, ...] = ()) -> None:
        if not files:
            raise ValueError("an image folder needs at least one image.")
        self.files, self.classes = files, classes
        self.labels = None if labels is None else torch.tensor(labels, dtype=torch.int64)
        with _open(files[0]) as first:
            self.mode = _MODES.get(first.mode, "RGB")
            width, height = first.size
        self.shape = (_CHANNELS[self.mode], height, width)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        """Image ``index`` as a ``(C, H, W)`` uint8 tensor."""
        path = self.files[index]
        with _open(path) as image:
            array = np.asarray(image.convert(self.mode))
        if array.ndim == 2:
            array = array[:, :, None]
        if (array.shape[2], array.shape[0], array.shape[1]) != self.shape:
            raise ValueError(f"{path} is {array.shape[1]}x{array.shape[0]}, the folder's images "
                             f"are {self.shape[2]}x{self.shape[1]}: resize them to one size.")
        return torch.from_numpy(array.transpose(2, 0, 1).copy())

    def validate(self, num_workers: int | None = None) -> None:
        """Check every file's header (readable, the same size); pixels are not decoded.

        Raises:
            ValueError: naming the first unreadable file or the first of another size.
        """
        def size(path: Path) -> tuple[int, int]:
            with _open(path) as image:
                width, height = image.size
                return int(width), int(height)

        with ThreadPoolExecutor(max_workers=num_workers or min(8, os.cpu_count() or 1)) as pool:
            sizes = list(pool.map(size, self.files))
        want = (self.shape[2], self.shape[1])
        for path, got in zip(self.files, sizes, strict=True):
            if got != want:
                raise ValueError(f"{path} is {got[0]}x{got[1]}, {self.files[0].name} is "
                                 f"{want[0]}x{want[1]}: the images of a folder must share one "
                                 f"size; resize them first.")

    def load_all(self, num_workers: int | None = None) -> Tensor:
        """Every image decoded into one ``(N, C, H, W)`` uint8 tensor (a thread pool)."""
        with ThreadPoolExecutor(max_workers=num_workers or min(8, os.cpu_count() or 1)) as pool:
            return torch.stack(list(pool.map(self.__getitem__, range(len(self)))))


def _scan_split(directory: Path) -> ImageFolder:
    """One split: flat (images directly in ``directory``) or by class (one folder per class)."""
    flat = _images_in(directory)
    classes = sorted(p.name for p in directory.iterdir() if p.is_dir()
                     and not p.name.startswith(".") and _images_in(p))
    if flat and classes:
        raise ValueError(f"{directory} holds both images and class folders ({classes[0]}/, ...): "
                         f"put every image in a class folder, or none.")
    if flat:
        return ImageFolder(flat, None)
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = _images_in(directory / name)
        files += found
        labels += [label] * len(found)
    if not files:
        raise FileNotFoundError(
            f"{directory} holds no images ({', '.join(IMAGE_SUFFIXES)}): expected ROOT/*.png, "
            f"ROOT/<class>/*.png or ROOT/train/... (optionally ROOT/test/...).")
    return ImageFolder(files, labels, tuple(classes))


class FolderSplits(NamedTuple):
    """The splits found by :func:`scan_image_folder` (``test`` is ``None`` when absent)."""

    train: ImageFolder
    test: ImageFolder | None
    root: Path


def scan_image_folder(root: str | os.PathLike[str], *,
                      cache_dir: str | os.PathLike[str] | None = None) -> FolderSplits:
    """Find the images under ``root`` (see the module docstring); nothing is decoded.

    Args:
        root: a folder, or a ``.tar.gz`` / ``.tgz`` of one (extracted once, as by
            :func:`~ebmguide.data.load_cifar10`).
        cache_dir: where an archive is extracted.

    Returns:
        :class:`FolderSplits`; the test split's mode and size must match the training split's.

    Raises:
        FileNotFoundError: when ``root`` does not exist or holds no images.
        ValueError: for a folder mixing images and class folders, or splits that differ.
    """
    from ebmguide.data.cifar import _extract

    path = Path(root).expanduser()
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        path = _extract(path, cache_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"image folder {path} does not exist; set data.path to a folder "
                                f"of images (or a .tar.gz of one).")
    candidates = [path, *sorted(p for p in path.iterdir() if p.is_dir())]
    base = next((c for c in candidates if (c / "train").is_dir()), None)
    if base is None:
        return FolderSplits(_scan_split(path), None, path)
    train = _scan_split(base / "train")
    test = _scan_split(base / "test") if (base / "test").is_dir() else None
    if test is not None and (test.shape, test.mode) != (train.shape, train.mode):
        raise ValueError(f"the test images are {test.mode} {test.shape}, the training images "
                         f"{train.mode} {train.shape}: use one size and channel count.")
    return FolderSplits(train, test, base)
