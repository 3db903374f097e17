"""The training run behind ``ebmguide train`` and ``ebmguide demo``.

:class:`Trainer` builds everything from a :class:`~ebmguide.run.config.RunConfig`, runs CLEL
iterations with :func:`~ebmguide.training.clel_step`, and writes a run folder::

    <run>/config.toml           the resolved configuration
    <run>/metrics.jsonl         training terms every train.log_every iterations, evaluations
    <run>/checkpoints/ckpt-<iteration>.pt
    <run>/samples/iter-<iteration>.png   data | replay buffer | fresh chains
    <run>/feature_net.pt        the cached evaluation network (shapes data)
    <run>/tensorboard/          when torch.utils.tensorboard imports: scalars, sample grids, config

All randomness comes from explicit generators whose states are checkpointed, so on CPU
``N`` iterations straight and ``N/2`` + resume + ``N/2`` give bit-identical parameters.

Divergence guard (checks in :mod:`ebmguide.run.divergence`): after every iteration one host sync
checks that the samples, energies and loss terms are finite; if not, the run stops with a
:class:`~ebmguide.run.divergence.DivergenceError` or rolls back to its last good checkpoint
(``train.on_divergence``; :meth:`Trainer.on_divergence`).

Your own components: ``Trainer(cfg, run_dir, ebm=..., guide=..., sampler=..., data=...)`` trains
modules built in Python (any object satisfying the protocols of :mod:`ebmguide.protocols`; the
networks must be ``nn.Module`` s for the EMA copies and checkpoints); the config sets everything
else. A config can also name a backbone, encoder or dataset by import path (docs/extend).

Interruption (:mod:`ebmguide.run.interrupt`): SIGINT (Ctrl-C) or SIGTERM during :meth:`Trainer.run`
finishes the current iteration, writes a checkpoint and raises
:class:`~ebmguide.run.interrupt.RunInterrupted` naming it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor

from ebmguide.checkpoint import CheckpointManager
from ebmguide.distributed import (
    DistributedContext,
    any_rank,
    local_context,
    rank_seed,
    release_ddp,
    wrap_ddp,
)
from ebmguide.ema import update_ema
from ebmguide.grid import save_panels
from ebmguide.guide import SimCLRGuide
from ebmguide.protocols import ContrastiveGuide, EnergyModel, LangevinSampler
from ebmguide.run.checkpoints import (
    components_state,
    load_components_state,
    load_state,
)
from ebmguide.run.components import build_components
from ebmguide.run.config import RunConfig, config_to_dict, dumps_toml
from ebmguide.run.data_sources import load_training_data
from ebmguide.run.divergence import (
    ROLLBACK_SEED_STRIDE,
    DivergenceError,
    GradientNormCheck,
    first_nonfinite,
    nonfinite_entries,
    scale_learning_rates,
    state_flags,
)
from ebmguide.run.evaluator import Evaluator, ema_fresh_chains
from ebmguide.run.folder import RunLock, checked_path, open_run_folder, write_text_atomic
from ebmguide.run.interrupt import RunInterrupted, StopRequest, stop_on_signals
from ebmguide.run.logger import RunLogger
from ebmguide.run.progress import resolve_progress
from ebmguide.run.rank_hooks import (
    NullLogger,
    gather_rank_state,
    rank_config,
    rank_zero_checkpoints,
    select_rank_state,
)
from ebmguide.run.training_data import TrainingData
from ebmguide.run.training_log import TrainingLog
from ebmguide.torch_utils import resolve_device
from ebmguide.training import clel_step

__all__ = ["Trainer"]

class Trainer:
    """One training run; see the module docstring for the folder it writes.

    Args:
        cfg: the configuration.
        run_dir: the run folder (created).
        resume: a checkpoint file or run folder to continue from.
        progress: ``"auto"`` (or True): a tqdm bar on a terminal, one line per log interval
            otherwise (a log file); ``"bar"``, ``"lines"``, or ``"none"`` (or False); see
            :mod:`ebmguide.run.progress`.
        hooks: callables ``hook(trainer, iteration)`` run before each iteration (0-based), e.g.
            for fault injection in tests.
        dist: the torchrun context from :func:`ebmguide.distributed.init_distributed` for a
            data-parallel run (see docs/distributed.md); default: one process on ``cfg.device``.
            Call :meth:`close` before the process group is destroyed.
        ebm: your energy model (an ``nn.Module`` satisfying
            :class:`~ebmguide.protocols.EnergyModel`) instead of the one ``cfg.model`` names.
        guide: your guide (an ``nn.Module`` satisfying
            :class:`~ebmguide.protocols.ContrastiveGuide`) instead of ``cfg.guide``'s.
        sampler: your sampler (a :class:`~ebmguide.protocols.LangevinSampler` with a replay
            buffer, such as :class:`~ebmguide.sampling.SGLDSampler`) instead of ``cfg.sampler``'s.
        data: your training data (:class:`~ebmguide.run.training_data.TrainingData`, e.g. from
            :meth:`~ebmguide.run.training_data.TrainingData.from_tensors`, or any map-style
            ``Dataset`` of images wrapped by
            :func:`~ebmguide.run.data_sources.dataset_training_data`) instead of ``cfg.data``.
            A resumed run must be given the same components again (checkpoints hold tensors only).
    """

    def __init__(self, cfg: RunConfig, run_dir: str | Path, *, resume: str | Path | None = None,
                 progress: bool | str = True,
                 hooks: Sequence[Callable[[Trainer, int], None]] = (),
                 dist: DistributedContext | None = None, ebm: EnergyModel | None = None,
                 guide: ContrastiveGuide | None = None, sampler: LangevinSampler | None = None,
                 data: TrainingData | None = None) -> None:
        self.cfg, self.run_dir, self.hooks = cfg, Path(run_dir), hooks
        self.progress = resolve_progress(progress)
        if cfg.train.num_threads > 0:
            torch.set_num_threads(cfg.train.num_threads)
        self.dist = dist if dist is not None else local_context(resolve_device(cfg.device))
        self.device = self.dist.device
        # fails at once when the data is absent
        self.data = data if data is not None else load_training_data(cfg)
        self.generator = torch.Generator(self.device).manual_seed(rank_seed(cfg.seed,
                                                                            self.dist.rank))
        # distributed: each rank builds with its share of the buffer and a global-batch EMA
        self.parts = build_components(rank_config(cfg, self.dist), self.data.shape, self.device,
                                      self.generator, ebm=ebm, guide=guide, sampler=sampler)
        self.batches = self.data.batches(cfg.train.batch_size, cfg.seed + 1, self.device,
                                         rank=self.dist.rank, world_size=self.dist.world_size)
        self.iteration, self.rollbacks, self.lr_scale = 0, 0, 1.0
        self.last: dict[str, float] = {}
        self.manager = rank_zero_checkpoints(CheckpointManager(
            self.run_dir / "checkpoints", keep=cfg.train.keep_checkpoints), self.dist)
        self._grad_check = GradientNormCheck((self.parts.optimizers.ebm,
                                              self.parts.optimizers.guide), cfg.train.max_grad_norm)
        self._final_fresh: Tensor | None = None  # the last iteration's fresh chains: _fresh
        if resume is not None:
            self.load_state_dict(load_state(resume)[0])
        self._lock: RunLock | None = None
        self.logger: RunLogger | NullLogger = NullLogger()
        if self.dist.is_main:  # distributed: rank 0 alone writes files and logs
            # no symlinks, one writer (an OS lock naming its pid), stale temp files removed
            self._lock = open_run_folder(self.run_dir)
            write_text_atomic(checked_path(self.run_dir, "config.toml"), dumps_toml(cfg))
            self.logger = RunLogger(self.run_dir, tensorboard=cfg.train.tensorboard,
                                    resume_iteration=self.iteration if resume is not None else None)
            self.logger.log_text("config", dumps_toml(cfg), self.iteration)
            if self.data.info:  # what was loaded: sizes, held-out split and its seed
                self.logger.log("data", self.iteration, self.data.info)
        # distributed: DDP-wrapped networks for the training step (the plain ones on one process)
        if self.dist.enabled and isinstance(self.parts.guide, SimCLRGuide):
            self.parts.guide.gather_distributed = True  # NT-Xent over the global batch
        self.train_ebm, self.train_guide = wrap_ddp(self.parts.ebm, self.parts.guide, self.dist)
        self._evaluator: Evaluator | None = None
        self.log = TrainingLog(cfg, self.logger, is_main=self.dist.is_main, device=self.device)
        self.stop = StopRequest()  # set by SIGINT/SIGTERM during run(), or by a hook

    def close(self) -> None:
        """Release the DDP wrappers (before the process group goes) and the lock; idempotent."""
        if self._lock is not None:
            self._lock.release()
        release_ddp(self.train_ebm, self.train_guide)
        self.train_ebm, self.train_guide = self.parts.ebm, self.parts.guide

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The checkpoint of the run (see docs: checkpoint format)."""
        return gather_rank_state({  # distributed: per-rank sampler/data/rng lists on rank 0
            "format": "ebmguide-checkpoint", "version": 1, "iteration": self.iteration,
            "config": config_to_dict(self.cfg), **components_state(self.parts),
            "data": self.batches.state_dict(),
            "rng": {"generator": self.generator.get_state(), "torch": torch.get_rng_state()},
            "world_size": self.dist.world_size, "metrics": dict(self.last),
            "divergence": {"rollbacks": self.rollbacks, "lr_scale": self.lr_scale},
        }, self.dist)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (networks, optimizers, buffer, data position, RNG)."""
        if state.get("format") != "ebmguide-checkpoint":
            raise ValueError("this file is not an ebmguide training checkpoint.")
        state = select_rank_state(state, self.dist)  # distributed: checks W, takes this rank's
        load_components_state(self.parts, state)
        self.batches.load_state_dict(state["data"])
        self.generator.set_state(state["rng"]["generator"])
        torch.set_rng_state(state["rng"]["torch"])
        self.iteration = int(state["iteration"])
        guard = state.get("divergence", {})
        self.rollbacks = int(guard.get("rollbacks", 0))
        self.lr_scale = float(guard.get("lr_scale", 1.0))
        self.last = dict(state.get("metrics", {}))
        self._final_fresh = None

    def save_checkpoint(self) -> Path:
        """Write a checkpoint of the current state (atomically); never one holding NaN or inf.

        Raises:
            DivergenceError: the state holds a non-finite value (nothing is written).
        """
        state = self.state_dict()
        bad = nonfinite_entries(state) if self.dist.is_main else []
        if bad:
            latest = self.manager.checkpoints()
            raise DivergenceError(self.iteration, bad[0].split(":")[0],
                                  latest[-1] if latest else None,
                                  f" ({'; '.join(bad[:4])} values are NaN/inf; not saved)")
        return self.manager.save(state, self.iteration)

    # -- the loop ----------------------------------------------------------------------------
    def step(self) -> dict[str, Tensor]:
        """One iteration; returns the detached terms (not yet checked for finiteness)."""
        p, o = self.parts, self.parts.optimizers
        x = next(self.batches).to(self.device)
        # the built (or given) networks satisfy the protocols: checked in build_components
        ebm, guide = cast(EnergyModel, self.train_ebm), cast(ContrastiveGuide, self.train_guide)
        out = clel_step(ebm, guide, p.sampler, x, ebm_optimizer=o.ebm,
                        guide_optimizer=o.guide, loss_fn=p.loss_fn, generator=self.generator,
                        extra_negatives=self.cfg.guide.extra_negatives,
                        joint_forward=self.cfg.train.joint_forward,
                        grad_penalty=self.cfg.loss.grad_penalty,
                        grad_penalty_at=self.cfg.loss.grad_penalty_at)
        o.ebm_scheduler.step()
        o.guide_scheduler.step()
        all_finite = out.sampling.finite.all() & out.samples.isfinite().all()
        terms = dict(out.terms)
        terms["samples"] = torch.where(all_finite, 0.0, float("nan"))  # NaN flags a bad chain
        terms["gradients"] = self._grad_check.flag()  # NaN: a norm above train.max_grad_norm
        self.log.add_sampling(out.sampling)
        return terms

    def run(self, until: int | None = None) -> dict[str, float]:
        """Train up to ``until`` (default: ``train.iterations``); returns the final evaluation.

        A checkpoint is written every ``train.checkpoint_every`` iterations and at the end.
        Stopping early (``until`` below the total) and resuming gives the same result. The run
        folder's lock is held while it runs.

        SIGINT and SIGTERM (from the main thread), or ``trainer.stop.request()`` from a hook, stop
        the run after the current iteration: a checkpoint of it is written and
        :class:`RunInterrupted` (a :class:`KeyboardInterrupt`) names that file. Under torchrun
        every rank stops after the same iteration.
        """
        if self._lock is not None:
            self._lock.acquire()
        self.stop.clear()
        try:
            with stop_on_signals(self.stop, announce=self.dist.is_main):
                return self._run(until)
        finally:
            if self._lock is not None:
                self._lock.release()

    def _run(self, until: int | None) -> dict[str, float]:
        t = self.cfg.train
        end = t.iterations if until is None else min(until, t.iterations)
        if t.on_divergence == "rollback" and not self.manager.checkpoints():
            self.save_checkpoint()  # something good to roll back to
        bar = self.log.progress_bar(self.progress, end=end, initial=self.iteration)
        if self.iteration == 0 and self.cfg.eval.every > 0:
            self.evaluate(fresh=False)
        clock, last_iteration = time.perf_counter(), self.iteration
        stopped = False
        try:
            while self.iteration < end:
                # distributed: one rank's signal stops every rank after the same iteration
                stopped = any_rank(self.stop.requested, self.device)
                if stopped:
                    break
                for hook in self.hooks:
                    hook(self, self.iteration)
                terms = self.step()
                if (self.iteration + 1) % t.checkpoint_every == 0 or self.iteration + 1 == end:
                    # A NaN gradient under a finite loss poisons the weights with no term to
                    # show it: check them before any checkpoint can be written.
                    # Everything a checkpoint stores (networks, EMAs, optimizer states, buffer).
                    terms.update(state_flags(self.parts))
                bad = first_nonfinite(terms)
                if bad is not None:
                    self.on_divergence(bad)
                    bar.n = self.iteration
                    bar.refresh()
                    continue
                update_ema(self.parts.ebm_ema, self.parts.ebm)
                update_ema(self.parts.guide_ema, self.parts.guide)
                self.iteration += 1
                bar.update(1)
                if self.iteration % t.log_every == 0 or self.iteration == end:
                    now = time.perf_counter()
                    rate = (self.iteration - last_iteration) / max(now - clock, 1e-9)
                    clock, last_iteration = now, self.iteration
                    self.last = self.log.log_terms(terms, iteration=self.iteration, rate=rate,
                                                   optimizers=self.parts.optimizers, bar=bar)
                self._periodic(end)
        finally:
            bar.close()
        final = self.evaluate(fresh=True) if self.iteration >= t.iterations and not stopped else {}
        if not self.manager.checkpoints() or self._latest_iteration() != self.iteration:
            self.save_checkpoint()
        self.logger.close()
        if stopped:
            raise RunInterrupted(self.stop.signum or signal.SIGTERM, self.iteration,
                                 t.iterations, self.manager.checkpoints()[-1])
        return final

    def _latest_iteration(self) -> int:
        latest = self.manager.checkpoints()
        return int(latest[-1].stem.rsplit("-", 1)[-1]) if latest else -1

    def _periodic(self, end: int) -> None:
        t, e = self.cfg.train, self.cfg.eval
        if e.every > 0 and self.iteration % e.every == 0 and self.iteration < t.iterations:
            self.evaluate(fresh=False)
        if self.dist.is_main and (self.iteration % t.sample_every == 0 or self.iteration == end):
            self.save_samples()
        if self.iteration % t.checkpoint_every == 0 and self.iteration < end:
            self.save_checkpoint()

    # -- the divergence guard ----------------------------------------------------------------
    def on_divergence(self, term: str) -> None:
        """Stop or roll back a run whose next iteration produced a non-finite ``term``.

        Logs a ``"divergence"`` record. Raises when ``train.on_divergence`` is ``"stop"``, when
        no checkpoint was written yet, or after ``train.max_rollbacks`` rollbacks. Otherwise
        :meth:`roll_back`.

        Args:
            term: the first non-finite term, from
                :func:`~ebmguide.run.divergence.first_nonfinite`.

        Raises:
            DivergenceError: when the run stops (its logger is closed first).
        """
        t = self.cfg.train
        latest = self.manager.checkpoints()
        checkpoint = latest[-1] if latest else None
        failed = self.iteration + 1
        self.logger.log("divergence", failed, {"term": term, "rollbacks": self.rollbacks,
                                               "checkpoint": str(checkpoint)})
        if t.on_divergence == "stop" or checkpoint is None or self.rollbacks >= t.max_rollbacks:
            detail = (f" after {self.rollbacks} rollback(s) (train.max_rollbacks = "
                      f"{t.max_rollbacks})" if t.on_divergence == "rollback" else "")
            self.logger.close()
            raise DivergenceError(failed, term, checkpoint, detail)
        self.roll_back()

    def roll_back(self) -> None:
        """Reload the newest checkpoint that loads, with lower learning rates and a new seed.

        After the k-th rollback both learning rates are ``rollback_lr_factor ** k`` times the
        scheduled ones and the run's generator is reseeded from ``seed + 1_000_003 · k`` (then the
        rank offset); a ``"rollback"`` record is logged.
        """
        loaded = self.manager.load_latest()
        if loaded is None:
            raise RuntimeError("roll_back() needs a checkpoint; none loads.")
        rollbacks = self.rollbacks + 1
        self.load_state_dict(loaded[0])
        self.rollbacks, scale = rollbacks, self.cfg.train.rollback_lr_factor ** rollbacks
        factor, self.lr_scale = scale / self.lr_scale, scale  # relative to the checkpoint's lrs
        scale_learning_rates(self.parts.optimizers, factor)
        self.generator.manual_seed(rank_seed(self.cfg.seed + ROLLBACK_SEED_STRIDE * rollbacks,
                                             self.dist.rank))
        self.logger.log("rollback", self.iteration, {"from": str(loaded[1]), "lr_scale": scale,
                                                     "rollbacks": rollbacks})

    # -- evaluation and samples --------------------------------------------------------------
    @property
    def evaluator(self) -> Evaluator:
        """The run's evaluator (built on first use: it may train the feature network)."""
        if self._evaluator is None:
            self._evaluator = Evaluator(self.cfg, self.data, self.run_dir)
        return self._evaluator

    def _fresh(self, n: int) -> Tensor:
        """``(n, *shape)`` fresh chains of the EMA EBM, from a generator seeded ``seed + 17``.

        After the last iteration the final grid and the final evaluation share one draw of
        max(n, ``eval.n_samples``) chains and each takes its first ``n``: the most expensive
        part of the evaluation runs once, not twice.
        """
        if self.iteration < self.cfg.train.iterations:
            return self._draw_fresh(n)
        if self._final_fresh is None or len(self._final_fresh) < n:
            scored = self.cfg.eval.n_samples if self.evaluator.active else 0
            self._final_fresh = self._draw_fresh(max(n, scored))
        return self._final_fresh[:n]

    def _draw_fresh(self, n: int) -> Tensor:
        g = torch.Generator(self.device).manual_seed(self.cfg.seed + 17)
        return ema_fresh_chains(self.parts.ebm_ema.module, self.cfg, self.data.shape, n,
                                generator=g, device=self.device)

    def evaluate(self, *, fresh: bool) -> dict[str, float]:
        """Score the replay buffer (and, with ``fresh``, fresh EMA chains); log and return it."""
        if not self.dist.is_main:  # distributed: rank 0 evaluates its own buffer
            return {}
        if not self.evaluator.active:
            return {}
        n, chains = self.cfg.eval.n_samples, self.parts.sampler.chains()
        values = self.evaluator(chains[:n], "buffer") if chains is not None else {}
        if fresh:
            values.update(self.evaluator(self._fresh(n), "fresh"))
        self.logger.log("eval", self.iteration, values)
        return values

    def save_samples(self) -> Path:
        """Write ``samples/iter-<iteration>.png``: data | replay buffer | fresh EMA chains."""
        k = self.cfg.eval.grid_size
        fresh = 512 if self.data.kind == "vector" else k
        data = self.data.held_out(fresh)
        chains = self.parts.sampler.chains()
        panels = [("data", data),
                  *([("replay buffer", chains[:fresh])] if chains is not None else []),
                  ("fresh chains (EMA)", self._fresh(fresh))]
        path = save_panels(panels, checked_path(self.run_dir,
                                                f"samples/iter-{self.iteration:08d}.png"))
        self.logger.log_image("samples", path, self.iteration)  # TensorBoard, when it imports
        return path
