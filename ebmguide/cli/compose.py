"""``ebmguide compose``: compositional sampling (AND / NOT / OR of conditions) from a checkpoint.

Also the options of ``ebmguide sample --condition``; the conditions themselves are resolved and
sampled by :mod:`ebmguide.run.conditions`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ebmguide.cli._common import add_checkpoint_option
from ebmguide.run.conditions import (
    DEFAULT_BETA,
    DEFAULT_INIT,
    ConditionContext,
    load_context,
    resolve_condition,
    sample_rows,
    save_rows,
)

__all__ = ["add_condition_options", "register", "run", "run_conditions"]

DESCRIPTION = """\
Sample from p(x | conditions) with the EMA networks of a checkpoint (chains start from its replay
buffer, or from noise with --init fresh).
Conditions: a factor of the embedded shapes data (colour=red, shape=circle, scale=small,
quadrant=top-left; latent = normalized mean embedding of labelled shapes images with that value)
or a reference image file (latent = its embedding). Energy, with c(z) = cos(g(x), z):
E(x) - beta*sum_and c(z) + beta*sum_not c(z) - logsumexp_or(beta*c(z) - log K).
Writes a PNG with one row per condition alone (unless --composed-only) and a last row for the
composition, plus the composed samples as uint8 in an .npz (key "images")."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``compose`` subcommand."""
    p = subparsers.add_parser("compose", help="sample AND / NOT / OR compositions of conditions",
                              description=DESCRIPTION)
    add_checkpoint_option(p)
    for flag, text in (("--and", "a condition the samples must have (repeatable)"),
                       ("--not", "a condition the samples must not have (repeatable)"),
                       ("--or", "one of several alternatives (repeatable; a mixture)")):
        p.add_argument(flag, dest=flag[2:] + "_", action="append", default=[], metavar="COND",
                       help=text)
    add_condition_options(p)
    p.add_argument("--n", type=int, default=8, help="samples per row (default 8)")
    p.add_argument("--steps", type=int, metavar="K",
                   help="SGLD steps per chain (default: the run's eval.fresh_steps)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: the run's)")
    p.add_argument("--no-ema", action="store_true", help="use the online networks")
    p.add_argument("--composed-only", action="store_true",
                   help="draw only the composition, not a row per condition")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="folder receiving compose.png (the grid) and compose.npz (the composed "
                        "samples) (default: the run folder)")
    # The option of earlier versions, refused with a pointer to --out.
    p.add_argument("--output", "-o", dest="old_output", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def output_folder(args: argparse.Namespace, run_dir: Path) -> Path:
    """``--out`` (a folder) or the run folder; refuses the old ``--output FILE`` and a file."""
    if args.old_output is not None:
        raise ValueError(f"--output is gone: --out is the output folder in every command; pass "
                         f"--out DIR (compose.png and compose.npz are written there), e.g. --out "
                         f"{Path(args.old_output).parent}.")
    if args.out is None:
        return run_dir
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file: pass a folder for compose.png and "
                         f"compose.npz.")
    if not args.out.exists() and args.out.suffix.lower() in (".png", ".npz"):
        raise ValueError(f"--out {args.out} looks like a file name: --out is the output folder "
                         f"(compose.png and compose.npz are written there); pass e.g. --out "
                         f"{args.out.with_suffix('')}.")
    return Path(args.out)


def add_condition_options(p: argparse.ArgumentParser, *, condition: bool = False) -> None:
    """Options shared by ``compose`` and ``sample`` (with ``condition``: also ``--condition``)."""
    if condition:
        p.add_argument("--condition", action="append", default=[], metavar="COND",
                       help="sample p(x | COND) instead, one grid row per condition "
                            "(repeatable): a factor of the shapes data, e.g. colour=red, "
                            "shape=circle, scale=small, quadrant=top-left, or a reference "
                            "image file; --n samples per condition")
    p.add_argument("--beta", type=float, default=DEFAULT_BETA,
                   help=f"test-time guidance strength beta (default {DEFAULT_BETA}; training "
                        "used 0.01, which is weak; the best value depends on the model: sweep "
                        "it)")
    p.add_argument("--init", choices=("fresh", "buffer"), default=DEFAULT_INIT,
                   help="start the chains from uniform noise (fresh) or from states of the "
                        f"checkpoint's replay buffer, i.e. unconditional samples (default "
                        f"{DEFAULT_INIT})")
    p.add_argument("--labelled", type=int, default=600, metavar="N",
                   help="labelled shapes images embedded to resolve factor conditions "
                        "(default 600)")


def _group(alternatives: Sequence[str], bracket: bool) -> str:
    text = " OR ".join(alternatives)
    return f"({text})" if bracket and len(alternatives) > 1 else text


def _composition(args: argparse.Namespace, ctx: ConditionContext) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    import torch

    if not (args.and_ or args.not_ or args.or_):
        raise ValueError("give at least one condition: --and COND, --not COND or --or COND.")
    latents = {spec: resolve_condition(spec, ctx) for spec in [*args.and_, *args.not_, *args.or_]}
    terms: dict[str, Any] = {}
    if args.and_ or args.not_:
        specs = [*args.and_, *args.not_]
        terms["and_latents"] = torch.stack([latents[s] for s in specs])
        terms["and_weights"] = [1.0] * len(args.and_) + [-1.0] * len(args.not_)
    if args.or_:
        terms["or_latents"] = torch.stack([latents[s] for s in args.or_])
    label = " AND ".join([*args.and_, *(f"NOT {s}" for s in args.not_)]
                         + ([_group(args.or_, bool(args.and_ or args.not_))] if args.or_ else []))
    rows: list[tuple[str, dict]] = []  # type: ignore[type-arg]
    if not args.composed_only:
        rows.append(("unconditional", {}))
        rows += [(s, {"and_latents": latents[s]}) for s in dict.fromkeys(latents)]
    return [*rows, (label, terms)]


def _check_rows(rows: Sequence[tuple[str, Any]], command: str) -> None:
    """Refuse NaN/inf samples before anything is written (never black pixels)."""
    from ebmguide._validation import check_finite

    for name, x in rows:
        check_finite(f"samples of {name!r} drawn by {command}", x)


def run_conditions(args: argparse.Namespace) -> int:
    """``ebmguide sample --condition ...``: one row of ``--n`` samples per condition."""
    import numpy as np

    from ebmguide.grid import to_uint8

    if args.protocol != "fresh":
        raise ValueError("--condition samples fresh chains; leave out --protocol buffer.")
    ctx = load_context(args.checkpoint, device=args.device, ema=not args.no_ema,
                       n_labelled=args.labelled, trust_imports=args.trust_config_imports)
    specs = list(dict.fromkeys(args.condition))
    rows = sample_rows(ctx, [(s, {"and_latents": resolve_condition(s, ctx)}) for s in specs],
                       n=args.n, beta=args.beta, steps=args.steps, seed=args.seed,
                       init=args.init)
    out = args.out or ctx.checkpoint.parent.parent / "samples-conditional"
    _check_rows(rows, "ebmguide sample --condition")
    grid = save_rows(rows, out / "conditional.png")
    tensors = out / "conditional.npz"
    np.savez_compressed(tensors, images=np.stack([to_uint8(x).numpy() for _, x in rows]),
                        conditions=np.array(specs))
    print(f"{args.n} samples for each of {len(specs)} conditions (beta {args.beta}) from "
          f"{ctx.checkpoint}\n  grid:    {grid}  (one row per condition)\n"
          f"  tensors: {tensors}  (images: conditions x n x C x H x W)")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``ebmguide compose``."""
    import numpy as np

    from ebmguide.grid import to_uint8

    ctx = load_context(args.checkpoint, device=args.device, ema=not args.no_ema,
                       n_labelled=args.labelled, trust_imports=args.trust_config_imports)
    rows = sample_rows(ctx, _composition(args, ctx), n=args.n, beta=args.beta, steps=args.steps,
                       seed=args.seed, init=args.init)
    folder = output_folder(args, ctx.checkpoint.parent.parent)
    _check_rows(rows, "ebmguide compose")
    out = save_rows(rows, folder / "compose.png")
    tensors = folder / "compose.npz"
    np.savez_compressed(tensors, images=to_uint8(rows[-1][1]).numpy())
    print(f"{rows[-1][0]}: {args.n} samples (beta {args.beta}) from {ctx.checkpoint}\n"
          f"  grid:    {out}\n  tensors: {tensors}")
    return 0
