"""Samplers: pure SGLD, the replay buffer and the stateful SGLD sampler."""

from ebmguide.sampling.buffer import BufferDraw, ReplayBuffer
from ebmguide.sampling.langevin import (
    LangevinResult,
    LangevinStep,
    langevin_dynamics,
    validate_langevin_args,
)
from ebmguide.sampling.sampler import SGLDSampler

__all__ = [
    "BufferDraw",
    "LangevinResult",
    "LangevinStep",
    "ReplayBuffer",
    "SGLDSampler",
    "langevin_dynamics",
    "validate_langevin_args",
]
