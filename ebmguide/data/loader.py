"""An endless, resumable, shardable stream of shuffled minibatches over in-memory tensors.

EBM training counts iterations, not epochs, and draws one batch at a time. :class:`InfiniteBatches`
reshuffles at every epoch from an explicit generator, can transform each batch (e.g.
:func:`~ebmguide.data.cifar.dequantize`), saves and restores its exact position, and gives each rank
of a distributed run a disjoint slice of the same permutation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

import torch
from torch import Tensor

__all__ = ["BatchTransform", "InfiniteBatches"]

BatchTransform = Callable[[Tensor, torch.Generator], Tensor]
"""A per-batch transform ``(batch, generator) -> batch``.

For example :func:`~ebmguide.data.cifar.dequantize`.
"""

BatchT = TypeVar("BatchT", Tensor, tuple[Tensor, ...])


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")


class InfiniteBatches(Generic[BatchT]):
    """Endless shuffled minibatches over a tensor or a tuple of tensors sharing the first dimension.

    Each epoch draws a permutation of all N indices from ``generator``; rank r of ``world_size``
    takes the slice ``[r·M, (r+1)·M)`` of it with M = N // world_size (the last N mod world_size
    indices of each permutation are skipped), and walks it in batches. Seed ``generator``
    identically on every rank: all ranks then draw the same permutation and get disjoint slices.

    Example:
        >>> from ebmguide.data import InfiniteBatches, dequantize
        >>> images = torch.zeros(100, 3, 8, 8, dtype=torch.uint8)
        >>> batches = InfiniteBatches(images, 32, generator=torch.Generator().manual_seed(0),
        ...                           transform=dequantize)
        >>> next(batches).shape
        torch.Size([32, 3, 8, 8])

    Args:
        data: an ``(N, ...)`` tensor, or a tuple of them (e.g. images and labels); batches have the
            same structure.
        batch_size: samples per batch (per rank).
        generator: shuffling generator; its state is part of :meth:`state_dict`.
        transform: applied to the first tensor of every batch, with ``transform_generator``.
        transform_generator: generator handed to ``transform``, on the data's device. By default a
            new one seeded with ``generator.initial_seed() + 1 + rank`` (different on each rank).
        rank: this process's rank (``torch.distributed.get_rank()``).
        world_size: number of processes (``torch.distributed.get_world_size()``).
        drop_last: drop each epoch's last incomplete batch (default), so every batch is full.

    Raises:
        ValueError: for tensors of different lengths, bad sizes or ranks, or a shard smaller than
            one batch with ``drop_last``.
        TypeError: if ``data`` is not a tensor or a tuple of tensors, or a generator is missing.
    """

    def __init__(
        self,
        data: BatchT,
        batch_size: int,
        *,
        generator: torch.Generator,
        transform: BatchTransform | None = None,
        transform_generator: torch.Generator | None = None,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ) -> None:
        tensors = (data,) if isinstance(data, Tensor) else data
        if not isinstance(tensors, tuple) or not tensors \
                or not all(isinstance(t, Tensor) for t in tensors):
            raise TypeError("data must be a tensor or a non-empty tuple of tensors.")
        if len({len(t) for t in tensors}) != 1:
            raise ValueError(f"All tensors must share their first dimension, got "
                             f"{[len(t) for t in tensors]}.")
        if not isinstance(generator, torch.Generator):
            raise TypeError("generator must be a torch.Generator, e.g. "
                            "torch.Generator().manual_seed(seed) (the same seed on every rank).")
        _check_int("batch_size", batch_size, 1)
        _check_int("world_size", world_size, 1)
        _check_int("rank", rank, 0)
        if rank >= world_size:
            raise ValueError(f"rank must be < world_size ({world_size}), got {rank}.")
        self._single = isinstance(data, Tensor)
        self._tensors: tuple[Tensor, ...] = tensors
        self._shard = len(tensors[0]) // world_size
        if self._shard < (batch_size if drop_last else 1):
            raise ValueError(f"Each of the {world_size} rank(s) gets {self._shard} samples per "
                             f"epoch, fewer than one batch of {batch_size}; use a smaller batch.")
        self.batch_size, self.rank, self.world_size, self.drop_last = (
            batch_size, rank, world_size, drop_last)
        self.generator, self.transform = generator, transform
        if transform is not None and transform_generator is None:
            transform_generator = torch.Generator(tensors[0].device)
            transform_generator.manual_seed((generator.initial_seed() + 1 + rank) % 2**63)
        self.transform_generator = transform_generator
        self._epoch, self._position = 0, 0
        self._indices: Tensor | None = None  # this rank's slice of the current permutation

    @property
    def epoch(self) -> int:
        """Index of the current epoch (0 until the first permutation is used up)."""
        return self._epoch

    @property
    def batches_per_epoch(self) -> int:
        """Batches per epoch on this rank."""
        full, rest = divmod(self._shard, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> InfiniteBatches[BatchT]:
        return self

    def __next__(self) -> BatchT:
        end = self._position + self.batch_size
        if self._indices is None or self._position >= self._shard or (
                self.drop_last and end > self._shard):
            if self._indices is not None:
                self._epoch += 1
            self._indices = self._permute()
            self._position, end = 0, self.batch_size
        index = self._indices[self._position:end]
        self._position = end
        batch = [t[index.to(t.device)] for t in self._tensors]
        if self.transform is not None and self.transform_generator is not None:
            batch[0] = self.transform(batch[0], self.transform_generator)
        return cast(BatchT, batch[0] if self._single else tuple(batch))

    def _permute(self) -> Tensor:
        permutation = torch.randperm(len(self._tensors[0]), generator=self.generator,
                                     device=self.generator.device).cpu()
        return permutation[self.rank * self._shard:(self.rank + 1) * self._shard]

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue with exactly the same batches.

        Returns:
            ``epoch``, ``position`` (samples of this epoch's slice already used), ``indices`` (the
            slice, or None before the first batch), ``generator`` and ``transform_generator``
            states (ByteTensors), ``rank`` and ``world_size``.
        """
        return {
            "epoch": self._epoch,
            "position": self._position,
            "indices": None if self._indices is None else self._indices.clone(),
            "generator": self.generator.get_state(),
            "transform_generator": None if self.transform_generator is None
            else self.transform_generator.get_state(),
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a stream over the same data, rank and world size.

        Raises:
            ValueError: if the state comes from another rank layout or data size.
        """
        if (state["rank"], state["world_size"]) != (self.rank, self.world_size):
            raise ValueError(f"The state belongs to rank {state['rank']} of {state['world_size']}, "
                             f"not {self.rank} of {self.world_size}.")
        indices = state["indices"]
        if indices is not None and len(indices) != self._shard:
            raise ValueError(f"The state's epoch slice has {len(indices)} indices, this stream "
                             f"{self._shard}: the data set differs.")
        self._epoch, self._position = int(state["epoch"]), int(state["position"])
        self._indices = None if indices is None else indices.clone()
        self.generator.set_state(state["generator"])
        if self.transform_generator is not None and state["transform_generator"] is not None:
            self.transform_generator.set_state(state["transform_generator"])
