"""What a training run reports every ``train.log_every`` iterations: terms, rates, sampler health.

The averaged terms go to ``metrics.jsonl`` (and TensorBoard) as a ``"train"`` record and to the
progress bar; the sampler's movement is averaged since the last record (see
:mod:`ebmguide.run.movement`), and a stall is warned about once per kind
(:class:`~ebmguide.sampling.diagnostics.SamplerWarning`).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from ebmguide.distributed import reduce_mean
from ebmguide.optim import Optimizers
from ebmguide.protocols import LangevinResult
from ebmguide.run.config_schema import RunConfig
from ebmguide.run.logger import RunLogger
from ebmguide.run.movement import MovementMonitor
from ebmguide.run.progress import progress_bar
from ebmguide.run.rank_hooks import NullLogger
from ebmguide.sampling.diagnostics import SamplerWarning

__all__ = ["GUARD_FLAGS", "TrainingLog"]

GUARD_FLAGS = ("samples", "gradients", "parameters", "ema", "optimizer", "buffer")
"""Terms of an iteration that only the divergence guard reads (0 or NaN); never logged."""


class TrainingLog:
    """The records and the progress bar of one run (rank 0 writes; other ranks average along).

    Args:
        cfg: the run's configuration (its name and ``[sampler]`` settings).
        logger: where records go (a :class:`~ebmguide.run.rank_hooks.NullLogger` off rank 0).
        is_main: this process writes (rank 0).
        device: where the running sums of the sampler's movement live.
    """

    def __init__(self, cfg: RunConfig, logger: RunLogger | NullLogger, *, is_main: bool,
                 device: torch.device) -> None:
        self.cfg, self.logger, self.is_main = cfg, logger, is_main
        self.movement = MovementMonitor(cfg.sampler, device)

    def add_sampling(self, result: LangevinResult) -> None:
        """Record one sampler call's movement (no host sync)."""
        self.movement.add(result)

    def progress_bar(self, mode: str, *, end: int, initial: int) -> Any:
        """The run's bar or line progress (none off rank 0); see :mod:`ebmguide.run.progress`."""
        return progress_bar(mode if self.is_main else "none", total=end, initial=initial,
                            desc=self.cfg.name)

    def log_terms(self, terms: dict[str, Tensor], *, iteration: int, rate: float,
                  optimizers: Optimizers, bar: Any) -> dict[str, float]:
        """Average ``terms`` over ranks (a collective), log them and show them on ``bar``.

        Returns:
            The logged values: the loss terms, ``energy_gap``, both learning rates,
            ``its_per_s`` and the sampler's movement.
        """
        averaged = reduce_mean(terms)  # distributed: global-batch means (collective)
        values = {k: float(averaged[k]) for k in terms if k not in GUARD_FLAGS}
        values["energy_gap"] = values["energy_fake"] - values["energy_real"]
        values["lr_ebm"] = optimizers.ebm.param_groups[0]["lr"]
        values["lr_guide"] = optimizers.guide.param_groups[0]["lr"]
        values["its_per_s"] = rate
        movement, problem = self.movement.averages()
        values.update(movement)
        if problem is not None and self.is_main:
            warnings.warn(f"iteration {iteration}: {problem}", SamplerWarning, stacklevel=4)
            self.logger.log("warning", iteration, {"message": problem})
        self.logger.log("train", iteration, values)
        # Energies of spectrally normalised networks can be tiny (1e-6 early on): significant
        # digits, not a fixed number of decimals, or the bar would show zeros.
        bar.set_postfix({"loss": f"{values['loss']:.3f}", "cd": f"{values['cd']:.2e}",
                         "nce": f"{values['nce']:.2f}", "gap": f"{values['energy_gap']:.2e}"},
                        refresh=False)
        return values
