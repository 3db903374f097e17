"""The real images a Fréchet distance is measured against, and its real-vs-real floor.

A Fréchet distance (FD) is biased upwards at finite sample sizes, so it is always reported next to
the *floor*: the FD between two disjoint sets of real images, which a perfect model would score
about. Which real images serve as the reference and which as the floor depends on what the data
allows; :func:`plan_real_sets` decides from the split sizes alone (so a command can check them
before any sampling), :func:`real_sets` draws the images.

The paper's two protocols (Lee et al., ICLR 2023):

- final number: 50,000 samples against the 50,000 CIFAR-10 training images (``which="train"``);
  the training split holds no second 50,000, so the floor is half against half of it
  ("train 25,000 vs train 25,000");
- in-training monitoring: 10,000 samples against the 10,000 test images (``which="held-out"``);
  the floor compares the test split with as many training images ("test 10,000 vs train 10,000").

The two numbers are never comparable with each other.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import torch
from torch import Tensor

from ebmguide.data import dequantize
from ebmguide.run.training_data import TrainingData

__all__ = ["RealPart", "RealPlan", "RealSets", "plan_real_sets", "real_sets"]

_TRAIN_DRAW_SEED_OFFSET = 1  # the order training images are drawn in: seed + 1, as before


class RealPart(NamedTuple):
    """Images ``[start, start + size)`` of one split, in the split's fixed random order."""

    split: str
    start: int
    size: int

    def __str__(self) -> str:
        return f"{self.split} {self.size:,}"


class RealPlan(NamedTuple):
    """Which real images a measurement uses (sizes only; see :func:`plan_real_sets`).

    Attributes:
        reference: the images the samples are compared with.
        floor: the two disjoint real sets of the real-vs-real floor.
        floor_uses_reference: whether ``floor[0]`` is the reference itself.
    """

    reference: RealPart
    floor: tuple[RealPart, RealPart]
    floor_uses_reference: bool

    @property
    def floor_label(self) -> str:
        """E.g. ``"train 25,000 vs train 25,000"``."""
        return f"{self.floor[0]} vs {self.floor[1]}"

    def needed(self, split: str) -> int:
        """How many images of ``split`` the plan reads (from the start of its order)."""
        parts = [self.reference, *self.floor]
        return max([p.start + p.size for p in parts if p.split == split], default=0)


def plan_real_sets(which: str, n: int, sizes: dict[str, int | None]) -> RealPlan:
    """Decide the reference and the floor from the split sizes; nothing is loaded.

    The reference is ``min(n, |S|)`` images of the chosen split S. The floor compares the reference
    with as many other images of S when S has them, else with as many images of the other split,
    else compares the two halves of S (a floor at a smaller size, labelled with its sizes).

    Args:
        which: ``"train"`` (the paper's final protocol) or ``"held-out"`` (the test split, or
            generated held-out data; the in-training protocol).
        n: number of generated samples.
        sizes: ``{"train": N, <held-out split name>: M}``; ``None`` for generated data, which is
            never short. The held-out split is the other key (``"test"`` or ``"held-out"``).

    Returns:
        :class:`RealPlan`.

    Raises:
        ValueError: for an unknown ``which``, ``n < 2``, or splits too small for an FD (fewer
            than 2 images per set).
    """
    if which not in ("train", "held-out"):
        raise ValueError(f"which must be 'train' or 'held-out', got {which!r}.")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"an FD needs at least 2 samples, got n = {n!r}.")
    held = next(k for k in sizes if k != "train")
    chosen, other = ("train", held) if which == "train" else (held, "train")
    unbounded = sys.maxsize
    size = {k: unbounded if v is None else v for k, v in sizes.items()}
    r = min(n, size[chosen])
    reference = RealPart(chosen, 0, r)
    if size[chosen] - r >= r >= 2:
        return RealPlan(reference, (reference, RealPart(chosen, r, r)), True)
    if size[other] >= r >= 2:
        return RealPlan(reference, (reference, RealPart(other, 0, r)), True)
    half = size[chosen] // 2
    if half < 2:
        raise ValueError(f"the {chosen} split has {size[chosen]} images; an FD and its "
                         f"real-vs-real floor need at least 4. Use more data.")
    return RealPlan(reference, (RealPart(chosen, 0, half), RealPart(chosen, half, half)), False)


class RealSets(NamedTuple):
    """Real images drawn by :func:`real_sets` (floats in [0, 1], or vectors)."""

    plan: RealPlan
    reference: Tensor
    floor: tuple[Tensor, Tensor]


def held_out_name(data: TrainingData) -> str:
    """``"test"`` for a dataset with a test split, ``"held-out"`` for generated data."""
    generated = data.test is None and data.cfg.data.name in ("shapes", "toy2d")
    return "held-out" if generated else "test"


def split_sizes(data: TrainingData) -> dict[str, int | None]:
    """``{"train": N, "test": M}`` (loads the test split), or ``{"train": N, "held-out": None}``."""
    name = held_out_name(data)
    if name == "held-out":
        return {"train": len(data.train), name: None}
    if data.test is not None:  # known without loading it (a streamed folder)
        return {"train": len(data.train), name: len(data.test)}
    return {"train": len(data.train), name: len(data.held_out(sys.maxsize, at_least=1))}


def real_sets(data: TrainingData, which: str, n: int) -> RealSets:
    """Draw the real images of :func:`plan_real_sets` for ``n`` samples.

    Training images are taken in a fixed random order (seed ``cfg.seed + 1``) and dequantized
    like the training batches; held-out images come from :meth:`TrainingData.held_out`.

    Returns:
        :class:`RealSets` whose tensors are views into one pool per split.
    """
    plan = plan_real_sets(which, n, split_sizes(data))
    pools: dict[str, Tensor] = {}
    for split in {p.split for p in (plan.reference, *plan.floor)}:
        k = plan.needed(split)
        if split == "train":
            g = torch.Generator().manual_seed(data.cfg.seed + _TRAIN_DRAW_SEED_OFFSET)
            pool = data.train[torch.randperm(len(data.train), generator=g)[:k]]
            pools[split] = dequantize(pool, g) if pool.dtype == torch.uint8 else pool.float()
        else:
            pools[split] = data.held_out(k)

    def take(part: RealPart) -> Tensor:
        return pools[part.split][part.start: part.start + part.size]

    return RealSets(plan, take(plan.reference), (take(plan.floor[0]), take(plan.floor[1])))
