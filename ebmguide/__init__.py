"""ebmguide: energy-based models guided by contrastive latent variables (CLEL, ICLR 2023).

The four protocols (:class:`EnergyModel`, :class:`ContrastiveGuide`, :class:`LangevinSampler`,
:class:`JointLoss`) and their reference implementations, which reproduce CLEL.
"""

import os as _os
import sys as _sys

if "torch" not in _sys.modules and not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(_os.environ):
    # OpenMP reads its waiting policy once, when torch loads it. The default lets idle threads spin
    # at every barrier, which on a machine shared with other work slows training several-fold
    # (docs/performance.md, "Shared machines"); PASSIVE threads sleep instead. A policy or spin
    # count the user set is kept (`make demo` sets GOMP_SPINCOUNT=10000: a short spin, faster on
    # an idle machine), and nothing changes when torch was imported first.
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

from ebmguide.augment import AUGMENTATIONS, apply_augment, make_augmentation
from ebmguide.ema import ema_decay, make_ema, update_ema
from ebmguide.energy import SphericalEBM, conditional_energy
from ebmguide.guide import SimCLRGuide, simclr_head
from ebmguide.losses import (
    CLELLoss,
    contrastive_divergence,
    energy_regularizer,
    latent_alignment,
    nt_xent,
)
from ebmguide.optim import Optimizers, clel_optimizers
from ebmguide.protocols import (
    ContrastiveGuide,
    EnergyFn,
    EnergyModel,
    EnergyOutput,
    GuideOutput,
    JointLoss,
    LangevinSampler,
    LossOutput,
)
from ebmguide.sampling import (
    LangevinResult,
    LangevinSettings,
    LangevinStep,
    ReplayBuffer,
    SGLDSampler,
    langevin_dynamics,
)
from ebmguide.training import StepOutput, check_components, clel_step

__version__ = "0.1.0"

__all__ = [
    "AUGMENTATIONS",
    "CLELLoss",
    "ContrastiveGuide",
    "EnergyFn",
    "EnergyModel",
    "EnergyOutput",
    "GuideOutput",
    "JointLoss",
    "LangevinResult",
    "LangevinSampler",
    "LangevinSettings",
    "LangevinStep",
    "LossOutput",
    "Optimizers",
    "ReplayBuffer",
    "SGLDSampler",
    "SimCLRGuide",
    "SphericalEBM",
    "StepOutput",
    "__version__",
    "apply_augment",
    "check_components",
    "clel_optimizers",
    "clel_step",
    "conditional_energy",
    "contrastive_divergence",
    "ema_decay",
    "energy_regularizer",
    "langevin_dynamics",
    "latent_alignment",
    "make_augmentation",
    "make_ema",
    "nt_xent",
    "simclr_head",
    "update_ema",
]
