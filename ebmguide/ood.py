"""Out-of-distribution detection with the joint energy of CLEL.

The score of an input x is the joint log-density up to a constant, with the guide's own latent
plugged in:

    s(x) = −(E(x) − β · cos(h(x), g(x))) = −E(x) + β · h(x)ᵀg(x),

where h(x) is the guide's unit embedding of the un-augmented x and g(x) the EBM's unit latent
direction. Higher means more in-distribution. Use the EMA networks; the paper's test-time
β is 0.1. :func:`ood_scores` keeps E(x) and cos(h(x), g(x)) apart, so any β (and the energy-only
score −E(x), i.e. β = 0) costs nothing more. AUROC takes the in-distribution set as the positive
class (torchmetrics' ``binary_auroc``, imported only when called).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ebmguide.metrics import auroc
from ebmguide.protocols import ContrastiveGuide, EnergyModel
from ebmguide.torch_utils import chunks, eval_mode, module_device

__all__ = ["DEFAULT_OOD_BETA", "OODResult", "OODScores", "auroc_row", "ood_auroc", "ood_scores"]

DEFAULT_OOD_BETA = 0.1
"""Test-time β of the OOD score; the training value 0.01 barely moves the score."""

Data = Tensor | Iterable[Any]
"""A big ``(N, *shape)`` tensor (scored in chunks) or an iterable of batches: tensors, or
tuples/lists whose first element is the image tensor (what a ``DataLoader`` yields)."""


class OODScores(NamedTuple):
    """Per-input parts of the OOD score.

    Attributes:
        energy: ``(N,)`` E(x).
        cosine: ``(N,)`` cos(h(x), g(x)) between the guide's embedding and the EBM's direction.
    """

    energy: Tensor
    cosine: Tensor

    def joint(self, beta: float = DEFAULT_OOD_BETA) -> Tensor:
        """``(N,)`` the CLEL score −(E(x) − β cos(h(x), g(x))); higher = more in-distribution."""
        return -(self.energy - beta * self.cosine)

    def energy_only(self) -> Tensor:
        """``(N,)`` the plain EBM score −E(x), for comparison."""
        return -self.energy


class OODResult(NamedTuple):
    """AUROCs of one in-distribution / out-of-distribution pair (in-distribution positive).

    Attributes:
        joint: AUROC of the joint score at the given β.
        energy: AUROC of the energy-only score −E(x).
    """

    joint: float
    energy: float


def _batches(data: Data, batch_size: int) -> Iterable[Tensor]:
    if isinstance(data, Tensor):
        yield from chunks(data, batch_size)
        return
    if not isinstance(data, Iterable):
        raise TypeError(f"data must be a tensor or an iterable of batches, got {type(data)}.")
    for batch in data:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x, Tensor):
            raise TypeError(
                f"each batch must be a tensor or a (images, ...) tuple, got {type(x).__name__}."
            )
        yield x


def _dtype_of(model: object) -> torch.dtype:
    """The floating dtype of a model's first floating parameter (float32 without one)."""
    params = getattr(model, "parameters", None)
    if params is not None:
        for p in params():
            if p.is_floating_point():
                dtype: torch.dtype = p.dtype
                return dtype
    return torch.float32


@torch.no_grad()
def ood_scores(
    ebm: EnergyModel,
    guide: ContrastiveGuide,
    data: Data,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> OODScores:
    """E(x) and cos(h(x), g(x)) of every input, both networks in eval mode, no augmentation.

    Args:
        ebm: any :class:`~ebmguide.protocols.EnergyModel` (the EMA model).
        guide: any :class:`~ebmguide.protocols.ContrastiveGuide` (the EMA guide) with the same
            latent size.
        data: a ``(N, *shape)`` tensor, scored in chunks of ``batch_size``, or an iterable of
            batches (tensors or ``(images, labels)`` tuples, e.g. a ``DataLoader``).
        batch_size: chunk size when ``data`` is a tensor.
        device: where to run; default the EBM's parameter device.

    Returns:
        :class:`OODScores` with ``(N,)`` CPU tensors in the EBM's dtype (float32, or float64
        for a float64 model: nothing is cast down). Inputs are cast to that dtype.
    """
    dev = (torch.device(device) if device is not None
           else module_device(ebm) or torch.device("cpu"))
    dtype = _dtype_of(ebm)
    energies, cosines = [], []
    with eval_mode(ebm, guide):
        for x in _batches(data, batch_size):
            x = x.to(dev, dtype)
            out = ebm.energy_and_direction(x)
            h = guide.embed(x)
            if h.shape != out.direction.shape:
                raise ValueError(
                    f"the guide's embeddings {tuple(h.shape)} and the EBM's directions "
                    f"{tuple(out.direction.shape)} differ; use the guide trained with this EBM."
                )
            wide = torch.promote_types(out.direction.dtype, torch.float32)  # never below fp32
            h = torch.nn.functional.normalize(h.to(wide), dim=1)
            energies.append(out.energy.to(wide).cpu())
            cosines.append((h * out.direction.to(wide)).sum(dim=1).cpu())
    if not energies:
        raise ValueError("data yielded no batches; give at least one input.")
    return OODScores(torch.cat(energies), torch.cat(cosines))


def auroc_row(inside: OODScores, outside: OODScores,
              betas: Sequence[float] = (DEFAULT_OOD_BETA,)) -> dict[str, float]:
    """AUROCs of one in/out pair: the joint score at each β, and the energy-only score.

    Args:
        inside: scores of the in-distribution inputs (positive class).
        outside: scores of the out-of-distribution inputs.
        betas: test-time β values of the joint score.

    Returns:
        ``{"joint(beta=<b>)": AUROC, ..., "energy only": AUROC}``.
    """
    row = {f"joint(beta={b:g})": auroc(inside.joint(b), outside.joint(b)) for b in betas}
    row["energy only"] = auroc(inside.energy_only(), outside.energy_only())
    return row


def ood_auroc(
    ebm: EnergyModel,
    guide: ContrastiveGuide,
    in_data: Data,
    out_data: Mapping[str, Data],
    *,
    beta: float = DEFAULT_OOD_BETA,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> dict[str, OODResult]:
    """AUROC of the joint and the energy-only score for each out-of-distribution set.

    Args:
        ebm: any :class:`~ebmguide.protocols.EnergyModel` (the EMA model).
        guide: any :class:`~ebmguide.protocols.ContrastiveGuide` (the EMA guide).
        in_data: the in-distribution inputs (positive class).
        out_data: ``{name: inputs}`` of out-of-distribution sets.
        beta: test-time β of the joint score (0.1 in the paper).
        batch_size: chunk size for tensor inputs.
        device: where to run; default the EBM's parameter device.

    Returns:
        ``{name: OODResult(joint, energy)}``.
    """
    inside = ood_scores(ebm, guide, in_data, batch_size=batch_size, device=device)
    results = {}
    for name, data in out_data.items():
        outside = ood_scores(ebm, guide, data, batch_size=batch_size, device=device)
        row = auroc_row(inside, outside, (beta,))
        results[name] = OODResult(joint=row[f"joint(beta={beta:g})"], energy=row["energy only"])
    return results
