"""SIGKILL in the middle of checkpoint writes, many times: nothing complete is ever lost.

A fork server (kill_worker.py) imports torch once; each round forks a child that resumes from the
newest checkpoint and writes multi-megabyte checkpoints in a loop through
:class:`~ebmguide.checkpoint.CheckpointManager`; the server SIGKILLs it after a delay drawn from a
seeded generator and checks the folder (see kill_worker.py for the exact checks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

WORKER = Path(__file__).with_name("kill_worker.py")
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork and SIGKILL")


def run_kills(folder: Path, seed: int, rounds: int, megabytes: float) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(WORKER), str(folder), str(seed), str(rounds),
                           str(megabytes)], capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(summary)
    return summary


def check(summary: dict[str, Any], rounds: int) -> None:
    assert summary["failures"] == []
    assert summary["killed"] == rounds  # every child died by SIGKILL, none by an error
    assert summary["mid_write"] >= rounds // 5, "too few kills landed inside a write"
    assert summary["with_progress"] >= rounds // 3  # about half wait for a first save
    assert summary["temps_left"] == []  # the next complete save cleans killed writes' temp files
    assert summary["final_iteration"] >= summary["with_progress"]


def test_sigkill_during_checkpoint_writes_40_times(tmp_path: Path) -> None:
    check(run_kills(tmp_path, seed=0, rounds=40, megabytes=4), 40)


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "megabytes"), [(1, 1), (2, 16), (3, 4)])
def test_sigkill_during_checkpoint_writes_300_times(tmp_path: Path, seed: int,
                                                   megabytes: float) -> None:
    check(run_kills(tmp_path, seed=seed, rounds=300, megabytes=megabytes), 300)
