"""Tutorial: out-of-distribution detection with a trained CLEL model.

The score of an input is the model's joint log-density with the guide's own latent plugged in,
s(x) = −E(x) + β cos(h(x), g(x)) (higher: more in-distribution), next to the plain EBM score −E(x).
A model trained on the embedded shapes is asked to tell held-out shapes (in-distribution) from
three shifted sets: the training shapes in colours it never saw, shapes it never saw, and noise.
The result is the AUROC with in-distribution as the positive class (1 = perfect, 0.5 = chance).

    python examples/tutorials/ood_detection.py           # the demo's model (runs/demo)
    python examples/tutorials/ood_detection.py --smoke   # CI
"""

from __future__ import annotations

import argparse

import torch
from _shapes_model import SIZE, add_model_args, get_model

from ebmguide.data import SHIFT_KINDS, make_shapes, make_shifted_shapes
from ebmguide.metrics import auroc
from ebmguide.ood import DEFAULT_OOD_BETA, ood_auroc, ood_scores


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="OOD detection with CLEL on the shapes data.")
    add_model_args(parser)
    parser.add_argument("--n", type=int, default=2000, help="images per test set")
    parser.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.1, 1.0, 10.0],
                        help="test-time β values of the joint score to compare")
    return parser


def main(args: argparse.Namespace) -> dict[str, float]:
    if args.smoke:
        args.n = 64
    g = torch.Generator().manual_seed(args.seed)
    ebm, guide, _ = get_model(args, g)

    # --8<-- [start:data]
    inside = make_shapes(args.n, size=SIZE, generator=g).images  # held out: new random draws
    outside = {kind: make_shifted_shapes(kind, args.n, generator=g, size=SIZE).images
               for kind in SHIFT_KINDS}  # novel_colours, novel_shapes, noise
    # --8<-- [end:data]

    # --8<-- [start:auroc]
    results = ood_auroc(ebm, guide, inside, outside, beta=DEFAULT_OOD_BETA)
    print(f"AUROC, in-distribution = held-out shapes (β = {DEFAULT_OOD_BETA} for the joint score)")
    print(f"{'out-of-distribution set':<24} {'joint':>7} {'energy only':>12}")
    for name, result in results.items():
        print(f"{name:<24} {result.joint:7.3f} {result.energy:12.3f}")
    # --8<-- [end:auroc]

    # --8<-- [start:beta]
    # The two parts of the score are kept apart, so any β costs one pass over each set.
    scores_in = ood_scores(ebm, guide, inside)
    scores_out = {name: ood_scores(ebm, guide, images) for name, images in outside.items()}
    print("\nJoint-score AUROC against the test-time β")
    print(f"{'β':<8}" + "".join(f"{name:>15}" for name in outside))
    summary: dict[str, float] = {}
    for beta in args.betas:
        row = []
        for name, scores in scores_out.items():
            value = auroc(scores_in.joint(beta), scores.joint(beta))
            summary[f"{name} beta={beta:g}"] = value
            row.append(value)
        print(f"{beta:<8g}" + "".join(f"{v:15.3f}" for v in row))
    # --8<-- [end:beta]
    return summary


if __name__ == "__main__":
    main(get_args_parser().parse_args())
