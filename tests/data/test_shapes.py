"""The embedded shapes data set and its rule-based factor reader."""

from __future__ import annotations

import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ebmguide.data import (
    COLOUR_RGB,
    COLOURS,
    NOVEL_COLOURS,
    NOVEL_SHAPES,
    QUADRANTS,
    SHAPES,
    ShapesConfig,
    make_shapes,
    make_shifted_shapes,
    read_factors,
)

LABELS = ("shape", "colour", "scale", "quadrant")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def accuracy(read: dict[str, torch.Tensor], truth: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: (read[k] == truth[k]).float().mean().item() for k in LABELS}


def test_same_seed_is_bit_identical_and_other_seed_differs() -> None:
    a, b, c = (make_shapes(64, generator=gen(s)) for s in (0, 0, 1))
    assert torch.equal(a.images, b.images)
    assert all(torch.equal(a.factors[k], b.factors[k]) for k in a.factors)
    assert not torch.equal(a.images, c.images)


@pytest.mark.parametrize("size", [8, 16, 32])
def test_images_and_factors_have_documented_types_and_ranges(size: int) -> None:
    data = make_shapes(200, generator=gen(0), size=size)
    assert data.images.shape == (200, 3, size, size)
    assert data.images.dtype == torch.float32
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0
    # anti-aliased: edge pixels take values strictly between background and colour
    assert ((data.images > 0.2) & (data.images < 0.8)).any()
    for name in LABELS:
        labels = data.factors[name]
        assert labels.dtype == torch.int64 and labels.shape == (200,)
        assert labels.min() >= 0 and labels.max() < len(data.factor_names[name])
    position = data.factors["position"]
    assert position.shape == (200, 2) and position.min() > 0 and position.max() < 1
    quadrant = 2 * (position[:, 1] >= 0.5).long() + (position[:, 0] >= 0.5).long()
    assert torch.equal(quadrant, data.factors["quadrant"])
    assert data.factor_names["quadrant"] == QUADRANTS


def test_factors_are_roughly_balanced() -> None:
    data = make_shapes(6000, generator=gen(2))
    for name in LABELS:
        k = len(data.factor_names[name])
        counts = torch.bincount(data.factors[name], minlength=k).float()
        assert (counts - 6000 / k).abs().max() < 0.15 * 6000 / k, name


def test_colour_of_fully_covered_pixels_is_the_palette_colour() -> None:
    data = make_shapes(50, generator=gen(3), size=32)
    flat = data.images.flatten(2)  # (50, 3, 1024)
    brightest = flat.gather(2, flat.amax(1).argmax(1).view(-1, 1, 1).expand(-1, 3, 1)).squeeze(2)
    palette = torch.tensor([COLOUR_RGB[name] for name in COLOURS])
    torch.testing.assert_close(brightest, palette[data.factors["colour"]])


def test_restricting_names_and_config_mirror() -> None:
    data = make_shapes(100, generator=gen(4), shapes=("circle",), colours=("red", "blue"))
    assert data.factor_names["shape"] == ("circle",) and bool((data.factors["shape"] == 0).all())
    config = ShapesConfig(size=16, colours=("red", "blue"), shapes=("circle",))
    assert torch.equal(config.make(100, generator=gen(4)).images, data.images)


@pytest.mark.parametrize("size", [16, 32])
def test_rule_reader_recovers_factors_of_clean_images(size: int) -> None:
    data = make_shapes(1000, generator=gen(5), size=size)
    read = read_factors(data.images)
    for name, value in accuracy(read, data.factors).items():
        assert value >= 0.99, (name, value)
    assert (read["position"] - data.factors["position"]).abs().max() < 0.5 / size
    assert read["colour_error"].max() < 1e-4


def test_rule_reader_tolerates_noise() -> None:
    data = make_shapes(1000, generator=gen(6))
    noisy = (data.images + 0.05 * torch.randn(data.images.shape, generator=gen(7))).clamp(0, 1)
    for name, value in accuracy(read_factors(noisy), data.factors).items():
        assert value >= 0.97, (name, value)


def test_rule_reader_marks_blank_images_unreadable() -> None:
    read = read_factors(torch.full((3, 3, 16, 16), 0.05))
    assert all(bool((read[k] == -1).all()) for k in LABELS)


def test_novel_colours_are_off_the_training_palette() -> None:
    data = make_shifted_shapes("novel_colours", 200, generator=gen(8))
    assert data.factor_names["colour"] == NOVEL_COLOURS
    assert read_factors(data.images)["colour_error"].min() >= 0.45
    read = read_factors(data.images, colours=NOVEL_COLOURS)
    assert accuracy(read, data.factors)["colour"] >= 0.99


def test_novel_shapes_match_no_training_template() -> None:
    data = make_shifted_shapes("novel_shapes", 200, generator=gen(9))
    assert data.factor_names["shape"] == NOVEL_SHAPES
    train = make_shapes(200, generator=gen(9))
    assert read_factors(data.images)["shape_iou"].mean() < read_factors(
        train.images)["shape_iou"].min()
    assert accuracy(read_factors(data.images, shapes=NOVEL_SHAPES), data.factors)["shape"] >= 0.99


def test_noise_set_has_no_factors() -> None:
    data = make_shifted_shapes("noise", 10, generator=gen(10), size=32)
    assert data.images.shape == (10, 3, 32, 32) and data.factors == {}
    assert data.images.min() >= 0 and data.images.max() <= 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"size": 4}, ValueError),
        ({"shapes": ("hexagon",)}, ValueError),
        ({"colours": ("red", "red")}, ValueError),
        ({"scales": ()}, ValueError),
        ({"background": 0.9}, ValueError),
        ({"generator": 0}, TypeError),
    ],
)
def test_bad_arguments_raise_helpful_errors(kwargs: dict[str, object], error: type) -> None:
    arguments: dict[str, object] = {"generator": gen(0), **kwargs}
    with pytest.raises(error):
        make_shapes(4, **arguments)  # type: ignore[arg-type]


def test_bad_inputs_to_reader_and_shift_kind() -> None:
    with pytest.raises(TypeError):
        read_factors(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="S >= 8"):
        read_factors(torch.zeros(2, 3, 16, 12))
    with pytest.raises(ValueError, match="novel_colours"):
        make_shifted_shapes("blur", 4, generator=gen(0))


@settings(max_examples=15, deadline=None)
@given(size=st.integers(8, 40), n=st.integers(0, 12), seed=st.integers(0, 2**31))
def test_any_size_renders_valid_images(size: int, n: int, seed: int) -> None:
    data = make_shapes(n, generator=gen(seed), size=size, shapes=SHAPES + NOVEL_SHAPES)
    assert data.images.shape == (n, 3, size, size)
    assert bool(torch.isfinite(data.images).all())
    if n:
        assert data.images.min() >= 0 and data.images.max() <= 1


@pytest.mark.slow
def test_ten_thousand_small_images_take_under_two_seconds() -> None:
    make_shapes(100, generator=gen(0))
    start = time.perf_counter()
    make_shapes(10_000, generator=gen(0))
    assert time.perf_counter() - start < 2.0
