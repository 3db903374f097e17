"""Is the energy steering the chains? Cheap health checks on a sampler's returned record.

A Langevin chain that the energy barely moves returns its start state plus noise: the EBM then
learns from negatives that are not its own samples, and nothing fails. It happens when the step
size η does not match the energy's scale (for example ½‖u‖² energies of a network whose head starts
near zero, with a step size taken from another code base). :func:`movement_summary` reduces a
:class:`~ebmguide.protocols.LangevinResult` to three device scalars without a host sync, and
:func:`movement_warning` turns averaged values into a plain-words warning.

The two thresholds, as fractions, and why:

- ``min_travel = 0.01``: over one call of K steps the energy moves a chain by ``K · drift``; below
  1 % of the data range (0.01 for images in [0, 1]), chains are stuck where they started. Healthy
  short-run samplers move chains by a large fraction of the range in a call.
- ``min_drift_to_noise = 0.05``: when the energy's pull per step is under 1/20 of the noise, the
  chain is a random walk; the samples then look like their start states plus noise.
- ``max_step = 0.1``: a root-mean-square move of more than 10 % of the data range in one step means
  the energy has become too steep for the step size: chains overshoot and bounce between the clamp
  bounds, the EBM separates them from the data with ease, and the energy gap runs away. On the demo
  recipe healthy runs stayed below 0.015 per step; runs that diverged went from about 0.01 to 0.3
  within 100 iterations.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ebmguide._validation import check_int, check_number
from ebmguide.protocols import LangevinResult

__all__ = ["MAX_STEP", "MIN_DRIFT_TO_NOISE", "MIN_TRAVEL", "ChainMovement", "MovementProblem",
           "SamplerWarning", "movement_summary", "movement_warning"]

MIN_TRAVEL = 0.01
"""Smallest healthy ``K · drift`` per call, as a fraction of the data range."""
MIN_DRIFT_TO_NOISE = 0.05
"""Smallest healthy drift-to-noise ratio per step."""
MAX_STEP = 0.1
"""Largest healthy drift per step, as a fraction of the data range."""


class SamplerWarning(UserWarning):
    """Issued when Langevin chains barely move or are dominated by their noise."""


class ChainMovement(NamedTuple):
    """Averages of a sampler's movement diagnostics over chains (and iterations).

    Attributes:
        drift: root mean square gradient move per step and element, ``η·clip(∇E)``.
        drift_to_noise: ``drift / σ``.
        displacement: root mean square per element of ``final − start`` over one call.
    """

    drift: float
    drift_to_noise: float
    displacement: float


class MovementProblem(NamedTuple):
    """What :func:`movement_warning` found.

    Attributes:
        kind: ``"stuck"`` (the chains barely move), ``"noise"`` (noise-dominated) or
            ``"overshoot"`` (steps too large for the energy's steepness).
        message: the warning in plain words, with the figures and what to change.
    """

    kind: str
    message: str


def movement_summary(result: LangevinResult) -> Tensor:
    """Means over the finite chains of ``drift``, ``drift_to_noise`` and ``displacement``.

    Args:
        result: a sampler's returned record.

    Returns:
        ``(3,)`` tensor on the samples' device (no host sync); NaN where no chain was finite.
        Sum these over iterations and divide by the count to average a window.
    """
    stats = torch.stack([result.drift, result.drift_to_noise, result.displacement])
    keep = result.finite.to(stats.device)
    kept = torch.where(keep, stats, torch.zeros((), dtype=stats.dtype, device=stats.device))
    return kept.sum(dim=1) / keep.sum().to(stats.dtype)


def movement_warning(
    movement: ChainMovement,
    *,
    n_steps: int,
    data_range: float = 1.0,
    min_travel: float = MIN_TRAVEL,
    min_drift_to_noise: float = MIN_DRIFT_TO_NOISE,
    max_step: float = MAX_STEP,
) -> MovementProblem | None:
    """A plain-words warning when chains barely move, are noise-dominated or overshoot.

    Args:
        movement: averaged diagnostics (:class:`ChainMovement`).
        n_steps: K, the steps per call.
        data_range: ``high − low`` of the data (1 for images in [0, 1]).
        min_travel: smallest healthy ``K · drift`` as a fraction of ``data_range``.
        min_drift_to_noise: smallest healthy ``drift / σ``.
        max_step: largest healthy drift per step as a fraction of ``data_range``.

    Returns:
        A :class:`MovementProblem` whose message names the figures and what to change; ``None``
        for healthy chains.

    Example:
        >>> movement_warning(ChainMovement(3e-6, 0.002, 0.01), n_steps=40).kind
        'stuck'
        >>> movement_warning(ChainMovement(0.01, 1.0, 0.2), n_steps=40) is None
        True
    """
    check_int("n_steps", n_steps, low=1)
    check_number("data_range", data_range, low=0.0, strict=True)
    figures = (f"SGLD chains moved {movement.drift:.2g} per step ({n_steps * movement.drift:.2g} "
               f"per call of {n_steps} steps, data range {data_range:g}), drift/noise "
               f"{movement.drift_to_noise:.2g}")
    if n_steps * movement.drift < min_travel * data_range:
        factor = min_travel * data_range / max(n_steps * movement.drift, 1e-30)
        return MovementProblem("stuck", (
            f"{figures}: the chains barely move. Raise sampler.step_size (by at least "
            f"{factor:.2g}x) or check the energy scale (e.g. the energy head's init)."))
    if movement.drift > max_step * data_range:
        return MovementProblem("overshoot", (
            f"{figures}: the steps are too large for the energy's steepness, so the chains "
            f"overshoot (the energy gap then runs away). Lower sampler.step_size or the EBM's "
            f"learning rate, or set sampler.grad_clip."))
    if movement.drift_to_noise < min_drift_to_noise:
        return MovementProblem("noise", (
            f"{figures}: the chains are noise-dominated. Lower sampler.noise_scale or raise "
            f"sampler.step_size."))
    return None
