"""SimCLRGuide: any encoder + SimCLR projection head + augmentation + NT-Xent."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ebmguide._validation import check_number, check_tensor
from ebmguide.augment import Augment, apply_augment, make_augmentation
from ebmguide.distributed import gathered_nt_xent
from ebmguide.losses import nt_xent
from ebmguide.protocols import GuideOutput

__all__ = ["SimCLRGuide", "simclr_head"]


def simclr_head(feature_dim: int, hidden_dim: int = 2048, latent_dim: int = 128) -> nn.Sequential:
    """SimCLR's projection: Linear (no bias) → BatchNorm → ReLU → Linear.

    Args:
        feature_dim: encoder feature size (512 for ResNet-18).
        hidden_dim: hidden width (2048 in CLEL).
        latent_dim: output size d (128 in CLEL); must equal the EBM's latent size.

    Returns:
        Module ``(B, feature_dim) -> (B, latent_dim)``.
    """
    return nn.Sequential(
        nn.Linear(feature_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, latent_dim),
    )


class SimCLRGuide(nn.Module):
    """The contrastive guide h of CLEL around any encoder.

    The two views of each real image go through the encoder as one batch of 2B. The EBM's
    alignment target is the detached embedding of the first view: it is a strong augmentation of x
    embedded by the current encoder, exactly what the method asks for, and sharing it saves one
    encoder forward per iteration.

    Args:
        encoder: module ``(B, *shape) -> (B, ...)`` (flattened to ``(B, feature_dim)``).
        feature_dim: encoder output size; from ``encoder.feature_dim`` when omitted.
        latent_dim: d (128 in CLEL).
        hidden_dim: projection hidden width (2048 in CLEL).
        head: a projection module to use instead of :func:`simclr_head`.
        augment: ``"strong"`` (default), ``"weak"``, ``"flip"``, ``"none"`` or any batched
            callable; names are built for the input size at the first call.
        temperature: NT-Xent τ (0.2 in CLEL).
        gather_distributed: under ``torch.distributed`` with several ranks, score this rank's
            anchors against the embeddings and extra negatives of *all* ranks
            (:func:`~ebmguide.distributed.gathered_nt_xent`), so the loss is the global batch's.
            The :class:`~ebmguide.run.trainer.Trainer` turns it on under torchrun; it changes
            nothing on one process.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> guide = SimCLRGuide(nn.Flatten(), feature_dim=12, latent_dim=4, hidden_dim=8,
        ...                     augment="flip")
        >>> out = guide.contrastive_loss(torch.rand(6, 1, 3, 4), generator=torch.Generator())
        >>> out.target.shape
        torch.Size([6, 4])
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        feature_dim: int | None = None,
        latent_dim: int = 128,
        hidden_dim: int = 2048,
        head: nn.Module | None = None,
        augment: str | Augment = "strong",
        temperature: float = 0.2,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}.")
        check_number("temperature", temperature, low=0.0, strict=True)
        if head is None:
            feature_dim = feature_dim or getattr(encoder, "feature_dim", None)
            if not isinstance(feature_dim, int):
                raise TypeError(
                    "feature_dim was not given and the encoder has no integer `feature_dim` "
                    "attribute; pass feature_dim=<size of the flattened encoder output>."
                )
            head = simclr_head(feature_dim, hidden_dim, latent_dim)
        if not (isinstance(augment, str) or callable(augment)):
            raise TypeError(f"augment must be a name or a callable, got {type(augment).__name__}.")
        if isinstance(augment, str):
            make_augmentation(augment, 8)  # fail now on an unknown name
        self.encoder = encoder
        self.head = head
        self.temperature = temperature
        self.gather_distributed = gather_distributed
        self.augment_spec = augment
        self._augment: dict[tuple[int, ...], Augment] = {}

    def augmentation(self, x: Tensor) -> Augment:
        """The augmentation callable for inputs shaped like ``x`` ``(B, C, H, W)``."""
        if not isinstance(self.augment_spec, str):
            return self.augment_spec
        key = tuple(x.shape[1:])
        if key not in self._augment:
            if x.dim() != 4:
                if self.augment_spec != "none":
                    raise ValueError(
                        f"augmentation {self.augment_spec!r} needs images (B, C, H, W); got "
                        f"{tuple(x.shape)}. Pass augment=<callable> or 'none' for other data."
                    )
                self._augment[key] = nn.Identity()
            else:
                self._augment[key] = make_augmentation(self.augment_spec, key[1:], key[0])
        return self._augment[key]

    def project(self, x: Tensor) -> Tensor:
        """Unnormalized h(x): ``(B, *shape) -> (B, latent_dim)``."""
        out: Tensor = self.head(self.encoder(x).flatten(1))
        return out

    def embed(self, x: Tensor) -> Tensor:
        """Unit-norm latents of un-augmented ``x``: ``(B, *shape) -> (B, latent_dim)``."""
        return F.normalize(self.project(x), dim=1)

    def contrastive_loss(
        self,
        x: Tensor,
        *,
        extra_negatives: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> GuideOutput:
        """NT-Xent on two augmented views of ``x`` (+ extra negatives) and the EBM's target.

        Args:
            x: ``(B, *shape)`` real inputs.
            extra_negatives: ``(M, d)`` detached directions of generated samples, or ``None``.
            generator: source of the augmentation randomness.

        Returns:
            ``GuideOutput(loss, target (B, d) detached)``.
        """
        check_tensor("x", x, floating=True)
        if x.dim() < 2 or x.shape[0] < 2:
            raise ValueError(f"contrastive learning needs a batch (B, *shape) with B >= 2, got "
                             f"shape {tuple(x.shape)}.")
        if not bool(x.isfinite().all()):  # one host sync; a NaN loss would hide the cause
            raise ValueError(f"x holds {int((~x.isfinite()).sum())} non-finite values (NaN/inf): "
                             f"check the data pipeline; the contrastive loss would be NaN.")
        views = apply_augment(self.augmentation(x), torch.cat([x, x]), generator)
        z1, z2 = self.embed(views).chunk(2)
        negatives = extra_negatives.detach() if extra_negatives is not None else None
        loss_fn = gathered_nt_xent if self.gather_distributed else nt_xent
        loss = loss_fn(z1, z2, temperature=self.temperature, extra_negatives=negatives)
        return GuideOutput(loss, z1.detach())

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`embed`."""
        return self.embed(x)
