"""The spherical latent-variable EBM of CLEL around any backbone.

One network, two heads: the energy head gives u(x) ∈ R^d and E(x) = ½‖u(x)‖²; the projection head P
gives the latent direction g(x) = P(u(x)) / ‖P(u(x))‖. The joint density
p(x, z) ∝ exp(−E(x) + β g(x)ᵀz) has the x-free von Mises–Fisher normalizer, so p(x) ∝ exp(−E(x)) and
p(z|x) = vMF(g(x), β) exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ebmguide._validation import check_int, check_number, check_tensor
from ebmguide.protocols import EnergyFn, EnergyModel, EnergyOutput

__all__ = ["SphericalEBM", "conditional_energy"]


def _mlp(sizes: Sequence[int], *, bias: bool, slope: float) -> nn.Sequential:
    """Linear layers with LeakyReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out, bias=bias))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(slope))
    return nn.Sequential(*layers)


class SphericalEBM(nn.Module):
    """Energy ½‖u(x)‖² and latent direction normalize(P(u(x))) around any backbone.

    Args:
        backbone: module mapping ``(B, *shape)`` to features of any shape ``(B, ...)``; they are
            flattened to ``(B, feature_dim)``.
        feature_dim: flattened feature size; taken from ``backbone.feature_dim`` when omitted.
        latent_dim: d, the size of u(x) and of the latent sphere (128 in the paper).
        hidden_dim: hidden width of both head MLPs (2048 in the paper).
        negative_slope: LeakyReLU slope inside the heads (0.2 in the paper).
        init_std: standard deviation of the heads' normal weight init, biases at zero; the
            paper's value is 0.01 (its recipes here set it). ``None`` (the default) keeps torch's
            ``nn.Linear`` init: with the paper's init the ½‖u‖² energies start near 1e-5 and
            their input gradients near 1e-8 per pixel, so Langevin chains barely move at first
            even with the paper's η = 100 (drift/noise 4e-4 per step on the demo network), while
            torch's init starts the gradients about 1,000 times larger. See
            docs/recipes/demo.md for the measurements.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> ebm = SphericalEBM(nn.Flatten(), feature_dim=2, latent_dim=4, hidden_dim=8)
        >>> out = ebm.energy_and_direction(torch.randn(5, 2))
        >>> out.energy.shape, out.direction.shape
        (torch.Size([5]), torch.Size([5, 4]))
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        feature_dim: int | None = None,
        latent_dim: int = 128,
        hidden_dim: int = 2048,
        negative_slope: float = 0.2,
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(
                f"backbone must be a torch.nn.Module, got {type(backbone).__name__}; wrap your "
                "function in an nn.Module."
            )
        if feature_dim is None:
            feature_dim = getattr(backbone, "feature_dim", None)
            if not isinstance(feature_dim, int):
                raise TypeError(
                    "feature_dim was not given and the backbone has no integer `feature_dim` "
                    "attribute; pass feature_dim=<size of the flattened backbone output>."
                )
        for name, value in (("feature_dim", feature_dim), ("latent_dim", latent_dim),
                            ("hidden_dim", hidden_dim)):
            check_int(name, value, low=1)
        if init_std is not None:
            check_number("init_std (None for torch's default init)", init_std, low=0.0,
                         strict=True)
        check_number("negative_slope", negative_slope)
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.latent_dim = latent_dim
        self.head = _mlp((feature_dim, hidden_dim, latent_dim), bias=True, slope=negative_slope)
        self.projection = _mlp((latent_dim, hidden_dim, latent_dim), bias=False,
                               slope=negative_slope)
        for layer in [*self.head, *self.projection]:
            if isinstance(layer, nn.Linear) and init_std is not None:
                nn.init.normal_(layer.weight, std=init_std)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    def embedding(self, x: Tensor) -> Tensor:
        """u(x), the vector whose half squared norm is the energy.

        Args:
            x: ``(B, *shape)`` inputs.

        Returns:
            ``(B, latent_dim)``.
        """
        features = self.backbone(x).flatten(1)
        if features.shape[1] != self.feature_dim:
            raise ValueError(
                f"the backbone gave {features.shape[1]} features per input but feature_dim is "
                f"{self.feature_dim}; pass the backbone's flattened output size as feature_dim."
            )
        out: Tensor = self.head(features)
        return out

    def energy(self, x: Tensor) -> Tensor:
        """E(x) = ½‖u(x)‖², shape ``(B,)``."""
        return 0.5 * self.embedding(x).square().sum(dim=1)

    def energy_and_direction(self, x: Tensor) -> EnergyOutput:
        """E(x) ``(B,)`` and g(x) = normalize(P(u(x))) ``(B, latent_dim)`` in one pass."""
        u = self.embedding(x)
        direction = F.normalize(self.projection(u), dim=1)
        return EnergyOutput(0.5 * u.square().sum(dim=1), direction)

    def direction(self, x: Tensor) -> Tensor:
        """g(x), unit vectors ``(B, latent_dim)``."""
        return self.energy_and_direction(x).direction

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`energy`, so the module is itself an energy callable."""
        return self.energy(x)


def check_latent_size(direction: Tensor, latent_size: int) -> None:
    """Raise ``ValueError`` when latents of ``latent_size`` do not fit directions ``(B, d)``."""
    if direction.shape[1] != latent_size:
        raise ValueError(
            f"latents have size {latent_size} but the model's directions have size "
            f"{direction.shape[1]}; take latents from the guide that trained this model."
        )


def conditional_energy(
    model: EnergyModel,
    latents: Tensor,
    *,
    beta: float,
    weights: Sequence[float] | Tensor | None = None,
) -> EnergyFn:
    """The energy of p(x | z_1..z_K): E(x) − β Σ_k w_k cos(g(x), z_k).

    With all weights 1 this is exact for conditionally independent latents, each vMF(g(x), β);
    a negative weight pushes samples away from that latent (negation).

    Args:
        model: any :class:`~ebmguide.protocols.EnergyModel`.
        latents: ``(K, d)`` or ``(d,)`` latents; they are normalized here.
        beta: guidance strength β > 0 (the training value 0.01 is weak; see the docs' sweep).
        weights: ``(K,)`` per-latent weights, default all ones.

    Returns:
        A callable ``(B, *shape) -> (B,)`` usable with any sampler; latents of a size other
        than the model's directions raise ``ValueError`` on its first call.

    Example:
        >>> from torch import nn
        >>> ebm = SphericalEBM(nn.Flatten(), feature_dim=2, latent_dim=4, hidden_dim=8)
        >>> energy_fn = conditional_energy(ebm, torch.randn(2, 4), beta=1.0, weights=[1.0, -0.5])
        >>> energy_fn(torch.randn(5, 2)).shape
        torch.Size([5])
    """
    check_tensor("latents", latents)
    check_number("beta", beta)
    if latents.dim() == 1:
        latents = latents.unsqueeze(0)
    if latents.dim() != 2:
        raise ValueError(
            f"latents must have shape (K, d) or (d,), got {tuple(latents.shape)}."
        )
    if beta < 0:
        raise ValueError(f"beta must be non-negative, got {beta}; use a negative weight to negate.")
    z = latents.detach()  # a floating dtype is kept: float64 latents stay float64
    z = F.normalize(z if z.is_floating_point() else z.float(), dim=1)
    if weights is None:
        w = torch.ones(z.shape[0], dtype=z.dtype, device=z.device)
    else:
        w = torch.as_tensor(weights, dtype=z.dtype, device=z.device)
        if w.shape != (z.shape[0],):
            raise ValueError(
                f"weights must have one entry per latent ({z.shape[0]}), got shape "
                f"{tuple(w.shape)}."
            )
    target = (w[:, None] * z).sum(dim=0)

    def energy_fn(x: Tensor) -> Tensor:
        out = model.energy_and_direction(x)
        check_latent_size(out.direction, target.shape[0])
        return out.energy - beta * (out.direction @ target.to(out.direction))

    return energy_fn
