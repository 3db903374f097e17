"""Tutorial: CLEL in your own training loop, with your own backbone, encoder and data.

Every part below is yours except the four library components: the data (any ``(N, C, H, W)``
tensor in [0, 1]), the EBM backbone and the contrastive encoder are plain ``nn.Module``s written
here, and the loop (logging, EMA, divergence check, sampling at the end) is ordinary PyTorch.
``--manual`` runs the same iteration written out by hand instead of calling ``eg.clel_step``.

    python examples/tutorials/own_training_loop.py                 # 700 iterations (minutes)
    python examples/tutorials/own_training_loop.py --smoke         # a few seconds (CI)
    python examples/tutorials/own_training_loop.py --out runs/own  # also saves a sample grid
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations

import ebmguide as eg
from ebmguide.optim import warmup_cosine


# --8<-- [start:data]
def make_my_images(n: int, size: int = 16, *, generator: torch.Generator) -> Tensor:
    """Your data: ``(n, 3, size, size)`` in [0, 1], one coloured square on a dark background."""
    colours = torch.tensor([[0.9, 0.2, 0.2], [0.2, 0.8, 0.3], [0.3, 0.4, 0.95]])
    images = torch.full((n, 3, size, size), 0.1)
    side = torch.randint(size // 4, size // 2 + 1, (n,), generator=generator)
    for i in range(n):
        s = int(side[i])
        top, left = torch.randint(0, size - s + 1, (2,), generator=generator).tolist()
        colour = colours[int(torch.randint(0, 3, (1,), generator=generator))]
        images[i, :, top:top + s, left:left + s] = colour[:, None, None]
    return images
# --8<-- [end:data]


# --8<-- [start:networks]
class MyBackbone(nn.Module):
    """An EBM backbone: spectral-norm convs, no normalization layers, features ``(B, 4 * width)``.

    SphericalEBM reads ``feature_dim`` and puts the energy and projection heads on top. Leaky
    ReLUs keep a gradient everywhere, which the Langevin chains follow.
    """

    def __init__(self, channels: int = 3, width: int = 32) -> None:
        super().__init__()
        sn = parametrizations.spectral_norm
        self.net = nn.Sequential(
            sn(nn.Conv2d(channels, width, 3, padding=1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(2 * width, 2 * width, 3, padding=1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1)), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.feature_dim = 4 * width

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MyEncoder(nn.Module):
    """A contrastive encoder: plain convs with BatchNorm (fine in the guide, not in the EBM)."""

    def __init__(self, channels: int = 3, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.feature_dim = 2 * width

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
# --8<-- [end:networks]


# --8<-- [start:manual]
def manual_step(
    ebm: eg.SphericalEBM,
    guide: eg.SimCLRGuide,
    sampler: eg.SGLDSampler,
    x: Tensor,
    *,
    ebm_optimizer: torch.optim.Optimizer,
    guide_optimizer: torch.optim.Optimizer,
    loss_fn: eg.CLELLoss,
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """What ``eg.clel_step`` does, written out: change any line for your own variant."""
    ebm.eval()  # sampling: no spectral-norm power iterations per Langevin step
    negatives = sampler.sample(ebm.energy, x.shape[0], generator=generator).samples  # detached
    ebm.train()
    out = ebm.energy_and_direction(torch.cat([x, negatives]))  # one forward for real and fake
    b = x.shape[0]
    real = eg.EnergyOutput(out.energy[:b], out.direction[:b])
    guide_out = guide.contrastive_loss(  # NT-Xent on two views; g(x') as extra negatives
        x, extra_negatives=out.direction[b:].detach(), generator=generator)
    ebm_out = loss_fn(real, out.energy[b:], guide_out.target)  # CD + alpha*reg - beta*align
    total = ebm_out.loss + guide_out.loss  # the stop-gradients keep the two updates separate
    ebm_optimizer.zero_grad(set_to_none=True)
    guide_optimizer.zero_grad(set_to_none=True)
    total.backward()
    ebm_optimizer.step()
    guide_optimizer.step()
    return {"loss": total.detach(), "nce": guide_out.loss.detach(), **ebm_out.terms}
# --8<-- [end:manual]


def save_grid(images: Tensor, path: Path, *, nrow: int = 8, scale: int = 4) -> None:
    """Write ``(N, 3, H, W)`` images in [0, 1] as one PNG grid (pillow, no torchvision)."""
    from PIL import Image

    images = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    n, c, h, w = images.shape
    rows = math.ceil(n / nrow)
    grid = torch.ones(c, rows * (h + 1) + 1, nrow * (w + 1) + 1)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[:, 1 + r * (h + 1):1 + r * (h + 1) + h, 1 + col * (w + 1):1 + col * (w + 1) + w] = (
            images[i])
    array = (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="CLEL in your own training loop with your own backbone, encoder and data.")
    parser.add_argument("--iterations", type=int, default=700)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-steps", type=int, default=40, help="SGLD steps per iteration")
    parser.add_argument("--step-size", type=float, default=100.0, help="SGLD step size")
    parser.add_argument("--ebm-lr", type=float, default=1e-4,
                        help="Adam learning rate of the EBM, decayed to 0 by a cosine schedule")
    parser.add_argument("--fresh-steps", type=int, default=300,
                        help="SGLD steps of the fresh chains sampled at the end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--manual", action="store_true",
                        help="run the hand-written iteration instead of eg.clel_step")
    parser.add_argument("--out", type=Path, default=None, help="folder for the sample grid")
    parser.add_argument("--smoke", action="store_true", help="a few tiny iterations (CI)")
    return parser


def main(args: argparse.Namespace) -> dict[str, float]:
    if args.smoke:
        args.iterations, args.batch_size, args.n_steps, args.fresh_steps = 3, 8, 3, 3
    torch.manual_seed(args.seed)  # network initialisation
    g = torch.Generator().manual_seed(args.seed)  # every other random draw
    data = make_my_images(64 if args.smoke else 20_000, generator=g)

    # --8<-- [start:components]
    ebm = eg.SphericalEBM(MyBackbone(), latent_dim=64, hidden_dim=256)
    guide = eg.SimCLRGuide(MyEncoder(), latent_dim=64, hidden_dim=256, augment="strong")
    sampler = eg.SGLDSampler(
        data.shape[1:], buffer_size=2000, n_steps=args.n_steps, step_size=args.step_size,
        noise_scale=0.01, reinit_prob=0.05, augment="flip", generator=g)
    loss_fn = eg.CLELLoss(alpha=1.0, beta=0.01)
    eg.check_components(ebm, guide, sampler, loss_fn)  # TypeError naming a non-conforming part
    warmup = min(100, args.iterations)
    opts = eg.clel_optimizers(ebm, guide, total_iterations=args.iterations, ebm_lr=args.ebm_lr,
                              warmup_iterations=warmup)
    # the demo recipe's EBM schedule: warm-up, then a cosine decay to 0 (clel_optimizers: constant)
    opts = opts._replace(ebm_scheduler=warmup_cosine(opts.ebm, warmup, args.iterations))
    ebm_ema = eg.make_ema(ebm, half_life_images=4_000, batch_size=args.batch_size,
                          copy_iterations=60)
    guide_ema = eg.make_ema(guide, half_life_images=4_000, batch_size=args.batch_size,
                            copy_iterations=60)
    # --8<-- [end:components]

    # --8<-- [start:loop]
    start = time.perf_counter()
    for it in range(1, args.iterations + 1):
        x = data[torch.randint(0, data.shape[0], (args.batch_size,), generator=g)]
        if args.manual:
            terms = manual_step(ebm, guide, sampler, x, ebm_optimizer=opts.ebm,
                                guide_optimizer=opts.guide, loss_fn=loss_fn, generator=g)
        else:
            terms = eg.clel_step(ebm, guide, sampler, x, ebm_optimizer=opts.ebm,
                                 guide_optimizer=opts.guide, loss_fn=loss_fn,
                                 generator=g).terms
        if not all(torch.isfinite(v) for v in terms.values()):
            raise FloatingPointError(f"iteration {it}: non-finite loss terms {terms}")
        opts.ebm_scheduler.step()
        opts.guide_scheduler.step()
        eg.update_ema(ebm_ema, ebm)
        eg.update_ema(guide_ema, guide)
        if it % 50 == 0 or it == args.iterations:
            print(f"it {it:4d}  " + "  ".join(f"{k} {v.item():+.3g}" for k, v in terms.items())
                  + f"  ({time.perf_counter() - start:.0f} s)")
    # --8<-- [end:loop]

    # --8<-- [start:sample]
    model = ebm_ema.module.eval()  # sample from the averaged EBM, from fresh noise
    samples = sampler.sample_fresh(model.energy, 32 if not args.smoke else 4,
                                   n_steps=args.fresh_steps, generator=g).samples
    # --8<-- [end:sample]
    if args.out is not None:
        save_grid(samples, args.out / "samples.png")
        save_grid(sampler.chains()[:32], args.out / "buffer.png")
        print(f"wrote {args.out / 'samples.png'} and {args.out / 'buffer.png'}")
    return {k: float(v) for k, v in terms.items()}


if __name__ == "__main__":
    main(get_args_parser().parse_args())
