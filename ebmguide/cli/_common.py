"""Helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

__all__ = ["add_checkpoint_option", "add_progress_options", "add_set_option", "add_trust_option",
           "describe_run", "progress_mode", "sample_command"]


def add_trust_option(parser: argparse.ArgumentParser) -> None:
    """``--trust-config-imports``: import the code a checkpoint's stored configuration names."""
    parser.add_argument(
        "--trust-config-imports", action="store_true",
        help="import the backbone, encoder or dataset that the checkpoint's configuration names "
             "by import path (package.module:Name); without it such a checkpoint is refused, "
             "since a checkpoint alone never decides what code runs")


def add_checkpoint_option(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint FILE|RUN`` (required) and ``--trust-config-imports``."""
    parser.add_argument("--checkpoint", required=True, metavar="FILE|RUN",
                        help="a checkpoint file or a run folder (its newest checkpoint)")
    add_trust_option(parser)


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """``--set section.key=value`` (repeatable; values are TOML literals)."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one setting, e.g. --set train.iterations=200 --set optim.ebm_lr=1e-4 "
             "(values are TOML literals; repeatable)")


def add_progress_options(parser: argparse.ArgumentParser, *, what: str = "training",
                         lines: str = "one line per log interval (train.log_every)") -> None:
    """``--progress auto|bar|lines|none`` and ``--no-progress`` (the same as ``none``)."""
    parser.add_argument(
        "--progress", choices=("auto", "bar", "lines", "none"), default="auto",
        help=f"how {what} shows progress: a bar on a terminal and {lines} otherwise, e.g. in a "
             f"log file (auto, the default); always the bar; always lines; nothing until the end "
             f"(none)")
    parser.add_argument("--no-progress", action="store_true",
                        help="print nothing until the end (the same as --progress none)")


def progress_mode(args: argparse.Namespace) -> str:
    """The progress mode the options ask for."""
    return "none" if args.no_progress else str(args.progress)


def sample_command(checkpoint: Path) -> str:
    """The exact command that samples from ``checkpoint``."""
    return f"ebmguide sample --checkpoint {shlex.quote(str(checkpoint))} --n 64"


def describe_run(run_dir: Path, final: dict[str, float]) -> str:
    """A few lines naming the run folder, its files and the next command."""
    from ebmguide.run.checkpoints import find_checkpoint

    checkpoint = find_checkpoint(run_dir)
    samples = sorted((run_dir / "samples").glob("iter-*.png"))
    lines = [f"run folder:  {run_dir}",
             f"  config:      {run_dir / 'config.toml'}",
             f"  metrics:     {run_dir / 'metrics.jsonl'}",
             f"  checkpoint:  {checkpoint}"]
    if samples:
        lines.append(f"  samples:     {samples[-1]}  (data | replay buffer | fresh chains)")
    if (run_dir / "tensorboard").is_dir():
        lines.append(f"  tensorboard: tensorboard --logdir {run_dir / 'tensorboard'}")
    if final:
        lines.append("final evaluation (" + ", ".join(f"{k} = {v:.4g}" for k, v in final.items())
                     + ")")
    lines.append(f"sample from it:  {sample_command(checkpoint)}")
    return "\n".join(lines)
