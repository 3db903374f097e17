"""``ebmguide demo``: CLEL on the embedded shapes data, on a laptop CPU in about five minutes."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from ebmguide.cli._common import (
    add_progress_options,
    add_set_option,
    describe_run,
    progress_mode,
)

__all__ = ["register", "run"]

DESCRIPTION = """\
Train CLEL on the embedded 16x16 coloured-shapes data with the `demo` recipe (2 CPU threads,
about 5 minutes with its evaluation). A progress bar shows the loss terms, the energy gap
E(samples) - E(data) and iterations/s. The run folder receives the sample grids (data | replay
buffer | fresh chains), metrics.jsonl with the Frechet distance on the features of an independent
shapes classifier (FD, next to its real-vs-real floor) and rule-based factor statistics, the
config, and a checkpoint to sample from."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser("demo", help="train CLEL on the embedded data (CPU, ~5 minutes)",
                              description=DESCRIPTION)
    p.add_argument("--out", type=Path, default=Path("runs/demo"), metavar="DIR",
                   help="run folder (default: runs/demo; an earlier demo run there is replaced, "
                        "any other run is refused)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run files (checkpoints, samples, metrics, config) of "
                        "another run in --out; other files are never touched")
    p.add_argument("--iterations", type=int, metavar="N",
                   help="training iterations (default: the recipe's)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads (default: the recipe's 2)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    add_set_option(p)
    add_progress_options(p)
    p.set_defaults(func=run)


MARKER = ".ebmguide-demo"
"""Written into a folder the demo creates: only such a folder is replaced without --overwrite."""

# The files a run writes, by folder: nothing else is ever deleted.
_RUN_FILES = {"checkpoints": re.compile(r"ckpt-\d+\.pt"), "samples": re.compile(r"iter-\d+\.png"),
              "tensorboard": re.compile(r"events\.out\.tfevents\..+")}
_TOP_FILES = ("metrics.jsonl", "config.toml", "feature_net.pt")


def prepare_folder(run_dir: Path, overwrite: bool) -> None:
    """Make ``run_dir`` ready for a demo run, deleting only run files of an earlier run.

    Raises:
        ValueError: ``run_dir`` is a file, holds a symlink where a run writes, or holds files of
            another run (or other files) without ``overwrite``.
    """
    from ebmguide.run.folder import RUN_ENTRIES, RunLock, check_run_dir

    check_run_dir(run_dir, (*RUN_ENTRIES, MARKER))
    if not run_dir.is_dir():
        return
    others = [p.name for p in run_dir.iterdir() if p.name not in (MARKER, ".lock")]
    if others and not (run_dir / MARKER).is_file() and not overwrite:
        raise ValueError(f"--out {run_dir} holds files that ebmguide demo did not write "
                         f"({', '.join(sorted(others)[:4])}{' ...' if len(others) > 4 else ''}): "
                         f"pick another folder with --out, or pass --overwrite to replace its "
                         f"run files (checkpoints, samples, metrics, config; nothing else).")
    with RunLock(run_dir):  # not while another process trains there
        for sub, pattern in _RUN_FILES.items():
            folder = run_dir / sub
            if folder.is_dir():
                for f in folder.iterdir():
                    if pattern.fullmatch(f.name) and f.is_file() and not f.is_symlink():
                        f.unlink()
        for name in _TOP_FILES:
            (run_dir / name).unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    """Run ``ebmguide demo``."""
    import torch

    from ebmguide.run.components import sampler_autocast
    from ebmguide.run.config import load_config
    from ebmguide.run.trainer import Trainer

    overrides = list(args.overrides)
    if args.iterations is not None:
        overrides.append(f"train.iterations={args.iterations}")
    if args.threads is not None:
        overrides.append(f"train.num_threads={args.threads}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    cfg = load_config("demo", overrides)
    prepare_folder(args.out, args.overwrite)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / MARKER).touch()
    start = time.perf_counter()
    precision = ("bfloat16" if sampler_autocast(cfg) == torch.bfloat16
                 else "float32" if cfg.sampler.autocast == "none"
                 else "float32 (this CPU has no native bfloat16)")
    print(f"ebmguide demo: {cfg.train.iterations} CLEL iterations on the embedded shapes "
          f"({cfg.data.size}x{cfg.data.size}), {cfg.train.num_threads or 'default'} CPU threads, "
          f"SGLD in {precision}")
    trainer = Trainer(cfg, args.out, progress=progress_mode(args))
    final = trainer.run()
    print(f"done in {time.perf_counter() - start:.0f} s")
    print(quality_summary(args.out))
    print(describe_run(args.out, final))
    return 0


def quality_summary(run_dir: Path) -> str:
    """How the quality figures of ``metrics.jsonl`` moved from the first to the last evaluation."""
    from ebmguide.run.logger import read_metrics

    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    if not evals or "buffer_fd" not in evals[0]:
        return "quality: no evaluation was logged (eval.feature_net = \"none\")"
    first, last = evals[0], evals[-1]
    lines = [f"quality (replay buffer, iteration {first['iteration']} -> {last['iteration']}):",
             f"  FD (features: shapes-classifier)  {first['buffer_fd']:9.2f} -> "
             f"{last['buffer_fd']:7.2f}   (real-vs-real floor {last['fd_floor']:.2f})",
             f"  clean samples (read_factors)      {first['buffer_clean']:9.0%} -> "
             f"{last['buffer_clean']:7.0%}"]
    if "fresh_fd" in last:
        lines.append(f"fresh chains of the EMA model: FD {last['fresh_fd']:.2f}, clean samples "
                     f"{last['fresh_clean']:.0%}")
    return "\n".join(lines)
