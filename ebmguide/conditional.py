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
from ebmguide.protocols import ContrastiveGuide, EnergyFn, EnergyModel, LangevinSampler
from ebmguide.sampling.buffer import uniform_states
from ebmguide.sampling.langevin import LangevinSettings, langevin_dynamics
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


def _pick_starts(init: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
    """``n`` of the start states ``init`` ``(M, *shape)``, M >= n, drawn without replacement."""
    if init.dim() < 2 or init.shape[0] < n:
        raise ValueError(f"init must hold at least n={n} start states, got {tuple(init.shape)}.")
    pick = torch.randperm(init.shape[0], generator=generator,
                          device=generator.device if generator is not None else "cpu")[:n]
    return init[pick.to(init.device)]


def _chunk_of(energy_fn: EnergyFn, b: int, starts: Tensor | None, *,
              sampler: LangevinSampler | None, settings: LangevinSettings | None,
              n_steps: int | None, shape: Sequence[int] | None, init_range: tuple[float, float],
              generator: torch.Generator | None, device: torch.device | str) -> Tensor:
    """``(b, *shape)`` samples of one chunk, run as :func:`sample_energy` describes."""
    if sampler is not None:
        if starts is not None:
            return sampler.sample_from(energy_fn, starts, n_steps=n_steps,
                                       generator=generator).samples
        return sampler.sample_fresh(energy_fn, b, n_steps=n_steps, generator=generator).samples
    assert settings is not None  # sample_energy checked that one of the two is given
    if starts is None:
        if shape is None:
            raise ValueError("give the sample shape (shape=(C, H, W)) for fresh chains without "
                             "a sampler.")
        starts = uniform_states((b, *shape), *init_range, generator=generator, device=device)
    return langevin_dynamics(energy_fn, starts, settings.with_steps(n_steps),
                             generator=generator).samples


def sample_energy(
    energy_fn: EnergyFn,
    n: int,
    *,
    sampler: LangevinSampler | None = None,
    settings: LangevinSettings | None = None,
    n_steps: int | None = None,
    shape: Sequence[int] | None = None,
    init: Tensor | None = None,
    init_range: tuple[float, float] = (0.0, 1.0),
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Draw ``n`` samples of any energy, in chunks of ``batch_size`` chains.

    The chains run either through a ``sampler`` (any :class:`~ebmguide.protocols.LangevinSampler`:
    its :meth:`~ebmguide.protocols.LangevinSampler.sample_fresh` from its own initial
    distribution, or its :meth:`~ebmguide.protocols.LangevinSampler.sample_from` from ``init``;
    its state is left alone) or, without one, through
    :func:`~ebmguide.sampling.langevin_dynamics` with ``settings``, from uniform noise on
    ``init_range`` of ``shape`` or from ``init``. Give exactly one of ``sampler`` and
    ``settings``.

    Args:
        energy_fn: ``(B, *shape) -> (B,)``, e.g. from :func:`composed_energy`.
        n: number of samples.
        sampler: the sampler to run the chains, or ``None``.
        settings: the Langevin settings without a sampler.
        n_steps: steps per chain (``None``: the sampler's or the settings' own).
        shape: shape of one sample; needed for fresh chains without a sampler.
        init: optional ``(M, *shape)`` start states, M ≥ n, e.g. a trained model's replay buffer
            (its unconditional samples); ``n`` of them are drawn without replacement.
        init_range: ``(low, high)`` of the uniform starts without a sampler.
        batch_size: chains per chunk (default: all at once).
        generator: source of the start states and the noise.
        device: where fresh chains start without a sampler.

    Returns:
        ``(n, *shape)`` detached samples.
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of samples, got {n}.")
    if (sampler is None) == (settings is None):
        raise ValueError("give exactly one of sampler= (any LangevinSampler) and settings= (a "
                         "LangevinSettings record for chains without a sampler).")
    if sampler is not None and not isinstance(sampler, LangevinSampler):
        raise TypeError(f"sampler must satisfy the LangevinSampler protocol (sample, "
                        f"sample_fresh, sample_from, data_range, chains, state_dict, "
                        f"load_state_dict); {type(sampler).__name__} does not.")
    starts = _pick_starts(init, n, generator) if init is not None else None
    chunk = n if batch_size is None else batch_size
    if chunk < 1:
        raise ValueError(f"batch_size must be positive, got {chunk}.")
    parts = []
    for start in range(0, n, chunk):
        b = min(chunk, n - start)
        parts.append(_chunk_of(energy_fn, b, None if starts is None else starts[start:start + b],
                               sampler=sampler, settings=settings, n_steps=n_steps, shape=shape,
                               init_range=init_range, generator=generator, device=device))
    return torch.cat(parts)


def sample_conditional(
    ebm: EnergyModel,
    latents: Tensor,
    *,
    beta: float,
    weights: Sequence[float] | Tensor | None = None,
    combine: Literal["and", "or"] = "and",
    n: int = 64,
    sampler: LangevinSampler | None = None,
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
        sampler: a sampler (see :func:`sample_energy`), or ``None`` to pass ``settings`` (a
            :class:`~ebmguide.sampling.LangevinSettings`) and ``shape`` in ``sample_kwargs``.
        generator: source of the start states and noise.
        **sample_kwargs: passed to :func:`sample_energy` (``settings``, ``n_steps``, ``shape``,
            ``init``, ``init_range``, ``batch_size``, ``device``).

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
