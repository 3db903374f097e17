"""``ebmguide compose``, ``ebmguide ood`` and ``ebmguide sample --condition`` on a tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ebmguide.cli import main

TINY = [
    "data.n_train=128", "model.width=4", "model.latent_dim=8", "model.hidden_dim=16",
    "guide.width=4", "guide.hidden_dim=16", "sampler.buffer_size=32", "sampler.n_steps=2",
    "train.iterations=2", "train.batch_size=8", "train.checkpoint_every=2",
    "train.sample_every=1000", "train.num_threads=1", "eval.every=0", 'eval.feature_net="none"',
    "eval.fresh_steps=2", "eval.n_samples=8", "eval.grid_size=4",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-run")
    args = ["train", "--config", "demo", "--out", str(out), "--no-progress"]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 0
    return out


def _png_rows(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def test_compose_writes_a_row_per_condition_and_the_composition(
        run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "grid"
    code = main(["compose", "--checkpoint", str(run_dir), "--and", "colour=red", "--and",
                 "shape=square", "--not", "scale=small", "--n", "3", "--steps", "1",
                 "--labelled", "60", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "colour=red AND shape=square AND NOT scale=small" in text
    assert f"grid:    {out / 'compose.png'}" in text
    composed = np.load(out / "compose.npz")["images"]
    assert composed.shape == (3, 3, 16, 16) and composed.dtype == np.uint8
    full_h = _png_rows(out / "compose.png")[1]
    assert main(["compose", "--checkpoint", str(run_dir), "--and", "colour=red", "--and",
                 "shape=square", "--not", "scale=small", "--n", "3", "--steps", "1",
                 "--labelled", "60", "--composed-only", "--out", str(tmp_path / "one")]) == 0
    one_h = _png_rows(tmp_path / "one" / "compose.png")[1]
    assert full_h > 4 * one_h  # unconditional + 3 terms + composition, one row each


def test_compose_or_with_a_reference_image(run_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    ref = tmp_path / "ref.png"
    array = np.zeros((32, 32, 3), dtype=np.uint8)
    array[8:20, 8:20, 0] = 255
    Image.fromarray(array).save(ref)
    code = main(["compose", "--checkpoint", str(run_dir), "--or", "colour=blue", "--or", str(ref),
                 "--and", "quadrant=top-left", "--n", "2", "--steps", "1", "--labelled", "60",
                 "--beta", "5", "--out", str(tmp_path / "or")])
    assert code == 0
    assert f"quadrant=top-left AND (colour=blue OR {ref})" in capsys.readouterr().out


def test_sample_condition_one_row_per_condition(run_dir: Path, tmp_path: Path) -> None:
    code = main(["sample", "--checkpoint", str(run_dir), "--condition", "colour=green",
                 "--condition", "quadrant=bottom-right", "--n", "4", "--steps", "1",
                 "--labelled", "60", "--out", str(tmp_path)])
    assert code == 0
    data = np.load(tmp_path / "conditional.npz")
    assert data["images"].shape == (2, 4, 3, 16, 16)
    assert list(data["conditions"]) == ["colour=green", "quadrant=bottom-right"]
    assert (tmp_path / "conditional.png").is_file()


def test_ood_table_and_json(run_dir: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ood"
    code = main(["ood", "--checkpoint", str(run_dir), "--in", "shapes", "--ood", "novel_colours",
                 "--ood", "noise", "--beta", "0.1", "--beta", "1", "--n", "40", "--out", str(out),
                 "--json", str(tmp_path / "also.json")])
    assert code == 0
    text = capsys.readouterr().out
    assert "novel_colours" in text and "energy only" in text
    assert f"results: {out / 'ood.json'}" in text
    result = json.loads((out / "ood.json").read_text())
    assert json.loads((tmp_path / "also.json").read_text()) == result
    assert set(result["auroc"]) == {"novel_colours", "noise"}
    for row in result["auroc"].values():
        assert set(row) == {"joint(beta=0.1)", "joint(beta=1)", "energy only"}
        assert all(0.0 <= v <= 1.0 for v in row.values())


def test_ood_cifar_folder(run_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "cifar" / "test" / "cat"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / f"{i}.jpg")
    code = main(["ood", "--checkpoint", str(run_dir), "--ood", f"cifar10:{tmp_path / 'cifar'}",
                 "--n", "6"])
    assert code == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["compose", "--and", "colour=pink"], "unknown colour 'pink'"),
     (["compose", "--and", "mood=happy"], "unknown factor 'mood'"),
     (["compose", "--and", "missing.png"], "neither factor=value"),
     (["compose"], "at least one condition"),
     (["sample", "--condition", "colour=red", "--protocol", "buffer"], "fresh chains"),
     (["ood", "--ood", "mnist"], "unknown set 'mnist'"),
     (["ood"], "at least one --ood"),
     (["ood", "--out", "noise"], "--out is the output folder in every command; name "
                                 "out-of-distribution sets with --ood (e.g. --ood noise)"),
     (["compose", "--and", "colour=red", "-o", "x/c.png"], "--output is gone: --out is the "
                                                           "output folder in every command"),
     (["compose", "--and", "colour=red", "--out", "c.png"], "looks like a file name")],
)
def test_user_errors_are_one_line(run_dir: Path, argv: list[str], message: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = main([argv[0], "--checkpoint", str(run_dir), *argv[1:]])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_ood_cifar_images_are_dequantized_like_the_training_data(tmp_path: Path) -> None:
    """cifar10:PATH inputs are (pixel + U(0, 1)) / 256, as in training, not pixel / 255."""
    import torch

    from ebmguide.run.ood_sets import load_set

    root = tmp_path / "cifar" / "test" / "cat"
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    pixels = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(5)]
    pixels[0][0, 0] = 255  # the top level must stay below 1
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(root / f"{i}.png")  # lossless
    x = load_set(f"cifar10:{tmp_path / 'cifar'}", 5, (3, 8, 8), seed=0)
    truth = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2)
    assert float(x.max()) < 1.0 and float(x.min()) >= 0.0
    bins = torch.floor(x * 256).to(torch.uint8)  # each pixel fills its own bin of width 1/256
    assert sorted(map(bytes, bins.flatten(1).numpy())) == \
        sorted(map(bytes, truth.flatten(1).numpy()))  # the same images, drawn in random order
    assert not torch.allclose(x * 255, torch.round(x * 255))  # not on the pixel / 255 grid
