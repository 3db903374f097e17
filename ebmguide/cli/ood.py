"""``ebmguide ood``: out-of-distribution detection AUROC with the joint energy."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ebmguide.cli._common import add_checkpoint_option

__all__ = ["register", "run"]

DESCRIPTION = """\
Score inputs with -(E(x) - beta*cos(h(x), g(x))) (the EMA EBM's energy E and latent direction g, the
EMA guide's embedding h, no augmentation) and report the AUROC of telling the in-distribution set
(positive) from each out-of-distribution set (--ood, repeatable), next to the energy-only score
-E(x).
Sets: shapes (held-out embedded shapes), novel_colours, novel_shapes, noise (uniform noise),
cifar10:PATH (CIFAR-10 test images from a local folder or archive, dequantized as in training
(x = (pixel + U(0, 1)) / 256) and resized to the model's size)."""



def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``ood`` subcommand."""
    from ebmguide.ood import DEFAULT_OOD_BETA

    p = subparsers.add_parser("ood", help="out-of-distribution AUROC with the joint energy",
                              description=DESCRIPTION)
    add_checkpoint_option(p)
    p.add_argument("--in", dest="in_set", default="shapes", metavar="SET",
                   help="the in-distribution set (default shapes)")
    p.add_argument("--ood", dest="ood_sets", action="append", default=[], metavar="SET",
                   help="an out-of-distribution set (repeatable): novel_colours, novel_shapes, "
                        "noise, cifar10:PATH")
    p.add_argument("--beta", type=float, action="append", metavar="BETA",
                   help=f"test-time beta of the joint score (repeatable for a sweep; default "
                        f"{DEFAULT_OOD_BETA})")
    p.add_argument("--n", type=int, default=1000, help="inputs per set (default 1000)")
    p.add_argument("--batch-size", type=int, default=256, help="inputs per forward (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated sets (default 0)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: the run's)")
    p.add_argument("--no-ema", action="store_true", help="use the online networks")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="folder receiving ood.json, the results (default: print only)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=run)


def check_out(args: argparse.Namespace) -> None:
    """Refuse ``--out SET`` (the OOD-set option of earlier versions) and ``--out FILE``."""
    from ebmguide.run.ood_sets import SETS

    if args.out is None:
        return
    name = str(args.out)
    if not args.ood_sets and (name in SETS or name.startswith("cifar10:")):
        raise ValueError(f"--out is the output folder in every command; name out-of-distribution "
                         f"sets with --ood (e.g. --ood {name}).")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file: pass a folder for ood.json.")


def run(args: argparse.Namespace) -> int:
    """Run ``ebmguide ood``."""
    from ebmguide.ood import DEFAULT_OOD_BETA, auroc_row, ood_scores
    from ebmguide.run.checkpoints import find_checkpoint, load_run
    from ebmguide.run.components import networks_from_checkpoint, sample_shape
    from ebmguide.run.ood_sets import load_set
    from ebmguide.torch_utils import resolve_device

    check_out(args)
    if not args.ood_sets:
        raise ValueError("give at least one --ood SET (e.g. --ood noise --ood novel_colours).")
    betas = args.beta or [DEFAULT_OOD_BETA]
    checkpoint = find_checkpoint(args.checkpoint)
    state, cfg = load_run(checkpoint, trust_imports=args.trust_config_imports)
    device = resolve_device(args.device or cfg.device)
    ebm, guide = networks_from_checkpoint(state, cfg, device, ema=not args.no_ema)
    shape = sample_shape(state)
    if len(shape) != 3:
        raise ValueError(f"ood needs an image model; this checkpoint samples {shape}.")
    score = {name: ood_scores(ebm, guide, load_set(name, args.n, shape, seed=args.seed),
                              batch_size=args.batch_size, device=device)
             for name in dict.fromkeys([args.in_set, *args.ood_sets])}
    inside = score[args.in_set]
    results: dict[str, dict[str, float]] = {}
    for name in args.ood_sets:
        results[name] = auroc_row(inside, score[name], betas)
    print(f"OOD AUROC (in-distribution {args.in_set!r} positive, {args.n} inputs per set, "
          f"{'online' if args.no_ema else 'EMA'} networks of {checkpoint})")
    columns = list(next(iter(results.values())))
    width = max(len(n) for n in results) + 2
    print("set".ljust(width) + "  ".join(c.rjust(16) for c in columns))
    for name, row in results.items():
        print(name.ljust(width) + "  ".join(f"{row[c]:16.4f}" for c in columns))
    text = json.dumps({"checkpoint": str(checkpoint), "in": args.in_set, "n": args.n,
                       "auroc": results}, indent=2) + "\n"
    for path in ([args.json] if args.json is not None else []) + (
            [args.out / "ood.json"] if args.out is not None else []):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"results: {path}")
    return 0
