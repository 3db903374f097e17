"""Drawing samples from a trained EBM and scoring them during and after training."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ebmguide.feature_choice import choose_feature_net
from ebmguide.feature_nets import factor_statistics
from ebmguide.metrics import FrechetScorer
from ebmguide.protocols import EnergyFn, EnergyModel
from ebmguide.run.components import build_sampler, init_range, langevin_settings
from ebmguide.run.config import RunConfig
from ebmguide.run.real_sets import RealSets, real_sets
from ebmguide.run.training_data import TrainingData
from ebmguide.sampling import langevin_dynamics, uniform_states
from ebmguide.torch_utils import eval_mode

__all__ = ["Evaluator", "SweepState", "buffer_protocol", "ema_fresh_chains", "fresh_chains"]


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

    The same chains as :meth:`~ebmguide.sampling.sampler.SGLDSampler.sample_fresh` of the run's
    sampler (the same uniform start range, the same :class:`~ebmguide.sampling.LangevinSettings`).
    ``on_chunk`` is called with the number of chains after every chunk (e.g. a progress bar).
    """
    settings, (low, high) = langevin_settings(cfg, device).with_steps(steps), init_range(cfg)
    parts = []
    for i in range(0, n, chunk):
        x = uniform_states((min(chunk, n - i), *shape), low, high, generator=generator,
                           device=device)
        parts.append(langevin_dynamics(energy_fn, x, settings, generator=generator).samples.cpu())
        if on_chunk is not None:
            on_chunk(len(parts[-1]))
    return torch.cat(parts)


def ema_fresh_chains(ema: nn.Module, cfg: RunConfig, shape: tuple[int, ...], n: int, *,
                     generator: torch.Generator, device: torch.device) -> Tensor:
    """``n`` fresh chains of an EBM (the run's EMA copy) in eval mode, ``eval.fresh_steps`` long.

    Args:
        ema: the EMA network (``AveragedModel.module``), an
            :class:`~ebmguide.protocols.EnergyModel`.
        cfg: the run's configuration (``eval.fresh_steps``, or ``sampler.n_steps`` when 0).
        shape: the shape of one sample.
        n: the number of chains.
        generator: the only source of randomness.
        device: where the chains run.

    Returns:
        ``(n, *shape)`` samples on the CPU.
    """
    if not isinstance(ema, EnergyModel):
        raise TypeError(f"the EMA network ({type(ema).__name__}) is not an EnergyModel.")
    steps = cfg.eval.fresh_steps or cfg.sampler.n_steps
    with eval_mode(ema):
        return fresh_chains(ema.energy, cfg, shape, n, steps=steps, generator=generator,
                            device=device)


def buffer_protocol(energy_fn: EnergyFn, cfg: RunConfig, shape: tuple[int, ...], n: int, *,
                    rounds: int, generator: torch.Generator, device: torch.device,
                    chunk: int = 512, steps: int | None = None,
                    on_chunk: Callable[[int], None] | None = None,
                    resume: SweepState | None = None,
                    on_round: Callable[[SweepState], None] | None = None) -> Tensor:
    """The paper's sampling protocol: a buffer of ``n`` uniform images, ``rounds`` passes over it.

    The run's sampler is built with a buffer of ``n`` slots and each pass is one
    :meth:`~ebmguide.sampling.sampler.SGLDSampler.sweep`: the buffer in chunks of ``chunk``
    slots, every chunk through exactly the training sampler (re-initialisation with
    ``reinit_prob``, the buffer augmentation, ``n_steps`` SGLD steps, ``steps`` overrides; finite
    chains written back). The paper: n = 50,000, 10 rounds, chunks of 512, with the EMA EBM.

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
    states, first = sampler.buffer.states, 0
    if resume is not None:
        if tuple(resume.states.shape) != tuple(states.shape):
            raise ValueError(f"the saved sweep holds {tuple(resume.states.shape)} chains, not "
                             f"{tuple(states.shape)}; start a new sweep.")
        states.copy_(resume.states)
        generator.set_state(resume.generator)
        first = resume.rounds_done
    for done in range(first, rounds):
        sampler.sweep(energy_fn, chunk=chunk, n_steps=steps, generator=generator,
                      on_chunk=on_chunk)
        if on_round is not None:
            on_round(SweepState(done + 1, sampler.buffer.states, generator.get_state()))
    return sampler.buffer.states.cpu()


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
        # other real images (see ebmguide.run.real_sets).
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
