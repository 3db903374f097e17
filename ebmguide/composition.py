"""Compositional energies: AND, NOT and OR of contrastive latents over any energy model.

With E the model's energy, g(x) its unit direction and β the guidance strength:

- AND / NOT: E(x) − β Σ_k w_k cos(g(x), z_k) (:data:`and_energy`, which is
  :func:`ebmguide.energy.conditional_energy`), with w_k = 1 for AND and a negative weight for NOT;
- OR: E(x) − logsumexp_k(β cos(g(x), z_k) + log π_k) (:func:`or_energy`), the energy of the
  mixture with proportions π;
- both at once, from a single forward pass of the model: :func:`composed_energy`.

Each returns a callable ``(B, *shape) -> (B,)`` for any sampler. The derivation, and the latents
and samplers that go with these energies, are in :mod:`ebmguide.conditional`, which re-exports every
name of this module.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ebmguide.energy import check_latent_size, conditional_energy
from ebmguide.protocols import EnergyFn, EnergyModel, EnergyOutput

__all__ = ["and_energy", "composed_energy", "or_energy"]

and_energy = conditional_energy
"""E(x) − β Σ_k w_k cos(g(x), z_k): AND (positive weights) and NOT (negative weights)."""


def _as_latents(latents: Tensor, name: str) -> Tensor:
    """``(K, d)`` or ``(d,)`` latents as detached, normalized ``(K, d)`` (floating dtype kept)."""
    if not isinstance(latents, Tensor):
        raise TypeError(f"{name} must be a tensor (K, d), got {type(latents).__name__}.")
    if latents.dim() == 1:
        latents = latents.unsqueeze(0)
    if latents.dim() != 2 or latents.shape[0] < 1:
        raise ValueError(f"{name} must have shape (K, d) or (d,), got {tuple(latents.shape)}.")
    z = latents.detach()
    return F.normalize(z if z.is_floating_point() else z.float(), dim=1)


def _mixture_log_weights(weights: Sequence[float] | Tensor | None, z: Tensor) -> Tensor:
    """Log π ``(K,)`` from positive weights (normalized to sum to 1); uniform when ``None``."""
    k = z.shape[0]
    if weights is None:
        return torch.full((k,), -math.log(k), dtype=z.dtype, device=z.device)
    w = torch.as_tensor(weights, dtype=z.dtype, device=z.device)
    if w.shape != (k,):
        raise ValueError(f"OR weights must have one entry per latent ({k}), got {tuple(w.shape)}.")
    if not bool((w > 0).all()) or not bool(torch.isfinite(w).all()):
        raise ValueError(
            f"OR weights are mixture proportions and must be positive and finite, got "
            f"{w.tolist()}; use an AND term with a negative weight for negation."
        )
    return torch.log(w / w.sum())


def composed_energy(
    model: EnergyModel,
    *,
    beta: float,
    and_latents: Tensor | None = None,
    and_weights: Sequence[float] | Tensor | None = None,
    or_latents: Tensor | None = None,
    or_weights: Sequence[float] | Tensor | None = None,
) -> EnergyFn:
    """AND/NOT terms plus an OR group, from one forward pass of the model.

    E(x) − β Σ_j w_j cos(g(x), a_j) − logsumexp_k(β cos(g(x), o_k) + log π_k), where the a_j are
    ``and_latents`` (weights ``and_weights``, negative for NOT) and the o_k are ``or_latents``
    (mixture weights ``or_weights`` normalized to π). Either group may be left out.

    Args:
        model: any :class:`~ebmguide.protocols.EnergyModel`.
        beta: guidance strength β ≥ 0.
        and_latents: ``(J, d)`` or ``(d,)`` latents (normalized here), or ``None``.
        and_weights: ``(J,)`` weights, default all ones.
        or_latents: ``(K, d)`` or ``(d,)`` latents (normalized here), or ``None``.
        or_weights: ``(K,)`` positive mixture weights, default uniform.

    Returns:
        A callable ``(B, *shape) -> (B,)`` usable with any sampler.
    """
    if not beta >= 0:
        raise ValueError(f"beta must be non-negative, got {beta}; use a negative weight to negate.")
    if or_latents is None:
        if and_latents is None:
            raise ValueError("give at least one latent (and_latents or or_latents).")
        return conditional_energy(model, and_latents, beta=beta, weights=and_weights)
    o = _as_latents(or_latents, "or_latents")
    log_pi = _mixture_log_weights(or_weights, o)
    and_part = (None if and_latents is None
                else conditional_energy(_DirectionOnly(), and_latents, beta=beta,
                                        weights=and_weights))

    def energy_fn(x: Tensor) -> Tensor:
        out = model.energy_and_direction(x)
        check_latent_size(out.direction, o.shape[1])
        g = out.direction
        logits = beta * (g @ o.to(g).T) + log_pi.to(g)
        energy = out.energy - torch.logsumexp(logits, dim=1)
        if and_part is not None:
            energy = energy + and_part(g)
        return energy

    return energy_fn


class _DirectionOnly:
    """An EnergyModel over precomputed directions: E = 0 and g = the input itself.

    Lets :func:`composed_energy` reuse :func:`~ebmguide.energy.conditional_energy` for its AND/NOT
    terms on directions already computed, without a second forward pass of the real model.
    """

    def energy(self, g: Tensor) -> Tensor:
        return torch.zeros(g.shape[0], dtype=g.dtype, device=g.device)

    def energy_and_direction(self, g: Tensor) -> EnergyOutput:
        return EnergyOutput(self.energy(g), g)

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]:
        return iter(())


def or_energy(
    model: EnergyModel,
    latents: Tensor,
    *,
    beta: float,
    weights: Sequence[float] | Tensor | None = None,
) -> EnergyFn:
    """E_OR(x) = E(x) − logsumexp_k(β cos(g(x), z_k) + log π_k), the energy of a mixture.

    Args:
        model: any :class:`~ebmguide.protocols.EnergyModel`.
        latents: ``(K, d)`` or ``(d,)`` latents (normalized here).
        beta: guidance strength β ≥ 0 (also the sharpness of the OR: large β → max).
        weights: ``(K,)`` positive mixture weights π (normalized to sum to 1), default uniform.

    Returns:
        A callable ``(B, *shape) -> (B,)``.
    """
    return composed_energy(model, beta=beta, or_latents=latents, or_weights=weights)
