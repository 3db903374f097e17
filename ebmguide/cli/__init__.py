"""The ``ebmguide`` command: one subcommand per module of this package.

Each module ``ebmguide/cli/<name>.py`` listed in :data:`COMMANDS` exposes
``register(subparsers)``, which adds its parser and sets ``func=run`` with
``run(args) -> int``. User errors (``ValueError``, ``TypeError``, ``OSError`` such as an
unreadable or missing file, :class:`~ebmguide.run.divergence.DivergenceError` and a torchrun rank
that stopped answering) are printed as ``ebmguide: error: <message>`` on one line with exit code 2
and no traceback, unless ``--debug`` is given. A training run stopped by SIGINT or SIGTERM
(:class:`~ebmguide.run.interrupt.RunInterrupted`) prints the checkpoint it wrote and the command
that continues it, and exits with 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shlex
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = ("demo", "train", "sample", "evaluate", "compose", "ood")
"""Subcommand modules, in the order ``--help`` lists them (modules not installed are skipped)."""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand registered."""
    from ebmguide import __version__

    parser = argparse.ArgumentParser(
        prog="ebmguide",
        description="Train and use energy-based models guided by contrastive latent variables "
                    "(CLEL, ICLR 2023).",
        epilog="Run `ebmguide <command> --help` for a command's options. Start with "
               "`ebmguide demo`.",
    )
    parser.add_argument("--version", action="version", version=f"ebmguide {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show full tracebacks instead of one-line error messages")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMANDS:
        if importlib.util.find_spec(f"ebmguide.cli.{name}") is None:
            continue
        importlib.import_module(f"ebmguide.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    from ebmguide.run.divergence import DivergenceError
    from ebmguide.run.interrupt import RunInterrupted

    try:
        code: int = args.func(args)
    except (ValueError, TypeError, OSError, ImportError, DivergenceError) as err:
        if args.debug:
            raise
        message = " ".join(str(err).split())  # one line, whatever the exception's text
        if isinstance(err, OSError) and err.filename is not None and err.strerror:
            message = (f"cannot use {err.filename}: {err.strerror}; check the path, that it is "
                       f"a file (not a folder) and that you may read (or write) it.")
        print(f"ebmguide: error: {message}", file=sys.stderr)
        return 2
    except RunInterrupted as stop:
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone says it
            run_dir = shlex.quote(str(stop.checkpoint.parent.parent))
            print(f"ebmguide: {stop}\ncontinue with:  ebmguide train --resume {run_dir}",
                  file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print("ebmguide: interrupted", file=sys.stderr)
        return 130
    return code
