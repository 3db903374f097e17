"""InfiniteBatches: epochs without repeats, exact resumption, disjoint shards."""

from __future__ import annotations

import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ebmguide.data import InfiniteBatches, dequantize


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_each_epoch_covers_the_data_once_and_reshuffles() -> None:
    data = torch.arange(60)
    batches = InfiniteBatches(data, 12, generator=gen(0))
    assert batches.batches_per_epoch == 5
    first = torch.cat([next(batches) for _ in range(5)])
    assert batches.epoch == 0
    second = torch.cat([next(batches) for _ in range(5)])
    assert batches.epoch == 1
    assert torch.equal(first.sort().values, data) and torch.equal(second.sort().values, data)
    assert not torch.equal(first, second)


def test_tuples_stay_aligned_and_transform_applies_to_the_first_tensor() -> None:
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 3, 2, 2)
    labels = torch.arange(40)
    batches = InfiniteBatches((images, labels), 8, generator=gen(1), transform=dequantize)
    for _ in range(7):
        x, y = next(batches)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert torch.equal(torch.floor(x[:, 0, 0, 0] * 256).long(), y)


def test_drop_last_false_yields_the_remainder() -> None:
    batches = InfiniteBatches(torch.arange(10), 4, generator=gen(2), drop_last=False)
    assert [len(next(batches)) for _ in range(6)] == [4, 4, 2, 4, 4, 2]
    dropping = InfiniteBatches(torch.arange(10), 4, generator=gen(2))
    assert [len(next(dropping)) for _ in range(4)] == [4, 4, 4, 4]


@settings(max_examples=25, deadline=None)
@given(k=st.integers(0, 12), m=st.integers(1, 12), n=st.integers(8, 40), batch=st.integers(1, 8))
def test_resuming_from_a_state_dict_draws_identical_batches(k: int, m: int, n: int,
                                                            batch: int) -> None:
    data = (torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1), torch.arange(n))
    original = InfiniteBatches(data, batch, generator=gen(3), transform=dequantize)
    for _ in range(k):
        next(original)
    state = original.state_dict()
    expected = [next(original) for _ in range(m)]
    resumed = InfiniteBatches(data, batch, generator=gen(99), transform=dequantize,
                              transform_generator=gen(98))
    resumed.load_state_dict(state)
    for (x, y), (x2, y2) in zip(expected, (next(resumed) for _ in range(m)), strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    assert resumed.epoch == original.epoch


def test_state_dict_survives_torch_save() -> None:
    batches = InfiniteBatches(torch.arange(30), 7, generator=gen(4))
    next(batches)
    buffer = io.BytesIO()
    torch.save(batches.state_dict(), buffer)
    buffer.seek(0)
    resumed = InfiniteBatches(torch.arange(30), 7, generator=gen(5))
    resumed.load_state_dict(torch.load(buffer))
    assert torch.equal(next(resumed), next(batches))


@pytest.mark.parametrize(("n", "world_size"), [(60, 3), (61, 4), (16, 2)])
def test_ranks_get_disjoint_slices_of_one_permutation(n: int, world_size: int) -> None:
    data = torch.arange(n)
    shard = n // world_size
    streams = [InfiniteBatches(data, shard // 2, generator=gen(7), rank=r, world_size=world_size)
               for r in range(world_size)]
    for _epoch in range(2):
        parts = [torch.cat([next(s) for _ in range(2)]) for s in streams]
        seen = torch.cat(parts)
        assert len(seen) == len(set(seen.tolist())) == world_size * 2 * (shard // 2)  # disjoint
        if n % world_size == 0:
            assert torch.equal(seen.sort().values, data)  # and covering
    full = torch.randperm(n, generator=gen(7))  # the permutation every rank draws first
    first = InfiniteBatches(data, shard, generator=gen(7), rank=1, world_size=world_size)
    assert torch.equal(next(first), full[shard:2 * shard])


def test_state_from_another_rank_is_rejected() -> None:
    rank0 = InfiniteBatches(torch.arange(20), 5, generator=gen(0), rank=0, world_size=2)
    rank1 = InfiniteBatches(torch.arange(20), 5, generator=gen(0), rank=1, world_size=2)
    with pytest.raises(ValueError, match="rank 0 of 2"):
        rank1.load_state_dict(rank0.state_dict())
    next(rank0)
    other = InfiniteBatches(torch.arange(24), 5, generator=gen(0), rank=0, world_size=2)
    with pytest.raises(ValueError, match="data set differs"):
        other.load_state_dict(rank0.state_dict())


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((torch.arange(10), 0), {}, ValueError),
        ((torch.arange(10), 11), {}, ValueError),
        ((torch.arange(10), 2), {"rank": 2, "world_size": 2}, ValueError),
        ((torch.arange(10), 2), {"world_size": 0}, ValueError),
        (((torch.arange(10), torch.arange(9)), 2), {}, ValueError),
        (([1, 2, 3], 2), {}, TypeError),
        ((torch.arange(10), 2), {"generator": 0}, TypeError),
        ((torch.arange(10), 2.0), {}, TypeError),
    ],
)
def test_bad_arguments(args: tuple[object, ...], kwargs: dict[str, object], error: type) -> None:
    arguments: dict[str, object] = {"generator": gen(0), **kwargs}
    with pytest.raises(error):
        InfiniteBatches(*args, **arguments)  # type: ignore[arg-type, call-overload, misc]
