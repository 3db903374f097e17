"""Classic two-dimensional toy distributions for density models and samplers.

Every sampler takes a count ``n`` and an explicit ``torch.Generator`` and returns an ``(n, 2)``
float32 tensor. The scales follow the FFJORD / score-matching toy benchmarks: all sets lie roughly
within [-4, 4]² (the Gaussian tails of the mixtures may step a little outside), so one MLP energy
and one step size fit them all.

| name | what | extent |
|---|---|---|
| `eight_gaussians` | 8 modes on a circle of radius 2√2, std 0.5/√2 ≈ 0.35 | about [-4, 4] |
| `twentyfive_gaussians` | 5×5 grid of modes at {-3, -1.5, 0, 1.5, 3}, std 0.1 | about [-3.5, 3.5] |
| `two_moons` | two interleaved half circles, scaled ×2, noise 0.1 | about [-3, 3] |
| `rings` | concentric circles of radii 1, 2, 3, noise 0.08 | about [-3.3, 3.3] |
| `swiss_roll` | the 2-D Swiss roll t(cos t, sin t)/4, t ∈ [1.5π, 4.5π] | about [-3.5, 3.5] |
| `checkerboard` | uniform on the dark squares of a 4×4 board of side 8 | [-4, 4] |
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "TOY2D_NAMES",
    "checkerboard",
    "eight_gaussians",
    "gaussian_mixture_modes",
    "rings",
    "swiss_roll",
    "toy2d",
    "twentyfive_gaussians",
    "two_moons",
]


def check_count_and_generator(n: int, generator: torch.Generator) -> None:
    """Validate a sample count and a generator (shared by the data modules).

    Raises:
        TypeError: if ``n`` is not an int or ``generator`` is not a ``torch.Generator``.
        ValueError: if ``n`` is negative or the generator is not on the CPU.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}; pass a whole number.")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            "generator must be a torch.Generator, e.g. torch.Generator().manual_seed(0); got "
            f"{type(generator).__name__}."
        )
    if generator.device.type != "cpu":
        raise ValueError("The data sets are drawn on the CPU: pass a CPU generator and move the "
                         "result with .to(device).")


def _randn(n: int, generator: torch.Generator) -> Tensor:
    return torch.randn(n, 2, generator=generator)


def gaussian_mixture_modes(name: str) -> Tensor:
    """Mode centres of a Gaussian-mixture toy set.

    Args:
        name: ``"eight_gaussians"`` or ``"twentyfive_gaussians"``.

    Returns:
        ``(K, 2)`` float32 centres (K = 8 or 25), e.g. to measure each sample's distance to the
        nearest mode or to count covered modes.

    Raises:
        ValueError: for any other name.
    """
    if name == "eight_gaussians":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        centres = 2 * math.sqrt(2) * torch.stack([angles.cos(), angles.sin()], dim=1)
        return centres.float()
    if name == "twentyfive_gaussians":
        grid = torch.linspace(-3.0, 3.0, 5)
        return torch.cartesian_prod(grid, grid).float()
    raise ValueError(
        f"{name!r} is not a Gaussian mixture; use 'eight_gaussians' or 'twentyfive_gaussians'."
    )


def _mixture(name: str, std: float, n: int, generator: torch.Generator) -> Tensor:
    check_count_and_generator(n, generator)
    modes = gaussian_mixture_modes(name)
    index = torch.randint(len(modes), (n,), generator=generator)
    return modes[index] + std * _randn(n, generator)


def eight_gaussians(n: int, *, generator: torch.Generator) -> Tensor:
    """Eight Gaussians on a circle of radius 2√2, std 0.5/√2 (FFJORD's "8gaussians").

    Returns:
        ``(n, 2)`` float32 samples; the modes are :func:`gaussian_mixture_modes`
        ("eight_gaussians").
    """
    return _mixture("eight_gaussians", 0.5 / math.sqrt(2), n, generator)


def twentyfive_gaussians(n: int, *, generator: torch.Generator) -> Tensor:
    """A 5×5 grid of Gaussians at {-3, -1.5, 0, 1.5, 3}², std 0.1.

    Returns:
        ``(n, 2)`` float32 samples; the modes are :func:`gaussian_mixture_modes`
        ("twentyfive_gaussians").
    """
    return _mixture("twentyfive_gaussians", 0.1, n, generator)


def two_moons(n: int, *, generator: torch.Generator) -> Tensor:
    """Two interleaved half circles (scikit-learn's moons), centred, scaled by 2, noise std 0.1.

    Returns:
        ``(n, 2)`` float32 samples, about within [-3, 3]².
    """
    check_count_and_generator(n, generator)
    t = math.pi * torch.rand(n, generator=generator)
    lower = torch.randint(2, (n,), generator=generator).bool()
    x = torch.where(lower, 1 - t.cos(), t.cos())
    y = torch.where(lower, 0.5 - t.sin(), t.sin())
    points = torch.stack([x - 0.5, y - 0.25], dim=1) * 2
    return points + 0.1 * _randn(n, generator)


def rings(n: int, *, generator: torch.Generator) -> Tensor:
    """Concentric circles of radii 1, 2 and 3, uniform along their length, noise std 0.08.

    Each point picks a ring with probability proportional to its radius (so the density along the
    curves is uniform).

    Returns:
        ``(n, 2)`` float32 samples, about within [-3.3, 3.3]².
    """
    check_count_and_generator(n, generator)
    radii = torch.tensor([1.0, 2.0, 3.0])
    ring = torch.multinomial(radii, n, replacement=True, generator=generator) if n else radii[:0]
    theta = 2 * math.pi * torch.rand(n, generator=generator)
    r = radii[ring.long()]
    points = torch.stack([r * theta.cos(), r * theta.sin()], dim=1)
    return points + 0.08 * _randn(n, generator)


def swiss_roll(n: int, *, generator: torch.Generator) -> Tensor:
    """The 2-D Swiss roll t·(cos t, sin t)/4 with t uniform in [1.5π, 4.5π], noise std 0.1.

    Returns:
        ``(n, 2)`` float32 samples, about within [-3.5, 3.5]².
    """
    check_count_and_generator(n, generator)
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator))
    points = torch.stack([t * t.cos(), t * t.sin()], dim=1) / 4
    return points + 0.1 * _randn(n, generator)


def checkerboard(n: int, *, generator: torch.Generator) -> Tensor:
    """Uniform on the dark squares of a 4×4 checkerboard covering [-4, 4]² (FFJORD's set).

    Returns:
        ``(n, 2)`` float32 samples in [-4, 4]².
    """
    check_count_and_generator(n, generator)
    x1 = 4 * torch.rand(n, generator=generator) - 2
    x2 = torch.rand(n, generator=generator) - 2 * torch.randint(2, (n,), generator=generator)
    x2 = x2 + torch.floor(x1) % 2
    return 2 * torch.stack([x1, x2], dim=1)


_TOY2D: dict[str, Callable[..., Tensor]] = {
    "eight_gaussians": eight_gaussians,
    "twentyfive_gaussians": twentyfive_gaussians,
    "two_moons": two_moons,
    "rings": rings,
    "swiss_roll": swiss_roll,
    "checkerboard": checkerboard,
}

TOY2D_NAMES: tuple[str, ...] = tuple(_TOY2D)
"""The names :func:`toy2d` accepts."""


def toy2d(name: str, n: int, *, generator: torch.Generator) -> Tensor:
    """Draw ``n`` points from the toy set called ``name``.

    Args:
        name: one of :data:`TOY2D_NAMES`.
        n: number of points.
        generator: source of all randomness.

    Returns:
        ``(n, 2)`` float32 samples.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
    """
    if name not in _TOY2D:
        raise ValueError(f"Unknown toy set {name!r}; choose one of {', '.join(TOY2D_NAMES)}.")
    return _TOY2D[name](n, generator=generator)
