"""The iteration-floor row: the bare CLEL iteration against ``clel_step`` and the Trainer's.

All three run the same networks, sampler settings and batch, built from one run configuration
(the shipped demo recipe, and the CLEL-small networks on 32×32 shapes). The Trainer is timed
inside its own loop (``Trainer.run``): a hook, called before every iteration, closes a block of
``n`` Trainer iterations and then times ``n`` iterations of the floor and ``n`` of ``clel_step``
in a rotated order, so the three are interleaved repetitions with paired ratios as everywhere in
the suite. A block of ``n = train.log_every`` iterations holds one logging step, so the Trainer's
figure includes its logging, divergence checks, EMA updates, learning-rate schedules and data
loading, per iteration; no evaluation, sample grid or checkpoint falls inside the timed iterations.
"""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import ebmguide as eg
from benchmarks.clel_floor import FloorCLEL, floor_from_parts
from benchmarks.device import PeakMemory, stopwatch
from benchmarks.timing import CLOCKS, paired_ratio, summarize
from ebmguide.run.components import build_components
from ebmguide.run.config import RunConfig, load_config
from ebmguide.run.trainer import Trainer

SEED = 7
IMPLS = ("floor", "clel_step", "Trainer")
# Nothing periodic but logging inside the timed iterations; the threads are the benchmark's; the
# sample grid the run writes when it stops (after the timed iterations) is kept small.
_QUIET = ["train.iterations=1000000", "eval.every=0", "train.sample_every=1000000",
          "train.checkpoint_every=1000000", "train.num_threads=0", "data.n_train=4096",
          "eval.fresh_steps=1", "eval.grid_size=4"]
_CLEL_SMALL = ["data.size=32", "model.backbone=clel_resnet_small", "model.pool=avg",
               "model.latent_dim=128",
               "model.hidden_dim=2048",
               "guide.encoder=cifar_resnet18", "guide.hidden_dim=2048", "sampler.buffer_size=1000",
               "sampler.noise_scale=0.001", "sampler.reinit_prob=0.001", "sampler.augment=strong",
               "sampler.autocast=none"]
_SMOKE = ["data.size=8", "data.n_train=64", "model.width=4", "model.latent_dim=8",
          "model.hidden_dim=16", "guide.width=4", "guide.hidden_dim=16", "sampler.buffer_size=16",
          "sampler.n_steps=2", "train.batch_size=4", "train.log_every=2"]


@dataclass(frozen=True)
class FloorCase:
    """One set-up of the row: a name, a description and overrides of the demo recipe."""

    name: str
    description: str
    overrides: tuple[str, ...]

    def config(self, device: str) -> RunConfig:
        return load_config("demo", [*_QUIET, *self.overrides, f"device={device}"])


def floor_cases(mode: str) -> list[FloorCase]:
    """The set-ups of a mode: the demo recipe as shipped, and CLEL-small (B, K per mode)."""
    if mode == "smoke":
        return [FloorCase("smoke", "demo recipe, SmallCNN width 4, 3×8×8", tuple(_SMOKE))]
    batch, steps = (16, 10) if mode == "full" else (8, 5)
    return [
        FloorCase("demo", "ebmguide/configs/demo.toml as shipped (SmallCNN EBM and guide, "
                  "3×16×16, bf16 sampler)", ()),
        FloorCase("clel-small", "EBM CLEL ResNet small + guide CIFAR ResNet-18, 3×32×32 shapes",
                  (*_CLEL_SMALL, f"train.batch_size={batch}", f"sampler.n_steps={steps}")),
    ]


def _parts(cfg: RunConfig, shape: tuple[int, ...], device: torch.device) -> Any:
    return build_components(cfg, shape, device, torch.Generator(device).manual_seed(cfg.seed))


def _clel_step_fn(parts: Any, cfg: RunConfig, x: Tensor,
                  generator: torch.Generator) -> Callable[[], object]:
    o = parts.optimizers

    def step() -> object:
        return eg.clel_step(parts.ebm, parts.guide, parts.sampler, x, ebm_optimizer=o.ebm,
                            guide_optimizer=o.guide, loss_fn=parts.loss_fn, generator=generator,
                            extra_negatives=cfg.guide.extra_negatives,
                            joint_forward=cfg.train.joint_forward)
    return step


def _max_param_diff(a: Any, b: Any) -> float:
    """Largest |Δ| over both networks' parameters and the replay buffer."""
    pairs = [*zip(a.ebm.parameters(), b.ebm.parameters(), strict=True),
             *zip(a.guide.parameters(), b.guide.parameters(), strict=True),
             (a.sampler.buffer.states, b.sampler.buffer.states)]
    return max(float((p.detach() - q.detach()).abs().max()) for p, q in pairs)


class _Blocks:
    """The Trainer hook that times blocks of its iterations and, between them, the others."""

    def __init__(self, others: dict[str, Callable[[], object]], *, n: int, warmup: int,
                 repeats: int, watch: Any, peaks: PeakMemory) -> None:
        self.others, self.n, self.warmup, self.repeats = others, n, warmup, repeats
        self.watch, self.peaks = watch, peaks
        self.times: dict[str, list[float]] = {name: [] for name in IMPLS}
        self.block = -1

    def __call__(self, trainer: Trainer, iteration: int) -> None:
        if iteration % self.n != 0:
            return
        if self.block >= self.warmup:
            self.times["Trainer"].append(self.watch.stop() / self.n)
            self.peaks.record("Trainer")
        self.block += 1
        if self.block > self.warmup + self.repeats - 1:
            return
        names = list(self.others)
        shift = self.block % len(names)
        for name in names[shift:] + names[:shift]:
            self._time(name, self.others[name])
        gc.collect()
        self.peaks.reset()
        self.watch.start()

    def _time(self, name: str, fn: Callable[[], object]) -> None:
        gc.collect()
        self.peaks.reset()
        self.watch.start()
        for _ in range(self.n):
            fn()
        seconds = self.watch.stop()
        self.peaks.record(name)
        if self.block >= self.warmup:
            self.times[name].append(seconds / self.n)


def case_rows(case: FloorCase, *, repeats: int, clock: str, device: str,
              warmup: int = 1) -> list[dict[str, Any]]:
    """The floor, ``clel_step`` and the Trainer on one set-up: per-iteration times and ratios."""
    cfg = case.config(device)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, run_dir, progress="none")
        dev, shape, b = trainer.device, trainer.data.shape, cfg.train.batch_size
        x = next(trainer.data.batches(b, cfg.seed + 99, dev))
        floor_parts, clel_parts = _parts(cfg, shape, dev), _parts(cfg, shape, dev)
        floor: FloorCLEL = floor_from_parts(floor_parts)
        g_floor = torch.Generator(dev).manual_seed(SEED)
        g_clel = torch.Generator(dev).manual_seed(SEED)
        clel = _clel_step_fn(clel_parts, cfg, x, g_clel)
        floor.step(x, g_floor)  # one iteration of each from the same state: the same result
        clel()
        max_diff = _max_param_diff(floor_parts, clel_parts)
        n = cfg.train.log_every
        peaks = PeakMemory(dev)
        hook = _Blocks({"floor": lambda: floor.step(x, g_floor), "clel_step": clel}, n=n,
                       warmup=warmup, repeats=repeats, watch=stopwatch(dev, CLOCKS[clock]),
                       peaks=peaks)
        trainer.hooks = [hook]
        trainer.run(until=(warmup + repeats) * n + 1)
        trainer.close()
    times = hook.times
    rows = []
    for name in IMPLS:
        row: dict[str, Any] = {
            "case": case.name, "description": case.description, "batch": b,
            "steps": cfg.sampler.n_steps, "impl": name, "block": n,
            "per_iter": summarize(times[name]).as_dict(),
            "vs_floor": paired_ratio(times, name, "floor").as_dict(),
            "max_diff_clel_step_vs_floor": max_diff}
        if name in peaks.peaks_mb:
            row["peak_mb"] = peaks.peaks_mb[name]
        rows.append(row)
    return rows


def floor_rows(mode: str, *, repeats: int, clock: str, device: str) -> list[dict[str, Any]]:
    """:func:`case_rows` for every set-up of ``mode``."""
    return [r for case in floor_cases(mode) for r in case_rows(case, repeats=repeats, clock=clock,
                                                                device=device)]
