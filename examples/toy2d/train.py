"""CLEL on a 2-D toy density with the shipped `toy2d` recipe.

    python examples/toy2d/train.py                          # 8 Gaussians, ~1 min on 2 CPU cores
    python examples/toy2d/train.py --toy two_moons --out runs/moons
    python examples/toy2d/train.py --smoke                  # a few seconds (CI)

Writes a run folder (scatter plots of data | replay buffer | fresh chains, metrics.jsonl with the
FD on coordinates, checkpoints) and prints the replay buffer's mean distance to the nearest mode.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ebmguide.data import TOY2D_NAMES, gaussian_mixture_modes
from ebmguide.run.config import load_config
from ebmguide.run.trainer import Trainer


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="CLEL on a 2-D toy density.")
    parser.add_argument("--toy", default="eight_gaussians", choices=TOY2D_NAMES)
    parser.add_argument("--iterations", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--out", type=Path, default=Path("runs/toy2d"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a few iterations, for CI")
    return parser


def main(args: argparse.Namespace) -> dict[str, float]:
    overrides = [f"data.toy={args.toy}", f"seed={args.seed}"]
    if args.smoke:
        overrides += ["train.iterations=4", "sampler.buffer_size=256", "train.batch_size=32",
                      "train.log_every=2", "eval.every=0", "eval.n_samples=64",
                      "eval.fresh_steps=5", "train.tensorboard=false"]
    elif args.iterations is not None:
        overrides.append(f"train.iterations={args.iterations}")
    cfg = load_config("toy2d", overrides)
    trainer = Trainer(cfg, args.out, progress=not args.smoke)
    final = trainer.run()
    result = dict(final)
    if args.toy in ("eight_gaussians", "twentyfive_gaussians"):
        modes = gaussian_mixture_modes(args.toy)
        buffer = trainer.parts.sampler.chains()
        result["mode_distance"] = float(torch.cdist(buffer, modes).min(1).values.mean())
    print({k: round(v, 4) for k, v in result.items()})
    print(f"run folder: {args.out}")
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
