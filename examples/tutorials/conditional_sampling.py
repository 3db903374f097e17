"""Tutorial: conditional and compositional sampling from a trained CLEL model.

A CLEL model is a joint density p(x, z) ∝ exp(−E(x) + β g(x)ᵀz), so for a fixed latent z the
conditional p(x | z) is sampled by the same Langevin chains on the shifted energy
E(x) − β cos(g(x), z). Latents come from a few labelled examples (the normalized mean of their
embeddings; the labels are used here, at sampling time, never in training), and several latents
compose: AND (sum), NOT (negative weight), OR (log-sum-exp mixture).

The embedded shapes data has known factors that ``read_factors`` reads back from any image by rule,
so every request is scored exactly: "asked for a circle: what fraction of the samples are circles?"

    python examples/tutorials/conditional_sampling.py --out runs/cond   # model: runs/demo
    python examples/tutorials/conditional_sampling.py --smoke           # CI
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from _shapes_model import SIZE, add_model_args, get_model
from torch import Tensor

from ebmguide.conditional import (
    composed_energy,
    latents_by_label,
    sample_conditional,
    sample_energy,
)
from ebmguide.data import make_shapes, read_factors
from ebmguide.grid import save_panels


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Conditional and compositional sampling with "
                                                 "CLEL on the shapes data.")
    add_model_args(parser)
    parser.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.01, 0.03, 0.1],
                        help="test-time guidance strengths to sweep (training used 0.01)")
    parser.add_argument("--n", type=int, default=64, help="samples per request")
    parser.add_argument("--steps", type=int, default=300,
                        help="Langevin steps from fresh noise (the demo's eval.fresh_steps)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the sample grids")
    return parser


def main(args: argparse.Namespace) -> dict[str, float]:
    if args.smoke:
        args.betas, args.n, args.steps = [0.0, 3.0], 4, 2
    g = torch.Generator().manual_seed(args.seed)
    ebm, guide, sampler = get_model(args, g)

    # --8<-- [start:latents]
    # A few labelled examples per class: labels are used here, at sampling time only.
    examples = make_shapes(32 if args.smoke else 600, size=SIZE, generator=g)
    names = examples.factor_names
    shape_of = latents_by_label(guide, examples.images,
                                [names["shape"][i] for i in examples.factors["shape"]])
    colour_of = latents_by_label(guide, examples.images,
                                 [names["colour"][i] for i in examples.factors["colour"]])
    # --8<-- [end:latents]

    # --8<-- [start:judge]
    def fraction(samples: Tensor, **wanted: str) -> float:
        """Fraction of samples whose factors, read by rule, are all as wanted."""
        read = read_factors(samples)
        ok = torch.ones(samples.shape[0], dtype=torch.bool)
        for factor, value in wanted.items():
            negate = value.startswith("not ")
            index = names[factor].index(value.removeprefix("not "))
            ok &= (read[factor] != index) if negate else (read[factor] == index)
        return float(ok.float().mean())
    # --8<-- [end:judge]

    results: dict[str, float] = {}
    panels: dict[str, list[tuple[str, Tensor]]] = {"colour": [], "shape": [], "composition": []}

    # --8<-- [start:conditional]
    for factor, latent_of in (("colour", colour_of), ("shape", shape_of)):
        print(f"\nOne latent per {factor}: fraction of {args.n} samples read as that {factor}")
        print("beta    " + "  ".join(f"{v:>8}" for v in names[factor]))
        for beta in args.betas:
            row = []
            for value in names[factor]:
                samples = sample_conditional(ebm, latent_of[value], beta=beta, n=args.n,
                                             sampler=sampler, generator=g, n_steps=args.steps)
                row.append(fraction(samples, **{factor: value}))
                results[f"{factor}={value} beta={beta:g}"] = row[-1]
                if beta == max(args.betas):
                    panels[factor].append((f"{value} (beta {beta:g})", samples[:16]))
            print(f"{beta:<6g}  " + "  ".join(f"{v:8.2f}" for v in row))
    # --8<-- [end:conditional]

    # --8<-- [start:compose]
    beta = max(args.betas)
    # each request: its energy, and what a sample must show (any one of the alternatives)
    requests: dict[str, tuple[Callable[[Tensor], Tensor], list[dict[str, str]]]] = {
        "blue AND circle": (composed_energy(
            ebm, beta=beta, and_latents=torch.stack([colour_of["blue"], shape_of["circle"]])),
            [{"colour": "blue", "shape": "circle"}]),
        "circle NOT red": (composed_energy(
            ebm, beta=beta, and_latents=torch.stack([shape_of["circle"], colour_of["red"]]),
            and_weights=[1.0, -1.0]),
            [{"shape": "circle", "colour": "not red"}]),
        "red OR blue": (composed_energy(
            ebm, beta=beta, or_latents=torch.stack([colour_of["red"], colour_of["blue"]])),
            [{"colour": "red"}, {"colour": "blue"}]),
    }
    unconditional = sample_energy(ebm.energy, args.n, sampler=sampler, generator=g,
                                  n_steps=args.steps)
    print(f"\nComposition at beta {beta:g}: fraction of {args.n} samples that satisfy the request")
    for name, (energy_fn, alternatives) in requests.items():
        samples = sample_energy(energy_fn, args.n, sampler=sampler, generator=g,
                                n_steps=args.steps)
        value = sum(fraction(samples, **wanted) for wanted in alternatives)  # exclusive options
        base = sum(fraction(unconditional, **wanted) for wanted in alternatives)
        results[name] = value
        panels["composition"].append((name, samples[:16]))
        print(f"  {name:<20} {value:.2f}   (unconditional samples: {base:.2f})")
    # --8<-- [end:compose]

    if args.out is not None:
        for group, rows in panels.items():
            path = save_panels(rows, args.out / f"{group}.png", scale=4, nrow=4)
            print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
