"""Two-dimensional toy sets."""

from __future__ import annotations

import math

import pytest
import torch

from ebmguide.data import TOY2D_NAMES, gaussian_mixture_modes, toy2d


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", TOY2D_NAMES)
def test_shape_dtype_scale_and_determinism(name: str) -> None:
    points = toy2d(name, 2000, generator=gen(0))
    assert points.shape == (2000, 2) and points.dtype == torch.float32
    assert bool(torch.isfinite(points).all())
    assert points.abs().max() < 5.0  # documented: roughly within [-4, 4]
    assert points.std(dim=0).min() > 0.5  # spread over the plane, not collapsed
    assert torch.equal(points, toy2d(name, 2000, generator=gen(0)))
    assert not torch.equal(points, toy2d(name, 2000, generator=gen(1)))


@pytest.mark.parametrize("name", TOY2D_NAMES)
def test_zero_samples(name: str) -> None:
    assert toy2d(name, 0, generator=gen(0)).shape == (0, 2)


@pytest.mark.parametrize(("name", "count", "std"), [("eight_gaussians", 8, 0.5 / math.sqrt(2)),
                                                    ("twentyfive_gaussians", 25, 0.1)])
def test_mixture_samples_lie_near_their_modes_and_cover_all(name: str, count: int,
                                                            std: float) -> None:
    modes = gaussian_mixture_modes(name)
    assert modes.shape == (count, 2)
    points = toy2d(name, 5000, generator=gen(2))
    distance, nearest = torch.cdist(points, modes).min(dim=1)
    # a 2-D Gaussian's radius is Rayleigh: mean std·√(π/2), and below 4 std almost surely
    assert abs(distance.mean().item() - std * math.sqrt(math.pi / 2)) < 0.1 * std
    assert distance.max() < 4.5 * std
    assert torch.bincount(nearest, minlength=count).min() > 0.7 * 5000 / count


def test_rings_have_radii_one_two_three() -> None:
    radius = toy2d("rings", 3000, generator=gen(3)).norm(dim=1)
    nearest = (radius.unsqueeze(1) - torch.tensor([1.0, 2.0, 3.0])).abs().min(dim=1).values
    assert nearest.max() < 0.4


def test_checkerboard_fills_only_dark_squares() -> None:
    points = toy2d("checkerboard", 3000, generator=gen(4))
    assert points.abs().max() <= 4.0
    cell = torch.floor(points / 2).long()
    assert bool(((cell[:, 0] + cell[:, 1]) % 2 == 1).all()) or bool(
        ((cell[:, 0] + cell[:, 1]) % 2 == 0).all())


def test_unknown_names_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match="two_moons"):
        toy2d("spirals", 10, generator=gen(0))
    with pytest.raises(ValueError, match="eight_gaussians"):
        gaussian_mixture_modes("rings")
    with pytest.raises(ValueError):
        toy2d("rings", -1, generator=gen(0))
    with pytest.raises(TypeError):
        toy2d("rings", 10, generator=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        toy2d("rings", 2.5, generator=gen(0))  # type: ignore[arg-type]
