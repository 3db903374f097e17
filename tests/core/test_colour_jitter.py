"""Colour jitter of the strong augmentation: torchvision's formulas, per-sample step order."""

from __future__ import annotations

import kornia.augmentation as K
import pytest
import torch

from ebmguide.augment import (
    JitterParams,
    PerSampleColorJitter,
    apply_augment,
    make_augmentation,
)


def _jitter_of(pipeline: torch.nn.Module) -> PerSampleColorJitter:
    found = [m for m in pipeline.modules() if isinstance(m, PerSampleColorJitter)]
    assert len(found) == 1, "the strong augmentation must jitter colours per sample"
    return found[0]


def test_strong_augmentation_draws_one_order_per_image() -> None:
    """kornia's ColorJitter draws one order per batch; the strong augmentation one per image."""
    jitter = _jitter_of(make_augmentation("strong", 8))
    torch.manual_seed(0)
    params = jitter.generate_parameters(64)
    assert params.order.shape == (64, 4)
    assert torch.equal(params.order.sort(dim=1).values, torch.arange(4).expand(64, 4))
    assert len({tuple(row) for row in params.order.tolist()}) > 10  # of 24 possible orders
    assert 0.6 < float(params.applied.float().mean()) < 0.95  # p = 0.8
    assert float(params.factors[:, :3].min()) >= 0.6 and float(params.factors[:, :3].max()) <= 1.4
    assert float(params.factors[:, 3].abs().max()) <= 0.1
    grey = _jitter_of(make_augmentation("strong", 8, channels=1))
    assert grey.generate_parameters(5).order.shape == (5, 2)  # brightness and contrast only


def test_each_image_is_jittered_in_its_own_order() -> None:
    """The batched result equals a naive loop applying each image's steps in its own order."""
    jitter = PerSampleColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(24, 3, 6, 6, generator=g)
    torch.manual_seed(2)
    params = jitter.generate_parameters(24)
    out = jitter(x, params)
    single = K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0)
    keys = ("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor")
    for i in range(24):
        want = x[i:i + 1]
        if params.applied[i]:
            # kornia's torchvision formulas, one image at a time, in this image's order
            p = single.forward_parameters(want.shape)
            p.update({k: params.factors[i, j].view(1) for j, k in enumerate(keys)})
            ordered = K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0,
                                    order=tuple(params.order[i].tolist()))
            want = ordered(want, params=p)
        assert torch.allclose(out[i:i + 1], want, atol=1e-5), i


def test_jitter_is_reproducible_from_the_generator_and_keeps_dtype() -> None:
    augment = make_augmentation("strong", 8)
    x = torch.rand(16, 3, 8, 8, dtype=torch.float64)
    a = apply_augment(augment, x, torch.Generator().manual_seed(3))
    b = apply_augment(augment, x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.float64
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_bad_jitter_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        PerSampleColorJitter(-0.1)
    with pytest.raises(ValueError, match="saturation"):
        PerSampleColorJitter(0.4, 0.4, None, 0.1)
    with pytest.raises(ValueError, match="RGB"):
        PerSampleColorJitter()(torch.rand(2, 1, 4, 4))
    assert isinstance(PerSampleColorJitter().generate_parameters(2), JitterParams)
