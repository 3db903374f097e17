"""Conditional and compositional generation from the contrastive latent.

The joint density p(x, z) ∝ exp(−E(x) + β g(x)ᵀz) of CLEL gives, for a fixed unit latent z,
p(x | z) ∝ exp(−E(x) + β g(x)ᵀz): sampling it needs only the same Langevin chains run on a shifted
energy. Latents are conditionally independent given x (each vMF(g(x), β)), so

- AND: p(x | z_1..z_K) ∝ exp(−E(x) + β Σ_k w_k g(x)ᵀz_k) with all w_k = 1 exactly; other positive
  weights re-weight the terms and a negative weight is a negation (NOT: the samples are pushed away
  from z_k). This is :func:`ebmguide.energy.conditional_energy`, re-exported here as
  :func:`and_energy`.
- OR: the mixture p(x | z_1 OR … OR z_K) ∝ exp(−E(x)) Σ_k π_k exp(β g(x)ᵀz_k), whose energy is

      E_OR(x) = E(x) − logsumexp_k(β g(x)ᵀz_k + log π_k),

  with π on the simplex (given weights are normalized to sum to 1). Each component is
  proportional to p(x | z_k) times its own normalizer Z_k = ∫ exp(−E + β gᵀz_k) dx, so π weights
  the unnormalized components; with one latent E_OR is the AND energy, and as β → ∞,
  logsumexp_k(β g(x)ᵀz_k + log π_k) / β → max_k g(x)ᵀz_k (the chain is pulled towards whichever
  latent is nearest). :func:`composed_energy` combines an OR group with AND/NOT terms.

Latents come from reference images (:func:`embed_images`, one latent per image) or from the
normalized mean embedding of a few labelled images (:func:`latent_from_examples`,
:func:`latents_by_label`); labels are used at sampling time only. Everything works with any
:class:`~ebmguide.protocols.EnergyModel` and :class:`~ebmguide.protocols.ContrastiveGuide`.

The energies (:func:`and_energy`, :func:`or_energy`, :func:`composed_energy`) are defined in
:mod:`ebmguide.composition` and importable from here; this module adds the latents and sampling.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ebmguide.composition import and_energy, composed_energy, or_energy
from ebmguide.energy import conditional_energy
from ebmguide.protocols import ContrastiveGuide, EnergyFn, EnergyModel
from ebmguide.sampling.langevin import langevin_dynamics
from ebmguide.torch_utils import chunks, eval_mode

__all__ = [
    "and_energy",
    "composed_energy",
    "embed_images",
    "latent_from_examples",
    "latents_by_label",
    "or_energy",
    "sample_conditional",
    "sample_energy",
]


@torch.no_grad()
def embed_images(guide: ContrastiveGuide, images: Tensor, *, batch_size: int = 256) -> Tensor:
    """Unit latents of un-augmented images, one per image (the guide in eval mode).

    Args:
        guide: any :class:`~ebmguide.protocols.ContrastiveGuide` (use the EMA guide).
        images: ``(N, *shape)`` images in the training range (e.g. [0, 1]).
        batch_size: images per forward pass.

    Returns:
        ``(N, d)`` detached unit vectors.
    """
    if not isinstance(images, Tensor) or images.dim() < 2 or images.shape[0] < 1:
        raise ValueError("images must be a non-empty batch tensor (N, *shape).")
    with eval_mode(guide):
        parts = [guide.embed(chunk) for chunk in chunks(images, batch_size)]
    z = torch.cat(parts)
    return F.normalize(z if z.is_floating_point() else z.float(), dim=1)  # dtype kept


def latent_from_examples(
    guide: ContrastiveGuide, images: Tensor, *, batch_size: int = 256
) -> Tensor:
    """The normalized mean embedding of a few examples of one class or attribute.

    Args:
        guide: any :class:`~ebmguide.protocols.ContrastiveGuide` (use the EMA guide).
        images: ``(N, *shape)`` examples sharing the class or attribute.
        batch_size: images per forward pass.

    Returns:
        ``(d,)`` unit vector normalize(mean_i h(x_i)/‖h(x_i)‖).
    """
    mean = embed_images(guide, images, batch_size=batch_size).mean(dim=0)
    if float(mean.norm()) < 1e-8:
        raise ValueError("the examples' embeddings cancel out (zero mean); give more examples.")
    return F.normalize(mean, dim=0)


def latents_by_label(
    guide: ContrastiveGuide,
    images: Tensor,
    labels: Tensor | Sequence[Hashable],
    *,
    batch_size: int = 256,
) -> dict[Hashable, Tensor]:
    """One latent per label: the normalized mean embedding of that label's images.

    Args:
        guide: any :class:`~ebmguide.protocols.ContrastiveGuide` (use the EMA guide).
        images: ``(N, *shape)`` labelled images.
        labels: ``(N,)`` labels (a tensor gives int keys) or a sequence of hashables.
        batch_size: images per forward pass.

    Returns:
        ``{label: (d,) unit latent}`` in order of first appearance.
    """
    keys: list[Hashable] = labels.tolist() if isinstance(labels, Tensor) else list(labels)
    if len(keys) != images.shape[0]:
        raise ValueError(f"got {len(keys)} labels for {images.shape[0]} images; give one each.")
    z = embed_images(guide, images, batch_size=batch_size)
    out: dict[Hashable, Tensor] = {}
    for key in dict.fromkeys(keys):
        mask = torch.tensor([k == key for k in keys], device=z.device)
        out[key] = F.normalize(z[mask].mean(dim=0), dim=0)
    return out


_SGLD_SETTINGS = ("n_steps", "step_size", "noise_scale", "grad_clip", "clamp", "autocast_dtype")


def _langevin_settings(sampler: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """The Langevin settings of an SGLDSampler-like object, with ``overrides`` on top."""
    if sampler is None:
        return overrides
    missing = [k for k in _SGLD_SETTINGS if not hasattr(sampler, k)]
    if missing:
        raise TypeError(
            f"start states (init) need a sampler with the attributes {_SGLD_SETTINGS} (e.g. "
            f"SGLDSampler); {type(sampler).__name__} lacks {missing}. Pass sampler=None and the "
            "Langevin settings instead."
        )
    return {**{k: getattr(sampler, k) for k in _SGLD_SETTINGS}, **overrides}


def _pick_starts(init: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
    """``n`` of the start states ``init`` ``(M, *shape)``, M >= n, drawn without replacement."""
    if init.dim() < 2 or init.shape[0] < n:
        raise ValueError(f"init must hold at least n={n} start states, got {tuple(init.shape)}.")
    pick = torch.randperm(init.shape[0], generator=generator,
                          device=generator.device if generator is not None else "cpu")[:n]
    return init[pick.to(init.device)]


def _fresh_chunk(energy_fn: EnergyFn, b: int, *, sampler: Any, shape: Sequence[int] | None,
                 generator: torch.Generator | None, device: torch.device | str,
                 langevin_kwargs: dict[str, Any]) -> Tensor:
    """``(b, *shape)`` samples of fresh chains, run as :func:`sample_energy` describes.

    With a sampler that has ``sample_fresh``, its settings (``n_steps`` may be overridden); with any
    other sampler, its ``sample``; without one, U[0, 1] noise of ``shape`` on ``device`` and
    :func:`~ebmguide.sampling.langevin_dynamics` with ``langevin_kwargs``.
    """
    if sampler is not None and hasattr(sampler, "sample_fresh"):
        fresh: Tensor = sampler.sample_fresh(energy_fn, b, generator=generator,
                                             n_steps=langevin_kwargs.get("n_steps")).samples
        return fresh
    if sampler is not None:
        drawn: Tensor = sampler.sample(energy_fn, b, generator=generator).samples
        return drawn
    if shape is None:
        raise ValueError("give a sampler or the sample shape (shape=(C, H, W)).")
    x = torch.rand((b, *shape), generator=generator, device=device)
    return langevin_dynamics(energy_fn, x, generator=generator, **langevin_kwargs).samples


def sample_energy(
    energy_fn: EnergyFn,
    n: int,
    *,
    shape: Sequence[int] | None = None,
    sampler: Any = None,
    init: Tensor | None = None,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    **langevin_kwargs: Any,
) -> Tensor:
    """Draw ``n`` samples of any energy, in chunks of ``batch_size`` chains.

    Chains start from fresh U[0, 1] noise, or from ``init``. With a ``sampler`` that has
    ``sample_fresh`` (e.g. :class:`~ebmguide.sampling.SGLDSampler`), its step settings are used
    and its buffer is neither read nor written (``n_steps`` may be overridden in
    ``langevin_kwargs``). With any other :class:`~ebmguide.protocols.LangevinSampler`, its
    ``sample`` is called (which may update its state). Without a sampler, chains of ``shape`` run
    :func:`~ebmguide.sampling.langevin_dynamics` with ``langevin_kwargs`` (``n_steps``,
    ``step_size``, ``noise_scale``, ``grad_clip``, ``clamp``, ...).

    Args:
        energy_fn: ``(B, *shape) -> (B,)``, e.g. from :func:`composed_energy`.
        n: number of samples.
        shape: shape of one sample; needed without a sampler and without ``init``.
        sampler: a sampler whose settings to use, or ``None``.
        init: optional ``(M, *shape)`` start states, M ≥ n, e.g. a trained model's replay buffer
            (its unconditional samples); ``n`` of them are drawn without replacement. Needs an
            SGLDSampler-like sampler or ``sampler=None``.
        batch_size: chains per chunk (default: all at once).
        generator: source of the start states and the noise.
        device: where fresh chains start without a sampler.
        **langevin_kwargs: ``n_steps`` with a sampler; all Langevin settings without one.

    Returns:
        ``(n, *shape)`` detached samples.
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of samples, got {n}.")
    if sampler is not None and set(langevin_kwargs) - {"n_steps"}:
        raise ValueError(
            f"with a sampler its own settings are used; only n_steps may be given, got "
            f"{sorted(langevin_kwargs)}. Pass sampler=None to set the Langevin settings here."
        )
    if init is not None:
        init = _pick_starts(init, n, generator)
        settings = _langevin_settings(sampler, {k: v for k, v in langevin_kwargs.items()
                                                if v is not None})
    chunk = n if batch_size is None else batch_size
    parts = []
    for start in range(0, n, chunk):
        b = min(chunk, n - start)
        if init is not None:
            parts.append(langevin_dynamics(energy_fn, init[start:start + b], generator=generator,
                                           **settings).samples)
        else:
            parts.append(_fresh_chunk(energy_fn, b, sampler=sampler, shape=shape,
                                      generator=generator, device=device,
                                      langevin_kwargs=langevin_kwargs))
    return torch.cat(parts)


def sample_conditional(
    ebm: EnergyModel,
    latents: Tensor,
    *,
    beta: float,
    weights: Sequence[float] | Tensor | None = None,
    combine: Literal["and", "or"] = "and",
    n: int = 64,
    sampler: Any = None,
    generator: torch.Generator | None = None,
    **sample_kwargs: Any,
) -> Tensor:
    """Sample p(x | latents) from fresh chains.

    Args:
        ebm: any :class:`~ebmguide.protocols.EnergyModel` (use the EMA model); put in eval mode
            while sampling and restored after.
        latents: ``(K, d)`` or ``(d,)`` latents.
        beta: test-time guidance strength β (training uses 0.01, which is weak; see the docs).
        weights: per-latent weights: for ``"and"`` any sign (negative = NOT); for ``"or"``
            positive mixture proportions.
        combine: ``"and"`` (product of experts) or ``"or"`` (log-sum-exp mixture).
        n: number of samples.
        sampler: a sampler (see :func:`sample_energy`), or ``None`` to pass ``shape`` and the
            Langevin settings in ``sample_kwargs``.
        generator: source of the start states and noise.
        **sample_kwargs: passed to :func:`sample_energy` (``shape``, ``batch_size``, ``device``,
            ``n_steps``, ``step_size``, ``noise_scale``, ``grad_clip``, ``clamp``, ...).

    Returns:
        ``(n, *shape)`` detached samples.
    """
    if combine == "and":
        energy_fn = conditional_energy(ebm, latents, beta=beta, weights=weights)
    elif combine == "or":
        energy_fn = or_energy(ebm, latents, beta=beta, weights=weights)
    else:
        raise ValueError(f"combine must be 'and' or 'or', got {combine!r}.")
    with eval_mode(ebm):
        return sample_energy(energy_fn, n, sampler=sampler, generator=generator, **sample_kwargs)
