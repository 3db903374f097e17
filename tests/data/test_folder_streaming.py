"""Image folders of any layout, size and channel count; batches streamed from any Dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from ebmguide.data import (
    InfiniteBatches,
    LazyImages,
    StreamingBatches,
    dequantize,
    scan_image_folder,
)
from ebmguide.run.config import load_config

TINY = str(Path(__file__).resolve().parents[1] / "tiny_run.toml")


def write_pngs(folder: Path, n: int, *, mode: str = "L", size: tuple[int, int] = (10, 8),
               seed: int = 0) -> list[np.ndarray]:
    """``n`` PNG files of ``size`` (width, height) in Pillow ``mode``; returns their pixels."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    folder.mkdir(parents=True, exist_ok=True)
    arrays = []
    for i in range(n):
        shape = (size[1], size[0]) if channels == 1 else (size[1], size[0], channels)
        array = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(array, mode=mode).save(folder / f"{i:04d}.png")
        arrays.append(array)
    return arrays


def test_a_flat_grayscale_folder_stays_one_channel(tmp_path: Path) -> None:
    arrays = write_pngs(tmp_path / "flat", 5, mode="L", size=(10, 8))
    splits = scan_image_folder(tmp_path / "flat")
    assert splits.test is None and splits.train.labels is None
    assert splits.train.shape == (1, 8, 10) and len(splits.train) == 5
    assert torch.equal(splits.train[3], torch.from_numpy(arrays[3])[None])


def test_class_folders_give_labels_and_rgba_keeps_four_channels(tmp_path: Path) -> None:
    for label in ("b_cat", "a_dog"):
        write_pngs(tmp_path / "root" / label, 3, mode="RGBA", size=(6, 6))
    splits = scan_image_folder(tmp_path / "root")
    assert splits.train.classes == ("a_dog", "b_cat")
    assert splits.train.labels is not None and splits.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert splits.train[0].shape == (4, 6, 6)


def test_train_and_test_splits_are_found(tmp_path: Path) -> None:
    write_pngs(tmp_path / "r" / "train", 4, mode="RGB")
    write_pngs(tmp_path / "r" / "test", 2, mode="RGB")
    splits = scan_image_folder(tmp_path / "r")
    assert splits.test is not None and (len(splits.train), len(splits.test)) == (4, 2)


def test_bad_folders_are_clear_errors(tmp_path: Path) -> None:
    write_pngs(tmp_path / "mixed", 2, size=(8, 8))
    write_pngs(tmp_path / "mixed" / "cls", 2, size=(8, 8))
    with pytest.raises(ValueError, match="both images and class folders"):
        scan_image_folder(tmp_path / "mixed")
    write_pngs(tmp_path / "sizes", 2, size=(8, 8))
    write_pngs(tmp_path / "sizes2", 1, size=(9, 8))
    (tmp_path / "sizes2" / "0000.png").rename(tmp_path / "sizes" / "0009.png")
    with pytest.raises(ValueError, match=r"0009.png is 9x8.*share one size"):
        scan_image_folder(tmp_path / "sizes").train.validate()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no images"):
        scan_image_folder(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not a readable image"):
        scan_image_folder(tmp_path / "broken")


class Noise(Dataset[tuple[torch.Tensor, int]]):
    """A map-style dataset of (uint8 image, label) pairs, generated per index."""

    def __len__(self) -> int:
        return 37

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        g = torch.Generator().manual_seed(i)
        return torch.randint(0, 256, (2, 5, 5), generator=g, dtype=torch.uint8), i % 3


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_equal_in_memory_batches_and_resume_exactly(workers: int) -> None:
    lazy = LazyImages(Noise(), num_workers=workers)
    memory = lazy[torch.arange(len(lazy))]
    assert memory.shape == (37, 2, 5, 5) and lazy.shape == (37, 2, 5, 5)

    def streamed() -> StreamingBatches:
        return StreamingBatches(lazy, 8, generator=torch.Generator().manual_seed(3),
                                transform=dequantize, num_workers=workers)

    reference = InfiniteBatches(memory, 8, generator=torch.Generator().manual_seed(3),
                                transform=dequantize)
    stream = streamed()
    expected = [next(reference) for _ in range(12)]  # 4 batches per epoch: 3 epochs
    got = [next(stream) for _ in range(5)]
    state = stream.state_dict()
    assert state["epoch"] == 1 and state["position"] == 8
    resumed = streamed()
    resumed.load_state_dict(state)
    got += [next(resumed) for _ in range(7)]
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
    in_memory = InfiniteBatches(memory, 8, generator=torch.Generator().manual_seed(0),
                                transform=dequantize)
    in_memory.load_state_dict(state)  # a streamed state continues an in-memory stream
    assert torch.equal(next(in_memory), expected[5])


def test_a_dataset_item_that_is_not_an_image_is_a_clear_error() -> None:
    class Bad(Dataset[str]):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> str:
            return "x"

    with pytest.raises(TypeError, match=r"\(C, H, W\) tensor"):
        LazyImages(Bad())


def test_any_dataset_becomes_run_data_with_a_recorded_held_out_split() -> None:
    from ebmguide.run.data_sources import HELD_OUT_SEED_OFFSET, dataset_training_data

    cfg = load_config(TINY, ["data.max_memory_mb=0", "data.num_workers=0",
                             'eval.feature_net="auto"'])
    data = dataset_training_data(Noise(), cfg)
    assert isinstance(data.train, LazyImages) and data.shape == (2, 5, 5)
    assert data.info["held_out"] == 3 and data.info["train"] == 34
    assert data.info["held_out_seed"] == cfg.seed + HELD_OUT_SEED_OFFSET
    held = set(data.test.indices.tolist())  # type: ignore[union-attr]
    assert not held & set(data.train.indices.tolist()) and len(held) == 3
    assert data.held_out(3).shape == (3, 2, 5, 5)
    again = dataset_training_data(Noise(), cfg)  # the split depends on the seed only
    assert torch.equal(again.train.indices, data.train.indices)  # type: ignore[union-attr]
    in_memory = dataset_training_data(Noise(), load_config(TINY, ["data.num_workers=0"]))
    assert isinstance(in_memory.train, torch.Tensor) and len(in_memory.train) == 34


def test_eval_sizes_are_checked_before_training(tmp_path: Path) -> None:
    from ebmguide.run.data_sources import load_folder_data

    write_pngs(tmp_path / "few", 4, size=(8, 8))
    cfg = load_config(TINY, ['data.name="image_folder"', f'data.path="{tmp_path / "few"}"',
                             'eval.feature_net="auto"', "data.held_out=1"])
    with pytest.raises(ValueError, match="at least 4"):
        load_folder_data(cfg)


@pytest.mark.usefixtures("small_feature_nets")
def test_cli_trains_and_evaluates_a_flat_grayscale_folder_without_test_split(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Streamed from disk by 2 workers; checkpoint, resume, sample and evaluate all work."""
    from ebmguide.cli import main

    write_pngs(tmp_path / "imgs", 60, mode="L", size=(8, 8))
    run = tmp_path / "run"
    common = ["--set", 'data.name="image_folder"', "--set", f'data.path="{tmp_path / "imgs"}"',
              "--set", "data.max_memory_mb=0", "--set", 'eval.feature_net="auto"',
              "--set", "eval.every=3", "--no-progress"]
    assert main(["train", "--config", TINY, "--out", str(run), *common,
                 "--set", "train.iterations=3"]) == 0
    assert main(["train", "--resume", str(run), "--set", "train.iterations=6",
                 "--no-progress"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    data = next(r for r in records if r["kind"] == "data")
    assert (data["layout"], data["mode"], data["streamed"]) == ("flat", "L", True)
    assert (data["train"], data["held_out"], data["held_out_from"]) == (54, 6, "training images")
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["iteration"] for r in evals][-1] == 6 and all("buffer_fd" in r for r in evals)
    state = torch.load(sorted((run / "checkpoints").iterdir())[-1], weights_only=True)
    assert state["sampler"]["buffer"]["states"].shape[1:] == (1, 8, 8)
    assert main(["evaluate", "--checkpoint", str(run), "--n", "6", "--steps", "1",
                 "--no-progress", "--out", str(tmp_path / "ev")]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("FD (features: in-domain rotation)")


class Colour(Dataset[torch.Tensor]):
    """Float RGB images in [0, 1]: a flat colour per item plus a little noise (no labels)."""

    def __len__(self) -> int:
        return 80

    def __getitem__(self, i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(i)
        base = torch.rand(3, 1, 1, generator=g)
        return (base + 0.05 * torch.randn(3, 8, 8, generator=g)).clamp(0, 1)


@pytest.mark.usefixtures("small_feature_nets")
def test_the_trainer_takes_any_dataset_and_logs_an_in_domain_fd(tmp_path: Path) -> None:
    from ebmguide.run.data_sources import dataset_training_data
    from ebmguide.run.trainer import Trainer

    cfg = load_config(TINY, ["data.max_memory_mb=0", "data.num_workers=2",
                             'eval.feature_net="in_domain"', "eval.every=3"])
    data = dataset_training_data(Colour(), cfg)
    assert data.info["streamed"] and data.info["held_out"] == 8
    final = Trainer(cfg, tmp_path / "run", progress=False, data=data).run()
    assert final["buffer_fd"] >= 0 and final["fd_floor"] >= 0
    assert 0 <= final["feature_net_accuracy"] <= 1


def test_cifar10_layout_without_a_test_split_holds_images_out_before_training(
        tmp_path: Path) -> None:
    from ebmguide.run.data_sources import load_training_data

    for label in ("airplane", "automobile"):
        write_pngs(tmp_path / "c" / "train" / label, 10, mode="RGB", size=(8, 8))
    cfg = load_config(TINY, ['data.name="cifar10"', f'data.path="{tmp_path / "c"}"'])
    data = load_training_data(cfg)
    assert isinstance(data.train, torch.Tensor) and len(data.train) == 18
    assert data.info["held_out"] == 2 and data.info["held_out_from"] == "training images"
    assert data.labels is not None and len(data.labels) == 18
    assert data.held_out(2).shape == (2, 3, 8, 8)
