"""No silent non-finite state: the guard checks everything a checkpoint stores, NaN never a number.

Before this pass, a finite gradient spike (x 1e25 for one iteration) put inf into Adam's
exp_avg_sq while the weights stayed finite: no stop, no rollback, and every later checkpoint
carried the inf. NaN samples became black images (to_uint8 mapped NaN to 0), so `sample` and
`compose` wrote all-zero images and `evaluate` printed a finite FD for an all-NaN checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from ebmguide.checkpoint import CheckpointManager, load_checkpoint, save_checkpoint
from ebmguide.cli import main
from ebmguide.grid import image_grid, save_panels, to_uint8
from ebmguide.run.checkpoints import load_state
from ebmguide.run.config import load_config
from ebmguide.run.divergence import DivergenceError, nonfinite_entries
from ebmguide.run.trainer import Trainer

TINY = Path(__file__).resolve().parents[1] / "tiny_run.toml"


def tiny(*extra: str) -> Any:
    return load_config(TINY, extra)


def checkpoints_are_finite(run: Path) -> list[int]:
    """Every checkpoint on disk holds only finite values; returns their iterations."""
    found = []
    for path in CheckpointManager(run / "checkpoints").checkpoints():
        state = load_checkpoint(path)
        assert nonfinite_entries(state) == [], path
        found.append(state["iteration"])
    return found


class GradientSpike:
    """Multiplies every EBM gradient by ``factor`` during iteration ``at`` (0-based)."""

    def __init__(self, trainer: Trainer, at: int, factor: float = 1e25) -> None:
        self.at, self.factor, self.armed, self.fired = at, factor, False, 0
        for p in trainer.parts.ebm.parameters():
            p.register_hook(self._grad)

    def hook(self, trainer: Trainer, iteration: int) -> None:
        self.armed = iteration == self.at and trainer.rollbacks == 0

    def _grad(self, grad: torch.Tensor) -> torch.Tensor:
        if not self.armed:
            return grad
        self.fired += 1
        return grad * self.factor


def test_the_old_guard_missed_the_spike_adam_state_goes_inf(tmp_path: Path) -> None:
    """The fault is real: with the new checks off, the spike leaves finite weights and an inf
    exp_avg_sq (what every later checkpoint carried before)."""
    trainer = Trainer(tiny("train.max_grad_norm=0"), tmp_path, progress=False)
    spike = GradientSpike(trainer, at=0)
    spike.hook(trainer, 0)
    trainer.step()
    assert spike.fired > 0
    assert all(p.isfinite().all() for p in trainer.parts.ebm.parameters())
    moments = [s["exp_avg_sq"] for s in trainer.parts.optimizers.ebm.state.values()]
    assert any(not m.isfinite().all() for m in moments)


@pytest.mark.parametrize("factor", [1e12, 1e25])  # a finite norm above the bound; an overflow
def test_gradient_spike_stops_before_it_lands_in_a_checkpoint(tmp_path: Path,
                                                               factor: float) -> None:
    trainer = Trainer(tiny(), tmp_path, progress=False)
    spike = GradientSpike(trainer, at=4, factor=factor)
    trainer.hooks = [spike.hook]
    with pytest.raises(DivergenceError) as info:
        trainer.run()
    assert spike.fired > 0
    assert info.value.term == "gradients" and info.value.iteration == 5
    assert checkpoints_are_finite(tmp_path) == [3]


def test_gradient_spike_rolls_back_and_finishes_with_finite_checkpoints(tmp_path: Path) -> None:
    trainer = Trainer(tiny("train.on_divergence=\"rollback\""), tmp_path, progress=False)
    spike = GradientSpike(trainer, at=4)
    trainer.hooks = [spike.hook]
    trainer.run()
    assert spike.fired > 0 and trainer.rollbacks == 1 and trainer.iteration == 6
    assert checkpoints_are_finite(tmp_path) == [3, 6]
    assert nonfinite_entries(trainer.state_dict()) == []


@pytest.mark.parametrize("term", ["optimizer", "ema", "buffer"])
def test_every_checkpointed_state_is_guarded(tmp_path: Path, term: str) -> None:
    """inf planted into Adam's moments, an EMA weight or a buffer slot at iteration 2 (whose end
    writes checkpoint 3) is caught by the guard, never saved."""
    trainer = Trainer(tiny("train.max_grad_norm=0"), tmp_path, progress=False)

    def plant(t: Trainer, iteration: int) -> None:
        if iteration != 2:
            return
        p = t.parts
        if term == "optimizer":
            next(iter(p.optimizers.ebm.state.values()))["exp_avg_sq"].view(-1)[0] = math.inf
        elif term == "ema":
            next(iter(p.ebm_ema.parameters())).data.view(-1)[0] = math.inf
        else:
            p.sampler.buffer.states[-1].view(-1)[0] = math.nan  # a slot this batch may not draw

    trainer.hooks = [plant]
    with pytest.raises(DivergenceError) as info:
        trainer.run()
    assert info.value.term == term and info.value.iteration == 3
    assert checkpoints_are_finite(tmp_path) == []


def test_save_checkpoint_never_writes_a_nonfinite_value(tmp_path: Path) -> None:
    trainer = Trainer(tiny(), tmp_path, progress=False)
    next(iter(trainer.parts.guide.parameters())).data.view(-1)[0] = math.nan
    with pytest.raises(DivergenceError, match="not saved"):
        trainer.save_checkpoint()
    assert not (tmp_path / "checkpoints").exists()
    trainer.close()


@pytest.fixture(scope="module")
def nan_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose checkpoint (written around the guard) holds NaN in every network."""
    run = tmp_path_factory.mktemp("nan_run")
    trainer = Trainer(tiny(), run, progress=False)
    trainer.run()
    state, path = load_state(run)
    for key in ("ebm", "guide", "ebm_ema", "guide_ema"):
        for name, value in state[key].items():
            if value.is_floating_point():
                state[key][name] = torch.full_like(value, math.nan)
    save_checkpoint(state, path)
    return run


@pytest.mark.parametrize("argv", [
    ["sample", "--n", "4", "--steps", "1"],
    ["compose", "--n", "2", "--steps", "1", "--and", "colour=red"],
    ["evaluate", "--n", "8"],
])
def test_commands_refuse_an_all_nan_checkpoint(nan_run: Path, tmp_path: Path, argv: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    command = [argv[0], "--checkpoint", str(nan_run), *argv[1:]]
    if argv[0] == "sample":
        command += ["--out", str(tmp_path / "out")]
    if argv[0] == "compose":
        command += ["--out", str(tmp_path / "c")]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.startswith("ebmguide: error: ") and err.count("\n") == 1
    assert "holds non-finite values" in err and "ebm." in err and "older checkpoint" in err
    assert not any(tmp_path.iterdir())


def test_nan_samples_never_become_pixels_or_files(tmp_path: Path) -> None:
    from ebmguide.run.checkpoint_sampling import save_samples

    x = torch.rand(6, 3, 4, 4)
    x[1, 0, 0, 0] = math.nan
    x[4] = math.inf
    with pytest.raises(ValueError, match=r"49 of 288 values \(2 of 6 samples\)"):
        to_uint8(x)
    with pytest.raises(ValueError, match="images of a grid"):
        image_grid(x)
    with pytest.raises(ValueError, match="fresh"):
        save_panels([("fresh", x)], tmp_path / "grid.png")
    with pytest.raises(ValueError, match="drawn by ebmguide sample"):
        save_samples(x, tmp_path / "out", "npz")
    points = torch.zeros(5, 2)
    points[0, 0] = math.nan
    with pytest.raises(ValueError, match="1 of 10 values"):
        save_panels([("points", points)], tmp_path / "points.png")
    assert not any(tmp_path.iterdir())
    assert to_uint8(torch.tensor([0.0, 0.5, 1.0])).tolist() == [0, 128, 255]


def test_metrics_refuse_nan_samples() -> None:
    from torch import nn

    from ebmguide.metrics import frechet_distance

    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 4))
    real = torch.rand(16, 3, 4, 4)
    fake = torch.full((8, 3, 4, 4), math.nan)
    with pytest.raises(ValueError, match="samples to score: 384 of 384 values"):
        frechet_distance(real, fake, net, features="toy")
