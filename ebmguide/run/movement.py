"""The sampler's movement during a run: averaged per log interval, with a warning when chains stall.

Logged as ``sgld_drift`` (root mean square gradient move per step and pixel),
``sgld_drift_to_noise`` and ``sgld_displacement`` (per call); see
:mod:`ebmguide.sampling.diagnostics` for the thresholds.
"""

from __future__ import annotations

import torch

from ebmguide.distributed import reduce_mean
from ebmguide.protocols import LangevinResult
from ebmguide.run.config_schema import SamplerConfig
from ebmguide.sampling.diagnostics import ChainMovement, movement_summary, movement_warning

__all__ = ["MovementMonitor"]


class MovementMonitor:
    """Sums the movement diagnostics of every sampler call on the device (no host sync).

    Args:
        sampler: the run's ``[sampler]`` settings (steps and data range for the thresholds).
        device: where the running sums live.
    """

    def __init__(self, sampler: SamplerConfig, device: torch.device) -> None:
        self.settings = sampler
        self._sum = torch.zeros(3, device=device)
        self._count = 0
        self._warned: set[str] = set()

    def add(self, result: LangevinResult) -> None:
        """Add one sampler call's diagnostics."""
        self._sum += movement_summary(result).to(self._sum)
        self._count += 1

    def averages(self) -> tuple[dict[str, float], str | None]:
        """The averages since the last call (over every rank; a collective) and a new warning.

        Returns:
            The logged values (empty when nothing was added), and the message of a stall warning
            of a kind not given before in this run (None otherwise); the counters restart.
        """
        if self._count == 0:
            return {}, None
        window = self._sum / self._count
        averaged = reduce_mean(dict(zip(ChainMovement._fields, window, strict=True)))
        movement = ChainMovement(*(float(averaged[k]) for k in ChainMovement._fields))
        self._sum.zero_()
        self._count = 0
        s = self.settings
        low, high = s.clamp if s.clamp is not None else s.init_range
        problem = movement_warning(movement, n_steps=max(s.n_steps, 1), data_range=high - low)
        message = None
        if problem is not None and problem.kind not in self._warned:
            self._warned.add(problem.kind)
            message = problem.message
        return {"sgld_drift": movement.drift, "sgld_drift_to_noise": movement.drift_to_noise,
                "sgld_displacement": movement.displacement}, message
