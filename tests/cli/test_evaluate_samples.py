"""`ebmguide evaluate --samples` refuses samples that do not belong to the run, in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ebmguide.cli import main


def save_npz(path: Path, images: np.ndarray) -> Path:
    np.savez(path, images=images)
    return path


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: save_npz(p / "big.npz", np.zeros((8, 3, 16, 16), np.uint8)),
     "holds 8 samples of 3x16x16; this run's samples are 3x8x8 (and at least 2): score samples "
     "of this run"),
    (lambda p: save_npz(p / "hwc.npz", np.zeros((8, 8, 8, 3), np.uint8)),
     "channels last? move them first: array.transpose(0, 3, 1, 2)"),
    (lambda p: save_npz(p / "grey.npz", np.zeros((8, 1, 8, 8), np.uint8)),
     "holds 8 samples of 1x8x8; this run's samples are 3x8x8"),
    (lambda p: save_npz(p / "one.npz", np.zeros((1, 3, 8, 8), np.uint8)),
     "holds 1 samples of 3x8x8; this run's samples are 3x8x8 (and at least 2)"),
    (lambda p: (np.savez(p / "other.npz", x=np.zeros((8, 3, 8, 8))), p / "other.npz")[1],
     "holds the arrays ['x'] but no 'images'"),
    (lambda p: (torch.save({"images": torch.zeros(8, 3, 8, 8)}, p / "d.pt"), p / "d.pt")[1],
     "holds a dict, not a tensor"),
    (lambda p: (torch.save(torch.full((8, 3, 8, 8), 255.0), p / "f.pt"), p / "f.pt")[1],
     "holds image values in [255, 255]; this run's images lie in [0, 1]"),
    (lambda p: (torch.save(torch.full((8, 3, 8, 8), float("nan")), p / "n.pt"), p / "n.pt")[1],
     "holds NaN or inf values"),
    (lambda p: (torch.save(torch.zeros(8, 3, 8, 8, dtype=torch.int64), p / "i.pt"),
                p / "i.pt")[1], "holds torch.int64 samples: pass uint8 pixels"),
])
def test_evaluate_refuses_samples_that_do_not_match_the_run(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        make: object, message: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    assert main(["evaluate", "--checkpoint", str(tiny_run), "--samples", str(path),
                 "--out", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ebmguide: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "eval").exists()  # refused before anything was computed or written
