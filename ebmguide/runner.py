"""The training run behind ``ebmguide train`` and ``ebmguide demo``.

:class:`Trainer` builds everything from a :class:`~ebmguide.config.RunConfig`, runs CLEL
iterations with :func:`~ebmguide.training.clel_step`, and writes a run folder::

    <run>/config.toml           the resolved configuration
    <run>/metrics.jsonl         training terms every train.log_every iterations, evaluations
    <run>/checkpoints/ckpt-<iteration>.pt
    <run>/samples/iter-<iteration>.png   data | replay buffer | fresh chains
    <run>/feature_net.pt        the cached evaluation network (shapes data)
    <run>/tensorboard/          when torch.utils.tensorboard imports: scalars, sample grids, config

All randomness comes from explicit generators whose states are checkpointed, so on CPU
``N`` iterations straight and ``N/2`` + resume + ``N/2`` give bit-identical parameters.

Divergence guard (:mod:`ebmguide.divergence`): after every iteration one host sync checks that
the samples, energies and loss terms are finite; if not, the run stops with a
:class:`DivergenceError` or rolls back to its last good checkpoint (``train.on_divergence``).

Interruption (:mod:`ebmguide.interrupt`): SIGINT (Ctrl-C) or SIGTERM during :meth:`Trainer.run`
finishes the current iteration, writes a checkpoint and raises :class:`RunInterrupted` naming it.
"""

from __future__ import annotations

import signal
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ebmguide.builders import TrainingData, build_components, load_training_data, resolve_device
from ebmguide.checkpoint import CheckpointManager
from ebmguide.config import RunConfig, config_to_dict, dumps_toml
from ebmguide.distributed import (
    DistributedContext,
    any_rank,
    local_context,
    rank_seed,
    reduce_mean,
    release_ddp,
    wrap_ddp,
)
from ebmguide.distributed.trainer import (
    NullLogger,
    gather_rank_state,
    rank_config,
    rank_zero_checkpoints,
    select_rank_state,
)
from ebmguide.divergence import CHECK_ORDER as CHECK_ORDER  # importable from here as before
from ebmguide.divergence import (
    DivergenceError,
    GradientNormCheck,
    first_nonfinite,
    handle_divergence,
    nonfinite_entries,
    state_flags,
)
from ebmguide.ema import update_ema
from ebmguide.energy import SphericalEBM
from ebmguide.evaluation import Evaluator, fresh_chains
from ebmguide.grid import save_panels
from ebmguide.interrupt import RunInterrupted, StopRequest, stop_on_signals
from ebmguide.logging_utils import RunLogger
from ebmguide.progress import progress_bar, resolve_progress
from ebmguide.run_folder import RunLock, checked_path, open_run_folder, write_text_atomic
from ebmguide.run_state import (
    components_state,
    find_checkpoint,
    load_components_state,
    load_run,
    load_state,
)
from ebmguide.sampling.diagnostics import (
    ChainMovement,
    SamplerWarning,
    movement_summary,
    movement_warning,
)
from ebmguide.training import clel_step

__all__ = ["DivergenceError", "RunInterrupted", "Trainer", "find_checkpoint", "load_run",
           "load_state"]

_FLAGS = ("samples", "gradients", "parameters", "ema", "optimizer", "buffer")  # guard-only terms


class Trainer:
    """One training run; see the module docstring for the folder it writes.

    Args:
        cfg: the configuration.
        run_dir: the run folder (created).
        resume: a checkpoint file or run folder to continue from.
        progress: ``"auto"`` (or True): a tqdm bar on a terminal, one line per log interval
            otherwise (a log file); ``"bar"``, ``"lines"``, or ``"none"`` (or False); see
            :mod:`ebmguide.progress`.
        hooks: callables ``hook(trainer, iteration)`` run before each iteration (0-based), e.g.
            for fault injection in tests.
        dist: the torchrun context from :func:`ebmguide.distributed.init_distributed` for a
            data-parallel run (see docs/distributed.md); default: one process on ``cfg.device``.
            Call :meth:`close` before the process group is destroyed.
        data: the training data, e.g. any map-style ``Dataset`` of images wrapped by
            :func:`ebmguide.folder_data.dataset_training_data`; default: built from ``cfg.data``.
    """

    def __init__(self, cfg: RunConfig, run_dir: str | Path, *, resume: str | Path | None = None,
                 progress: bool | str = True,
                 hooks: Sequence[Callable[[Trainer, int], None]] = (),
                 dist: DistributedContext | None = None,
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
                                      self.generator)
        self.batches = self.data.batches(cfg.train.batch_size, cfg.seed + 1, self.device,
                                         rank=self.dist.rank, world_size=self.dist.world_size)
        self.iteration, self.rollbacks, self.lr_scale = 0, 0, 1.0
        self.last: dict[str, float] = {}
        self.manager = rank_zero_checkpoints(CheckpointManager(
            self.run_dir / "checkpoints", keep=cfg.train.keep_checkpoints), self.dist)
        self._grad_check = GradientNormCheck((self.parts.optimizers.ebm,
                                              self.parts.optimizers.guide), cfg.train.max_grad_norm)
        if resume is not None:
            self.load_state_dict(load_state(resume)[0])
        self._lock: RunLock | None = None
        if self.dist.is_main:  # distributed: rank 0 alone writes files and logs
            # no symlinks, one writer (an OS lock naming its pid), stale temp files removed
            self._lock = open_run_folder(self.run_dir)
            write_text_atomic(checked_path(self.run_dir, "config.toml"), dumps_toml(cfg))
        self.logger: RunLogger | NullLogger = NullLogger()
        if self.dist.is_main:
            self.logger = RunLogger(self.run_dir, tensorboard=cfg.train.tensorboard,
                                    resume_iteration=self.iteration if resume is not None else None)
            self.logger.log_text("config", dumps_toml(cfg), self.iteration)
            if self.data.info:  # what was loaded: sizes, held-out split and its seed
                self.logger.log("data", self.iteration, self.data.info)
        # distributed: DDP-wrapped networks for the training step (the plain ones on one process)
        self.train_ebm, self.train_guide = wrap_ddp(self.parts.ebm, self.parts.guide, self.dist)
        self._evaluator: Evaluator | None = None
        # Sum of the sampler's movement diagnostics since the last log line (device, no sync).
        self._movement = torch.zeros(3, device=self.device)
        self._movement_count = 0
        self._warned: set[str] = set()
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
        out = clel_step(self.train_ebm, self.train_guide, p.sampler, x, ebm_optimizer=o.ebm,
                        guide_optimizer=o.guide, loss_fn=p.loss_fn, generator=self.generator,
                        extra_negatives=self.cfg.guide.extra_negatives,
                        joint_forward=self.cfg.train.joint_forward)
        o.ebm_scheduler.step()
        o.guide_scheduler.step()
        all_finite = out.sampling.finite.all() & out.samples.isfinite().all()
        terms = dict(out.terms)
        terms["samples"] = torch.where(all_finite, 0.0, float("nan"))  # NaN flags a bad chain
        terms["gradients"] = self._grad_check.flag()  # NaN: a norm above train.max_grad_norm
        self._movement += movement_summary(out.sampling).to(self._movement)
        self._movement_count += 1
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
        bar = self._progress_bar(end)
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
                    handle_divergence(self, bad)
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
                    self._log_terms(terms, rate, bar)
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

    def _progress_bar(self, end: int) -> Any:
        mode = self.progress if self.dist.is_main else "none"
        return progress_bar(mode, total=end, initial=self.iteration, desc=self.cfg.name)

    def _periodic(self, end: int) -> None:
        t, e = self.cfg.train, self.cfg.eval
        if e.every > 0 and self.iteration % e.every == 0 and self.iteration < t.iterations:
            self.evaluate(fresh=False)
        if self.dist.is_main and (self.iteration % t.sample_every == 0 or self.iteration == end):
            self.save_samples()
        if self.iteration % t.checkpoint_every == 0 and self.iteration < end:
            self.save_checkpoint()

    def _log_terms(self, terms: dict[str, Tensor], rate: float, bar: Any) -> None:
        averaged = reduce_mean(terms)  # distributed: global-batch means (collective)
        values = {k: float(averaged[k]) for k in terms if k not in _FLAGS}
        values["energy_gap"] = values["energy_fake"] - values["energy_real"]
        values["lr_ebm"] = self.parts.optimizers.ebm.param_groups[0]["lr"]
        values["lr_guide"] = self.parts.optimizers.guide.param_groups[0]["lr"]
        values["its_per_s"] = rate
        values.update(self._movement_values())
        self.last = values
        self.logger.log("train", self.iteration, values)
        # Energies of spectrally normalised networks can be tiny (1e-6 early on): significant
        # digits, not a fixed number of decimals, or the bar would show zeros.
        bar.set_postfix({"loss": f"{values['loss']:.3f}", "cd": f"{values['cd']:.2e}",
                         "nce": f"{values['nce']:.2f}", "gap": f"{values['energy_gap']:.2e}"},
                        refresh=False)

    def _movement_values(self) -> dict[str, float]:
        """The sampler's movement averaged since the last log line; warns once if chains stall.

        Logged as ``sgld_drift`` (root mean square gradient move per step and pixel),
        ``sgld_drift_to_noise`` and ``sgld_displacement`` (per call); see
        :mod:`ebmguide.sampling.diagnostics` for the thresholds.
        """
        if self._movement_count == 0:
            return {}
        window = self._movement / self._movement_count
        averaged = reduce_mean(dict(zip(ChainMovement._fields, window, strict=True)))
        movement = ChainMovement(*(float(averaged[k]) for k in ChainMovement._fields))
        self._movement.zero_()
        self._movement_count = 0
        s = self.cfg.sampler
        low, high = s.clamp if s.clamp is not None else s.init_range
        problem = movement_warning(movement, n_steps=max(s.n_steps, 1), data_range=high - low)
        if problem is not None and problem.kind not in self._warned and self.dist.is_main:
            self._warned.add(problem.kind)
            warnings.warn(f"iteration {self.iteration}: {problem.message}", SamplerWarning,
                          stacklevel=2)
            self.logger.log("warning", self.iteration, {"message": problem.message})
        return {"sgld_drift": movement.drift, "sgld_drift_to_noise": movement.drift_to_noise,
                "sgld_displacement": movement.displacement}

    # -- evaluation and samples --------------------------------------------------------------
    @property
    def evaluator(self) -> Evaluator:
        """The run's evaluator (built on first use: it may train the feature network)."""
        if self._evaluator is None:
            self._evaluator = Evaluator(self.cfg, self.data, self.run_dir)
        return self._evaluator

    def _fresh(self, n: int) -> Tensor:
        steps = self.cfg.eval.fresh_steps or self.cfg.sampler.n_steps
        g = torch.Generator(self.device).manual_seed(self.cfg.seed + 17)
        ema = self.parts.ebm_ema.module
        assert isinstance(ema, SphericalEBM)  # the AveragedModel of build_components' EBM
        was_training = ema.training
        ema.eval()
        try:
            return fresh_chains(ema.energy, self.cfg, self.data.shape, n, steps=steps,
                                generator=g, device=self.device)
        finally:
            ema.train(was_training)

    def evaluate(self, *, fresh: bool) -> dict[str, float]:
        """Score the replay buffer (and, with ``fresh``, fresh EMA chains); log and return it."""
        if not self.dist.is_main:  # distributed: rank 0 evaluates its own buffer
            return {}
        if not self.evaluator.active:
            return {}
        n = self.cfg.eval.n_samples
        values = self.evaluator(self.parts.sampler.buffer.states[:n], "buffer")
        if fresh:
            values.update(self.evaluator(self._fresh(n), "fresh"))
        self.logger.log("eval", self.iteration, values)
        return values

    def save_samples(self) -> Path:
        """Write ``samples/iter-<iteration>.png``: data | replay buffer | fresh EMA chains."""
        k = self.cfg.eval.grid_size
        fresh = 512 if self.data.kind == "vector" else k
        data = self.data.held_out(fresh)
        panels = [("data", data), ("replay buffer", self.parts.sampler.buffer.states[:fresh]),
                  ("fresh chains (EMA)", self._fresh(fresh))]
        path = save_panels(panels, checked_path(self.run_dir,
                                                f"samples/iter-{self.iteration:08d}.png"))
        self.logger.log_image("samples", path, self.iteration)  # TensorBoard, when it imports
        return path
