"""The CLEL objective: functional terms and the :class:`CLELLoss` module.

``L_EBM = mean E(x) − mean E(x′) + α·mean(E(x)² + E(x′)²) − β·mean cos(g(x), sg[z])`` for the EBM,
and NT-Xent with temperature τ and the EBM's generated-sample directions as extra negatives for the
encoder (:func:`nt_xent`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ebmguide._validation import check_number
from ebmguide.protocols import EnergyOutput, LossOutput

__all__ = ["CLELLoss", "contrastive_divergence", "energy_regularizer", "latent_alignment",
           "nt_xent"]


def contrastive_divergence(energy_real: Tensor, energy_fake: Tensor) -> Tensor:
    """Mean E(x) − mean E(x′): lowers real energies, raises generated ones. Shapes ``(B,)``.

    Example:
        >>> contrastive_divergence(torch.tensor([1.0, 2.0]), torch.tensor([4.0, 5.0]))
        tensor(-3.)
    """
    return energy_real.mean() - energy_fake.mean()


def energy_regularizer(energy_real: Tensor, energy_fake: Tensor) -> Tensor:
    """mean(E(x)²) + mean(E(x′)²), keeping energies near zero. Shapes ``(B,)`` and ``(B′,)``."""
    return energy_real.square().mean() + energy_fake.square().mean()


def latent_alignment(direction: Tensor, target: Tensor) -> Tensor:
    """Mean cos(g(x), z): the vMF log-likelihood of z under p(z|x), up to β and a constant.

    Args:
        direction: ``(B, d)`` the EBM's directions (any norm).
        target: ``(B, d)`` latents; detached here (stop-gradient).

    Returns:
        Scalar mean cosine similarity.

    Example:
        >>> latent_alignment(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]]))
        tensor(0.)
    """
    if direction.shape != target.shape:
        raise ValueError(
            f"directions {tuple(direction.shape)} and targets {tuple(target.shape)} must match; "
            "the EBM's latent size must equal the guide's."
        )
    return F.cosine_similarity(direction, target.detach(), dim=1).mean()


def nt_xent(
    z1: Tensor, z2: Tensor, *, temperature: float = 0.2, extra_negatives: Tensor | None = None
) -> Tensor:
    """SimCLR's normalized-temperature cross-entropy over two views, with optional extra negatives.

    The 2B embeddings are normalized; anchor m's positive is its other view, its negatives the
    other 2B − 2 embeddings and every extra negative:
    ``ℓ_m = −log(exp(a_m·a_pos/τ) / (Σ_{n≠m} exp(a_m·a_n/τ) + Σ_j exp(a_m·k_j/τ)))``, averaged over
    the 2B anchors.

    Args:
        z1: ``(B, d)`` first view's embeddings.
        z2: ``(B, d)`` second view's embeddings.
        temperature: τ > 0 (0.2 in CLEL).
        extra_negatives: ``(M, d)`` extra negatives, e.g. the EBM's g(x′) (normalized here,
            detached by the caller).

    Returns:
        Scalar loss. For identical views and no extra negatives with all embeddings equal it is
        log(2B − 1).

    Example:
        >>> import math
        >>> z = torch.ones(4, 8)
        >>> round(nt_xent(z, z).item(), 4) == round(math.log(2 * 4 - 1), 4)
        True
    """
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2 must both be (B, d), got {tuple(z1.shape)} and {tuple(z2.shape)}."
        )
    check_number("temperature", temperature, low=0.0, strict=True)
    b = z1.shape[0]
    if b < 2 and (extra_negatives is None or len(extra_negatives) == 0):
        raise ValueError(f"nt_xent needs B >= 2 pairs (or extra_negatives), got B = {b}: with "
                         f"one pair there is no negative and the loss is a meaningless 0. Use a "
                         f"batch of at least 2.")
    anchors = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = anchors @ anchors.T / temperature
    logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=logits.device),
                                float("-inf"))
    if extra_negatives is not None:
        if extra_negatives.dim() != 2 or extra_negatives.shape[1] != z1.shape[1]:
            raise ValueError(
                f"extra_negatives must be (M, {z1.shape[1]}), got {tuple(extra_negatives.shape)}."
            )
        keys = F.normalize(extra_negatives.to(anchors.dtype), dim=1)
        logits = torch.cat([logits, anchors @ keys.T / temperature], dim=1)
    positives = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(logits.device)
    return F.cross_entropy(logits, positives)


class CLELLoss:
    """The EBM's CLEL loss: contrastive divergence + α·energy² − β·alignment.

    Args:
        alpha: weight α of the energy magnitude regularizer (1 in the paper).
        beta: weight β of the latent alignment (0.01 in the paper).

    Returns (when called):
        :class:`~ebmguide.protocols.LossOutput` with terms ``cd``, ``reg``, ``align`` (the mean
        cosine, not multiplied by β), ``energy_real``, ``energy_fake``.

    Example:
        >>> real = EnergyOutput(torch.tensor([0.5, 1.5]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        >>> out = CLELLoss(alpha=1.0, beta=0.01)(real, torch.tensor([2.0, 2.0]), real.direction)
        >>> round(out.loss.item(), 4), {k: round(v.item(), 3) for k, v in out.terms.items()}
        (4.24, {'cd': -1.0, 'reg': 5.25, 'align': 1.0, 'energy_real': 1.0, 'energy_fake': 2.0})
    """

    def __init__(self, *, alpha: float = 1.0, beta: float = 0.01) -> None:
        check_number("alpha", alpha, low=0.0)
        check_number("beta", beta, low=0.0)
        self.alpha = alpha
        self.beta = beta

    def __call__(self, real: EnergyOutput, fake_energy: Tensor, target: Tensor) -> LossOutput:
        """Compute the loss; see :class:`~ebmguide.protocols.JointLoss`."""
        if real.energy.dim() != 1 or fake_energy.dim() != 1:
            raise ValueError(
                f"energies must have shape (B,), got {tuple(real.energy.shape)} (real) and "
                f"{tuple(fake_energy.shape)} (generated); an EnergyModel returns one value per "
                f"input."
            )
        cd = contrastive_divergence(real.energy, fake_energy)
        reg = energy_regularizer(real.energy, fake_energy)
        align = latent_alignment(real.direction, target)
        loss = cd + self.alpha * reg - self.beta * align
        terms = {"cd": cd, "reg": reg, "align": align, "energy_real": real.energy.mean(),
                 "energy_fake": fake_energy.mean()}
        return LossOutput(loss, {k: v.detach() for k, v in terms.items()})

    def __repr__(self) -> str:
        return f"CLELLoss(alpha={self.alpha}, beta={self.beta})"
