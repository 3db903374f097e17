"""Run folders: no write through a symlink or outside the folder, one writer, no lost file.

Each test here failed before the hardening pass: a symlinked config.toml, metrics.jsonl,
checkpoints/ or samples/ had its target overwritten, pruned or deleted; a config name "../../x"
placed the run outside runs/; `demo --out` deleted another run; two writers shared a folder; a
kill during the first save left a folder that neither resumed nor restarted; a kill during the
metrics truncation on resume emptied the file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ebmguide.cli import main
from ebmguide.run.config import load_config
from ebmguide.run.folder import (
    RunFolderError,
    RunLock,
    RunLockedError,
    clean_stale_temps,
    default_run_dir,
)
from ebmguide.run.logger import RunLogger, read_metrics
from ebmguide.run.trainer import Trainer

TINY = Path(__file__).parents[1] / "tiny_run.toml"
TINY_ARGS = ["--config", str(TINY), "--no-progress"]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """Files outside the run that a link points at; the tests check that they never change."""
    folder = tmp_path / "victim"
    (folder / "sub").mkdir(parents=True)
    (folder / "precious.txt").write_text("keep me")
    (folder / "sub" / "ckpt-00000001.pt").write_text("another run's checkpoint")
    (folder / "sub" / "iter-00000003.png").write_text("another run's grid")
    return folder


@pytest.mark.parametrize("entry,target", [("config.toml", "precious.txt"),
                                          ("metrics.jsonl", "precious.txt"),
                                          ("checkpoints", "sub"), ("samples", "sub")])
def test_train_refuses_a_symlinked_entry(tmp_path: Path, victim: Path, entry: str, target: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / entry).symlink_to(victim / target)
    before = _tree(victim)
    assert main(["train", *TINY_ARGS, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "is a symbolic link" in err and entry in err and "Traceback" not in err
    assert _tree(victim) == before


def test_resume_refuses_a_symlink_planted_after_the_first_run(
        tmp_path: Path, victim: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", *TINY_ARGS, "--out", str(run), "--until", "3"]) == 0
    (run / "config.toml").unlink()
    (run / "config.toml").symlink_to(victim / "precious.txt")
    before = _tree(victim)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    assert "is a symbolic link" in capsys.readouterr().err
    assert _tree(victim) == before


@pytest.mark.parametrize("name", ["../../x", "../escaped", "/tmp/abs_run", "..", ""])
def test_config_name_cannot_place_a_run_outside_runs(tmp_path: Path, name: str,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    config = tmp_path / "cfg.toml"
    config.write_text(TINY.read_text().replace('name = "tiny"', f"name = {json.dumps(name)}"))
    assert main(["train", "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "config name" in err and "--out" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.toml", "work"]
    assert not any(work.iterdir())


def test_default_run_dir_keeps_plain_names() -> None:
    assert default_run_dir("tiny") == Path("runs/tiny")
    assert default_run_dir("a/b") == Path("runs/a/b")
    with pytest.raises(RunFolderError, match="outside runs/"):
        default_run_dir("a/../../b")


def test_demo_refuses_another_run_and_keeps_foreign_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", *TINY_ARGS, "--out", str(run)]) == 0
    before = _tree(run)
    demo = ["demo", "--out", str(run), "--iterations", "2", "--threads", "1", "--no-progress",
            "--set", "train.tensorboard=false", "--set", "eval.feature_net=\"none\"",
            "--set", "data.n_train=64", "--set", "sampler.n_steps=1",
            *[a for o in ("sampler.buffer_size=64", "train.batch_size=8", "eval.n_samples=8",
                          "eval.grid_size=4", "eval.fresh_steps=1", "model.hidden_dim=16",
                          "guide.hidden_dim=16", "model.width=4", "guide.width=4")
              for a in ("--set", o)]]
    assert main(demo) == 2
    err = capsys.readouterr().err
    assert "ebmguide demo did not write" in err and "--overwrite" in err
    assert _tree(run) == before  # nothing deleted
    (run / "notes.txt").write_text("mine")
    (run / "samples" / "my_figure.png").write_text("mine too")
    assert main([*demo, "--overwrite"]) == 0
    assert (run / "notes.txt").read_text() == "mine"
    assert (run / "samples" / "my_figure.png").read_text() == "mine too"
    assert load_config(run / "config.toml").name == "demo"
    # a folder the demo created is replaced without --overwrite
    assert main(demo) == 0


def test_demo_never_deletes_through_a_symlinked_samples_folder(
        tmp_path: Path, victim: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "demo"
    run.mkdir()
    (run / ".ebmguide-demo").touch()  # looks like an earlier demo run
    (run / "samples").symlink_to(victim / "sub")
    before = _tree(victim)
    assert main(["demo", "--out", str(run), "--iterations", "1", "--no-progress"]) == 2
    assert "is a symbolic link" in capsys.readouterr().err
    assert _tree(victim) == before


def test_second_writer_gets_the_holders_pid(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = Trainer(load_config(TINY), run, progress=False)
    with pytest.raises(RunLockedError, match=rf"pid {os.getpid()}"):
        Trainer(load_config(TINY), run, progress=False)
    first.run()  # the lock is released when the run ends
    second = Trainer(load_config(TINY), run, resume=run, progress=False)
    second.close()


def test_lock_from_another_process_and_its_release_on_death(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    code = ("import sys, time; from ebmguide.run.folder import RunLock; "
            "lock = RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert main(["train", *TINY_ARGS, "--out", str(run)]) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "in use by another ebmguide process" in err
        assert not (run / "config.toml").exists() and not (run / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(run):  # the kernel dropped the dead holder's lock
        pass
    assert main(["train", *TINY_ARGS, "--out", str(run)]) == 0


def test_a_lock_still_held_at_interpreter_exit_is_released_without_an_error(
        tmp_path: Path) -> None:
    """A Trainer (or RunLock) never closed is released by the garbage collector at exit."""
    code = ("import sys; from ebmguide.run.folder import RunLock; "
            "lock = RunLock(sys.argv[1]).acquire()")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    with RunLock(tmp_path):
        pass


def test_stale_temp_of_a_killed_first_save_is_ignored_and_cleaned(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    ckpts = run / "checkpoints"
    ckpts.mkdir(parents=True)
    stale = ckpts / ".ckpt-00000003.pt.k1ll3d.tmp"  # what a SIGKILL inside the first save leaves
    stale.write_bytes(b"PK\x03\x04 half a checkpoint")
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint at" in err and ".tmp file" in err
    assert main(["train", *TINY_ARGS, "--out", str(run)]) == 0  # a fresh start is accepted
    assert not stale.exists()
    assert sorted(p.name for p in ckpts.iterdir()) == ["ckpt-00000003.pt", "ckpt-00000006.pt"]


KILL_SAVE = """
import os, sys, signal
from pathlib import Path
import ebmguide.checkpoint as ck
from ebmguide.cli import main
real = ck.os.replace
def replace(src, dst):  # the first save dies after its temp file is complete, before the rename
    if str(dst).endswith(".pt"):
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
ck.os.replace = replace
main(["train", "--config", sys.argv[1], "--out", sys.argv[2], "--no-progress"])
"""


def test_sigkill_during_the_first_checkpoint_write_then_resume_and_restart(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", KILL_SAVE, str(TINY), str(run)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert list((run / "checkpoints").glob(".ckpt-*.tmp"))  # the kill left its temp file
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    assert main(["train", *TINY_ARGS, "--out", str(run)]) == 0
    assert not list((run / "checkpoints").glob(".*.tmp"))
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0


TRUNCATE = """
import resource, signal, sys
from ebmguide.run.logger import RunLogger
if len(sys.argv) > 3:  # the kernel kills the process (SIGXFSZ) once it writes past this size
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it by default
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
print("start", flush=True)
RunLogger(sys.argv[1], tensorboard=False, resume_iteration=int(sys.argv[2])).close()
print("done", flush=True)
"""


def _truncate(run: Path, kill_after: float | None) -> tuple[bool, float]:
    """Run the resume-time truncation in a child; SIGKILL it ``kill_after`` s after it starts.

    Returns whether it finished and how long it ran.
    """
    proc = subprocess.Popen([sys.executable, "-c", TRUNCATE, str(run), "50000"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "start"
    start = time.perf_counter()
    if kill_after is None:  # time the rewrite itself, not the interpreter's exit
        done = proc.stdout.readline().strip() == "done"
        took = time.perf_counter() - start
        proc.wait()
        return done, took
    time.sleep(kill_after)
    proc.kill()
    return "done" in proc.communicate()[0], kill_after


def test_sigkill_during_the_metrics_truncation_never_empties_the_file(tmp_path: Path) -> None:
    """Kills spread over the whole rewrite (reading, writing, renaming): each leaves the complete
    old file or the complete new one (the in-place rewrite of before left a truncated file)."""
    run = tmp_path / "run"
    run.mkdir()
    lines = [json.dumps({"kind": "train", "iteration": i, "loss": i / 3}) for i in range(100_000)]
    text = "\n".join(lines) + "\n"
    (run / "metrics.jsonl").write_text(text)
    finished, duration = _truncate(run, None)
    assert finished and len(read_metrics(run / "metrics.jsonl")) == 50_001
    killed = 0
    for fraction in (0.5, 0.9):
        (run / "metrics.jsonl").write_text(text)
        finished, _ = _truncate(run, fraction * duration)
        killed += not finished
        records = read_metrics(run / "metrics.jsonl")
        assert len(records) in (100_000, 50_001), (fraction, len(records))
        assert not [p for p in run.iterdir() if p.name != "metrics.jsonl" and
                    not p.name.startswith(".metrics.jsonl.")], list(run.iterdir())
    assert killed >= 1  # a kill landed inside the rewrite
    # Kills at exact points of the writing itself: the process dies when it has written 0.1, 0.5,
    # 1 and 2 MB of the 2.6 MB it keeps (an in-place rewrite would leave that much of the file).
    for limit in (100_000, 500_000, 1_000_000, 2_000_000):
        (run / "metrics.jsonl").write_text(text)
        proc = subprocess.run([sys.executable, "-c", TRUNCATE, str(run), "50000", str(limit)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == -signal.SIGXFSZ, proc.stderr[-2000:]
        killed += 1
        assert len(read_metrics(run / "metrics.jsonl")) == 100_000, limit
    assert len(clean_stale_temps(run)) >= 5  # what a Trainer does first, under the run's lock
    assert [p.name for p in run.iterdir()] == ["metrics.jsonl"]
    RunLogger(run, tensorboard=False, resume_iteration=10).close()
    assert [r["iteration"] for r in read_metrics(run / "metrics.jsonl")] == list(range(11))


def test_metrics_logger_refuses_a_symlink(tmp_path: Path, victim: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").symlink_to(victim / "precious.txt")
    with pytest.raises(RunFolderError, match="symbolic link"):
        RunLogger(tmp_path / "run", tensorboard=False)
    assert (victim / "precious.txt").read_text() == "keep me"
