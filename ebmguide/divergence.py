"""The divergence guard of the training loop: find non-finite values, then stop or roll back.

After every iteration one host sync checks that the samples, energies and loss terms are finite
(:func:`first_nonfinite`); before a checkpoint can be written the parameters are checked too
(:func:`parameters_flag`: a NaN gradient under a finite loss poisons the weights with no term to
show it). Then :func:`handle_divergence` acts on ``train.on_divergence``: with ``"stop"`` a
:class:`DivergenceError` names the iteration, the first non-finite term and the last good
checkpoint; with ``"rollback"`` the run reloads the last good checkpoint, multiplies both learning
rates by ``train.rollback_lr_factor``, reseeds its generator, and goes on, at most
``train.max_rollbacks`` times.

:class:`~ebmguide.runner.Trainer` applies the guard; :class:`DivergenceError` is also importable
from :mod:`ebmguide.runner`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ebmguide.distributed import all_ranks, rank_seed
from ebmguide.optim import Optimizers

if TYPE_CHECKING:
    from ebmguide.runner import Trainer

__all__ = ["CHECK_ORDER", "DivergenceError", "first_nonfinite", "handle_divergence",
           "parameters_flag"]

CHECK_ORDER = ("samples", "energy_real", "energy_fake", "cd", "reg", "align", "nce", "loss",
               "parameters")
"""Order in which the divergence guard names the first non-finite term (the likely cause first)."""

_ROLLBACK_SEED_STRIDE = 1_000_003  # a rollback reseeds the run's generator with seed + k·stride


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
    finite = torch.stack([terms[k].float().isfinite().all() for k in keys])
    flags = all_ranks(finite).tolist()  # 1 sync; distributed: every rank decides alike
    return next((k for k, ok in zip(keys, flags, strict=True) if not ok), None)


def _scale_learning_rates(optimizers: Optimizers, factor: float) -> None:
    """Multiply the current and the base learning rates of both optimizers by ``factor``."""
    for opt, sched in ((optimizers.ebm, optimizers.ebm_scheduler),
                       (optimizers.guide, optimizers.guide_scheduler)):
        sched.base_lrs = [lr * factor for lr in sched.base_lrs]
        for group in opt.param_groups:
            group["lr"] *= factor


def handle_divergence(trainer: Trainer, term: str) -> None:
    """Stop or roll back a run whose next iteration produced a non-finite ``term``.

    Logs a ``"divergence"`` record. Raises when ``train.on_divergence`` is ``"stop"``, when no
    checkpoint was written yet, or after ``train.max_rollbacks`` rollbacks. Otherwise reloads the
    newest checkpoint that loads, sets both learning rates to ``rollback_lr_factor ** k`` times
    the scheduled ones after the k-th rollback, reseeds the run's generator from
    ``seed + 1_000_003 · k`` (then the rank offset), and logs a ``"rollback"`` record.

    Args:
        trainer: the run; its state, ``rollbacks`` and ``lr_scale`` are updated in place.
        term: the first non-finite term, from :func:`first_nonfinite`.

    Raises:
        DivergenceError: when the run stops (its logger is closed first).
    """
    t = trainer.cfg.train
    latest = trainer.manager.checkpoints()
    checkpoint = latest[-1] if latest else None
    failed = trainer.iteration + 1
    trainer.logger.log("divergence", failed, {"term": term, "rollbacks": trainer.rollbacks,
                                              "checkpoint": str(checkpoint)})
    if t.on_divergence == "stop" or checkpoint is None or trainer.rollbacks >= t.max_rollbacks:
        detail = (f" after {trainer.rollbacks} rollback(s) (train.max_rollbacks = "
                  f"{t.max_rollbacks})" if t.on_divergence == "rollback" else "")
        trainer.logger.close()
        raise DivergenceError(failed, term, checkpoint, detail)
    loaded = trainer.manager.load_latest()
    assert loaded is not None  # a checkpoint exists: checked above
    rollbacks = trainer.rollbacks + 1
    trainer.load_state_dict(loaded[0])
    trainer.rollbacks, scale = rollbacks, t.rollback_lr_factor ** rollbacks
    factor, trainer.lr_scale = scale / trainer.lr_scale, scale  # relative to the checkpoint's lrs
    _scale_learning_rates(trainer.parts.optimizers, factor)
    trainer.generator.manual_seed(rank_seed(trainer.cfg.seed + _ROLLBACK_SEED_STRIDE * rollbacks,
                                            trainer.dist.rank))
    trainer.logger.log("rollback", trainer.iteration, {"from": str(loaded[1]), "lr_scale": scale,
                                                       "rollbacks": rollbacks})
