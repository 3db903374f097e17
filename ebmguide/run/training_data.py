"""The training set of a run and its held-out real data, as named by ``cfg.data``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ebmguide.data import (
    BatchTransform,
    GaussianNoise,
    InfiniteBatches,
    dequantize,
    load_cifar10,
    make_shapes,
    toy2d,
)
from ebmguide.data.streaming import LazyImages, StreamingBatches
from ebmguide.run.config import RunConfig
from ebmguide.run.config_schema import is_import_path

__all__ = ["TrainingData"]

_EVAL_SEED_OFFSET = 7919  # held-out shapes/toy data use seed + this offset: disjoint from training


@dataclass
class TrainingData:
    """The training set and how to get held-out real data for evaluation.

    Attributes:
        train: ``(N, *shape)`` uint8 (8-bit images, dequantized per batch) or float; or
            :class:`~ebmguide.data.streaming.LazyImages` streamed from disk.
        shape: the shape of one sample.
        kind: ``"image"`` or ``"vector"``.
        cfg: the run's configuration.
        test: held-out samples given with the data, never trained on (else by ``cfg.data``).
        labels: ``(N,)`` int64 class labels of ``train``, when the data have them.
        info: what was loaded (sizes, the held-out split and its seed), logged by the run.
    """

    train: Tensor | LazyImages
    shape: tuple[int, ...]
    kind: str
    cfg: RunConfig
    _held_out: Tensor | None = None
    test: Tensor | LazyImages | None = None
    labels: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_tensors(cls, train: Tensor, cfg: RunConfig, *,
                     test: Tensor | None = None) -> TrainingData:
        """Your own data: ``(N, *shape)`` uint8 images, float images in [0, 1], or vectors.

        Args:
            train: the training samples; 4-D tensors are images, 2-D ones vectors.
            cfg: the run's configuration (``eval.n_samples``, ``seed``).
            test: held-out samples of the same shape for evaluation and the sample grids;
                without them a fixed random subset of ``train`` stands in (say so when
                reporting scores).

        Raises:
            TypeError: ``train`` or ``test`` is not a tensor.
            ValueError: the shapes do not fit.
        """
        for name, x in (("train", train), ("test", test)):
            if x is not None and not isinstance(x, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor (N, *shape), got "
                                f"{type(x).__name__}.")
        if train.ndim not in (2, 4) or len(train) == 0:
            raise ValueError(f"train must be (N, C, H, W) images or (N, D) vectors with N >= 1, "
                             f"got shape {tuple(train.shape)}.")
        if test is not None and tuple(test.shape[1:]) != tuple(train.shape[1:]):
            raise ValueError(f"test samples have shape {tuple(test.shape[1:])}, the training "
                             f"samples {tuple(train.shape[1:])}; give both the same shape.")
        kind = "image" if train.ndim == 4 else "vector"
        return cls(train, tuple(train.shape[1:]), kind, cfg, test=test)

    def batches(self, batch_size: int, seed: int, device: torch.device, *, rank: int = 0,
                world_size: int = 1) -> InfiniteBatches[Tensor] | StreamingBatches:
        """The endless, resumable minibatch stream (dequantized when 8-bit).

        Under torchrun, ``rank`` of ``world_size`` gets a disjoint share of every epoch (pass the
        same ``seed`` on every rank). Streamed data give the same batches as in memory.
        """
        if isinstance(self.train, LazyImages):
            return StreamingBatches(self.train, batch_size,
                                    generator=torch.Generator().manual_seed(seed), device=device,
                                    transform=self._with_noise(dequantize), rank=rank,
                                    world_size=world_size, num_workers=self.cfg.data.num_workers)
        data = self.train.to(device)
        transform = self._with_noise(dequantize if data.dtype == torch.uint8 else None)
        return InfiniteBatches(data, batch_size, generator=torch.Generator().manual_seed(seed),
                               transform=transform, rank=rank, world_size=world_size)

    def _with_noise(self, transform: BatchTransform | None) -> BatchTransform | None:
        """``transform`` followed by the ``data.noise`` of the configuration, when it is > 0."""
        std = self.cfg.data.noise
        if std == 0:
            return transform
        return GaussianNoise(std, bounds=self.cfg.sampler.clamp, first=transform)

    def held_out(self, n: int, *, at_least: int | None = None) -> Tensor:
        """``n`` real samples never used for training, as floats (images in [0, 1]).

        Generated (or drawn from the test split) once with a fixed seed, then cached. A finite
        test split smaller than ``n`` gives all its images when it has ``at_least`` of them
        (default ``n``) and raises ``ValueError`` otherwise.
        """
        need = n if at_least is None else min(n, at_least)
        if self._held_out is None or len(self._held_out) < n:
            # Twice eval.n_samples where the data allow it: the real-vs-real floor needs two halves.
            self._held_out = self._make_held_out(max(n, 2 * self.cfg.eval.n_samples), need=need)
        if len(self._held_out) < need:
            raise ValueError(f"the test split has {len(self._held_out)} images, fewer than the "
                             f"{need} asked for; lower eval.n_samples.")
        return self._held_out[:n]

    def _make_held_out(self, want: int, *, need: int) -> Tensor:
        """``want`` held-out samples, or as many as a finite test split has (at least ``need``)."""
        d = self.cfg.data
        g = torch.Generator().manual_seed(self.cfg.seed + _EVAL_SEED_OFFSET)
        if self.test is not None or is_import_path(d.name):
            return _given_held_out(self.train if self.test is None else self.test, want, need, g)
        if d.name == "shapes":
            return make_shapes(want, size=d.size, generator=g).images
        if d.name == "toy2d":
            return toy2d(d.toy, want, generator=g)
        test = load_cifar10(d.path, "test").images
        if len(test) < need:
            raise ValueError(f"the test split has {len(test)} images, fewer than the {need} asked "
                             f"for; lower eval.n_samples.")
        n = min(want, len(test))
        return dequantize(test[torch.randperm(len(test), generator=g)[:n]], g)


def _given_held_out(pool: Tensor | LazyImages, want: int, need: int,
                    g: torch.Generator) -> Tensor:
    """A fixed random subset of ``pool`` as floats (8-bit images dequantized)."""
    if len(pool) < need:
        raise ValueError(f"the held-out data have {len(pool)} samples, fewer than the {need} "
                         f"asked for; lower eval.n_samples.")
    picked = pool[torch.randperm(len(pool), generator=g)[:min(want, len(pool))]]
    return dequantize(picked, g) if picked.dtype == torch.uint8 else picked.float()
