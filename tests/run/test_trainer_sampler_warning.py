"""The Trainer logs the chains' movement and warns in plain words when they are stuck."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from ebmguide.run.config import load_config
from ebmguide.run.trainer import Trainer
from ebmguide.sampling import SamplerWarning
from ebmguide.sampling.diagnostics import MIN_DRIFT_TO_NOISE, MIN_TRAVEL

TINY = Path(__file__).resolve().parents[1] / "tiny_run.toml"
# The shipped demo recipe's training for its first 30 iterations. The evaluation is cut down (no
# feature net, a few short fresh chains at the end): it samples with the EMA model, not with the
# training sampler whose diagnostics these tests read.
DEMO_30 = ("train.iterations=30", "eval.every=0", 'eval.feature_net="none"', "eval.n_samples=16",
           "eval.fresh_steps=2", "eval.grid_size=4", "train.sample_every=1000",
           "train.checkpoint_every=1000", "train.tensorboard=false")


def records(run: Path, kind: str) -> list[dict[str, object]]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_stuck_chains_warn_once_and_the_warning_is_logged(tmp_path: Path) -> None:
    cfg = load_config(TINY, ["sampler.step_size=1e-4", "train.iterations=8"])
    with pytest.warns(SamplerWarning, match=r"barely move\. Raise sampler\.step_size") as caught:
        Trainer(cfg, tmp_path / "run", progress=False).run()
    assert len([w for w in caught if issubclass(w.category, SamplerWarning)]) == 1, "once per run"
    logged = records(tmp_path / "run", "warning")
    assert len(logged) == 1 and "chains barely move" in str(logged[0]["message"])
    train = records(tmp_path / "run", "train")
    assert all({"sgld_drift", "sgld_drift_to_noise", "sgld_displacement"} <= set(r)
               for r in train)


def test_noise_dominated_chains_warn(tmp_path: Path) -> None:
    # torch's head init and η = 100 move the tiny network's chains by ~0.03 per call (not stuck),
    # but a noise of σ = 1 per step is ~60 times their pull
    cfg = load_config(TINY, ['model.head_init_std="none"', "sampler.step_size=100.0",
                             "sampler.noise_scale=1.0"])
    with pytest.warns(SamplerWarning, match="noise-dominated") as caught:
        Trainer(cfg, tmp_path / "run", progress=False).run()
    assert not any("barely move" in str(w.message) for w in caught)


def test_overshooting_chains_warn(tmp_path: Path) -> None:
    # η = 1e5 with torch's head init: ~16 per step on data in [0, 1]
    cfg = load_config(TINY, ['model.head_init_std="none"', "sampler.step_size=1e5"])
    with pytest.warns(SamplerWarning, match="overshoot") as caught:
        Trainer(cfg, tmp_path / "run", progress=False).run()
    assert "Lower sampler.step_size" in str(caught[0].message)


def test_healthy_tiny_chains_do_not_warn(tmp_path: Path) -> None:
    cfg = load_config(TINY, ['model.head_init_std="none"', "sampler.step_size=100.0"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamplerWarning)
        Trainer(cfg, tmp_path / "run", progress=False).run()


@pytest.mark.parametrize("step_size", [0.1, 1.0])
def test_demo_network_with_a_small_step_size_warns_within_30_iterations(
        tmp_path: Path, step_size: float) -> None:
    cfg = load_config("demo", [*DEMO_30, f"sampler.step_size={step_size}"])
    with pytest.warns(SamplerWarning, match="barely move"):
        Trainer(cfg, tmp_path / "run", progress=False).run()
    first = records(tmp_path / "run", "warning")[0]
    assert int(str(first["iteration"])) <= 30


def test_the_shipped_demo_recipe_never_warns(tmp_path: Path) -> None:
    cfg = load_config("demo", list(DEMO_30))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamplerWarning)
        Trainer(cfg, tmp_path / "run", progress=False).run()
    train = records(tmp_path / "run", "train")
    assert len(train) == 3 and not records(tmp_path / "run", "warning")
    n_steps = cfg.sampler.n_steps
    for r in train:  # with a margin over the thresholds, not just above them
        assert n_steps * float(str(r["sgld_drift"])) > 3 * MIN_TRAVEL
        assert float(str(r["sgld_drift_to_noise"])) > 3 * MIN_DRIFT_TO_NOISE
