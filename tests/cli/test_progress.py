"""Progress of `ebmguide train`: a bar on a terminal, one line per log interval in a log file."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from ebmguide.cli import main
from ebmguide.run.progress import LineProgress, resolve_progress

TINY = Path(__file__).resolve().parents[1] / "tiny_run.toml"
REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^tiny: iteration (\d+)/6 \(\d+\.\d%\)  loss=\S+  cd=\S+  nce=\S+  gap=\S+  "
                  r"\d+\.\d\d it/s  elapsed \d+:\d\d:\d\d  ETA (\d+:\d\d:\d\d|\?)$")


def progress_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("tiny: ")]


def test_not_a_terminal_gives_one_line_per_log_interval(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", str(TINY), "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err  # no bar frames in a log file
    lines = progress_lines(err)
    assert [int(LINE.match(line).group(1)) for line in lines] == [2, 4, 6], lines  # type: ignore[union-attr]


def test_no_progress_prints_no_progress(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", str(TINY), "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert progress_lines(err) == [] and "\r" not in err


def test_a_terminal_gets_the_bar(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    # a new terminal is 0 columns wide, which tqdm's dynamic width would fill with nothing
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "COLUMNS": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "ebmguide", "train", "--config", str(TINY),
                             "--out", str(tmp_path / "run")], stdout=subprocess.DEVNULL,
                            stderr=follower, env=env)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=120) == 0
    err = b"".join(chunks).decode("utf-8", "replace")
    assert "\r" in err and "6/6" in err and "it/s" in err  # tqdm's bar, redrawn in place
    assert not [line for line in err.splitlines() if LINE.match(line)]  # no plain lines


def test_line_progress_counts_from_a_resumed_iteration() -> None:
    stream = io.StringIO()
    bar = LineProgress(total=10, initial=4, desc="tiny", stream=stream)
    bar.update(2)
    bar.set_postfix({"loss": "1.000"})
    assert stream.getvalue().startswith("tiny: iteration 6/10 (60.0%)  loss=1.000  ")
    assert resolve_progress(True) == "auto" and resolve_progress(False) == "none"
    with pytest.raises(ValueError, match="progress must be one of auto, bar, lines, none"):
        resolve_progress("verbose")


def test_sweep_lines_are_timed_and_end_with_the_last_chunk() -> None:
    stream = io.StringIO()
    bar = LineProgress(total=100, initial=0, desc="fresh chains", stream=stream, unit="chain",
                       every_s=3600.0)
    for _ in range(4):
        bar.update(25)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1  # only the last update: not yet an hour since the start
    assert lines[0].startswith("fresh chains: 100/100 chains (100.0%)  ")
    assert " chain/s  elapsed " in lines[0]


def test_evaluate_in_a_log_file_prints_lines_not_bar_frames(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--checkpoint", str(tiny_run), "--n", "8", "--steps", "1",
                 "--out", str(tmp_path / "eval")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    assert re.search(r"^fresh chains: 8/8 chains \(100\.0%\)  ", err, re.M), err
