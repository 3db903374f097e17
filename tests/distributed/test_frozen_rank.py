"""A frozen torchrun rank ends the run with a clear message within train.ddp_timeout_s.

Before this setting existed, a rank stopped with SIGSTOP left the others waiting silently for the
fixed 1,800 s process-group timeout. Here rank 1 is stopped mid-training under a 5 s timeout:
rank 0 must exit with one ``ebmguide: error: ...`` line naming the timeout, and torchrun must end
the launch, in well under a minute plus torchrun's own grace period.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent


def _load(name: str, file: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, HERE / file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


launch = _load("ddp_launch_frozen", "launch.py")
worker = _load("ddp_worker_frozen", "ddp_worker.py")


def _descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            children = (task / "children").read_text().split()
            found += [int(c) for c in children]
            queue += [int(c) for c in children]
    return found


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    ranks = [e[5:] for e in env if e.startswith(b"RANK=")]
    return int(ranks[0]) if ranks else None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")
def test_sigstopped_rank_ends_the_run_within_the_timeout(tmp_path: Path) -> None:
    run = tmp_path / "run"
    overrides = [o for o in worker.TINY if not o.startswith("train.iterations")]
    args = ["-m", "ebmguide", "train", "--config", "demo", "--out", str(run), "--no-progress",
            "--ddp-timeout", "5", "--set", "train.iterations=100000", "--set", "train.log_every=1",
            *[a for o in overrides if not o.startswith("train.log_every") for a in ("--set", o)]]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={launch.free_port()}", *args]
    proc = subprocess.Popen(cmd, cwd=launch.REPO, env=launch.torchrun_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stopped: int | None = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            metrics = run / "metrics.jsonl"
            lines = metrics.read_text().splitlines() if metrics.exists() else []
            if sum(json.loads(ln)["kind"] == "train" for ln in lines if ln) >= 2:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        ranks = {_rank_of(p): p for p in _descendants(proc.pid)}
        stopped = ranks[1]
        os.kill(stopped, signal.SIGSTOP)
        start = time.monotonic()
        _, err = proc.communicate(timeout=180)
        elapsed = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
        if stopped is not None:
            with contextlib.suppress(ProcessLookupError):  # torchrun may have killed it
                os.kill(stopped, signal.SIGKILL)
    assert proc.returncode != 0
    assert "ebmguide: error: rank 0 of 2: another rank did not answer within " \
           "train.ddp_timeout_s = 5 s" in err, err[-3000:]
    print(f"frozen rank: run ended {elapsed:.1f} s after SIGSTOP")
    assert elapsed < 120, elapsed  # 5 s timeout + torchrun's grace period, not 1,800 s
