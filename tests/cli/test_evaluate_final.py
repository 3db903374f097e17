"""The paper's final protocol end to end on a small image folder, scaled down.

Same code path as ``ebmguide evaluate --protocol buffer --n 50000 --rounds 10 --real train`` on
CIFAR-10: the training split here has 24 images and n = 24 is the whole of it (the case that could
not finish before), chunks of 8 instead of 512, 3 rounds instead of 10.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import ebmguide.run.checkpoint_evaluation as evaluate_run
from ebmguide.cli import main

TINY = Path(__file__).resolve().parents[1] / "tiny_run.toml"
FINAL = ["--protocol", "buffer", "--rounds", "3", "--chunk", "8", "--real", "train",
         "--no-progress"]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 2-iteration run on a 24 + 8 image folder, and an exported feature network."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from conftest import write_image_folder

    root = tmp_path_factory.mktemp("final")
    write_image_folder(root / "data", train=24, test=8)
    run = root / "run"
    assert main(["train", "--config", str(TINY), "--out", str(run), "--no-progress",
                 "--set", 'data.name="image_folder"', "--set", f'data.path="{root / "data"}"',
                 "--set", "train.iterations=2", "--set", "train.checkpoint_every=2"]) == 0
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 6))
    batch = torch.export.Dim("batch", min=2)
    program = torch.export.export(net, (torch.rand(4, 3, 8, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(root / "features.pt2"))
    return run, root / "features.pt2"


def _evaluate(run: Path, features: Path, out: Path, *extra: str) -> int:
    return main(["evaluate", "--checkpoint", str(run), "--feature-net", str(features),
                 "--out", str(out), *FINAL, *extra])


def test_final_protocol_with_n_the_whole_training_split(
        folder_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, features = folder_run
    out = tmp_path / "eval"
    assert _evaluate(run, features, out, "--n", "24", "--kid", "--json",
                     str(tmp_path / "r.json")) == 0
    text = capsys.readouterr().out
    print(text)  # the table, for the record (pytest -s)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("metric"))
    for column in ("value", "feature network", "n generated", "n real", "real-vs-real floor",
                   "protocol"):
        assert column in lines[header]
    fd_row = lines[header + 1]
    assert fd_row.startswith("FD (features: features)") and "FID" not in text
    assert "train 24" in fd_row and "(train 12 vs train 12)" in fd_row
    assert "buffer: 24 chains x 3 rounds, chunks of 8" in fd_row
    assert lines[header + 2].startswith("KID (features: features)")
    values = json.loads((tmp_path / "r.json").read_text())
    assert values == json.loads((out / "results.json").read_text())
    assert values["n"] == 24 and values["n_real"] == 24 and values["fd"] > 0
    assert values["floor_sets"] == "train 12 vs train 12" and values["fd_floor"] >= 0
    images = np.load(out / "samples.npz")["images"]
    assert images.shape == (24, 3, 8, 8) and images.dtype == np.uint8
    assert (out / "samples.png").is_file()
    assert torch.load(out / "sweep.pt", weights_only=True)["rounds_done"] == 3


def test_more_samples_than_training_images_never_crash(
        folder_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """n = 2 x the training split (CIFAR-10's 50,000 at n = 100,000) still gets a labelled floor."""
    run, features = folder_run
    assert _evaluate(run, features, tmp_path / "e", "--n", "48", "--rounds", "1") == 0
    row = capsys.readouterr().out.splitlines()[-1]
    assert "48" in row and "train 24" in row and "(train 12 vs train 12)" in row


class _KilledError(Exception):
    pass


def test_a_killed_sweep_resumes_from_its_last_finished_round(
        folder_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run, features = folder_run
    straight = tmp_path / "straight"
    assert _evaluate(run, features, straight, "--n", "24") == 0
    killed = tmp_path / "killed"
    save = evaluate_run.SweepFolder.save
    rounds_run: list[int] = []

    def save_then_die(self: evaluate_run.SweepFolder, state: evaluate_run.SweepState) -> None:
        save(self, state)
        rounds_run.append(state.rounds_done)
        if state.rounds_done == 2:
            raise _KilledError  # killed during round 3, after round 2 was saved

    monkeypatch.setattr(evaluate_run.SweepFolder, "save", save_then_die)
    with pytest.raises(_KilledError):
        _evaluate(run, features, killed, "--n", "24")
    assert not (killed / "samples.npz").exists()
    assert _evaluate(run, features, killed, "--n", "24") == 0
    assert rounds_run == [1, 2, 3]  # the resumed command ran round 3 only
    a = np.load(straight / "samples.npz")["images"]
    b = np.load(killed / "samples.npz")["images"]
    assert np.array_equal(a, b)  # bit-identical with the uninterrupted sweep (CPU)


def _no_sampling(*args: object, **kwargs: object) -> None:
    raise AssertionError("sampling started before every check had passed")


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_every_check_runs_before_sampling(
        folder_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], image_folder: Callable[..., Path]) -> None:
    run, features = folder_run
    monkeypatch.setattr(evaluate_run, "buffer_protocol", _no_sampling)
    monkeypatch.setattr(evaluate_run, "fresh_chains", _no_sampling)
    ckpt = run / "checkpoints" / "ckpt-00000002.pt"
    state = torch.load(ckpt, weights_only=False)
    from ebmguide.run.components import networks_from_checkpoint
    from ebmguide.run.config import config_from_dict

    _, guide = networks_from_checkpoint(state, config_from_dict(state["config"]),
                                        torch.device("cpu"))
    scripted = torch.jit.trace(copy.deepcopy(guide.encoder), torch.rand(2, 3, 8, 8))
    torch.jit.save(scripted, str(tmp_path / "guide.pt"))  # a TorchScript copy of the guide
    bad = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(100, 6))
    batch = torch.export.Dim("batch", min=2)
    torch.export.save(torch.export.export(bad, (torch.rand(4, 100),),
                                          dynamic_shapes=({0: batch},)), str(tmp_path / "bad.pt2"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    other = tmp_path / "other"
    base = ["evaluate", "--checkpoint", str(run), *FINAL]
    cases = {
        "guiding encoder": [*base, "--feature-net", str(tmp_path / "guide.pt"),
                            "--out", str(tmp_path / "a")],
        "fails on this run's real images": [*base, "--feature-net", str(tmp_path / "bad.pt2"),
                                            "--out", str(tmp_path / "b")],
        "cannot write to the output folder": [*base, "--feature-net", str(features),
                                              "--out", str(blocker / "sub")],
        "--chunk must be at least 1": [*base, "--feature-net", str(features), "--chunk", "0"],
        "KID needs at least 4": [*base, "--feature-net", str(features), "--n", "2", "--kid",
                                 "--out", str(tmp_path / "c")],
    }
    for message, argv in cases.items():
        assert main(argv) == 2, message
        err = capsys.readouterr().err
        assert err.startswith("ebmguide: error: ") and message in err, err
    monkeypatch.undo()
    assert _evaluate(run, features, other, "--n", "8", "--rounds", "1") == 0
    monkeypatch.setattr(evaluate_run, "buffer_protocol", _no_sampling)
    assert _evaluate(run, features, other, "--n", "8", "--rounds", "1", "--seed", "5") == 2
    assert "other settings (seed)" in capsys.readouterr().err


def test_the_metric_is_called_fid_only_with_inception_weights(
        folder_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import ebmguide.run.checkpoint_evaluation as evaluate

    run, features = folder_run
    net = torch.export.load(str(features)).module()
    monkeypatch.setattr(evaluate, "load_feature_net", lambda args, cfg, run_dir:
                        (net, "Inception-v3"))  # stands in for the network of a weights file
    argv = ["evaluate", "--checkpoint", str(run), *FINAL, "--n", "8", "--rounds", "1",
            "--out", str(tmp_path / "i")]
    assert main([*argv, "--inception-weights", "pt_inception-2015-12-05.pth"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[-1].startswith("FID  ") and "Inception-v3" in rows[-1]
    assert main(argv) == 0  # the same network without a weights path: an FD, never "FID"
    out = capsys.readouterr().out
    assert "FID" not in out and out.splitlines()[-1].startswith("FD (features: Inception-v3)")
