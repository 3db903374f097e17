"""Ctrl-C under torchrun: every rank stops after the same iteration, one checkpoint, said once."""

from __future__ import annotations

import importlib.util
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ebmguide.run.checkpoints import load_state

_spec = importlib.util.spec_from_file_location("ddp_launch_interrupt",
                                               Path(__file__).with_name("launch.py"))
assert _spec is not None and _spec.loader is not None
launch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(launch)

TINY = launch.REPO / "tests" / "tiny_run.toml"


def test_sigint_to_torchrun_stops_both_ranks_after_one_iteration(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={launch.free_port()}", "-m", "ebmguide",
           "train", "--config", str(TINY), "--out", str(run), "--set", "train.iterations=100000",
           "--set", "train.checkpoint_every=2", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=launch.REPO, env=launch.torchrun_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not list((run / "checkpoints").glob("ckpt-*.pt")):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no checkpoint was written: {proc.communicate()[1][-3000:]}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # torchrun passes it on to both ranks
    _, err = proc.communicate(timeout=180)
    said = re.findall(r"ebmguide: interrupted by SIG\w+ after iteration (\d+) of 100000; "
                      r"checkpoint written to (\S+)", err)
    assert len(said) == 1, err[-3000:]  # rank 0 alone
    iteration, path = int(said[0][0]), Path(said[0][1])
    state, _ = load_state(path)
    assert state["iteration"] == iteration and state["world_size"] == 2
    assert "continue with:  ebmguide train --resume" in err
