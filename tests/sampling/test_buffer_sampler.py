"""Replay buffer and SGLDSampler: slots written exactly, write-back, reinit rate, determinism."""

from __future__ import annotations

import math

import pytest
import torch

from ebmguide import SGLDSampler
from ebmguide.sampling import ReplayBuffer


def quadratic(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (x - 0.5).flatten(1).square().sum(1)


def test_buffer_initialised_uniform_in_range() -> None:
    buf = ReplayBuffer(500, (3, 4, 4), low=-1.0, high=2.0,
                       generator=torch.Generator().manual_seed(0))
    assert buf.states.shape == (500, 3, 4, 4)
    assert float(buf.states.min()) >= -1.0 and float(buf.states.max()) <= 2.0
    assert abs(float(buf.states.mean()) - 0.5) < 0.05


def test_draw_gives_distinct_slots_and_copies() -> None:
    buf = ReplayBuffer(50, (2,), generator=torch.Generator().manual_seed(0))
    before = buf.states.clone()
    draw = buf.draw(50, generator=torch.Generator().manual_seed(1))
    assert sorted(draw.indices.tolist()) == list(range(50))
    draw.x.add_(1.0)
    assert torch.equal(buf.states, before)


def test_exactly_the_drawn_slots_change() -> None:
    sampler = SGLDSampler((3, 4, 4), buffer_size=40, n_steps=3, step_size=0.5,
                          noise_scale=0.01, reinit_prob=0.0,
                          generator=torch.Generator().manual_seed(0))
    before = sampler.buffer.states.clone()
    g = torch.Generator().manual_seed(5)
    expected_slots = ReplayBuffer(40, (3, 4, 4)).draw(8, generator=torch.Generator().manual_seed(5))
    samples = sampler.sample(quadratic, 8, generator=g).samples
    changed = (sampler.buffer.states != before).flatten(1).any(1).nonzero().flatten()
    assert sorted(changed.tolist()) == sorted(expected_slots.indices.tolist())
    assert torch.equal(sampler.buffer.states[expected_slots.indices], samples)


def test_nothing_changes_with_write_back_off() -> None:
    sampler = SGLDSampler((2,), buffer_size=20, n_steps=2, step_size=0.5, noise_scale=0.1,
                          write_back=False, generator=torch.Generator().manual_seed(0))
    before = sampler.buffer.states.clone()
    samples = sampler.sample(quadratic, 10, generator=torch.Generator().manual_seed(1)).samples
    assert torch.equal(sampler.buffer.states, before)
    assert samples.shape == (10, 2)


def test_reinit_rate_within_binomial_bounds() -> None:
    p, n = 0.05, 20_000
    buf = ReplayBuffer(n, (1,), generator=torch.Generator().manual_seed(0))
    draw = buf.draw(n, reinit_prob=p, generator=torch.Generator().manual_seed(1))
    count = int(draw.reinitialised.sum())
    sd = math.sqrt(n * p * (1 - p))
    assert abs(count - n * p) < 5 * sd
    fresh = draw.x[draw.reinitialised]
    kept = draw.x[~draw.reinitialised]
    assert torch.equal(kept, buf.states[draw.indices[~draw.reinitialised]])
    assert not torch.equal(fresh, buf.states[draw.indices[draw.reinitialised]])


def test_zero_and_one_reinit_probability() -> None:
    buf = ReplayBuffer(100, (2,), generator=torch.Generator().manual_seed(0))
    assert not buf.draw(100, reinit_prob=0.0).reinitialised.any()
    assert buf.draw(100, reinit_prob=1.0).reinitialised.all()


def test_non_finite_chains_never_enter_the_buffer() -> None:
    sampler = SGLDSampler((3,), buffer_size=16, n_steps=2, step_size=0.1, noise_scale=0.0,
                          reinit_prob=0.0, generator=torch.Generator().manual_seed(0))

    def energy(v: torch.Tensor) -> torch.Tensor:  # the first coordinate > 0.5 gives NaN
        return quadratic(v) + torch.sqrt(0.5 - v[:, 0])

    before = sampler.buffer.states.clone()
    result = sampler.sample(energy, 16, generator=torch.Generator().manual_seed(1))
    samples = result.samples
    bad = ~result.finite
    assert bad.any() and (~bad).any()
    assert torch.isfinite(sampler.buffer.states).all()
    assert not torch.isfinite(samples[bad]).all()
    order = ReplayBuffer(16, (3,)).draw(16, generator=torch.Generator().manual_seed(1)).indices
    assert torch.equal(sampler.buffer.states[order[bad]], before[order[bad]])


def test_same_seed_bit_identical_and_different_seeds_differ() -> None:
    def run(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = SGLDSampler((3, 8, 8), buffer_size=30, n_steps=3, step_size=0.5, noise_scale=0.05,
                        augment="strong", reinit_prob=0.1,
                        generator=torch.Generator().manual_seed(0))
        g = torch.Generator().manual_seed(seed)
        out = torch.cat([s.sample(quadratic, 6, generator=g).samples for _ in range(3)])
        return out, s.buffer.states

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_augmentation_does_not_touch_global_rng() -> None:
    s = SGLDSampler((3, 8, 8), buffer_size=10, n_steps=1, step_size=0.5, noise_scale=0.0,
                    augment="strong")
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    s.sample(quadratic, 4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(torch.rand(3), expected)


def test_state_dict_round_trip() -> None:
    s = SGLDSampler((2,), buffer_size=12, n_steps=1, step_size=0.1, noise_scale=0.1,
                    generator=torch.Generator().manual_seed(0))
    s.sample(quadratic, 4, generator=torch.Generator().manual_seed(1))
    t = SGLDSampler((2,), buffer_size=12, n_steps=1, step_size=0.1, noise_scale=0.1)
    t.load_state_dict(s.state_dict())
    assert torch.equal(t.buffer.states, s.buffer.states)
    with pytest.raises(ValueError, match="does not fit"):
        SGLDSampler((3,), buffer_size=12).load_state_dict(s.state_dict())


def test_sample_fresh_leaves_buffer_alone() -> None:
    s = SGLDSampler((2,), buffer_size=12, n_steps=2, step_size=0.1, noise_scale=0.1)
    before = s.buffer.states.clone()
    g = torch.Generator().manual_seed(0)
    out = s.sample_fresh(quadratic, 7, n_steps=4, generator=g).samples
    assert out.shape == (7, 2) and torch.equal(s.buffer.states, before)


def test_unbounded_data_uses_init_range() -> None:
    s = SGLDSampler((2,), buffer_size=1000, clamp=None, init_range=(-4.0, 4.0), n_steps=1,
                    step_size=0.1, noise_scale=0.1, generator=torch.Generator().manual_seed(0))
    assert float(s.buffer.states.min()) < -3.5 and float(s.buffer.states.max()) > 3.5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"augment": "bogus"}, "unknown augmentation"), ({"reinit_prob": 2.0}, "reinit_prob"),
     ({"buffer_size": 0}, "capacity"), ({"step_size": -1.0}, "step_size")],
)
def test_bad_sampler_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SGLDSampler((3, 4, 4), **kwargs)  # type: ignore[arg-type]


def test_batch_larger_than_buffer_is_rejected() -> None:
    s = SGLDSampler((2,), buffer_size=4)
    with pytest.raises(ValueError, match="enlarge the buffer"):
        s.sample(quadratic, 5)


def test_named_augmentation_needs_images() -> None:
    with pytest.raises(ValueError, match="needs image samples"):
        SGLDSampler((2,), augment="strong")
