"""A user's own networks on a user's own images, through the whole CLI.

A backbone and an encoder from the user's module, named by import path in a TOML config, trained
on a flat folder of grayscale PNG files that has no test split, through the CLI: train,
checkpoint, resume (bit-identical with a straight run), evaluate and sample.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ebmguide.cli import main
from ebmguide.run.checkpoints import load_state
from tests.run.test_user_modules import tiny_config_with

HERE = Path(__file__).resolve().parent
USER = """
[data]
name = "image_folder"
path = "{folder}"

[model]
backbone = "my_nets:TinyNet"
[model.backbone_args]
channels = 1
width = 6

[guide]
encoder = "my_nets:TinyNet"
augment = "flip"
[guide.encoder_args]
channels = 1
width = 5
"""


def _write_folder(folder: Path, n: int) -> None:
    """``n`` 8x8 grayscale PNG files, flat (no class folders, no train/test split)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):
        image = np.full((8, 8), 20, dtype=np.uint8)
        r, c = rng.integers(0, 5, 2)
        image[r:r + 3, c:c + 3] = 220
        Image.fromarray(image, mode="L").save(folder / f"img{i:03d}.png")


@pytest.mark.usefixtures("small_feature_nets")
def test_user_networks_on_a_flat_grayscale_folder_through_the_cli(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(HERE / "user_modules"))
    folder = tmp_path / "my_images"
    _write_folder(folder, 48)
    cfg = tiny_config_with(tmp_path, USER.format(folder=folder.as_posix()))
    run, straight = tmp_path / "run", tmp_path / "straight"
    common = ["--no-progress", "--set", "eval.every=3", "--set", 'eval.feature_net="auto"']

    assert main(["train", "--config", str(cfg), "--out", str(run), "--until", "3", *common]) == 0
    state, _ = load_state(run)
    assert state["iteration"] == 3
    assert state["ebm"]["backbone.body.0.weight"].shape == (6, 1, 3, 3)  # the user's, 1 channel
    assert state["guide"]["encoder.body.0.weight"].shape == (5, 1, 3, 3)
    assert state["sampler"]["buffer"]["states"].shape[1:] == (1, 8, 8)  # grayscale kept

    assert main(["train", "--resume", str(run), "--trust-config-imports", "--no-progress"]) == 0
    assert main(["train", "--config", str(cfg), "--out", str(straight), *common]) == 0
    resumed, _ = load_state(run)
    other, _ = load_state(straight)
    assert resumed["iteration"] == other["iteration"] == 6
    for key, value in other["ebm"].items():
        assert torch.equal(value, resumed["ebm"][key]), key

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    data = next(r for r in records if r["kind"] == "data")
    assert data["layout"] == "flat" and data["held_out_from"] == "training images"
    assert data["held_out"] + data["train"] == 48
    evals = [r for r in records if r["kind"] == "eval"]
    assert evals and all(np.isfinite(r["buffer_fd"]) for r in evals)

    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run), "--trust-config-imports", "--n", "6",
                 "--steps", "2", "--no-progress", "--out", str(tmp_path / "eval")]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("FD (features: in-domain")
    assert main(["sample", "--checkpoint", str(run), "--trust-config-imports", "--n", "4",
                 "--steps", "2", "--out", str(tmp_path / "samples")]) == 0
    assert any((tmp_path / "samples").iterdir())
