"""Shared by the conditional-sampling and OOD tutorials: a CLEL model of the embedded shapes.

``get_model`` returns the EMA networks (eval mode) of a run of the ``demo`` recipe, the model that
``ebmguide demo`` and ``make demo`` train (about 5 minutes on 2 CPU cores), and a sampler with the
recipe's settings (SGLD with η = 100, σ = 0.01). It reuses the run folder ``--run`` (by default
``runs/demo``, where ``make demo`` writes) when that holds a finished run, continues it when it was
interrupted, and trains the recipe there otherwise, so the second tutorial reuses the first one's
model, and both reuse the demo's.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

import torch

import ebmguide as eg
from ebmguide.run.checkpoints import find_checkpoint, load_run
from ebmguide.run.components import build_sampler, networks_from_checkpoint, sample_shape
from ebmguide.run.config import load_config
from ebmguide.run.trainer import Trainer

SIZE = 16
# --smoke: the demo recipe shrunk to seconds (CI checks that the tutorials run, not what they show)
SMOKE = ["train.iterations=3", "train.batch_size=8", "train.sample_every=3",
         "train.checkpoint_every=3", "train.tensorboard=false", "data.n_train=256",
         "model.width=8", "model.hidden_dim=32", "guide.width=8", "guide.hidden_dim=32",
         "sampler.buffer_size=64", "sampler.n_steps=3", "eval.every=0",
         'eval.feature_net="none"', "eval.fresh_steps=3", "eval.n_samples=8", "eval.grid_size=4"]


class ShapesModel(NamedTuple):
    """The EMA networks (eval mode) and a sampler with the training settings."""

    ebm: eg.SphericalEBM
    guide: eg.SimCLRGuide
    sampler: eg.SGLDSampler


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """The options that say how to get the model."""
    parser.add_argument("--run", type=Path, default=None,
                        help="run folder of the demo recipe: reused when it holds a finished run, "
                             "trained there otherwise (default runs/demo; runs/tutorial-smoke "
                             "with --smoke)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training (if it trains) "
                                                            "and of the sampling")
    parser.add_argument("--smoke", action="store_true", help="a tiny model, a few seconds (CI)")


def _train_or_resume(run: Path, overrides: list[str]) -> None:
    """Train the demo recipe in ``run``, or continue it from its newest checkpoint."""
    try:
        checkpoint = find_checkpoint(run)
    except FileNotFoundError:
        print(f"training the demo recipe in {run} (ebmguide demo trains the same model)")
        Trainer(load_config("demo", overrides), run, progress="lines").run()
        return
    state, cfg = load_run(checkpoint)
    if state["iteration"] < cfg.train.iterations:
        Trainer(cfg, run, resume=checkpoint, progress="lines").run()


def get_model(args: argparse.Namespace, generator: torch.Generator) -> ShapesModel:
    """The EMA networks of the demo recipe's run in ``args.run`` (trained there when needed)."""
    run = args.run or Path("runs/tutorial-smoke" if args.smoke else "runs/demo")
    _train_or_resume(run, [f"seed={args.seed}", *(SMOKE if args.smoke else [])])
    state, cfg = load_run(run)  # the newest checkpoint; its own configuration
    cpu = torch.device("cpu")
    ebm, guide = networks_from_checkpoint(state, cfg, cpu)  # EMA weights, eval mode
    sampler = build_sampler(cfg, sample_shape(state), cpu, generator)
    print(f"model: EMA networks of {find_checkpoint(run)} (iteration {state['iteration']})")
    return ShapesModel(ebm, guide, sampler)
