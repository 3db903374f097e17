"""Data-parallel training end to end: the Trainer under DDP and `ebmguide train` under torchrun.

- 2 forked gloo ranks run the Trainer: 6 iterations straight and 3 + resume + 3 end bit-identical
  on each rank, with identical networks and EMA copies on both ranks and a replay buffer per rank;
- real `torchrun` launches of `python -m ebmguide train`: train and checkpoint (default suite),
  refuse a resume with another world size, and resume four times with the same world size (all in
  the default suite, so CI runs them); no launch may abort at exit (gloo runs have been seen to die
  with "terminate called without an active exception" at teardown).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

HERE = Path(__file__).parent


def _load(name: str, file: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, HERE / file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


worker = _load("ddp_worker", "ddp_worker.py")
launch = _load("ddp_launch", "launch.py")
WORLD = 2


def _train_args(*extra: str) -> list[str]:
    return ["train", *extra, *[a for o in worker.TINY for a in ("--set", o)], "--no-progress"]


def _train_cli(*extra: str) -> subprocess.CompletedProcess[str]:
    """`python -m ebmguide train` on the tiny demo under torchrun with 2 ranks."""
    return launch.torchrun(["-m", "ebmguide", *_train_args(*extra)], nproc=WORLD)


def _assert_clean_exit(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "terminate called" not in proc.stderr, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def trainer_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("trainer")
    launch.run_forked(worker.main, ["trainer", str(out)], world=WORLD)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    return [{**res, "out": out} for res in ranks]


def test_resume_under_ddp_is_bit_identical(trainer_ranks: list[dict[str, Any]]) -> None:
    for res in trainer_ranks:
        for key, value in res["straight"].items():
            assert torch.equal(value, res["resumed"][key]), key


def test_ranks_hold_identical_networks_and_own_buffers(
        trainer_ranks: list[dict[str, Any]]) -> None:
    gathered = trainer_ranks[0]["resumed_all"]
    for key in ("ebm", "guide", "ebm_ema", "guide_ema", "ebm_buffers"):
        assert torch.equal(gathered[key][0], gathered[key][1]), key
    assert not torch.equal(gathered["replay"][0], gathered["replay"][1])


def test_buffer_is_split_over_ranks(trainer_ranks: list[dict[str, Any]]) -> None:
    # sampler.buffer_size = 64 chains in all: 32 per rank (see rank_config)
    assert trainer_ranks[0]["resumed"]["replay"].shape[0] == 64 // WORLD


def test_divergence_on_one_rank_rolls_every_rank_back(
        trainer_ranks: list[dict[str, Any]]) -> None:
    ranks = [res["rollback"] for res in trainer_ranks]
    assert [(r["rollbacks"], r["iteration"]) for r in ranks] == [(1, 5)] * WORLD
    gathered = ranks[0]["all"]
    for key in ("ebm", "guide", "ebm_ema", "guide_ema"):
        assert torch.equal(gathered[key][0], gathered[key][1]), key
        assert gathered[key].isfinite().all(), key
    records = [json.loads(line) for line in (trainer_ranks[0]["out"] / "rollback" /
                                             "metrics.jsonl").open()]
    assert [r["kind"] for r in records].count("rollback") == 1


def test_torchrun_train_and_world_size_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    first = _train_cli("--config", "demo", "--out", str(run), "--until", "3")
    _assert_clean_exit(first)
    state = torch.load(run / "checkpoints" / "ckpt-00000003.pt", weights_only=True)
    assert state["world_size"] == WORLD and state["iteration"] == 3
    assert [d["rank"] for d in state["data"]] == list(range(WORLD))
    buffers = [s["buffer"]["states"] for s in state["sampler"]]
    assert len(buffers) == WORLD and not torch.equal(buffers[0], buffers[1])
    assert first.stdout.count("run folder:") == 1  # printed by rank 0 only

    # One process (this one, no launcher) cannot take over the two ranks' buffers and streams.
    from ebmguide.cli import main

    capsys.readouterr()
    assert main(_train_args("--resume", str(run))) == 2
    err = capsys.readouterr().err
    assert "written by a run of 2 process(es) but this run has 1" in err, err
    assert "--nnodes × --nproc_per_node = 2" in err


def test_torchrun_train_then_resume_repeatedly_never_aborts(tmp_path: Path) -> None:
    """Five launches (train, then four resumes of one more iteration each) all exit cleanly."""
    run = tmp_path / "run"
    _assert_clean_exit(_train_cli("--config", "demo", "--out", str(run),
                                  "--set", "train.iterations=2"))
    for iterations in range(3, 7):
        _assert_clean_exit(_train_cli("--resume", str(run),
                                      "--set", f"train.iterations={iterations}"))
    state = torch.load(run / "checkpoints" / "ckpt-00000006.pt", weights_only=True)
    assert state["iteration"] == 6 and state["world_size"] == WORLD
