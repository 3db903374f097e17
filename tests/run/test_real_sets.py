"""The reference and real-vs-real floor of an FD: planned from split sizes, never a crash."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from ebmguide.run.config import load_config
from ebmguide.run.data_sources import load_training_data
from ebmguide.run.evaluator import Evaluator
from ebmguide.run.real_sets import RealPart, plan_real_sets, real_sets

CIFAR = {"train": 50_000, "test": 10_000}


def test_the_papers_final_protocol_gets_a_floor_of_two_training_halves() -> None:
    plan = plan_real_sets("train", 50_000, CIFAR)
    assert plan.reference == RealPart("train", 0, 50_000)
    assert plan.floor_label == "train 25,000 vs train 25,000" and not plan.floor_uses_reference


def test_monitoring_uses_all_10000_test_images_and_a_floor_of_as_many_training_images() -> None:
    plan = plan_real_sets("held-out", 10_000, CIFAR)
    assert plan.reference == RealPart("test", 0, 10_000)
    assert plan.floor_label == "test 10,000 vs train 10,000" and plan.floor_uses_reference


@pytest.mark.parametrize(("which", "n", "reference", "floor"), [
    ("train", 20_000, "train 20,000", "train 20,000 vs train 20,000"),
    ("train", 30_000, "train 30,000", "train 25,000 vs train 25,000"),
    ("train", 8_000, "train 8,000", "train 8,000 vs train 8,000"),
    ("held-out", 5_000, "test 5,000", "test 5,000 vs test 5,000"),
    ("held-out", 50_000, "test 10,000", "test 10,000 vs train 10,000"),
])
def test_plans_follow_the_data(which: str, n: int, reference: str, floor: str) -> None:
    plan = plan_real_sets(which, n, CIFAR)
    assert str(plan.reference) == reference and plan.floor_label == floor
    a, b = plan.floor
    assert a.size == b.size  # a floor always compares sets of one size
    if a.split == b.split:
        assert a.start + a.size <= b.start  # disjoint


def test_generated_held_out_data_is_never_short() -> None:
    plan = plan_real_sets("held-out", 1000, {"train": 64, "held-out": None})
    assert plan.floor_label == "held-out 1,000 vs held-out 1,000"
    assert plan.needed("held-out") == 2000 and plan.needed("train") == 0
    plan = plan_real_sets("train", 64, {"train": 64, "held-out": None})
    assert plan.floor_label == "train 64 vs held-out 64"


def test_too_little_data_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        plan_real_sets("train", 10, {"train": 3, "test": 1})
    with pytest.raises(ValueError, match="at least 2 samples"):
        plan_real_sets("train", 1, CIFAR)
    with pytest.raises(ValueError, match="'train' or 'held-out'"):
        plan_real_sets("test", 10, CIFAR)


def _folder_config(root: Path, n: int) -> object:
    return load_config(str(Path(__file__).resolve().parents[1] / "tiny_run.toml"),
                       ['data.name="image_folder"', f'data.path="{root}"',
                        f"eval.n_samples={n}"])


def test_in_training_fd_uses_the_whole_test_split_as_reference(
        tmp_path: Path, image_folder: Callable[..., Path]) -> None:
    """At n = the test split's size, the reference is all of it, not half (the paper's 10k)."""
    root = image_folder(tmp_path / "data", train=30, test=12)
    cfg = _folder_config(root, 12)
    data = load_training_data(cfg)  # type: ignore[arg-type]
    net = nn.Sequential(nn.Flatten(), nn.Linear(192, 4))
    evaluator = Evaluator(cfg, data, tmp_path, feature_net=net,  # type: ignore[arg-type]
                          features="linear")
    assert evaluator.scorer is not None
    assert evaluator.scorer.n == 12 and evaluator.scorer.floor_sizes == (12, 12)
    test = data.held_out(12)
    assert torch.equal(evaluator.sets.reference, test)  # type: ignore[union-attr]
    values = evaluator(torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(0)), "b")
    assert values["b_fd"] > values["fd_floor"] >= 0


def test_real_sets_draw_disjoint_dequantized_images(
        tmp_path: Path, image_folder: Callable[..., Path]) -> None:
    root = image_folder(tmp_path / "data", train=24, test=8)
    data = load_training_data(_folder_config(root, 8))  # type: ignore[arg-type]
    sets = real_sets(data, "train", 24)  # n = the whole training split
    assert sets.plan.floor_label == "train 12 vs train 12"
    assert sets.reference.shape == (24, 3, 8, 8) and sets.reference.dtype == torch.float32
    assert float(sets.reference.max()) < 1.0
    pixels = torch.floor(sets.reference * 256).to(torch.uint8)
    assert sorted(map(bytes, pixels.flatten(1).numpy())) == \
        sorted(map(bytes, data.train.flatten(1).numpy()))  # every training image, once
    a, b = sets.floor
    assert not any(torch.equal(x, y) for x in a for y in b)
