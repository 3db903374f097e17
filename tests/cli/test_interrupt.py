"""Ctrl-C and SIGTERM during `ebmguide train`/`demo`: a checkpoint of the last iteration.

The subprocess tests send real signals to a real `ebmguide` process once it has written its first
checkpoint (so it is inside the training loop), then check the exit code, the message, the file,
and that `--resume` continues from it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ebmguide.cli import main
from ebmguide.run.checkpoints import load_state
from ebmguide.run.config import load_config
from ebmguide.run.interrupt import RunInterrupted, StopRequest, stop_on_signals
from ebmguide.run.trainer import Trainer

TINY = Path(__file__).resolve().parents[1] / "tiny_run.toml"
REPO = Path(__file__).resolve().parents[2]
FOREVER = ["--set", "train.iterations=100000", "--set", "train.checkpoint_every=2"]
SMALL_DEMO = ["data.size=8", "data.n_train=64", "model.width=4", "model.hidden_dim=16",
              "model.latent_dim=8", "guide.width=4", "guide.hidden_dim=16",
              "sampler.buffer_size=64", "sampler.n_steps=2", "train.batch_size=8",
              "train.log_every=2", "train.sample_every=1000", "train.checkpoint_every=2",
              "eval.every=0", "eval.feature_net=none", "eval.fresh_steps=2", "eval.grid_size=4",
              "train.tensorboard=false"]


def start(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "ebmguide", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def interrupt_when_training(proc: subprocess.Popen[str], run: Path, signum: int) -> tuple[str, str]:
    """Send ``signum`` once the first checkpoint exists; returns (stdout, stderr) at exit."""
    deadline = time.monotonic() + 120
    while not list((run / "checkpoints").glob("ckpt-*.pt")):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"the run never wrote a checkpoint (rc {proc.returncode}): {err[-2000:]}")
        time.sleep(0.05)
    proc.send_signal(signum)
    try:
        return proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def stopped_iteration(err: str, run: Path, name: str) -> int:
    match = re.search(rf"ebmguide: interrupted by {name} after iteration (\d+) of 100000; "
                      rf"checkpoint written to (\S+)", err)
    assert match is not None, err[-2000:]
    iteration, path = int(match.group(1)), Path(match.group(2))
    assert path == run / "checkpoints" / f"ckpt-{iteration:08d}.pt"
    state, _ = load_state(path)  # complete and verified
    assert state["iteration"] == iteration >= 2
    assert f"continue with:  ebmguide train --resume {run}" in err
    assert "Traceback" not in err
    return iteration


def test_sigint_during_train_writes_a_checkpoint_and_resume_continues(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = start(["train", "--config", str(TINY), "--out", str(run), "--no-progress", *FOREVER])
    _, err = interrupt_when_training(proc, run, signal.SIGINT)
    assert proc.returncode == 130, err[-2000:]
    assert "SIGINT received: stopping after this iteration" in err
    n = stopped_iteration(err, run, "SIGINT")
    proc = start(["train", "--resume", str(run), "--until", str(n + 1), "--no-progress"])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    checkpoint = run / "checkpoints" / f"ckpt-{n:08d}.pt"
    assert f"resuming from {checkpoint} (iteration {n} of 100000)" in out
    assert load_state(run)[0]["iteration"] == n + 1


def test_sigterm_during_demo_writes_a_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "demo"
    overrides = [a for item in SMALL_DEMO for a in ("--set", item)]
    proc = start(["demo", "--out", str(run), "--iterations", "100000", "--threads", "1",
                  "--no-progress", *overrides])
    _, err = interrupt_when_training(proc, run, signal.SIGTERM)
    assert proc.returncode == 143, err[-2000:]
    stopped_iteration(err, run, "SIGTERM")


def test_resuming_a_finished_run_says_so_and_trains_nothing(
        tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted((p.name, p.stat().st_mtime_ns) for p in tiny_run.rglob("*") if p.is_file())
    assert main(["train", "--resume", str(tiny_run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"ckpt-00000006\.pt is a finished run \(iteration 6 of 6\): nothing to "
                     r"train\.", out), out
    assert "resuming from" not in out
    after = sorted((p.name, p.stat().st_mtime_ns) for p in tiny_run.rglob("*") if p.is_file())
    assert after == before  # nothing written, not even config.toml or the lock


def test_stop_request_from_a_hook_then_resume_matches_a_straight_run(tmp_path: Path) -> None:
    cfg = load_config(str(TINY))

    def stop_at_4(trainer: Trainer, iteration: int) -> None:
        if iteration == 3:
            trainer.stop.request()  # during iteration 4 (1-based): stops once it is done

    first = Trainer(cfg, tmp_path / "a", progress=False, hooks=[stop_at_4])
    with pytest.raises(RunInterrupted) as caught:
        first.run()
    first.close()
    assert (caught.value.iteration, caught.value.total) == (4, 6)
    assert caught.value.checkpoint == tmp_path / "a" / "checkpoints" / "ckpt-00000004.pt"
    assert caught.value.exit_code == 128 + signal.SIGINT
    resumed = Trainer(cfg, tmp_path / "a", progress=False, resume=caught.value.checkpoint)
    resumed.run()
    resumed.close()
    straight = Trainer(cfg, tmp_path / "b", progress=False)
    straight.run()
    straight.close()
    for a, b in zip(resumed.parts.ebm.parameters(), straight.parts.ebm.parameters(), strict=True):
        assert torch.equal(a, b)


def test_signal_handlers_record_a_first_sigint_and_quit_on_a_second() -> None:
    stop = StopRequest()
    previous = signal.getsignal(signal.SIGINT)
    with stop_on_signals(stop, announce=False) as installed:
        assert installed
        signal.raise_signal(signal.SIGTERM)
        assert stop.signum == signal.SIGTERM  # recorded, the process goes on
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # already stopping: a second one quits at once
    assert signal.getsignal(signal.SIGINT) is previous  # the old handlers are back
