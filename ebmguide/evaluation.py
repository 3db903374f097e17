"""Drawing samples from a trained EBM and scoring them during and after training."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ebmguide.augment import apply_augment
from ebmguide.builders import TrainingData, build_sampler
from ebmguide.config import RunConfig
from ebmguide.feature_choice import choose_feature_net
from ebmguide.metrics import FrechetScorer, factor_statistics
from ebmguide.protocols import EnergyFn
from ebmguide.real_sets import RealSets, real_sets
from ebmguide.sampling import langevin_dynamics

__all__ = ["Evaluator", "SweepState", "buffer_protocol", "fresh_chains"]


class SweepState(NamedTuple):
    """Where a :func:`buffer_protocol` sweep stands after a finished round.

    Attributes:
        rounds_done: finished passes over the buffer.
        states: ``(n, *shape)`` the buffer after them.
        generator: the generator's state (``torch.Generator.get_state()``) after them.
    """

    rounds_done: int
    states: Tensor
    generator: Tensor


def fresh_chains(energy_fn: EnergyFn, cfg: RunConfig, shape: tuple[int, ...], n: int, *,
                 steps: int, generator: torch.Generator, device: torch.device,
                 chunk: int = 512, on_chunk: Callable[[int], None] | None = None) -> Tensor:
    """``n`` chains from uniform noise, ``steps`` SGLD steps of the training sampler's settings.

    ``on_chunk`` is called with the number of chains after every chunk (e.g. a progress bar).
    """
    sampler = build_sampler(cfg, shape, device, generator, buffer_size=1)
    parts = []
    for i in range(0, n, chunk):
        parts.append(sampler.sample_fresh(energy_fn, min(chunk, n - i), n_steps=steps,
                                          generator=generator).samples.cpu())
        if on_chunk is not None:
            on_chunk(len(parts[-1]))
    return torch.cat(parts)


def buffer_protocol(energy_fn: EnergyFn, cfg: RunConfig, shape: tuple[int, ...], n: int, *,
                    rounds: int, generator: torch.Generator, device: torch.device,
                    chunk: int = 512, steps: int | None = None,
                    on_chunk: Callable[[int], None] | None = None,
                    resume: SweepState | None = None,
                    on_round: Callable[[SweepState], None] | None = None) -> Tensor:
    """The paper's sampling protocol: a buffer of ``n`` uniform images, ``rounds`` passes over it.

    Each pass walks the buffer in chunks of ``chunk`` slots; every chunk goes through exactly the
    training sampler: re-initialisation with probability ``reinit_prob``, the buffer augmentation,
    ``n_steps`` SGLD steps (``steps`` overrides), and the finite chains are written back.
    The paper: n = 50,000, 10 rounds, chunks of 512, with the EMA EBM.

    A sweep can be resumed: ``on_round`` receives a :class:`SweepState` after every finished
    round (save it), and ``resume`` continues from one; on the CPU the result is bit-identical
    with an uninterrupted sweep.

    Args:
        energy_fn: ``(B, *shape) -> (B,)``, e.g. the EMA EBM's ``energy``.
        cfg: the run's configuration (its sampler settings).
        shape: shape of one sample.
        n: buffer size, the number of samples.
        rounds: passes over the buffer.
        generator: source of all randomness (on ``device``).
        device: where the buffer and the chains live.
        chunk: chains per batch.
        steps: SGLD steps per chunk (default: the run's ``sampler.n_steps``).
        on_chunk: called with the number of chains after every chunk (e.g. a progress bar).
        resume: a state saved from ``on_round`` of a sweep with the same arguments.
        on_round: called after every finished round.

    Returns:
        The final buffer ``(n, *shape)`` on the CPU.
    """
    sampler = build_sampler(cfg, shape, device, generator, buffer_size=n)
    buffer, k = sampler.buffer, sampler.n_steps if steps is None else steps
    first = 0
    if resume is not None:
        if tuple(resume.states.shape) != tuple(buffer.states.shape):
            raise ValueError(f"the saved sweep holds {tuple(resume.states.shape)} chains, not "
                             f"{tuple(buffer.states.shape)}; start a new sweep.")
        buffer.states.copy_(resume.states)
        generator.set_state(resume.generator)
        first = resume.rounds_done
    for done in range(first, rounds):
        for start in range(0, n, chunk):
            index = torch.arange(start, min(start + chunk, n), device=buffer.states.device)
            x = buffer.states[index]
            fresh = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            fresh = fresh * (buffer.high - buffer.low) + buffer.low
            reinit = torch.rand(len(index), generator=generator, device=x.device)
            x = torch.where((reinit < sampler.reinit_prob).view(-1, *[1] * len(shape)), fresh, x)
            if sampler.augment is not None:
                x = apply_augment(sampler.augment, x, generator)
            result = langevin_dynamics(
                energy_fn, x, n_steps=k, step_size=sampler.step_size,
                noise_scale=sampler.noise_scale, grad_clip=sampler.grad_clip,
                clamp=sampler.clamp, generator=generator, autocast_dtype=sampler.autocast_dtype)
            buffer.write(index, result.samples, keep=result.finite)
            if on_chunk is not None:
                on_chunk(len(index))
        if on_round is not None:
            on_round(SweepState(done + 1, buffer.states, generator.get_state()))
    return buffer.states.cpu()


def _floor_arg(sets: RealSets) -> Tensor | tuple[Tensor, Tensor]:
    """The ``floor=`` argument of :class:`FrechetScorer` for a :class:`RealSets`."""
    return sets.floor[1] if sets.plan.floor_uses_reference else sets.floor


class Evaluator:
    """Scores samples of a run against held-out real data with an independent feature network.

    The feature network is ``eval.feature_net`` (see :mod:`ebmguide.feature_choice`): for shapes
    data the shapes classifier (cached in ``<run>/feature_net.pt``), plus the rule-based factor
    statistics; for toy 2-D data the coordinates; for other images Inception-v3 when
    ``eval.inception_weights`` is set, else the in-domain network trained once on the training
    split (cached in ``<run>/feature_net_in_domain.pt``). Every FD comes with its floor.

    Args:
        cfg: the run's configuration.
        data: the run's data (for held-out real samples).
        run_dir: where the feature network is cached.
        feature_net: a feature network to use instead of the default.
        features: its name for labels.
    """

    def __init__(self, cfg: RunConfig, data: TrainingData, run_dir: str | Path, *,
                 feature_net: nn.Module | None = None, features: str | None = None) -> None:
        self.cfg, self.n = cfg, cfg.eval.n_samples
        self.shapes = cfg.data.name == "shapes"
        if feature_net is None:
            chosen = choose_feature_net(
                cfg.eval.feature_net, data_name=cfg.data.name, kind=data.kind,
                size=cfg.data.size, inception_weights=cfg.eval.inception_weights,
                training_images=lambda: (data.train, data.labels), run_dir=run_dir,
                seed=cfg.seed)
            feature_net, features = (None, None) if chosen is None else chosen
        self.features = features or "custom"
        accuracy = getattr(feature_net, "held_out_accuracy", None)  # in-domain network's task
        self.feature_accuracy = accuracy if isinstance(accuracy, float) else None
        # The paper's monitoring protocol: the reference is the held-out split, up to n images
        # (all 10,000 CIFAR-10 test images at n = 10,000); the floor compares it with as many
        # other real images (see ebmguide.real_sets).
        self.sets = (real_sets(data, "held-out", self.n)
                     if feature_net is not None or self.shapes else None)
        self.real = None if self.sets is None else self.sets.reference
        self.scorer = (None if feature_net is None or self.sets is None
                       else FrechetScorer(self.sets.reference, feature_net,
                                          features=self.features,
                                          floor=_floor_arg(self.sets)))

    @property
    def active(self) -> bool:
        """Whether there is anything to compute."""
        return self.real is not None

    def __call__(self, samples: Tensor, prefix: str) -> dict[str, float]:
        """Metrics of ``samples`` (the first ``eval.n_samples`` are used), keys ``<prefix>_...``."""
        if self.real is None:
            return {}
        fake = samples[: self.n].detach().float().cpu()
        out: dict[str, float] = {}
        if self.scorer is not None:
            out[f"{prefix}_fd"] = self.scorer(fake)
            out["fd_floor"] = self.scorer.floor
            if self.feature_accuracy is not None:
                out["feature_net_accuracy"] = self.feature_accuracy
        if self.shapes:
            stats = factor_statistics(fake, self.real[: self.n])
            out.update({f"{prefix}_{k}": v for k, v in stats.items()})
        return out
