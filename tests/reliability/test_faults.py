"""Fault injection: NaN/inf mid-training must stop (or roll back) loudly and lose no good state.

Each test injects one fault into a tiny CPU run through a forward hook on a network (no change to
its state_dict, so checkpoints and rollbacks see the real modules) and checks what the divergence
guard of :class:`ebmguide.run.trainer.Trainer` promises: a
:class:`~ebmguide.run.trainer.DivergenceError`
naming the iteration, the first non-finite term and the last good checkpoint (``"stop"``), or a
rollback with a lower learning rate and a fresh seed (``"rollback"``); and, in every case, a replay
buffer and checkpoints holding only finite values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from ebmguide.checkpoint import CheckpointManager, load_checkpoint
from ebmguide.run.config import RunConfig, load_config
from ebmguide.run.divergence import DivergenceError
from ebmguide.run.trainer import Trainer
from ebmguide.sampling import LangevinSettings, SGLDSampler, langevin_dynamics

TINY = Path(__file__).resolve().parents[1] / "tiny_run.toml"
"""The runner tests' tiny run: 6 iterations, a checkpoint every 3 (iterations 3 and 6)."""


def tiny(*extra: str) -> RunConfig:
    return load_config(TINY, extra)


def nonfinite_entries(value: Any, where: str = "") -> list[str]:
    """Paths of the floating tensors of a nested state holding NaN or inf."""
    if isinstance(value, Tensor):
        bad = value.is_floating_point() and not bool(torch.isfinite(value).all())
        return [where] if bad else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in nonfinite_entries(v, f"{where}.{k}")]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in nonfinite_entries(v, f"{where}[{i}]")]
    return []


def assert_all_checkpoints_finite(run: Path) -> list[int]:
    """Every checkpoint on disk loads and holds only finite tensors; returns their iterations."""
    iterations = []
    for path in CheckpointManager(run / "checkpoints").checkpoints():
        state = load_checkpoint(path)
        assert nonfinite_entries(state) == [], path
        iterations.append(state["iteration"])
    return iterations


def assert_buffer_finite(trainer: Trainer) -> None:
    assert bool(torch.isfinite(trainer.parts.sampler.buffer.states).all())


class Fault:
    """Turns a module's output non-finite while ``active(iteration, training)`` says so.

    The trainer hook records the current iteration (0-based, as the hooks see it); the forward
    hook on the module replaces its output by ``output * value`` (NaN or inf) when active, or,
    with ``backward_only``, keeps the forward finite and poisons only the gradient.
    """

    def __init__(self, module: nn.Module, active: Callable[[int, bool], bool], *,
                 value: float = float("nan"), backward_only: bool = False) -> None:
        self.iteration, self.active, self.value = -1, active, value
        self.backward_only, self.fired = backward_only, 0
        module.register_forward_hook(self._forward)

    def hook(self, trainer: Trainer, iteration: int) -> None:
        self.iteration = iteration

    def _forward(self, module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
        if not self.active(self.iteration, module.training):
            return output
        self.fired += 1
        if self.backward_only:
            return _PoisonGrad.apply(output, self.value)  # type: ignore[no-any-return]
        return output * self.value


class _PoisonGrad(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by NaN/inf."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, value: float) -> Tensor:
        ctx.value = value
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.value, None


def make(tmp_path: Path, *overrides: str) -> Trainer:
    return Trainer(tiny(*overrides), tmp_path, progress=False)


# -- stop -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_energy_turns_nonfinite_at_iteration_k_and_training_stops(tmp_path: Path,
                                                                  value: float) -> None:
    trainer = make(tmp_path)
    fault = Fault(trainer.parts.ebm.backbone, lambda it, training: it >= 4, value=value)
    trainer.hooks = [fault.hook]
    with pytest.raises(DivergenceError) as info:
        trainer.run()
    err = info.value
    assert err.iteration == 5 and err.term == "samples"  # the chains see the energy first
    assert err.checkpoint is not None and err.checkpoint.name == "ckpt-00000003.pt"
    assert "iteration 5" in str(err) and "samples is not finite" in str(err)
    assert str(err.checkpoint) in str(err) and "rollback" in str(err)  # says what to do
    assert fault.fired > 0
    assert_buffer_finite(trainer)  # the non-finite chains were never written back
    assert assert_all_checkpoints_finite(tmp_path) == [3]
    # The last good checkpoint resumes and finishes once the fault is gone.
    resumed = Trainer(tiny(), tmp_path / "resumed", resume=err.checkpoint, progress=False)
    assert resumed.iteration == 3
    resumed.run()
    assert resumed.iteration == 6 and assert_all_checkpoints_finite(tmp_path / "resumed") == [6]


def test_nan_only_inside_the_sampler_keeps_the_buffer_finite(tmp_path: Path) -> None:
    trainer = make(tmp_path)
    # The sampler runs the EBM in eval mode: NaN there only, the loss forward stays finite.
    fault = Fault(trainer.parts.ebm.backbone, lambda it, training: it == 1 and not training)
    before = trainer.parts.sampler.buffer.states.clone()
    trainer.hooks = [fault.hook]
    with pytest.raises(DivergenceError) as info:
        trainer.run()
    assert info.value.iteration == 2 and info.value.term == "samples"
    assert info.value.checkpoint is None  # none written before iteration 3
    assert_buffer_finite(trainer)
    assert not torch.equal(before, trainer.parts.sampler.buffer.states)  # iteration 1 wrote
    assert list(tmp_path.glob("checkpoints/*.pt")) == []


def test_nan_in_the_guide_names_the_loss_term(tmp_path: Path) -> None:
    trainer = make(tmp_path)
    fault = Fault(trainer.parts.guide.encoder, lambda it, training: it == 3 and training)
    trainer.hooks = [fault.hook]
    with pytest.raises(DivergenceError) as info:
        trainer.run()
    assert info.value.iteration == 4 and info.value.term in ("align", "nce")
    assert_buffer_finite(trainer)
    assert assert_all_checkpoints_finite(tmp_path) == [3]


def test_nan_gradient_with_finite_loss_never_reaches_a_checkpoint(tmp_path: Path) -> None:
    """The forward (and so every logged term) is finite, but the parameter gradient is NaN at
    iteration index 2, the one whose end writes checkpoint 3: the parameters turn NaN after the
    optimizer step. The guard must not save them."""
    trainer = make(tmp_path)
    fault = Fault(trainer.parts.ebm.backbone, lambda it, training: it == 2 and training,
                  backward_only=True)
    trainer.hooks = [fault.hook]
    with pytest.raises(DivergenceError) as info:
        trainer.run()
    assert fault.fired > 0
    assert info.value.iteration == 3
    assert info.value.checkpoint is None
    assert assert_all_checkpoints_finite(tmp_path) == []
    assert_buffer_finite(trainer)


def test_nonfinite_real_data_is_a_data_error_not_a_divergence(tmp_path: Path) -> None:
    trainer = make(tmp_path)
    batches = trainer.batches

    class Corrupt:
        def __init__(self) -> None:
            self.n = 0

        def __iter__(self) -> Iterator[Tensor]:
            return self

        def __next__(self) -> Tensor:
            x = next(batches)
            self.n += 1
            if self.n == 2:
                x = x.clone()
                x[0, 0, 0, 0] = float("nan")
            return x

        def state_dict(self) -> dict[str, Any]:
            return batches.state_dict()

    trainer.batches = Corrupt()  # type: ignore[assignment]
    with pytest.raises(ValueError, match="x holds non-finite values"):
        trainer.run()
    assert_buffer_finite(trainer)


# -- rollback ---------------------------------------------------------------------------------

def test_transient_nan_rolls_back_and_finishes(tmp_path: Path) -> None:
    trainer = make(tmp_path, "train.on_divergence=rollback", "train.rollback_lr_factor=0.25")
    reference_lr = trainer.parts.optimizers.guide_scheduler.base_lrs[0]
    once = {"left": 1}

    def active(it: int, training: bool) -> bool:
        if it == 4 and once["left"]:
            if not training:
                once["left"] = 0  # one bad iteration only (the sampler runs first, in eval mode)
            return True
        return False

    fault = Fault(trainer.parts.ebm.backbone, active)
    trainer.hooks = [fault.hook]
    trainer.run()
    assert trainer.iteration == 6 and trainer.rollbacks == 1 and trainer.lr_scale == 0.25
    assert trainer.parts.optimizers.guide_scheduler.base_lrs[0] == pytest.approx(
        0.25 * reference_lr)
    assert_buffer_finite(trainer)
    assert all(bool(torch.isfinite(p).all()) for p in trainer.parts.ebm.parameters())
    assert assert_all_checkpoints_finite(tmp_path) == [3, 6]
    final = load_checkpoint(tmp_path / "checkpoints" / "ckpt-00000006.pt")
    assert final["divergence"] == {"rollbacks": 1, "lr_scale": 0.25}


def test_persistent_nan_gives_up_after_max_rollbacks(tmp_path: Path) -> None:
    trainer = make(tmp_path, "train.on_divergence=rollback", "train.max_rollbacks=3")
    fault = Fault(trainer.parts.ebm.backbone, lambda it, training: it >= 4)
    trainer.hooks = [fault.hook]
    with pytest.raises(DivergenceError, match=r"after 3 rollback\(s\)") as info:
        trainer.run()
    assert trainer.rollbacks == 3 and info.value.iteration == 5
    assert info.value.checkpoint is not None and info.value.checkpoint.name == "ckpt-00000003.pt"
    assert_buffer_finite(trainer)
    assert assert_all_checkpoints_finite(tmp_path) == [0, 3]  # 0: written before the first step


def test_rollback_with_nan_gradient_at_a_checkpoint_iteration(tmp_path: Path) -> None:
    trainer = make(tmp_path, "train.on_divergence=rollback")
    once = {"left": 1}

    def active(it: int, training: bool) -> bool:
        if it == 2 and training and once["left"]:
            once["left"] = 0
            return True
        return False

    fault = Fault(trainer.parts.ebm.backbone, active, backward_only=True)
    trainer.hooks = [fault.hook]
    trainer.run()
    assert trainer.iteration == 6 and trainer.rollbacks == 1
    assert assert_all_checkpoints_finite(tmp_path) == [3, 6]
    assert_buffer_finite(trainer)


# -- the sampler alone ------------------------------------------------------------------------

def test_sampler_never_writes_nonfinite_chains_and_flags_exactly_them() -> None:
    sampler = SGLDSampler((2,), buffer_size=16, n_steps=5, step_size=0.1, noise_scale=0.01,
                          clamp=None, init_range=(-1.0, 1.0), reinit_prob=0.0,
                          generator=torch.Generator().manual_seed(0))
    before = sampler.buffer.states.clone()

    def energy(x: Tensor) -> Tensor:  # NaN energy and gradient where x[0] > 0 (about half)
        scale = torch.where(x[:, 0] > 0, float("nan"), 1.0).detach()
        return 0.5 * x.square().sum(dim=1) * scale

    g = torch.Generator().manual_seed(1)
    result = sampler.sample(energy, 16, generator=g)  # the whole buffer
    out, flags = result.samples, result.finite
    assert flags is not None and flags.dtype == torch.bool and flags.shape == (16,)
    assert 0 < int(flags.sum()) < 16
    assert bool(torch.isfinite(out[flags]).all()) and not bool(torch.isfinite(out[~flags]).all())
    assert bool(torch.isfinite(sampler.buffer.states).all())
    changed = (sampler.buffer.states != before).any(dim=1)
    assert int(changed.sum()) == int(flags.sum())  # good chains written, bad slots kept


def test_langevin_checks_finiteness_without_host_syncs(monkeypatch: pytest.MonkeyPatch) -> None:
    syncs: list[str] = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "nonzero"):
        real = getattr(Tensor, name)

        def spy(self: Tensor, *args: Any, _real: Any = real, _name: str = name,
                **kwargs: Any) -> Any:
            syncs.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(Tensor, name, spy)
    x = torch.rand(8, 3, 4, 4)
    out = langevin_dynamics(lambda v: v.flatten(1).square().sum(1) * float("nan"), x,
                            LangevinSettings(n_steps=50, step_size=0.1, noise_scale=0.01,
                                             grad_clip=1.0),
                            generator=torch.Generator().manual_seed(0))
    monkeypatch.undo()
    assert syncs == []
    assert not bool(out.finite.any())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_langevin_has_no_host_sync_on_cuda() -> None:
    x = torch.rand(8, 3, 4, 4, device="cuda")
    g = torch.Generator("cuda").manual_seed(0)
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = langevin_dynamics(lambda v: v.flatten(1).square().sum(1), x,
                                LangevinSettings(n_steps=20, step_size=0.1, noise_scale=0.01,
                                                 grad_clip=1.0),
                                generator=g)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert bool(out.finite.all())



# -- a damaged newest checkpoint ------------------------------------------------------------

def test_resume_skips_a_damaged_newest_checkpoint(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Disk damage after the write (the atomic write itself never leaves a partial file):
    ``ebmguide train --resume RUN`` warns, resumes from the previous checkpoint and finishes."""
    from ebmguide.checkpoint import CheckpointWarning
    from ebmguide.cli import main

    run = tmp_path / "run"
    assert main(["train", "--config", str(TINY), "--set", "train.checkpoint_every=1",
                 "--out", str(run), "--until", "4", "--no-progress"]) == 0
    newest = run / "checkpoints" / "ckpt-00000004.pt"
    assert [p.name for p in CheckpointManager(run / "checkpoints").checkpoints()] == [
        "ckpt-00000003.pt", newest.name]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.warns(CheckpointWarning, match="ckpt-00000004.pt"):
        code = main(["train", "--resume", str(run), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    state = load_checkpoint(run / "checkpoints" / "ckpt-00000006.pt")
    assert state["iteration"] == 6 and nonfinite_entries(state) == []
