"""Do real images survive the sampler? SGLD started from held-out shapes, read back by rule.

    python examples/shapes/basins.py --checkpoint runs/demo            # 20, 100, 300 steps
    python examples/shapes/basins.py --checkpoint runs/demo --noise 0  # plain gradient descent

A model whose samples are all round can have two causes: chains that cannot reach the other
shapes (a mixing problem), or an energy whose descent turns a square into a blob (a model problem).
This script tells them apart. It draws fresh images of every shape (with the training batches'
pixel noise), runs the run's own SGLD settings on them from there, and prints, per shape, the
fraction still read as that shape (``ebmguide.data.read_factors``) after each number of steps,
next to the mean energies of the real images per shape and of the replay buffer per read shape.
Shapes that do not survive a chain's lifetime in the buffer (steps per visit times visits) are
not minima of what the model learnt, whatever the sampler does.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from ebmguide.data import make_shapes, read_factors
from ebmguide.data.noise import GaussianNoise
from ebmguide.run.checkpoints import load_run
from ebmguide.run.components import langevin_settings, networks_from_checkpoint
from ebmguide.sampling.langevin import langevin_dynamics


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="SGLD from real shapes: which survive?")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a run folder or file")
    parser.add_argument("--n", type=int, default=400, help="real images (all shapes together)")
    parser.add_argument("--steps", default="20,100,300", help="comma-separated step counts")
    parser.add_argument("--step-size", type=float, default=None, help="default: the run's η")
    parser.add_argument("--noise", type=float, default=None, help="default: the run's σ")
    parser.add_argument("--no-ema", action="store_true", help="the trained, not the EMA, weights")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Print the table; return ``{"real energy" | "buffer energy" | "<K> steps": {shape: value}}``.

    Raises:
        ValueError: for a run that is not on the shapes data, or bad options.
    """
    steps = [int(s) for s in str(args.steps).split(",") if s.strip()]
    if not steps or min(steps) < 0 or args.n < 1:
        raise ValueError("--steps takes non-negative counts such as 20,100,300; --n must be >= 1.")
    state, cfg = load_run(args.checkpoint)
    if cfg.data.name != "shapes" or cfg.data.size < 16:
        raise ValueError(f"the run trained on {cfg.data.name!r} at size {cfg.data.size}; this "
                         f"script reads shapes back by rule, which needs the shapes data at "
                         f"size >= 16.")
    ebm, _ = networks_from_checkpoint(state, cfg, torch.device("cpu"), ema=not args.no_ema)
    g = torch.Generator().manual_seed(args.seed)
    data = make_shapes(args.n, generator=g, size=cfg.data.size)
    x = (GaussianNoise(cfg.data.noise, bounds=cfg.sampler.clamp)(data.images, g)
         if cfg.data.noise > 0 else data.images)  # the training batches' noise
    names, truth = data.factor_names["shape"], data.factors["shape"]
    settings = langevin_settings(cfg)
    settings = dataclasses.replace(
        settings,
        step_size=settings.step_size if args.step_size is None else args.step_size,
        noise_scale=settings.noise_scale if args.noise is None else args.noise)

    def per_shape(values: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        return {name: float(values[labels == i].float().mean()) if (labels == i).any()
                else float("nan") for i, name in enumerate(names)}

    table: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        table["real energy"] = per_shape(ebm.energy(x), truth)
        buffer = state["sampler"]["buffer"]["states"][: args.n].float()
        table["buffer energy"] = per_shape(ebm.energy(buffer), read_factors(buffer)["shape"])
    for k in steps:
        out = langevin_dynamics(ebm.energy, x, settings.with_steps(k),
                                generator=torch.Generator().manual_seed(args.seed + 1))
        kept = read_factors(out.samples)["shape"] == truth
        table[f"{k} steps"] = per_shape(kept, truth)
    print(f"SGLD from {args.n} real images, η = {settings.step_size:g}, σ = "
          f"{settings.noise_scale:g} ({'EMA' if not args.no_ema else 'trained'} weights)")
    print(f"{'':>14}" + "".join(f"{n:>10}" for n in names))
    for row, values in table.items():
        fmt = "{:>10.2e}" if "energy" in row else "{:>10.2f}"
        label = row if "energy" in row else f"kept, {row}"
        print(f"{label:>16}" + "".join(fmt.format(values[n]) for n in names))
    return table


if __name__ == "__main__":
    main(get_args_parser().parse_args())
