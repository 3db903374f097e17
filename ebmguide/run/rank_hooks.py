"""What :class:`~ebmguide.run.trainer.Trainer` does differently under torchrun, kept in one place.

The runner calls these at a few marked points; each is the identity on one process.

- :func:`rank_config`: the replay buffer's size is split over the ranks and the EMA half-life
  counts global-batch images, so W ranks with B images each act as one process with W·B;
- checkpoints: every rank's replay buffer, data position and random streams are gathered to rank
  0, which alone writes the file (``"sampler"``, ``"data"`` and ``"rng"`` become lists in rank
  order, ``"world_size"`` = W); on resume each rank takes its own entry after the world size is
  checked;
- file-system decisions (which checkpoints exist, which one to roll back to) are rank 0's and
  broadcast, so ranks never disagree about a collective;
- logging, evaluation and sample grids happen on rank 0 only (:class:`NullLogger` elsewhere).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ebmguide.checkpoint import CheckpointManager, load_checkpoint
from ebmguide.distributed.collectives import broadcast_object, gather_objects, select_rank
from ebmguide.distributed.runtime import DistributedContext, check_world_size

if TYPE_CHECKING:
    from ebmguide.run.config import RunConfig

__all__ = ["PER_RANK_KEYS", "NullLogger", "RankZeroCheckpoints", "gather_rank_state",
           "rank_config", "rank_zero_checkpoints", "select_rank_state"]

PER_RANK_KEYS = ("sampler", "data", "rng")
"""Checkpoint entries that differ between ranks and are saved as per-rank lists."""


def rank_config(cfg: RunConfig, ctx: DistributedContext) -> RunConfig:
    """The settings one rank builds its components from, so that W ranks act as one process.

    ``cfg`` describes the whole run; with W ranks each of B images:

    - ``sampler.buffer_size`` is the total number of chains: each rank holds N // W of them, so
      every chain is drawn as often (W·B / N per iteration) as in one process with batch W·B;
    - ``ema.half_life_images`` counts global-batch images: one iteration sees W·B images, so each
      rank builds its EMA with half-life H / W, giving the decay 0.5^(W·B / H) of one process.

    Everything else is unchanged. The run's own ``cfg`` (not this one) is what checkpoints and
    ``config.toml`` record.

    Raises:
        ValueError: when a rank's share of the buffer is smaller than one batch.
    """
    if not ctx.enabled:
        return cfg
    w, s, e = ctx.world_size, cfg.sampler, cfg.ema
    if s.buffer_size // w < cfg.train.batch_size:
        raise ValueError(f"sampler.buffer_size = {s.buffer_size} chains split over {w} ranks "
                         f"leaves {s.buffer_size // w} per rank, fewer than train.batch_size = "
                         f"{cfg.train.batch_size}; raise sampler.buffer_size to at least "
                         f"{w * cfg.train.batch_size}.")
    return dataclasses.replace(
        cfg, sampler=dataclasses.replace(s, buffer_size=s.buffer_size // w),
        ema=dataclasses.replace(e, half_life_images=e.half_life_images / w))


def gather_rank_state(state: dict[str, Any], ctx: DistributedContext) -> dict[str, Any]:
    """The checkpoint with :data:`PER_RANK_KEYS` gathered into rank-ordered lists (collective).

    Only rank 0's return value is complete; the other ranks' is for nothing but the call order.
    """
    if not ctx.enabled:
        return state
    parts = gather_objects({k: state[k] for k in PER_RANK_KEYS})
    out = {**state, "world_size": ctx.world_size}
    if parts is not None:
        out.update({k: [p[k] for p in parts] for k in PER_RANK_KEYS})
    return out


def select_rank_state(state: Mapping[str, Any], ctx: DistributedContext) -> dict[str, Any]:
    """This rank's view of a checkpoint: its own entries of :data:`PER_RANK_KEYS`.

    Raises:
        ValueError: when the checkpoint was written by another number of processes.
    """
    saved = int(state.get("world_size", 1))
    check_world_size(saved, ctx)
    if saved == 1:
        return dict(state)
    return {**state, **{k: select_rank(state[k], ctx, saved) for k in PER_RANK_KEYS}}


class NullLogger:
    """Stands in for :class:`~ebmguide.run.logger.RunLogger` on ranks other than 0."""

    tensorboard = False

    def log(self, kind: str, iteration: int, values: dict[str, Any]) -> None:
        """Write nothing."""

    def log_image(self, tag: str, png: str | Path, iteration: int) -> None:
        """Write nothing."""

    def log_text(self, tag: str, text: str, iteration: int) -> None:
        """Write nothing."""

    def close(self) -> None:
        """Nothing to close."""


class RankZeroCheckpoints:
    """A :class:`~ebmguide.checkpoint.CheckpointManager` whose rank 0 alone writes and decides.

    Every method is a collective (all ranks call it in the same order, as the training loop
    does). Reading a checkpoint on ranks other than 0 needs the run folder on a file system every
    node sees (always true on one machine).
    """

    def __init__(self, manager: CheckpointManager, ctx: DistributedContext) -> None:
        self.manager, self.ctx = manager, ctx
        self.directory, self.keep, self.prefix = manager.directory, manager.keep, manager.prefix

    def path_for(self, iteration: int) -> Path:
        """The file name of the checkpoint of ``iteration``."""
        return self.manager.path_for(iteration)

    def checkpoints(self) -> list[Path]:
        """Rank 0's list of complete checkpoints, on every rank."""
        found = self.manager.checkpoints() if self.ctx.is_main else None
        return [Path(p) for p in broadcast_object(found and [str(p) for p in found])]

    def save(self, state: Mapping[str, Any], iteration: int) -> Path:
        """Rank 0 writes (atomically); every rank returns once the file is complete."""
        path = self.manager.save(state, iteration) if self.ctx.is_main else None
        return Path(broadcast_object(str(path) if path is not None else None))

    def load_latest(self, *, map_location: str | torch.device = "cpu",
                    ) -> tuple[dict[str, Any], Path] | None:
        """Rank 0 picks the newest checkpoint that loads; every rank loads that file."""
        choice: tuple[str, str] | None = None
        loaded = None
        if self.ctx.is_main:
            try:
                loaded = self.manager.load_latest(map_location=map_location)
                choice = ("ok", str(loaded[1])) if loaded is not None else None
            except ValueError as err:  # CheckpointError: every checkpoint is damaged
                choice = ("error", str(err))
        choice = broadcast_object(choice)
        if choice is None:
            return None
        if choice[0] == "error":
            raise ValueError(choice[1])
        if loaded is not None:
            return loaded
        return load_checkpoint(choice[1], map_location=map_location), Path(choice[1])


def rank_zero_checkpoints(manager: CheckpointManager,
                          ctx: DistributedContext) -> CheckpointManager | RankZeroCheckpoints:
    """``manager`` itself on one process, else a :class:`RankZeroCheckpoints` around it."""
    return RankZeroCheckpoints(manager, ctx) if ctx.enabled else manager
