"""Shared by the conditional-sampling and OOD tutorials: a CLEL model of the embedded shapes.

``get_model`` trains CLEL on 16x16 shapes with the networks of ``ebmguide demo`` and a lighter
sampler (30 SGLD steps of step size 1; about 5 minutes for 1,500 iterations on 2 CPU cores) and
returns the EMA networks in eval mode, or loads them from ``--model PATH`` when that file exists
(and saves them there after training), so the second tutorial can reuse the first one's model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import NamedTuple

import torch

import ebmguide as eg
from ebmguide.data import make_shapes
from ebmguide.nets import SmallCNN

SIZE, LATENT = 16, 64


class ShapesModel(NamedTuple):
    """The EMA networks (eval mode) and a sampler with the training settings."""

    ebm: eg.SphericalEBM
    guide: eg.SimCLRGuide
    sampler: eg.SGLDSampler


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """The options that say how to get the model."""
    parser.add_argument("--iterations", type=int, default=1500, help="CLEL training iterations")
    parser.add_argument("--model", type=Path, default=None,
                        help="load the networks from this file if it exists, else train and "
                             "save them there")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a tiny model, a few seconds (CI)")


def build(smoke: bool, generator: torch.Generator) -> tuple[eg.SphericalEBM, eg.SimCLRGuide,
                                                           eg.SGLDSampler]:
    """The networks of ``ebmguide demo`` and a light sampler (all smaller for ``--smoke``)."""
    width, hidden = (8, 32) if smoke else (32, 256)
    ebm = eg.SphericalEBM(SmallCNN(width=width), latent_dim=LATENT, hidden_dim=hidden)
    guide = eg.SimCLRGuide(SmallCNN(width=width, spectral_norm=False, norm="batch",
                                    activation=torch.nn.ReLU()),
                           latent_dim=LATENT, hidden_dim=hidden, augment="strong")
    sampler = eg.SGLDSampler((3, SIZE, SIZE), buffer_size=5000, n_steps=3 if smoke else 30,
                             step_size=1.0, noise_scale=0.005, reinit_prob=0.02, augment="flip",
                             generator=generator)
    return ebm, guide, sampler


def train(args: argparse.Namespace, generator: torch.Generator) -> ShapesModel:
    """CLEL on the shapes; returns the EMA networks in eval mode."""
    iterations = 3 if args.smoke else args.iterations
    images = make_shapes(256 if args.smoke else 20_000, size=SIZE, generator=generator).images
    ebm, guide, sampler = build(args.smoke, generator)
    opts = eg.clel_optimizers(ebm, guide, total_iterations=iterations, ebm_lr=3e-4,
                              warmup_iterations=min(100, iterations))
    ebm_ema = eg.make_ema(ebm, half_life_images=4000, batch_size=32, copy_iterations=60)
    guide_ema = eg.make_ema(guide, half_life_images=4000, batch_size=32, copy_iterations=60)
    start = time.perf_counter()
    for it in range(1, iterations + 1):
        x = images[torch.randint(0, images.shape[0], (32,), generator=generator)]
        terms = eg.clel_step(ebm, guide, sampler, x, ebm_optimizer=opts.ebm,
                             guide_optimizer=opts.guide, generator=generator).terms
        if not all(torch.isfinite(v) for v in terms.values()):
            raise FloatingPointError(f"iteration {it}: non-finite loss terms {terms}")
        opts.ebm_scheduler.step()
        opts.guide_scheduler.step()
        eg.update_ema(ebm_ema, ebm)
        eg.update_ema(guide_ema, guide)
        if it % 250 == 0 or it == iterations:
            print(f"training: it {it:5d}  cd {terms['cd'].item():+.3g}  "
                  f"align {terms['align'].item():.3f}  ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    return ShapesModel(ebm_ema.module.eval(), guide_ema.module.eval(), sampler)


def get_model(args: argparse.Namespace, generator: torch.Generator) -> ShapesModel:
    """Load the networks from ``args.model`` when it exists; otherwise train (and save)."""
    torch.manual_seed(args.seed)
    if args.model is not None and args.model.exists():
        ebm, guide, sampler = build(args.smoke, generator)
        state = torch.load(args.model, map_location="cpu", weights_only=True)
        ebm.load_state_dict(state["ebm"])
        guide.load_state_dict(state["guide"])
        print(f"loaded the networks from {args.model}")
        return ShapesModel(ebm.eval(), guide.eval(), sampler)
    model = train(args, generator)
    if args.model is not None:
        args.model.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"ebm": model.ebm.state_dict(), "guide": model.guide.state_dict()}, args.model)
        print(f"saved the networks to {args.model}")
    return model
