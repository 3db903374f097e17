"""A warning for EBM layers that make the energy depend on the batch, on chance, or lose scale.

CLEL (like every SGLD-trained EBM) treats E(x) as a fixed function of one sample: the sampler
follows its input gradient, and the contrastive divergence compares energies of real and
generated samples that are batched together (``clel_step(joint_forward=True)`` puts them in one
batch). Layers break this in three ways:

- BatchNorm (any ``_BatchNorm``, SyncBatchNorm included): in training mode a sample's energy
  depends on the other samples of its batch (real and generated ones mixed), and the energy the
  sampler follows (eval mode, running statistics) is not the one trained;
- Dropout (any ``_DropoutNd``): the energy is random, so SGLD follows a noisy gradient and the
  loss compares energies of different networks;
- GroupNorm, LayerNorm, InstanceNorm, RMSNorm: per sample, but the energy becomes blind to the
  scale (and, for most, the offset) of their input, so samples drift in contrast or brightness
  without any energy cost. The paper's EBMs use spectral norm and none of these.

:func:`check_energy_layers` warns once where an EBM is handed to the library
(:func:`~ebmguide.training.check_components`, and when a run builds its components), never per
training step.
"""

from __future__ import annotations

import warnings

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd
from torch.nn.modules.instancenorm import _InstanceNorm

__all__ = ["EnergyLayerWarning", "check_energy_layers", "energy_layer_problems"]

_PER_SAMPLE: tuple[type[nn.Module], ...] = (nn.GroupNorm, nn.LayerNorm, _InstanceNorm,
                                            *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))
_WHY = {
    "batch": "its batch statistics make a sample's energy depend on the rest of the batch",
    "random": "it makes the energy random",
    "scale": "it makes the energy blind to the scale of its input",
}


class EnergyLayerWarning(UserWarning):
    """An EBM holds normalisation or dropout layers (see :mod:`ebmguide.layer_checks`)."""


def _kind(module: nn.Module) -> str | None:
    if isinstance(module, _BatchNorm):
        return "batch"
    if isinstance(module, _DropoutNd):
        return "random"
    if isinstance(module, _PER_SAMPLE):
        return "scale"
    return None


def energy_layer_problems(ebm: object) -> list[str]:
    """``"<name> (<class>): <why>"`` for each normalisation or dropout layer of ``ebm``.

    Args:
        ebm: an energy model; anything that is not an ``nn.Module`` has none.

    Returns:
        One line per offending submodule, in module order (empty when there is none).
    """
    if not isinstance(ebm, nn.Module):
        return []
    found = []
    for name, module in ebm.named_modules():
        kind = _kind(module)
        if kind is not None:
            found.append(f"{name or '<root>'} ({type(module).__name__}): {_WHY[kind]}")
    return found


def check_energy_layers(ebm: object, *, name: str = "ebm", stacklevel: int = 3) -> list[str]:
    """Warn (:class:`EnergyLayerWarning`) when ``ebm`` holds normalisation or dropout layers.

    Args:
        ebm: the energy model handed to the library.
        name: how the message names it.
        stacklevel: passed to :func:`warnings.warn` (3: the caller of the function calling this).

    Returns:
        The problems found (see :func:`energy_layer_problems`).
    """
    problems = energy_layer_problems(ebm)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more"
                                           if len(problems) > 3 else "")
        warnings.warn(
            f"{name} holds layers that CLEL's energy should not have: {shown}. The method needs "
            f"the energy of each sample alone, deterministic and sensitive to its input's scale: "
            f"remove these layers (keep spectral norm for stability, as the paper's EBMs do); "
            f"normalisation belongs in the guide, not the EBM.", EnergyLayerWarning,
            stacklevel=stacklevel)
    return problems
