"""Gaussian data noise (``GaussianNoise``, ``data.noise``): statistics, bounds, resume."""

from __future__ import annotations

import pytest
import torch

from ebmguide.data import GaussianNoise, dequantize
from ebmguide.run.config import load_config
from ebmguide.run.training_data import TrainingData


def test_the_noise_has_the_asked_std_and_mean_zero() -> None:
    x = torch.full((64, 3, 16, 16), 0.5)
    out = GaussianNoise(0.02)(x, torch.Generator().manual_seed(0))
    delta = out - x
    assert abs(float(delta.std()) - 0.02) < 0.001
    assert abs(float(delta.mean())) < 0.0005


def test_the_noise_is_clamped_to_the_bounds() -> None:
    x = torch.zeros(8, 3, 8, 8)
    out = GaussianNoise(0.1, bounds=(0.0, 1.0))(x, torch.Generator().manual_seed(0))
    assert float(out.min()) == 0.0 and float(out.max()) > 0.0
    assert float(GaussianNoise(0.1)(x, torch.Generator().manual_seed(0)).min()) < 0.0


def test_the_first_transform_runs_first() -> None:
    pixels = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    out = GaussianNoise(0.01, first=dequantize)(pixels, torch.Generator().manual_seed(2))
    assert out.dtype == torch.float32
    plain = dequantize(pixels, torch.Generator().manual_seed(2))
    assert 0.005 < float((out - plain).std()) < 0.02  # dequantized, then noisy


def test_same_generator_same_noise() -> None:
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    noisy = GaussianNoise(0.05, bounds=(0.0, 1.0))
    a = noisy(x, torch.Generator().manual_seed(5))
    b = noisy(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("std", [0.0, -0.1, float("nan")])
def test_a_non_positive_std_is_refused(std: float) -> None:
    with pytest.raises(ValueError, match="std must be a positive number"):
        GaussianNoise(std)


def test_data_noise_reaches_the_training_batches_and_resumes_exactly() -> None:
    images = torch.rand(40, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    clean = TrainingData.from_tensors(images, load_config("demo", ["data.noise=0"]))
    noisy = TrainingData.from_tensors(images, load_config("demo", ["data.noise=0.01"]))
    device = torch.device("cpu")
    a = clean.batches(8, 0, device)
    b = noisy.batches(8, 0, device)
    x, y = next(iter(a)), next(iter(b))
    assert abs(float((y - x).std()) - 0.01) < 0.003  # same images, noise added
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0  # the sampler's clamp
    state = b.state_dict()
    after = next(iter(b))
    resumed = noisy.batches(8, 0, device)
    resumed.load_state_dict(state)
    assert torch.equal(next(iter(resumed)), after)


def test_negative_data_noise_is_refused() -> None:
    with pytest.raises(ValueError, match=r"data\.noise must not be negative"):
        load_config("demo", ["data.noise=-0.01"])
