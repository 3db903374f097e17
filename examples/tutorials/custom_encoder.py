"""Tutorial: plug a different encoder into the contrastive guide (torchvision, timm or your own).

SimCLRGuide wraps any ``nn.Module`` that maps images to features ``(B, ...)``: it flattens them,
adds SimCLR's projection head and trains the whole thing with NT-Xent. This script builds the
encoder named by ``--encoder``:

- ``torchvision``: ``torchvision.models.resnet18`` adapted to small images (3x3 stride-1 stem, no
  max-pool), if torchvision is installed;
- ``timm``: ``timm.create_model("resnet18", num_classes=0)``, if timm is installed;
- ``builtin``: ebmguide's own CIFAR ResNet-18 (``ebmguide.nets.cifar_resnet18``), no extra package;
- ``mine``: a small ``nn.Module`` defined below;
- ``auto`` (default): the first of torchvision, timm, mine that is available.

Neither torchvision nor timm is a dependency of ebmguide: the imports are guarded, and ``auto``
falls back to the module written here.

    python examples/tutorials/custom_encoder.py --encoder auto --out runs/encoder   # minutes
    python examples/tutorials/custom_encoder.py --smoke        # a few seconds (CI)

The EBM, the sampler and the schedules are the demo recipe's (``ebmguide train --config demo
--print-config``), so the samples written by ``--out`` show whether the new guide trains a model
as good as the demo's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import Tensor, nn

import ebmguide as eg
from ebmguide.data import make_shapes
from ebmguide.feature_nets import factor_statistics
from ebmguide.grid import save_panels
from ebmguide.nets import ChannelNormalize, SmallCNN, cifar_resnet18
from ebmguide.optim import warmup_cosine


# --8<-- [start:feature-dim]
@torch.no_grad()
def infer_feature_dim(encoder: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Size of the flattened output of ``encoder`` for inputs of ``input_shape`` (C, H, W)."""
    was_training = encoder.training
    encoder.eval()  # BatchNorm must not update its statistics on the dummy batch
    features = encoder(torch.zeros(2, *input_shape)).flatten(1)
    encoder.train(was_training)
    return int(features.shape[1])
# --8<-- [end:feature-dim]


# --8<-- [start:torchvision]
def torchvision_resnet18(weights: str | None = None) -> nn.Module:
    """torchvision's ResNet-18 as a feature extractor for 16x16 or 32x32 images."""
    import torchvision  # guarded by the caller: torchvision is not an ebmguide dependency

    model = torchvision.models.resnet18(weights=weights)
    # Small images: the ImageNet stem (7x7 stride 2, then max-pool) would shrink 32x32 to 8x8 at
    # once. The new stem starts untrained, even when `weights` loads the rest of the network.
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    model.fc = nn.Identity()  # keep the 512 pooled features; SimCLRGuide adds the head
    if weights is not None:  # pretrained weights expect ImageNet-normalized inputs, not [0, 1]
        return nn.Sequential(ChannelNormalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                             model)
    return model
# --8<-- [end:torchvision]


# --8<-- [start:timm]
def timm_resnet18() -> nn.Module:
    """A timm model without its classifier: ``num_classes=0`` returns pooled features."""
    import timm  # guarded by the caller: timm is not an ebmguide dependency

    return timm.create_model("resnet18", pretrained=False, num_classes=0)
# --8<-- [end:timm]


# --8<-- [start:mine]
class MyEncoder(nn.Module):
    """Your own encoder: any module returning ``(B, ...)`` features works."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(4 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)  # (B, 4 * width, 1, 1): SimCLRGuide flattens it
# --8<-- [end:mine]


# --8<-- [start:build]
def build_encoder(name: str) -> tuple[nn.Module, str]:
    """The encoder called ``name`` and a description of what was built."""
    if name in ("torchvision", "auto"):
        try:
            return torchvision_resnet18(), "torchvision ResNet-18 (small-image stem)"
        except ImportError:
            if name == "torchvision":
                raise SystemExit("torchvision is not installed: pip install torchvision, or "
                                 "use --encoder builtin / mine") from None
    if name in ("timm", "auto"):
        try:
            return timm_resnet18(), "timm resnet18"
        except ImportError:
            if name == "timm":
                raise SystemExit("timm is not installed: pip install timm, or use --encoder "
                                 "builtin / mine") from None
    if name == "builtin":
        return cifar_resnet18(), "ebmguide.nets.cifar_resnet18"
    return MyEncoder(), "MyEncoder (defined in this script)"
# --8<-- [end:build]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train CLEL with an encoder of your choice.")
    parser.add_argument("--encoder", default="auto",
                        choices=["auto", "torchvision", "timm", "builtin", "mine"])
    parser.add_argument("--iterations", type=int, default=700)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for a grid of data, replay buffer and fresh chains")
    parser.add_argument("--smoke", action="store_true", help="a few tiny iterations (CI)")
    return parser


def main(args: argparse.Namespace) -> dict[str, float]:
    if args.smoke:
        args.iterations, args.batch_size = 2, 8
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    images = make_shapes(256 if args.smoke else 20_000, size=16, generator=g).images
    shape = tuple(images.shape[1:])

    # --8<-- [start:guide]
    encoder, description = build_encoder(args.encoder)
    feature_dim = infer_feature_dim(encoder, shape)
    guide = eg.SimCLRGuide(encoder, feature_dim=feature_dim, latent_dim=64,
                           hidden_dim=32 if args.smoke else 256, augment="strong")
    print(f"encoder: {description}, {feature_dim} features, "
          f"{sum(p.numel() for p in guide.parameters()) / 1e6:.2f} M parameters with the head")
    # --8<-- [end:guide]

    # The rest is the demo recipe: SmallCNN EBM, SGLD with eta = 100 and sigma = 0.01, K = 40.
    ebm = eg.SphericalEBM(SmallCNN(width=8 if args.smoke else 32), latent_dim=64,
                          hidden_dim=32 if args.smoke else 256)
    sampler = eg.SGLDSampler(shape, buffer_size=64 if args.smoke else 2000,
                             n_steps=3 if args.smoke else 40, step_size=100.0, noise_scale=0.01,
                             reinit_prob=0.05, augment="flip", generator=g)
    warmup = min(100, args.iterations)
    opts = eg.clel_optimizers(ebm, guide, total_iterations=args.iterations, ebm_lr=1e-4,
                              warmup_iterations=warmup)
    opts = opts._replace(ebm_scheduler=warmup_cosine(opts.ebm, warmup, args.iterations))
    ebm_ema = eg.make_ema(ebm, half_life_images=4000, batch_size=args.batch_size,
                          copy_iterations=60)
    start = time.perf_counter()
    for it in range(1, args.iterations + 1):
        x = images[torch.randint(0, images.shape[0], (args.batch_size,), generator=g)]
        terms = eg.clel_step(ebm, guide, sampler, x, ebm_optimizer=opts.ebm,
                             guide_optimizer=opts.guide, generator=g).terms
        if not all(torch.isfinite(v) for v in terms.values()):
            raise FloatingPointError(f"iteration {it}: non-finite loss terms {terms}")
        opts.ebm_scheduler.step()
        opts.guide_scheduler.step()
        eg.update_ema(ebm_ema, ebm)
        if it % 50 == 0 or it == args.iterations:
            print(f"it {it:4d}  nce {terms['nce'].item():.3f}  align {terms['align'].item():.3f}"
                  f"  cd {terms['cd'].item():+.3g}  ({time.perf_counter() - start:.0f} s)")
    if args.out is not None:  # data | replay buffer | fresh chains of the EMA EBM (300 steps)
        fresh = sampler.sample_fresh(ebm_ema.module.eval().energy, 32,
                                     n_steps=3 if args.smoke else 300, generator=g).samples
        path = save_panels([("data", images[:32]), ("replay buffer", sampler.chains()[:32]),
                            ("fresh chains", fresh)], args.out / "samples.png", scale=4, nrow=8)
        quality = factor_statistics(sampler.chains()[:500], images[:500])
        print(f"wrote {path}; clean samples (read_factors) in the buffer: {quality['clean']:.0%}")
    return {k: float(v) for k, v in terms.items()}


if __name__ == "__main__":
    main(get_args_parser().parse_args())
