"""CIFAR-10 loading from every accepted layout, the safe unpickler, and dequantization."""

from __future__ import annotations

import os
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ebmguide.data import CIFAR10_CLASSES, average_pool, dequantize, load_cifar10
from ebmguide.data import cifar as cifar_module

PER_BATCH = 4  # images per fake batch file
REPO_ROOT = Path(__file__).resolve().parents[2]


def fake_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def write_batches(directory: Path, protocol: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fake CIFAR-10 python batches: 5 train files and 1 test file of PER_BATCH images each."""
    directory.mkdir(parents=True)
    truth: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"train": [], "test": []}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for seed, name in enumerate(names):
        images = fake_images(PER_BATCH, seed)
        labels = np.arange(seed, seed + PER_BATCH) % 10
        batch = {b"batch_label": name.encode(), b"labels": labels.tolist(),
                 b"data": images.reshape(PER_BATCH, 3072),
                 b"filenames": [f"{i}.png".encode() for i in range(PER_BATCH)]}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        truth["test" if name == "test_batch" else "train"].append((images, labels))
    return {split: (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
            for split, parts in truth.items()}


def write_folder(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A fake image folder root/<split>/<class>/*.png with 3 classes (lossless PNG)."""
    from PIL import Image

    truth = {}
    for seed, split in enumerate(("train", "test")):
        images, labels = fake_images(6, seed), []
        for i, image in enumerate(images):
            label = i % 3
            folder = root / split / CIFAR10_CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{i:04d}.png")
            labels.append(label)
        order = np.argsort(np.array(labels), kind="stable")  # loader order: by class, then file
        truth[split] = (images[order], np.array(labels)[order])
    return truth


def check(loaded: tuple[torch.Tensor, torch.Tensor], truth: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = loaded
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert images.shape == (len(truth[0]), 3, 32, 32)
    np.testing.assert_array_equal(images.numpy(), truth[0])
    np.testing.assert_array_equal(labels.numpy(), truth[1])


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("nested", [True, False])
def test_python_batches(tmp_path: Path, protocol: int, nested: bool) -> None:
    truth = write_batches(tmp_path / "cifar-10-batches-py" if nested else tmp_path / "b", protocol)
    root = tmp_path if nested else tmp_path / "b"
    for split in ("train", "test"):
        check(load_cifar10(root, split), truth[split])
    assert len(load_cifar10(root, "train").images) == 5 * PER_BATCH


def test_image_folder(tmp_path: Path) -> None:
    truth = write_folder(tmp_path / "cifar")
    for split in ("train", "test"):
        check(load_cifar10(tmp_path / "cifar", split, num_workers=2), truth[split])


def make_archive(source: Path, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="cifar10-png")


def test_archive_is_extracted_once_into_the_cache(tmp_path: Path) -> None:
    truth = write_folder(tmp_path / "folder")
    archive = tmp_path / "data" / "cifar.tar.gz"
    archive.parent.mkdir()
    make_archive(tmp_path / "folder", archive)
    cache = tmp_path / "cache"
    check(load_cifar10(archive, "test", cache_dir=cache), truth["test"])
    extracted = cache / "cifar.extracted"
    assert extracted.is_dir()
    stamp = extracted.stat().st_mtime_ns
    check(load_cifar10(archive, "train", cache_dir=cache), truth["train"])
    assert extracted.stat().st_mtime_ns == stamp
    # a directory holding the archive works too; by default it extracts next to the archive
    check(load_cifar10(archive.parent, "test"), truth["test"])
    assert (archive.parent / "cifar.extracted").is_dir()


def test_read_only_archive_directory_uses_the_user_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    truth = write_batches(tmp_path / "src" / "cifar-10-batches-py", protocol=2)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(cifar_module.os, "access", lambda *args, **kwargs: False)
    check(load_cifar10(archive, "test"), truth["test"])
    assert (tmp_path / "xdg" / "ebmguide" / "cifar-10-python.extracted").is_dir()


def test_missing_data_names_every_accepted_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_cifar10(tmp_path / "nowhere", "train")
    message = str(info.value)
    for expected in ("data_batch_1", "test_batch", "cifar-10-batches-py", "<split>/<class>",
                     ".tar.gz", "nothing is downloaded"):
        assert expected in message
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_cifar10(tmp_path, "validation")


class _Exploit:
    """Unpickling this would create a file: the loader must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def test_malicious_pickle_is_refused_without_running_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = {b"data": _Exploit(marker), b"labels": [0]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ValueError, match="refusing to load the global"):
        load_cifar10(tmp_path, "test")
    assert not marker.exists()
    armed = pickle.loads((tmp_path / "test_batch").read_bytes())  # the plain pickle runs it
    armed[b"data"].close()
    assert marker.exists()


def test_wrong_pickle_content_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 5)), b"labels": []}))
    with pytest.raises(ValueError, match="not a CIFAR-10 batch"):
        load_cifar10(tmp_path, "test")


def test_dequantize_formula_range_and_determinism() -> None:
    pixels = torch.arange(256, dtype=torch.uint8).repeat(40, 3, 1, 1)  # (40, 3, 1, 256)
    x = dequantize(pixels, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32 and x.shape == pixels.shape
    assert x.min() >= 0.0 and x.max() < 1.0
    assert torch.equal(torch.floor(x * 256).to(torch.uint8), pixels)  # each level keeps its bin
    assert torch.equal(x, dequantize(pixels, torch.Generator().manual_seed(0)))
    assert not torch.equal(x, dequantize(pixels, torch.Generator().manual_seed(1)))
    noise = x * 256 - pixels.float()
    assert abs(noise.mean().item() - 0.5) < 0.02
    with pytest.raises(TypeError, match="uint8"):
        dequantize(pixels.float(), torch.Generator())


def _real_archive() -> Path:
    override = os.environ.get("EBMGUIDE_CIFAR10")
    default = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"  # beside the repository
    return Path(override) if override else default


@pytest.mark.slow
def test_real_cifar10_archive(tmp_path: Path) -> None:
    archive = _real_archive()
    if not archive.exists():
        pytest.skip(f"real CIFAR-10 not found at {archive}; set EBMGUIDE_CIFAR10 to its path")
    expected_mean = torch.tensor([0.491, 0.482, 0.447])
    try:
        for split, count in (("train", 50_000), ("test", 10_000)):
            images, labels = load_cifar10(archive, split, cache_dir=tmp_path / "cache")
            assert images.shape == (count, 3, 32, 32) and images.dtype == torch.uint8
            assert torch.equal(torch.bincount(labels, minlength=10), torch.full((10,), count // 10))
            mean = images.float().mean(dim=(0, 2, 3)) / 255
            assert (mean - expected_mean).abs().max() < 0.01, mean
    finally:
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)  # 60,000 extracted files


def test_held_out_split_smaller_than_twice_the_eval_samples(tmp_path: Path) -> None:
    """The paper's in-training protocol: eval.n_samples = the whole test split (10,000 of 10,000).

    The evaluation asks for 2n images (reference and floor halves); a test split of only n must
    give all of its images, not fail at the first sample grid, and fewer than n is a clear error.
    """
    from ebmguide.run.config import load_config
    from ebmguide.run.data_sources import load_training_data

    write_batches(tmp_path / "batches", protocol=2)
    cfg = load_config("cifar10_cpu", [f'data.path="{tmp_path / "batches"}"',
                                      f"eval.n_samples={PER_BATCH}"])
    data = load_training_data(cfg)
    assert data.held_out(2 * PER_BATCH, at_least=PER_BATCH).shape == (PER_BATCH, 3, 32, 32)
    assert data.held_out(2).shape == (2, 3, 32, 32)  # the first sample grid's request
    with pytest.raises(ValueError, match=r"lower eval\.n_samples"):
        data.held_out(2 * PER_BATCH)


def test_average_pool_means_each_block_and_rejects_what_does_not_divide() -> None:
    images = torch.from_numpy(fake_images(3, seed=5))
    pooled = average_pool(images, 2)
    assert pooled.shape == (3, 3, 16, 16) and pooled.dtype == torch.uint8
    block = images[1, 2, 4:6, 10:12].double().mean()
    assert int(pooled[1, 2, 2, 5]) == int(torch.round(block))
    assert average_pool(images, 1) is images
    with pytest.raises(ValueError, match="does not divide"):
        average_pool(images, 3)
    with pytest.raises(ValueError, match="int >= 1"):
        average_pool(images, 0)
    with pytest.raises(TypeError, match="uint8"):
        average_pool(images.float(), 2)


def test_data_downsample_pools_train_and_test_and_is_cifar10_only(tmp_path: Path) -> None:
    from ebmguide.run.config import load_config
    from ebmguide.run.data_sources import load_training_data

    truth = write_batches(tmp_path / "batches", protocol=2)
    cfg = load_config("cifar10_cpu", [f'data.path="{tmp_path / "batches"}"', "data.downsample=2",
                                      f"eval.n_samples={PER_BATCH // 2}"])
    data = load_training_data(cfg)
    assert data.shape == (3, 16, 16)
    expected = average_pool(torch.from_numpy(truth["test"][0]), 2)
    held = (data.held_out(PER_BATCH) * 256).floor().to(torch.uint8)  # undo the dequantization
    assert torch.equal(held.sort(dim=0).values, expected.sort(dim=0).values)
    with pytest.raises(ValueError, match=r"data\.downsample applies to .*cifar10"):
        load_config("demo", ["data.downsample=2"])
    with pytest.raises(ValueError, match=r"data\.downsample must be positive"):
        load_config("cifar10_cpu", ["data.downsample=0"])
