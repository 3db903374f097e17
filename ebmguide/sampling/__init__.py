"""Samplers: pure SGLD, the replay buffer, the stateful SGLD sampler and chain health checks."""

from ebmguide.protocols import LangevinResult
from ebmguide.sampling.buffer import BufferDraw, ReplayBuffer, uniform_states
from ebmguide.sampling.diagnostics import (
    ChainMovement,
    MovementProblem,
    SamplerWarning,
    movement_summary,
    movement_warning,
)
from ebmguide.sampling.langevin import (
    LangevinSettings,
    LangevinStep,
    langevin_dynamics,
    validate_langevin_args,
)
from ebmguide.sampling.sampler import SGLDSampler

__all__ = [
    "BufferDraw",
    "ChainMovement",
    "LangevinResult",
    "LangevinSettings",
    "LangevinStep",
    "MovementProblem",
    "ReplayBuffer",
    "SGLDSampler",
    "SamplerWarning",
    "langevin_dynamics",
    "movement_summary",
    "movement_warning",
    "uniform_states",
    "validate_langevin_args",
]
