"""CIFAR-10 from local files, and the dequantization of 8-bit images.

:func:`load_cifar10` accepts three layouts (it downloads nothing: put the data there yourself):

1. the python batches of the official "CIFAR-10 python version" archive: ``data_batch_1`` …
   ``data_batch_5`` and ``test_batch``, in ``root`` or in ``root/cifar-10-batches-py``;
2. an image folder ``root/<split>/<class>/*.png|jpg|jpeg`` (class names sorted give the labels; the
   ten CIFAR-10 names sort into the official label order);
3. a ``.tar.gz`` / ``.tgz`` archive holding either of them, given as ``root`` or lying in ``root``;
   it is extracted once into a cache directory.

The batches are pickles. They are read with a restricted unpickler that resolves only the globals a
numpy array needs, so a tampered file cannot run code.
"""

from __future__ import annotations

import codecs
import os
import pickle
import shutil
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["CIFAR10_CLASSES", "LabelledImages", "average_pool", "dequantize", "load_cifar10"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")
"""The CIFAR-10 class names in label order (which is also their sorted order)."""

_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
_BELOW_ONE = 1.0 - 2.0**-24  # the largest float32 below 1
_LAYOUTS = """Accepted layouts:
  1. the CIFAR-10 python batches data_batch_1 ... data_batch_5 and test_batch, in ROOT or in
     ROOT/cifar-10-batches-py (extract cifar-10-python.tar.gz from
     https://www.cs.toronto.edu/~kriz/cifar.html);
  2. an image folder ROOT/<split>/<class>/*.png|jpg|jpeg (split = train or test);
  3. a .tar.gz or .tgz archive holding either layout, passed as ROOT or lying in ROOT.
Pass the directory (or archive) as root; nothing is downloaded."""


class LabelledImages(NamedTuple):
    """Images with class labels; unpacks as ``images, labels = ...``.

    Attributes:
        images: ``(N, 3, H, W)`` uint8.
        labels: ``(N,)`` int64.
    """

    images: Tensor
    labels: Tensor


class _ArrayUnpickler(pickle.Unpickler):
    """Resolves only what a pickled numpy array needs; any other global is refused."""

    _reconstruct = np.zeros(1).__reduce__()[0]  # numpy(._)core.multiarray._reconstruct
    _frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # numpy(._)core.numeric._frombuffer
    _ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,  # pickle protocol 5
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # bytes pickled by Python 3, protocol 2
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load the global {module}.{name}: CIFAR-10 batches hold only numpy "
                "arrays and lists"
            ) from None


def _read_batch(path: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    try:
        with path.open("rb") as file:
            batch = _ArrayUnpickler(file, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise ValueError(f"{path} is not a readable CIFAR-10 batch: {err}.") from err
    if not isinstance(batch, dict):
        raise ValueError(f"{path} is not a CIFAR-10 batch: it holds no dict.")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != 3072 or labels is None or len(labels) != len(data)):
        raise ValueError(
            f"{path} is not a CIFAR-10 batch: expected uint8 data (N, 3072) and N labels."
        )
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def _load_batches(directory: Path, split: str) -> LabelledImages:
    parts = [_read_batch(directory / name) for name in _BATCHES[split]]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return LabelledImages(torch.from_numpy(images), torch.from_numpy(labels))


def _decode(path: Path) -> np.ndarray[Any, Any]:
    from PIL import Image  # lazily: only the image-folder layout needs Pillow

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _load_folder(directory: Path, num_workers: int | None) -> LabelledImages:
    classes = sorted(p.name for p in directory.iterdir()
                     if p.is_dir() and not p.name.startswith("."))
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (directory / name).iterdir()
                       if p.suffix.lower() in _IMAGE_SUFFIXES and not p.name.startswith("."))
        files += found
        labels += [label] * len(found)
    if not files:
        raise FileNotFoundError(f"{directory} holds no <class>/*.png|jpg|jpeg images.\n{_LAYOUTS}")
    workers = num_workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = list(pool.map(_decode, files))
    sizes = {a.shape for a in arrays}
    if len(sizes) != 1:
        raise ValueError(f"The images under {directory} differ in size ({sorted(sizes)}); "
                         "resize them to one size first.")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return LabelledImages(images, torch.tensor(labels, dtype=torch.int64))


def _find(directory: Path, split: str, num_workers: int | None) -> LabelledImages | None:
    """Load ``split`` from ``directory`` or one of its subdirectories, if a layout is there."""
    for candidate in [directory, *sorted(p for p in directory.iterdir() if p.is_dir())]:
        if all((candidate / name).is_file() for name in _BATCHES[split]):
            return _load_batches(candidate, split)
        if (candidate / split).is_dir():
            return _load_folder(candidate / split, num_workers)
    return None


def _cache_root(archive: Path, cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    if os.access(archive.parent, os.W_OK):
        return archive.parent
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ebmguide"


def _safe_extract(tar: tarfile.TarFile, destination: Path) -> None:
    """Extract regular files and directories only, all inside ``destination``."""
    if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
        tar.extractall(destination, filter="data")
        return
    members = []
    for member in tar.getmembers():
        parts = Path(member.name).parts
        if member.name.startswith(("/", "\\")) or ".." in parts:
            raise ValueError(f"Refusing to extract {member.name!r}: it points outside the archive.")
        if member.isfile() or member.isdir():
            members.append(member)
    tar.extractall(destination, members=members)


def _extract(archive: Path, cache_dir: str | os.PathLike[str] | None) -> Path:
    """Extract ``archive`` once (safely, atomically) and return the extracted directory."""
    stem = archive.name.removesuffix(".gz").removesuffix(".tar").removesuffix(".tgz")
    target = _cache_root(archive, cache_dir) / f"{stem}.extracted"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(f"{target.name}.partial-{os.getpid()}")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            _safe_extract(tar, scratch)
        scratch.rename(target)  # atomic; another process may have won the race
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def load_cifar10(
    root: str | os.PathLike[str],
    split: str = "train",
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    num_workers: int | None = None,
) -> LabelledImages:
    """Load CIFAR-10 (or any data set in the same layouts) into memory.

    Nothing is downloaded (there is no ``download`` option): see the module docstring for the
    accepted layouts. Image folders are decoded with Pillow in a thread pool (a few seconds for the
    60,000 CIFAR-10 JPEGs on 2 cores).

    Args:
        root: a directory holding one of the layouts, or a ``.tar.gz`` / ``.tgz`` archive.
        split: ``"train"`` (50,000 images for CIFAR-10) or ``"test"`` (10,000).
        cache_dir: where archives are extracted (into ``<cache_dir>/<archive name>.extracted``);
            by default next to the archive, or ``$XDG_CACHE_HOME/ebmguide`` (``~/.cache/ebmguide``)
            when the archive's directory is read-only. Extraction happens once: delete that
            directory to extract again.
        num_workers: decoding threads for image folders (default: up to 8).

    Returns:
        ``LabelledImages(images, labels)``: ``(N, 3, H, W)`` uint8 and ``(N,)`` int64.

    Raises:
        ValueError: for an unknown split or a file that is not a CIFAR-10 batch (including a pickle
            that asks for anything but numpy arrays).
        FileNotFoundError: when no accepted layout is found; the message lists them.
    """
    if split not in _BATCHES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    path = Path(root).expanduser()
    if path.is_file() and path.name.endswith(_ARCHIVE_SUFFIXES):
        archives = [path]
    elif path.is_dir():
        found = _find(path, split, num_workers)
        if found is not None:
            return found
        archives = sorted(p for p in path.iterdir() if p.name.endswith(_ARCHIVE_SUFFIXES))
    else:
        archives = []
    for archive in archives:
        found = _find(_extract(archive, cache_dir), split, num_workers)
        if found is not None:
            return found
    raise FileNotFoundError(f"No CIFAR-10 {split} split found at {path}.\n{_LAYOUTS}")


def dequantize(images: Tensor, generator: torch.Generator) -> Tensor:
    """Uniform dequantization of 8-bit images: x = (pixel + u) / 256 with u ~ U(0, 1).

    This equals (pixel / 255) · (255 / 256) + U(0, 1/256), CLEL's form; values lie in [0, 1), and
    each integer level fills its own bin of width 1/256.

    Args:
        images: ``(N, C, H, W)`` (any shape) uint8 tensor.
        generator: source of the uniform noise, on the same device as ``images``.

    Returns:
        A float32 tensor of the same shape with values in [0, 1).

    Raises:
        TypeError: if ``images`` is not uint8 or ``generator`` not a ``torch.Generator``.
    """
    if not isinstance(images, Tensor) or images.dtype != torch.uint8:
        raise TypeError("dequantize expects a uint8 tensor of 8-bit images; for float images in "
                        "[0, 1] there is nothing to dequantize.")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}.")
    noise = torch.rand(images.shape, generator=generator, device=images.device)
    # 255 + u rounds to 256 in float32 for u > 1 − 2⁻¹⁷: keep the result below 1.
    return ((images.float() + noise) / 256).clamp_max(_BELOW_ONE)


def average_pool(images: Tensor, factor: int) -> Tensor:
    """Downsample uint8 images by averaging ``factor × factor`` pixel blocks (rounded).

    Args:
        images: ``(N, C, H, W)`` uint8 images; ``factor`` must divide ``H`` and ``W``.
        factor: the block side (1: unchanged; 2 turns 32×32 into 16×16).

    Returns:
        ``(N, C, H // factor, W // factor)`` uint8 images.

    Raises:
        ValueError: for a factor below 1 or one that does not divide the image sides.
        TypeError: for images that are not a 4-dimensional uint8 tensor.

    Example:
        >>> average_pool(torch.tensor([[[[0, 2], [4, 6]]]], dtype=torch.uint8), 2)
        tensor([[[[3]]]], dtype=torch.uint8)
    """
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise TypeError(f"images must be a (N, C, H, W) uint8 tensor, got "
                        f"{getattr(images, 'dtype', type(images).__name__)} of shape "
                        f"{tuple(getattr(images, 'shape', ()))}.")
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be an int >= 1, got {factor!r}.")
    height, width = images.shape[-2:]
    if height % factor or width % factor:
        raise ValueError(f"factor {factor} does not divide the image size {height}x{width}; pick "
                         f"a divisor of both sides.")
    if factor == 1:
        return images
    pooled = torch.nn.functional.avg_pool2d(images.float(), factor)
    return pooled.round_().to(torch.uint8)
