"""``ebmguide sample``: draw samples from a training checkpoint (EMA networks by default)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ebmguide.cli._common import add_trust_option

__all__ = ["draw_samples", "register", "run", "save_samples"]

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
    p.add_argument("--checkpoint", required=True, metavar="FILE|RUN",
                   help="a checkpoint file or a run folder (its newest checkpoint)")
    add_trust_option(p)
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


def draw_samples(args: argparse.Namespace) -> tuple[Any, Any, Any, Path]:
    """Load the checkpoint and draw samples as the options say.

    Returns:
        ``(samples (N, *shape) CPU tensor, cfg, guide, checkpoint path)``.
    """
    import torch

    from ebmguide.run.checkpoints import find_checkpoint, load_run
    from ebmguide.run.components import networks_from_checkpoint, sample_shape
    from ebmguide.run.evaluator import fresh_chains
    from ebmguide.torch_utils import resolve_device

    for name in ("n", "rounds", "chunk"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be a positive integer, got {getattr(args, name)}.")
    if args.steps is not None and args.steps < 0:
        raise ValueError(f"--steps must not be negative, got {args.steps}.")
    from ebmguide.limits import check_bound

    for name in ("n", "steps", "rounds", "chunk"):  # before anything is allocated
        if getattr(args, name) is not None:
            check_bound(f"cli.{name}", getattr(args, name), f" (--{name})")
    checkpoint = find_checkpoint(args.checkpoint)
    state, cfg = load_run(checkpoint, trust_imports=args.trust_config_imports)
    device = resolve_device(args.device or cfg.device)
    ebm, guide = networks_from_checkpoint(state, cfg, device, ema=not args.no_ema)
    shape, g = sample_shape(state), torch.Generator(device).manual_seed(args.seed)
    if args.protocol == "fresh":
        steps = args.steps if args.steps is not None else (cfg.eval.fresh_steps
                                                           or cfg.sampler.n_steps)
        x = fresh_chains(ebm.energy, cfg, shape, args.n, steps=steps, generator=g, device=device,
                         chunk=args.chunk)
    else:
        x = _buffer_with_progress(ebm, cfg, shape, args, g, device)
    return x, cfg, guide, checkpoint


def _buffer_with_progress(ebm: Any, cfg: Any, shape: tuple[int, ...], args: argparse.Namespace,
                          g: Any, device: Any) -> Any:
    from ebmguide.run.evaluator import buffer_protocol
    from ebmguide.run.progress import progress_bar

    # a bar on a terminal, a line every 30 s in a log file
    with progress_bar("auto", total=args.n * args.rounds, initial=0, desc="buffer protocol",
                      unit="chain", sweep=True) as bar:
        return buffer_protocol(ebm.energy, cfg, shape, args.n, rounds=args.rounds, generator=g,
                               device=device, chunk=args.chunk, steps=args.steps,
                               on_chunk=bar.update)


def save_samples(x: Any, out: Path, fmt: str) -> tuple[Path, Path]:
    """Write ``samples.png`` and ``samples.<fmt>`` (uint8 images, or float vectors) into ``out``."""
    import numpy as np
    import torch

    from ebmguide._validation import check_finite
    from ebmguide.grid import save_panels, to_uint8

    check_finite("samples drawn by ebmguide sample", x)  # nothing is written then
    out.mkdir(parents=True, exist_ok=True)
    grid = save_panels([(f"{len(x)} samples", x[:256])], out / "samples.png", scale=4)
    data = to_uint8(x) if x.dim() == 4 else x.float()
    tensor_file = out / f"samples.{fmt}"
    if fmt == "npz":
        np.savez_compressed(tensor_file, images=data.numpy())
    else:
        torch.save(data, tensor_file)
    return grid, tensor_file


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
    x, _, _, checkpoint = draw_samples(args)
    out = args.out or checkpoint.parent.parent / f"samples-{args.protocol}"
    grid, tensor_file = save_samples(x, out, args.format)
    print(f"{len(x)} samples ({args.protocol}, {'online' if args.no_ema else 'EMA'} EBM) from "
          f"{checkpoint}\n  grid:    {grid}\n  tensors: {tensor_file}")
    return 0
