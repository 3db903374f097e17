"""``ebmguide train``: train CLEL from a TOML configuration, or resume a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ebmguide.cli._common import (
    add_progress_options,
    add_set_option,
    add_trust_option,
    describe_run,
    progress_mode,
    sample_command,
)

__all__ = ["register", "run"]

DESCRIPTION = """\
Train CLEL from a configuration: a shipped recipe by name (demo, toy2d, cifar10_cpu,
cifar10_clel_base, cifar10_clel_large, imagenet32_clel_base, ...) or a TOML file. The run folder
receives config.toml, metrics.jsonl, sample grids and checkpoints. --resume continues a run
exactly where its last checkpoint left it (bit-identical on CPU)."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``train`` subcommand."""
    p = subparsers.add_parser("train", help="train CLEL from a TOML configuration",
                              description=DESCRIPTION)
    p.add_argument("--config", metavar="NAME|FILE",
                   help="a shipped config name (see --list) or a path to a .toml file")
    add_set_option(p)
    add_trust_option(p)
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="run folder (default: runs/<config name>)")
    p.add_argument("--resume", metavar="RUN|CHECKPOINT",
                   help="continue from a run folder's newest checkpoint or from a checkpoint file "
                        "(its config is used; --set still applies)")
    p.add_argument("--until", type=int, metavar="ITER",
                   help="stop after this iteration with a checkpoint (continue with --resume)")
    p.add_argument("--ddp-timeout", type=float, metavar="SECONDS",
                   help="torchrun: how long a rank waits for a silent one before the run fails "
                        "(sets train.ddp_timeout_s; default 1800)")
    p.add_argument("--list", action="store_true", help="list the shipped configs and exit")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration as TOML and exit")
    add_progress_options(p)
    p.set_defaults(func=run)


def announce_resume(checkpoint: Path, iteration: int, total: int, until: int | None) -> bool:
    """Print where a resumed run continues; False (after saying so) when nothing is left to do.

    Args:
        checkpoint: the checkpoint being resumed.
        iteration: the iterations it holds.
        total: ``train.iterations`` of the resumed configuration (``--set`` may raise it).
        until: ``--until``, if given.
    """
    if iteration >= total:
        print(f"{checkpoint} is a finished run (iteration {iteration} of {total}): nothing to "
              f"train. Train further with --set train.iterations=N (N > {total}), or sample "
              f"from it: {sample_command(checkpoint)}")
        return False
    if until is not None and until <= iteration:
        print(f"{checkpoint} is already at iteration {iteration} (--until {until}): nothing to "
              f"train. Pass a larger --until, or leave it out to train to {total}.")
        return False
    print(f"resuming from {checkpoint} (iteration {iteration} of {total})", flush=True)
    return True


def run(args: argparse.Namespace) -> int:
    """Run ``ebmguide train``."""
    from ebmguide.checkpoint import CheckpointManager
    from ebmguide.distributed import distributed_session
    from ebmguide.distributed.runtime import lost_rank_error
    from ebmguide.run.checkpoints import check_resume_overrides, load_state
    from ebmguide.run.config import (
        apply_overrides,
        config_from_dict,
        dumps_toml,
        load_config,
        shipped_configs,
    )
    from ebmguide.run.divergence import DivergenceError
    from ebmguide.run.folder import RUN_ENTRIES, check_run_dir, default_run_dir
    from ebmguide.run.imports import check_trusted
    from ebmguide.run.trainer import Trainer
    from ebmguide.torch_utils import resolve_device

    if args.list:
        print("\n".join(shipped_configs()))
        return 0
    checkpoint: Path | None = None
    if args.until is not None and args.until < 1:
        raise ValueError(f"--until must be an iteration >= 1, got {args.until}: pass the "
                         f"iteration to stop after (e.g. --until 1000).")
    if args.ddp_timeout is not None:
        args.overrides = [*args.overrides, f"train.ddp_timeout_s={args.ddp_timeout!r}"]
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file: pass a folder for the run.")
    if args.resume is not None:
        if args.config is not None:
            raise ValueError("--resume continues a run with its own config; leave out --config "
                             "(use --set to change settings).")
        # The newest checkpoint that loads: a damaged newest one is skipped with a warning.
        state, checkpoint = load_state(args.resume)
        cfg = config_from_dict(apply_overrides(state["config"], args.overrides))
        check_resume_overrides(state["config"], cfg)  # sizes fixed by the checkpoint
        check_trusted(cfg, trusted=args.trust_config_imports, source=checkpoint)
        run_dir = args.out or checkpoint.parent.parent
    elif args.config is None:
        raise ValueError("give --config NAME|FILE (e.g. --config demo) or --resume RUN.")
    else:
        cfg = load_config(args.config, args.overrides)
        run_dir = args.out or default_run_dir(cfg.name)
        check_run_dir(run_dir, RUN_ENTRIES)  # no symlinks where the run writes
        # complete checkpoints only: a hidden temp file of a killed first save is no checkpoint
        if CheckpointManager(run_dir / "checkpoints").checkpoints():
            raise ValueError(f"{run_dir} already holds checkpoints: continue it with --resume "
                             f"{run_dir}, or pick another folder with --out.")
    if args.print_config:
        print(dumps_toml(cfg), end="")
        return 0
    if checkpoint is not None and not announce_resume(checkpoint, int(state["iteration"]),
                                                      cfg.train.iterations, args.until):
        return 0
    # Under torchrun (RANK/WORLD_SIZE set) this trains data-parallel; see docs/distributed.md.
    with distributed_session(resolve_device(cfg.device),
                             timeout_s=cfg.train.ddp_timeout_s) as ctx:
        trainer = Trainer(cfg, run_dir, resume=checkpoint, progress=progress_mode(args),
                          dist=ctx)
        try:
            final = trainer.run(until=args.until)
        except RuntimeError as err:  # a frozen or dead rank: one clear line, exit 2
            lost = (None if isinstance(err, DivergenceError)
                    else lost_rank_error(err, ctx, cfg.train.ddp_timeout_s))
            if lost is None:
                raise
            raise lost from err
        finally:
            trainer.close()  # DDP released before the process group goes
    if ctx.is_main:
        print(describe_run(run_dir, final))
    return 0
