"""The divergence guard of the training loop: find non-finite values, then stop or roll back.

After every iteration one host sync checks that the samples, energies and loss terms are finite
(:func:`first_nonfinite`), and that the gradient norm of each optimizer stayed finite and at most
``train.max_grad_norm`` (:class:`GradientNormCheck`, an optimizer step pre-hook, no extra sync): a
finite gradient explosion (e.g. gradients x 1e25) leaves the weights finite under Adam but puts
``inf`` into its ``exp_avg_sq``. Before a checkpoint can be written everything it stores is
checked too: the weights of both networks and their EMAs, every optimizer state tensor and the
replay buffer (:func:`state_flags`), and the finished checkpoint dict once more on the host
(:func:`nonfinite_entries`), so no checkpoint ever holds a non-finite value.

Then :class:`~ebmguide.run.trainer.Trainer` acts on ``train.on_divergence``: with ``"stop"`` a
:class:`DivergenceError` names the iteration, the first non-finite term and the last good
checkpoint; with ``"rollback"`` the run reloads the last good checkpoint, multiplies both learning
rates by ``train.rollback_lr_factor``, reseeds its generator, and goes on, at most
``train.max_rollbacks`` times.

This module holds the checks; :class:`~ebmguide.run.trainer.Trainer` applies them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ebmguide.distributed import all_ranks
from ebmguide.optim import Optimizers

if TYPE_CHECKING:
    from ebmguide.run.components import Components

__all__ = ["CHECK_ORDER", "ROLLBACK_SEED_STRIDE", "DivergenceError", "GradientNormCheck",
           "first_nonfinite", "nonfinite_entries", "parameters_flag", "scale_learning_rates",
           "state_flags"]

CHECK_ORDER = ("samples", "energy_real", "energy_fake", "cd", "reg", "align", "nce", "loss",
               "gradients", "parameters", "ema", "optimizer", "buffer")
"""Order in which the divergence guard names the first non-finite term (the likely cause first)."""

ROLLBACK_SEED_STRIDE = 1_000_003  # a rollback reseeds the run's generator with seed + k·stride


class DivergenceError(RuntimeError):
    """Training produced a non-finite value.

    Attributes:
        iteration: the iteration (1-based) whose result was not finite.
        term: the first non-finite term of :data:`CHECK_ORDER`.
        checkpoint: the last good checkpoint, or None when none was written yet.
    """

    def __init__(self, iteration: int, term: str, checkpoint: Path | None,
                 detail: str = "") -> None:
        self.iteration, self.term, self.checkpoint = iteration, term, checkpoint
        where = (f"the last good checkpoint is {checkpoint}; resume from it with a lower learning "
                 f"rate (--set optim.ebm_lr=...) or set train.on_divergence = \"rollback\""
                 if checkpoint is not None else "no checkpoint was written yet")
        super().__init__(f"training diverged at iteration {iteration}: {term} is not finite"
                         f"{detail}; {where}.")


def parameters_flag(modules: Iterable[nn.Module]) -> Tensor:
    """0 when every parameter of ``modules`` is finite, else NaN, without a host sync.

    Args:
        modules: the networks to check.

    Returns:
        A 0-dim float tensor on the parameters' device, ready to join the step's terms (as
        ``terms["parameters"]``) for :func:`first_nonfinite`.
    """
    params = [p for m in modules for p in m.parameters()]
    finite = torch.stack([p.isfinite().all() for p in params]).all()
    return torch.where(finite, 0.0, float("nan"))


def _flag(tensors: Iterable[Tensor]) -> Tensor:
    """0 when every tensor is finite (floating ones only; no host sync), else NaN."""
    checks = [t.isfinite().all() for t in tensors if t.is_floating_point() and t.numel()]
    if not checks:
        return torch.zeros(())
    device = checks[0].device  # Adam keeps its step counters on the CPU
    return torch.where(torch.stack([c.to(device) for c in checks]).all(), 0.0, float("nan"))


def _tensors(value: object) -> list[Tensor]:
    """Every tensor inside nested dicts, lists and tuples."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def state_flags(parts: Components) -> dict[str, Tensor]:
    """Flags (0 or NaN) over everything a checkpoint stores, ready to join the step's terms.

    ``"parameters"``: both networks' parameters and buffers; ``"ema"``: both EMA networks;
    ``"optimizer"``: every tensor of both optimizers' states (Adam's moments included);
    ``"buffer"``: the replay buffer. No host sync (the flags stay on the device).
    """
    nets = [t for m in (parts.ebm, parts.guide) for t in (*m.parameters(), *m.buffers())]
    emas = [t for m in (parts.ebm_ema, parts.guide_ema) for t in (*m.parameters(), *m.buffers())]
    opts = _tensors([parts.optimizers.ebm.state_dict()["state"],
                     parts.optimizers.guide.state_dict()["state"]])
    return {"parameters": _flag(nets), "ema": _flag(emas), "optimizer": _flag(opts),
            "buffer": _flag([c for c in [parts.sampler.chains()] if c is not None])}


def nonfinite_entries(state: Mapping[str, object], prefix: str = "") -> list[str]:
    """``"<entry>: <k> of <n>"`` for every floating tensor of ``state`` holding NaN or inf.

    One host sync per tensor: for checkpoints, before writing and after loading.
    """
    found = []
    for key, value in state.items():
        name = f"{prefix}{key}"
        if isinstance(value, Tensor):
            if value.is_floating_point() or value.is_complex():
                bad = int((~value.isfinite()).sum())
                if bad:
                    found.append(f"{name}: {bad} of {value.numel()}")
        elif isinstance(value, Mapping):
            found += nonfinite_entries(value, f"{name}.")
        elif isinstance(value, (list, tuple)):
            found += nonfinite_entries({str(i): v for i, v in enumerate(value)}, f"{name}.")
    return found


class GradientNormCheck:
    """An optimizer step pre-hook that records whether the gradient norm was sane.

    Before each ``optimizer.step()`` the total 2-norm of the gradients of every parameter group
    is compared, on the device, with ``max_norm``; :meth:`flag` gives 0 when every step since the
    last call had a finite norm at most ``max_norm``, else NaN (for :func:`first_nonfinite`, as
    ``terms["gradients"]``). ``max_norm = 0`` checks finiteness only.

    Args:
        optimizers: the optimizers to watch (hooks are registered on each).
        max_norm: ``train.max_grad_norm``.
    """

    def __init__(self, optimizers: Iterable[torch.optim.Optimizer], max_norm: float) -> None:
        self.max_norm = max_norm
        self._bad: list[Tensor] = []
        self.handles = [o.register_step_pre_hook(self._hook) for o in optimizers]

    def _hook(self, optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g.detach().float()) for g in grads]))
        bad = ~norm.isfinite()
        if self.max_norm > 0:
            bad = bad | (norm > self.max_norm)
        self._bad.append(bad)

    def flag(self) -> Tensor:
        """0 or NaN (see the class docstring); resets the record."""
        bad, self._bad = self._bad, []
        if not bad:
            return torch.zeros(())
        return torch.where(torch.stack(bad).any(), float("nan"), 0.0)


def first_nonfinite(terms: Mapping[str, Tensor]) -> str | None:
    """The first term of :data:`CHECK_ORDER` that is not finite, on any rank; None if all are.

    One host sync. Under torchrun the flags are combined over ranks (a collective every rank must
    call), so every rank takes the same decision.

    Args:
        terms: the iteration's detached terms (tensors of any shape); keys outside
            :data:`CHECK_ORDER` are ignored.

    Returns:
        The name of the first non-finite term, or None.
    """
    keys = [k for k in CHECK_ORDER if k in terms]
    device = terms[keys[0]].device
    finite = torch.stack([terms[k].float().isfinite().all().to(device) for k in keys])
    flags = all_ranks(finite).tolist()  # 1 sync; distributed: every rank decides alike
    return next((k for k, ok in zip(keys, flags, strict=True) if not ok), None)


def scale_learning_rates(optimizers: Optimizers, factor: float) -> None:
    """Multiply the current and the base learning rates of both optimizers by ``factor``."""
    for opt, sched in ((optimizers.ebm, optimizers.ebm_scheduler),
                       (optimizers.guide, optimizers.guide_scheduler)):
        sched.base_lrs = [lr * factor for lr in sched.base_lrs]
        for group in opt.param_groups:
            group["lr"] *= factor
