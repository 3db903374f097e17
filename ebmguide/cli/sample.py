"""``ebmguide sample``: draw samples from a training checkpoint (EMA networks by default)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ebmguide.cli._common import add_checkpoint_option

__all__ = ["add_sampling_options", "register", "run"]

DESCRIPTION = """\
Draw samples from a checkpoint with the EMA EBM (--no-ema: the online one).
--protocol fresh (default): N chains from uniform noise, --steps SGLD steps each.
--protocol buffer: the paper's protocol: a buffer of N uniform images, --rounds passes over it
in chunks of --chunk, each chunk through exactly the training sampler (re-initialisation,
buffer augmentation, K steps, write back); the paper used N=50000, 10 rounds, chunks of 512.
Writes a PNG grid and the samples as uint8 floor(x*256) in an .npz (key "images") or a .pt file."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``sample`` subcommand."""
    p = subparsers.add_parser("sample", help="draw samples from a checkpoint",
                              description=DESCRIPTION)
    add_sampling_options(p)
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="output folder (default: <run folder>/samples-<protocol>)")
    p.add_argument("--format", choices=("npz", "pt"), default="npz",
                   help="tensor file format (default npz)")
    # --- conditional sampling: --condition, --beta, --labelled (owned by ebmguide.cli.compose) ---
    from ebmguide.cli.compose import add_condition_options

    add_condition_options(p, condition=True)
    # --- end conditional sampling ---
    p.set_defaults(func=run)


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    """Options shared with ``ebmguide evaluate``."""
    add_checkpoint_option(p)
    p.add_argument("--n", type=int, default=64, help="number of samples (default %(default)s)")
    p.add_argument("--protocol", choices=("fresh", "buffer"), default="fresh",
                   help="fresh chains from noise, or the paper's buffer protocol")
    p.add_argument("--steps", type=int, metavar="K",
                   help="SGLD steps per chain or chunk (default: the run's eval.fresh_steps for "
                        "fresh chains, sampler.n_steps for the buffer protocol)")
    p.add_argument("--rounds", type=int, default=10, help="buffer protocol: passes (default 10)")
    p.add_argument("--chunk", type=int, default=512, help="chains per batch (default 512)")
    p.add_argument("--no-ema", action="store_true", help="use the online EBM, not the EMA copy")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: the run's)")


def run(args: argparse.Namespace) -> int:
    """Run ``ebmguide sample``."""
    # --- conditional sampling (owned by ebmguide.cli.compose) ---
    if args.condition:
        from ebmguide.cli.compose import run_conditions

        return run_conditions(args)
    # --- end conditional sampling ---
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file: pass a folder for samples.png and the "
                         f"tensor file.")
    from ebmguide.run.checkpoint_sampling import SampleOptions, draw_samples, save_samples

    x, checkpoint = draw_samples(SampleOptions.from_namespace(vars(args)))
    out = args.out or checkpoint.parent.parent / f"samples-{args.protocol}"
    grid, tensor_file = save_samples(x, out, args.format)
    print(f"{len(x)} samples ({args.protocol}, {'online' if args.no_ema else 'EMA'} EBM) from "
          f"{checkpoint}\n  grid:    {grid}\n  tensors: {tensor_file}")
    return 0
