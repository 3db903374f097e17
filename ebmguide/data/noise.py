"""Gaussian noise on training batches, so that real data carry the noise the sampler's chains carry.

SGLD chains end every step with ``σ · ε``: their samples hold pixel noise of about the sampler's
``noise_scale``. Data without that noise (generated images with flat colours, or 8-bit images whose
dequantization noise is far below σ) let the EBM tell samples from data by the noise alone; the
contrastive-divergence update then spends its capacity on a steep energy along noise directions
instead of on the data's structure. Adding the same noise to each real batch removes that cue
(the "data noise" of short-run EBM training).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ebmguide.data.loader import BatchTransform

__all__ = ["GaussianNoise"]


@dataclass(frozen=True)
class GaussianNoise:
    """A batch transform: ``first`` (if any), then ``x + std · ε``, clamped to ``bounds``.

    Attributes:
        std: standard deviation of the noise (> 0), in the data's units.
        bounds: ``(low, high)`` to clamp to (the sampler's clamp range), or None.
        first: a transform applied before the noise, e.g. :func:`~ebmguide.data.dequantize`.

    Example:
        >>> noisy = GaussianNoise(0.01, bounds=(0.0, 1.0))
        >>> out = noisy(torch.full((2, 3, 4, 4), 0.5), torch.Generator().manual_seed(0))
        >>> out.shape, bool(out.ne(0.5).all()), 0.0 <= float(out.min())
        (torch.Size([2, 3, 4, 4]), True, True)
    """

    std: float
    bounds: tuple[float, float] | None = None
    first: BatchTransform | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.std, (int, float)) and self.std > 0):
            raise ValueError(f"std must be a positive number, got {self.std!r}.")

    def __call__(self, batch: Tensor, generator: torch.Generator) -> Tensor:
        """``(B, *shape)`` → ``(B, *shape)`` floats with the noise added."""
        x = batch if self.first is None else self.first(batch, generator)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        out = x + self.std * noise
        return out if self.bounds is None else out.clamp(*self.bounds)
