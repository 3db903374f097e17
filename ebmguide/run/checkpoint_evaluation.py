"""The evaluation behind ``ebmguide evaluate``: check everything, sample (resumably), score.

:func:`prepare` runs every check that can fail before the expensive sweep: the options, the
checkpoint, the feature network (loaded, refused when it is the guide or a copy of it, run on the
real images), the real data (reference and floor planned from the split sizes, the floor
measured), the output folder (writable; a sweep saved there with other settings is refused).
:func:`draw` then samples, writing the buffer into ``<out>/sweep.pt`` after every round so that a
killed sweep resumes from its last finished round, and the final samples into
``<out>/samples.npz`` (uint8 floor(x·256)) and ``<out>/samples.png``. :func:`score` measures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ebmguide.feature_choice import INCEPTION_LABEL
from ebmguide.feature_nets import check_not_guide
from ebmguide.grid import save_panels, to_uint8
from ebmguide.metrics import FrechetScorer, kernel_distance
from ebmguide.run.checkpoints import find_checkpoint, load_run
from ebmguide.run.components import networks_from_checkpoint, sample_shape
from ebmguide.run.config import RunConfig
from ebmguide.run.data_sources import load_training_data
from ebmguide.run.evaluation_inputs import EvaluateOptions, load_feature_net, load_samples
from ebmguide.run.evaluator import SweepState, buffer_protocol, fresh_chains
from ebmguide.run.progress import progress_bar
from ebmguide.run.real_sets import RealSets, real_sets
from ebmguide.torch_utils import resolve_device

__all__ = ["EvaluationPlan", "SweepFolder", "draw", "prepare", "score"]


class SweepFolder:
    """``<out>/sweep.pt``: the buffer after the last finished round, with the sweep's settings.

    Args:
        folder: the output folder (created).
        settings: what makes two sweeps the same (checkpoint, n, chunk, steps, seed, ...); a
            saved sweep with other settings is refused, never silently continued.
    """

    def __init__(self, folder: Path, settings: dict[str, Any]) -> None:
        self.folder, self.settings, self.file = folder, settings, folder / "sweep.pt"

    def check(self) -> SweepState | None:
        """Make sure the folder is writable; the saved state to resume from, if any."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise ValueError(f"cannot write to the output folder {self.folder} ({err}); pass "
                             f"--out DIR with a writable folder.") from err
        if not self.file.is_file():
            return None
        saved = torch.load(self.file, map_location="cpu", weights_only=True)
        if saved.get("settings") != self.settings:
            diff = sorted(k for k in {*self.settings, *saved.get("settings", {})}
                          if saved.get("settings", {}).get(k) != self.settings.get(k))
            raise ValueError(f"{self.file} holds a sweep with other settings ({', '.join(diff)}); "
                             f"pass another --out folder, or delete the file to start again.")
        return SweepState(int(saved["rounds_done"]), saved["states"], saved["generator"])

    def save(self, state: SweepState) -> None:
        """Write ``state`` atomically (a kill mid-write leaves the previous round's file)."""
        tmp = self.file.with_suffix(".tmp")
        torch.save({"settings": self.settings, "rounds_done": state.rounds_done,
                    "states": state.states.detach().cpu(), "generator": state.generator}, tmp)
        os.replace(tmp, self.file)


@dataclass
class EvaluationPlan:
    """Everything :func:`prepare` checked, for :func:`draw` and :func:`score`."""

    args: EvaluateOptions
    checkpoint: Path
    cfg: RunConfig
    state: dict[str, Any]
    device: torch.device
    feature_net: nn.Module
    features: str
    n: int
    sets: RealSets
    scorer: FrechetScorer
    protocol: str
    folder: SweepFolder | None = None
    resume: SweepState | None = None
    samples: Tensor | None = None
    kid_size: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _check_options(args: EvaluateOptions) -> None:
    for name, low in (("n", 2), ("rounds", 1), ("chunk", 1)):
        value = getattr(args, name)
        if value < low:
            raise ValueError(f"--{name} must be at least {low}, got {value}.")
    if args.steps is not None and args.steps < 0:
        raise ValueError(f"--steps must not be negative, got {args.steps}.")


def _protocol(args: EvaluateOptions, cfg: RunConfig, steps: int) -> str:
    model = "online EBM" if args.no_ema else "EMA EBM"
    if args.samples is not None:
        return f"samples file {args.samples.name}"
    if args.protocol == "fresh":
        return f"fresh: {args.n:,} chains from noise, {steps} steps, {model}"
    return (f"buffer: {args.n:,} chains x {args.rounds} rounds, chunks of {args.chunk}, "
            f"{steps} steps, {model}")


def prepare(args: EvaluateOptions) -> EvaluationPlan:
    """Run every check of ``ebmguide evaluate`` (see the module docstring); nothing is sampled."""
    _check_options(args)
    checkpoint = find_checkpoint(args.checkpoint)
    state, cfg = load_run(checkpoint, trust_imports=args.trust_config_imports)
    run_dir = checkpoint.parent.parent
    device = resolve_device(args.device or cfg.device)
    shape = sample_shape(state)
    samples = None if args.samples is None else load_samples(args.samples, shape)
    net, label = load_feature_net(args, cfg, run_dir)
    for key in ("guide", "guide_ema"):  # the online and the EMA guide, compared by value
        if isinstance(state.get(key), dict):
            check_not_guide(net, state[key])
    n = args.n if samples is None else len(samples)
    sets = real_sets(load_training_data(cfg), args.real, n)
    floor = sets.floor[1] if sets.plan.floor_uses_reference else sets.floor
    try:  # runs the feature network on real images now, not after the sweep
        scorer = FrechetScorer(sets.reference, net, features=label, floor=floor)
        _ = scorer.floor
    except (RuntimeError, AssertionError) as err:  # AssertionError: torch.export's shape guards
        raise ValueError(f"the feature network {label!r} fails on this run's real images of "
                         f"shape {tuple(sets.reference.shape[1:])}: {err}") from err
    kid_size = min(1000, min(len(sets.reference), n) // 2)
    if args.kid and kid_size < 2:
        raise ValueError(f"KID needs at least 4 samples and 4 reference images, got {n} and "
                         f"{len(sets.reference)}.")
    steps = args.steps if args.steps is not None else (
        (cfg.eval.fresh_steps or cfg.sampler.n_steps) if args.protocol == "fresh"
        else cfg.sampler.n_steps)
    plan = EvaluationPlan(args, checkpoint, cfg, state, device, net, label, n, sets, scorer,
                          _protocol(args, cfg, steps), samples=samples, kid_size=kid_size)
    plan.extra["steps"] = steps
    if samples is None:
        name = (f"evaluate-{args.protocol}-{checkpoint.stem}-n{args.n}-seed{args.seed}"
                f"{'-online' if args.no_ema else ''}")
        folder = args.out or run_dir / name  # the same command finds its own sweep again
        settings = {"checkpoint": checkpoint.name, "iteration": int(state.get("iteration", -1)),
                    "ema": not args.no_ema, "protocol": args.protocol, "n": args.n,
                    "chunk": args.chunk, "steps": steps, "seed": args.seed,
                    "device": device.type}
        plan.folder = SweepFolder(Path(folder), settings)
        plan.resume = plan.folder.check()
    return plan


def draw(plan: EvaluationPlan, progress: bool | str = True) -> Tensor:
    """The samples: loaded, or drawn with progress (ETA) and saved as the sweep goes.

    ``progress``: a mode of :func:`~ebmguide.run.progress.progress_bar` (True: ``"auto"``, a bar
    on a terminal, a line every 30 s in a log file).
    """
    if plan.samples is not None:
        return plan.samples
    args, folder = plan.args, plan.folder
    assert folder is not None  # set by prepare() whenever samples are drawn
    ebm, _ = networks_from_checkpoint(plan.state, plan.cfg, plan.device, ema=not args.no_ema)
    shape, g = sample_shape(plan.state), torch.Generator(plan.device).manual_seed(args.seed)
    steps = plan.extra["steps"]
    if args.protocol == "fresh":
        with progress_bar(progress, total=args.n, initial=0, desc="fresh chains", unit="chain",
                          sweep=True) as bar:
            x = fresh_chains(ebm.energy, plan.cfg, shape, args.n, steps=steps, generator=g,
                             device=plan.device, chunk=args.chunk, on_chunk=bar.update)
    else:
        done = min(plan.resume.rounds_done, args.rounds) if plan.resume is not None else 0
        with progress_bar(progress, total=args.n * args.rounds, initial=done * args.n,
                          desc=f"buffer protocol ({done}/{args.rounds} rounds saved)",
                          unit="chain", sweep=True) as bar:

            def saved(state: SweepState) -> None:
                folder.save(state)
                bar.set_description(f"buffer protocol ({state.rounds_done}/{args.rounds} "
                                    f"rounds saved)")

            x = buffer_protocol(ebm.energy, plan.cfg, shape, args.n, rounds=args.rounds,
                                generator=g, device=plan.device, chunk=args.chunk, steps=steps,
                                on_chunk=bar.update, resume=plan.resume, on_round=saved)
    _write_samples(x, folder.folder)
    return x


def _write_samples(x: Tensor, folder: Path) -> None:
    """``samples.npz`` (uint8 images, or float vectors, key "images") and ``samples.png``."""
    data = to_uint8(x) if x.dim() == 4 else x.float()
    np.savez_compressed(folder / "samples.npz", images=data.numpy())
    save_panels([(f"{len(x)} samples", x[:256])], folder / "samples.png", scale=4)


def score(plan: EvaluationPlan, fake: Tensor) -> dict[str, Any]:
    """FD (and KID) of ``fake`` with everything the table prints."""
    sets, fd_name = plan.sets, plan.features
    standard = fd_name == INCEPTION_LABEL and bool(plan.args.inception_weights
                                                   or plan.cfg.eval.inception_weights)
    metric = "FID" if standard else f"FD (features: {fd_name})"
    result = plan.scorer.with_floor(fake)
    values: dict[str, Any] = {
        "metric": metric, "fd": result.fd, "fd_floor": result.floor, "features": fd_name,
        "n": len(fake), "n_real": len(sets.reference), "real": str(sets.plan.reference),
        "floor_sets": sets.plan.floor_label, "protocol": plan.protocol,
        "checkpoint": str(plan.checkpoint),
    }
    accuracy = getattr(plan.feature_net, "held_out_accuracy", None)
    if isinstance(accuracy, float):  # the in-domain network's held-out accuracy on its task
        values["feature_net_accuracy"] = accuracy
    if plan.args.kid:
        kid, kid_std = kernel_distance(sets.reference, fake, plan.feature_net, features=fd_name,
                                       subset_size=plan.kid_size)
        a, b = sets.floor
        kid_floor, _ = kernel_distance(a, b, plan.feature_net, features=fd_name,
                                       subset_size=min(plan.kid_size, len(a) // 2, len(b) // 2))
        values.update(kid=kid, kid_std=kid_std, kid_floor=kid_floor)
    return values
