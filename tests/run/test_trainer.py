"""The training runner: deterministic resume, run folder, divergence guard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ebmguide.run.checkpoints import find_checkpoint, load_run
from ebmguide.run.config import load_config
from ebmguide.run.divergence import DivergenceError
from ebmguide.run.trainer import Trainer

TINY = Path(__file__).resolve().parents[1] / "tiny_run.toml"


def tiny(*extra: str):  # type: ignore[no-untyped-def]
    return load_config(TINY, extra)


def flat_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    p = trainer.parts
    out = {}
    for name, module in (("ebm", p.ebm), ("guide", p.guide), ("ebm_ema", p.ebm_ema),
                         ("guide_ema", p.guide_ema)):
        out.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    out["buffer"] = p.sampler.buffer.states
    for name in ("ebm", "guide"):
        for i, s in getattr(p.optimizers, name).state_dict()["state"].items():
            out.update({f"opt.{name}.{i}.{k}": v for k, v in s.items()})
    out["generator"] = trainer.generator.get_state()
    return out


def test_resume_is_bit_identical_to_a_straight_run(tmp_path: Path) -> None:
    cfg = tiny()
    straight = Trainer(cfg, tmp_path / "a", progress=False)
    straight.run()
    first = Trainer(cfg, tmp_path / "b", progress=False)
    first.run(until=3)
    assert first.iteration == 3
    second = Trainer(cfg, tmp_path / "c", resume=tmp_path / "b", progress=False)
    assert second.iteration == 3
    second.run()
    a, c = flat_state(straight), flat_state(second)
    assert a.keys() == c.keys() and len(a) > 20
    different = [k for k in a if not torch.equal(a[k], c[k])]
    assert not different, f"resumed run differs in {different[:5]}"
    # and a different seed really gives different parameters (the comparison is not vacuous)
    other = Trainer(tiny("seed=1"), tmp_path / "d", progress=False)
    other.run()
    assert not torch.equal(flat_state(other)["ebm.head.0.weight"], a["ebm.head.0.weight"])


def test_run_folder_holds_every_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    Trainer(tiny(), run, progress=False).run()
    assert load_config(run / "config.toml") == tiny()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["iteration"] for r in train] == [2, 4, 6]
    assert {"loss", "cd", "reg", "align", "nce", "energy_gap", "its_per_s"} <= set(train[0])
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "iter-00000003.png", "iter-00000006.png"]
    ckpt = find_checkpoint(run)
    assert ckpt.name == "ckpt-00000006.pt"
    state, cfg = load_run(run)
    assert cfg == tiny() and state["iteration"] == 6
    assert {"ebm", "guide", "ebm_ema", "guide_ema", "optimizers", "sampler", "data", "rng",
            "world_size", "metrics", "config"} <= set(state)


def with_a_quick_evaluator(run: Path, *extra: str) -> Trainer:
    """A tiny 16×16 run scored by a shapes classifier trained for 5 steps (not the cached one)."""
    import ebmguide.run.evaluator as evaluation
    from ebmguide.feature_nets import train_shapes_feature_net

    cfg = tiny("data.size=16", "eval.feature_net=shapes_classifier", *extra)
    trainer = Trainer(cfg, run, progress=False)
    net, _ = train_shapes_feature_net(size=16, iterations=5, batch_size=16)
    trainer._evaluator = evaluation.Evaluator(cfg, trainer.data, run, feature_net=net,
                                              features="shapes-classifier")
    return trainer


def test_evaluation_logs_fd_and_factor_statistics(tmp_path: Path) -> None:
    trainer = with_a_quick_evaluator(tmp_path, "eval.every=3", "eval.n_samples=32")
    final = trainer.run()
    evals = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
             if '"eval"' in line]
    assert [r["iteration"] for r in evals] == [0, 3, 6]
    assert {"buffer_fd", "fd_floor", "buffer_clean", "buffer_factor_tv", "fresh_fd"} <= set(final)
    assert all(r["fd_floor"] == evals[0]["fd_floor"] for r in evals)


def poison_at(iteration: int, once: bool = True):  # type: ignore[no-untyped-def]
    done = []

    def hook(trainer: Trainer, it: int) -> None:
        if it == iteration and not (once and done):
            done.append(it)
            with torch.no_grad():
                trainer.parts.ebm.head[0].weight.fill_(float("nan"))
    return hook


def test_divergence_stops_with_iteration_term_and_checkpoint(tmp_path: Path) -> None:
    trainer = Trainer(tiny(), tmp_path, progress=False, hooks=[poison_at(4)])
    with pytest.raises(DivergenceError) as info:
        trainer.run()
    err = info.value
    assert isinstance(err, RuntimeError)
    assert err.iteration == 5 and err.term == "samples"
    assert err.checkpoint is not None and err.checkpoint.name == "ckpt-00000003.pt"
    assert "iteration 5" in str(err) and str(err.checkpoint) in str(err)
    records = (tmp_path / "metrics.jsonl").read_text()
    assert '"divergence"' in records


def test_divergence_before_any_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(DivergenceError) as info:
        Trainer(tiny(), tmp_path, progress=False, hooks=[poison_at(0)]).run()
    assert info.value.iteration == 1 and info.value.checkpoint is None


def test_rollback_recovers_with_lower_lr_and_fresh_seed(tmp_path: Path) -> None:
    cfg = tiny("train.on_divergence=rollback", "train.rollback_lr_factor=0.5")
    trainer = Trainer(cfg, tmp_path, progress=False, hooks=[poison_at(4)])
    trainer.run()
    assert trainer.iteration == 6 and trainer.rollbacks == 1 and trainer.lr_scale == 0.5
    reference = Trainer(cfg, tmp_path / "ref", progress=False)
    reference.run()
    assert trainer.parts.optimizers.ebm_scheduler.base_lrs[0] == pytest.approx(
        0.5 * reference.parts.optimizers.ebm_scheduler.base_lrs[0])
    assert all(torch.isfinite(p).all() for p in trainer.parts.ebm.parameters())
    state, _ = load_run(tmp_path)
    assert state["divergence"] == {"rollbacks": 1, "lr_scale": 0.5}
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "metrics.jsonl").open()]
    assert "divergence" in kinds and "rollback" in kinds


def test_rollback_gives_up_after_max_rollbacks(tmp_path: Path) -> None:
    cfg = tiny("train.on_divergence=rollback", "train.max_rollbacks=2")
    trainer = Trainer(cfg, tmp_path, progress=False, hooks=[poison_at(4, once=False)])
    with pytest.raises(DivergenceError, match="after 2 rollback"):
        trainer.run()
    assert trainer.rollbacks == 2


def test_progress_bar_shows_terms_and_gap(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    Trainer(tiny(), tmp_path, progress=True).run()
    err = capsys.readouterr().err
    assert "6/6" in err and ("it/s" in err or "s/it" in err)
    assert "loss=" in err and "cd=" in err and "nce=" in err and "gap=" in err


def test_logger_writes_jsonl_and_tensorboard_when_available(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from ebmguide.run.logger import RunLogger, read_metrics

    scalars: list[tuple[str, float, int]] = []

    class SummaryWriter:
        def __init__(self, log_dir: str) -> None:
            assert log_dir.endswith("tensorboard")

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            scalars.append((tag, value, step))

        def close(self) -> None:
            pass

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = SummaryWriter  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    logger = RunLogger(tmp_path)
    assert logger.tensorboard
    logger.log("train", 5, {"loss": 1.5, "bad": float("nan"), "note": "x"})
    logger.close()
    assert scalars == [("train/loss", 1.5, 5), ("train/bad", scalars[1][1], 5)]
    record = read_metrics(tmp_path / "metrics.jsonl")[0]
    assert record == {"kind": "train", "iteration": 5, "loss": 1.5, "bad": "nan", "note": "x"}
    # resuming at iteration 3 drops the records written after it
    RunLogger(tmp_path, tensorboard=False, resume_iteration=3).close()
    assert read_metrics(tmp_path / "metrics.jsonl") == []


def test_cosine_ebm_schedule_decays_to_zero(tmp_path: Path) -> None:
    trainer = Trainer(tiny("optim.ebm_schedule=cosine"), tmp_path, progress=False)
    trainer.run()
    last_lr = trainer.parts.optimizers.ebm.param_groups[0]["lr"]
    constant = Trainer(tiny(), tmp_path / "constant", progress=False)
    constant.run()
    assert last_lr < 0.01 * constant.parts.optimizers.ebm.param_groups[0]["lr"]


def test_the_final_grid_and_evaluation_share_one_draw_of_fresh_chains(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ebmguide.run.evaluator as evaluation
    import ebmguide.run.trainer as trainer_module

    draws: list[torch.Tensor] = []
    grids: list[dict[str, torch.Tensor]] = []

    def recorded_draw(*args, **kwargs):  # type: ignore[no-untyped-def]
        draws.append(evaluation.ema_fresh_chains(*args, **kwargs))
        return draws[-1]

    def recorded_grid(panels, path):  # type: ignore[no-untyped-def]
        grids.append(dict(panels))
        return path

    monkeypatch.setattr(trainer_module, "ema_fresh_chains", recorded_draw)
    monkeypatch.setattr(trainer_module, "save_panels", recorded_grid)
    trainer = with_a_quick_evaluator(tmp_path, "eval.n_samples=12", "eval.grid_size=4")
    final = trainer.run()
    # the grid at iteration 3 draws its 4 chains; after iteration 6 one draw of 12 serves both
    assert [len(d) for d in draws] == [4, 12]
    assert [len(g["fresh chains (EMA)"]) for g in grids] == [4, 4]
    assert torch.equal(grids[1]["fresh chains (EMA)"], draws[1][:4])
    assert final["fresh_fd"] == trainer.evaluator(draws[1], "fresh")["fresh_fd"]
    # the shared draw is the one a separate final evaluation would make (same seed, same n)
    separate = trainer._draw_fresh(12)
    assert torch.equal(separate, draws[1])
