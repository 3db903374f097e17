"""Minibatches streamed from any map-style ``Dataset`` of images through a ``DataLoader``.

:class:`StreamingBatches` draws exactly the index sequence of
:class:`~ebmguide.data.InfiniteBatches` (same generator, same shuffling, same shards per rank),
but loads each batch with ``dataset[i]`` in ``DataLoader`` worker processes, so the data never
has to fit in memory. Its :meth:`~StreamingBatches.state_dict` counts only the batches handed
out (not the ones the workers prefetched), so a resumed run continues with exactly the next
batch; the state has the same keys as :class:`~ebmguide.data.InfiniteBatches`'.

:class:`LazyImages` indexes a dataset like a tensor (``images[index_tensor]`` loads those images)
for the few places that need a subset of real images (evaluation, the in-domain feature network).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ebmguide.data.loader import BatchTransform, InfiniteBatches

__all__ = ["LazyImages", "StreamingBatches", "as_image_tensor", "stack_images"]


def as_image_tensor(item: Any) -> Tensor:
    """One dataset item as a ``(C, H, W)`` tensor: a tensor, a PIL image, or ``(image, label)``.

    Raises:
        TypeError: for anything else, saying what the dataset must return.
    """
    if isinstance(item, (tuple, list)) and item:
        item = item[0]  # (image, label), as torchvision-style datasets return
    if isinstance(item, Tensor):
        if item.dim() != 3:
            raise TypeError(f"dataset images must be (C, H, W) tensors, got shape "
                            f"{tuple(item.shape)}.")
        return item
    if hasattr(item, "mode") and hasattr(item, "convert"):  # a PIL image
        array = np.asarray(item)
        array = array[:, :, None] if array.ndim == 2 else array
        return torch.from_numpy(array.transpose(2, 0, 1).copy())
    raise TypeError(f"a dataset item must be a (C, H, W) tensor (uint8, or float in [0, 1]), a "
                    f"PIL image, or a tuple starting with one; got {type(item).__name__}.")


def stack_images(items: Sequence[Any]) -> Tensor:
    """``DataLoader`` collate function: items → ``(B, C, H, W)`` (see :func:`as_image_tensor`)."""
    images = [as_image_tensor(item) for item in items]
    shapes = {(tuple(x.shape), x.dtype) for x in images}
    if len(shapes) != 1:
        found = sorted(map(str, shapes))
        raise ValueError(f"the dataset's images differ in shape or dtype ({found}): return one "
                         f"shape and dtype for every item.")
    return torch.stack(images)


def _loader(dataset: Dataset[Any], batches: Iterator[list[int]] | list[list[int]],
            num_workers: int) -> Iterator[Tensor]:
    return iter(DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                           collate_fn=stack_images))


class LazyImages:
    """A dataset indexed like a tensor: ``images[index]`` loads those images as one tensor.

    Args:
        dataset: any map-style dataset of images (see :func:`as_image_tensor`).
        num_workers: ``DataLoader`` workers used for each load.
        indices: the dataset indices this view covers (default: all).
    """

    def __init__(self, dataset: Dataset[Any], *, num_workers: int = 0,
                 indices: Tensor | None = None) -> None:
        self.dataset, self.num_workers = dataset, num_workers
        self.indices = torch.arange(len(dataset)) if indices is None else indices  # type: ignore[arg-type]
        first = stack_images([dataset[int(self.indices[0])]]) if len(self.indices) else None
        if first is None:
            raise ValueError("the dataset holds no images.")
        self.shape = (len(self.indices), *first.shape[1:])
        self.dtype = first.dtype

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: Tensor | slice) -> Tensor:
        """The images at ``index`` (a 1-D index tensor or a slice), ``(k, C, H, W)``."""
        chosen = self.indices[index].tolist()
        if not chosen:
            return torch.empty((0, *self.shape[1:]), dtype=self.dtype)
        chunks = [chosen[i:i + 256] for i in range(0, len(chosen), 256)]
        return torch.cat(list(_loader(self.dataset, chunks, self.num_workers)))

    def subset(self, index: Tensor) -> LazyImages:
        """The view of the images at ``index`` of this one (nothing is loaded)."""
        return LazyImages(self.dataset, num_workers=self.num_workers, indices=self.indices[index])


class StreamingBatches:
    """Endless, resumable, shardable minibatches of a map-style dataset, loaded by workers.

    Args:
        images: the images (a :class:`LazyImages`, which fixes the dataset and its indices).
        batch_size: images per batch (per rank).
        generator: shuffling generator (as for :class:`~ebmguide.data.InfiniteBatches`).
        device: where batches are moved (and transformed).
        transform: applied to uint8 batches with ``transform_generator`` (e.g.
            :func:`~ebmguide.data.dequantize`); float batches pass unchanged.
        rank: this process's rank.
        world_size: number of processes.
        num_workers: ``DataLoader`` worker processes (0: load in this process).
    """

    def __init__(self, images: LazyImages, batch_size: int, *, generator: torch.Generator,
                 device: torch.device | str = "cpu", transform: BatchTransform | None = None,
                 rank: int = 0, world_size: int = 1, num_workers: int = 0) -> None:
        self.images, self.device = images, torch.device(device)
        self._order = InfiniteBatches(torch.arange(len(images)), batch_size, generator=generator,
                                      rank=rank, world_size=world_size)
        self.transform = transform
        self.transform_generator = torch.Generator(self.device)
        self.transform_generator.manual_seed((generator.initial_seed() + 1 + rank) % 2**63)
        self.num_workers = num_workers
        self._pending: deque[dict[str, Any]] = deque()
        self._state = self._order.state_dict()
        self._iterator: Iterator[Tensor] | None = None

    @property
    def epoch(self) -> int:
        """Index of the current epoch, counting handed-out batches only."""
        return int(self._state["epoch"])

    def _index_batches(self) -> Iterator[list[int]]:
        while True:  # runs in this process: the DataLoader asks it ahead for prefetching
            batch = next(self._order)
            self._pending.append(self._order.state_dict())
            yield self.images.indices[batch].tolist()

    def __iter__(self) -> StreamingBatches:
        return self

    def __next__(self) -> Tensor:
        if self._iterator is None:
            self._iterator = _loader(self.images.dataset, self._index_batches(), self.num_workers)
        batch = next(self._iterator).to(self.device)
        self._state = self._pending.popleft()
        if self.transform is not None and batch.dtype == torch.uint8:
            batch = self.transform(batch, self.transform_generator)
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The position after the last batch handed out (keys as ``InfiniteBatches``)."""
        state = dict(self._state)
        state["transform_generator"] = self.transform_generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` (of this or of an in-memory stream of the data)."""
        self._order.load_state_dict({**state, "transform_generator": None})
        if state.get("transform_generator") is not None:
            self.transform_generator.set_state(state["transform_generator"])
        self._state, self._iterator = self._order.state_dict(), None
        self._pending.clear()
