"""SphericalEBM, conditional energies and augmentations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ebmguide as eg


def make_ebm() -> eg.SphericalEBM:
    torch.manual_seed(0)
    return eg.SphericalEBM(nn.Flatten(), feature_dim=6, latent_dim=4, hidden_dim=8, init_std=0.5)


def test_energy_is_half_squared_norm_of_u() -> None:
    ebm = make_ebm()
    x = torch.randn(5, 2, 3)
    u = ebm.embedding(x)
    torch.testing.assert_close(ebm.energy(x), 0.5 * (u**2).sum(1))
    torch.testing.assert_close(ebm(x), ebm.energy(x))
    torch.testing.assert_close(ebm.direction(x), F.normalize(ebm.projection(u), dim=1))


def test_heads_follow_the_paper_init_and_biases() -> None:
    torch.manual_seed(0)
    ebm = eg.SphericalEBM(nn.Flatten(), feature_dim=256, init_std=0.01)
    assert [m.bias is not None for m in ebm.head if isinstance(m, nn.Linear)] == [True, True]
    assert [m.bias is not None for m in ebm.projection if isinstance(m, nn.Linear)] == [False] * 2
    w = ebm.head[0].weight.detach()
    assert abs(float(w.std()) - 0.01) < 0.001
    assert float(ebm.head[0].bias.detach().abs().max()) == 0.0
    assert any(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.2 for m in ebm.head)


def test_default_init_is_torchs_and_gives_energies_a_hundred_times_larger() -> None:
    torch.manual_seed(0)
    default = eg.SphericalEBM(nn.Flatten(), feature_dim=256, latent_dim=64, hidden_dim=256)
    torch.manual_seed(0)
    paper = eg.SphericalEBM(nn.Flatten(), feature_dim=256, latent_dim=64, hidden_dim=256,
                            init_std=0.01)
    bound = 1 / 256 ** 0.5  # nn.Linear's uniform init: |w| <= 1 / sqrt(fan_in)
    w = default.head[0].weight.detach()
    assert float(w.abs().max()) <= bound and float(w.std()) > 0.3 * bound
    x = torch.rand(16, 256, generator=torch.Generator().manual_seed(1))
    assert float(default.energy(x).mean()) > 100 * float(paper.energy(x).mean())


def test_feature_dim_taken_from_backbone_or_required() -> None:
    backbone = nn.Flatten()
    with pytest.raises(TypeError, match="feature_dim"):
        eg.SphericalEBM(backbone)
    backbone.feature_dim = 6  # type: ignore[assignment]
    assert eg.SphericalEBM(backbone, latent_dim=3, hidden_dim=4).feature_dim == 6
    with pytest.raises(ValueError, match="feature_dim is 7"):
        eg.SphericalEBM(nn.Flatten(), feature_dim=7, latent_dim=3, hidden_dim=4).energy(
            torch.ones(2, 6))


def test_conditional_energy_is_exact() -> None:
    ebm = make_ebm()
    x = torch.randn(3, 6)
    z = torch.randn(2, 4)
    out = ebm.energy_and_direction(x)
    zn = F.normalize(z, dim=1)
    fn = eg.conditional_energy(ebm, z, beta=2.0, weights=[1.0, -0.5])
    expected = out.energy - 2.0 * (out.direction @ zn[0] - 0.5 * out.direction @ zn[1])
    torch.testing.assert_close(fn(x), expected)
    single = eg.conditional_energy(ebm, z[0], beta=0.0)
    torch.testing.assert_close(single(x), out.energy)


def test_conditional_energy_gradient_moves_towards_the_latent() -> None:
    ebm = make_ebm()
    x = torch.randn(16, 6)
    z = ebm.direction(torch.randn(1, 6)).detach()[0]
    fn = eg.conditional_energy(ebm, z, beta=50.0)
    samples = eg.langevin_dynamics(fn, x,
                                   eg.LangevinSettings(n_steps=50, step_size=0.05, noise_scale=0.0,
                                                       clamp=None))
    before = (ebm.direction(x) @ z).mean()
    after = (ebm.direction(samples.samples) @ z).mean()
    assert after > before + 0.1


def test_conditional_energy_bad_inputs() -> None:
    ebm = make_ebm()
    with pytest.raises(ValueError, match="weights"):
        eg.conditional_energy(ebm, torch.ones(2, 4), beta=1.0, weights=[1.0])
    with pytest.raises(ValueError, match="beta"):
        eg.conditional_energy(ebm, torch.ones(4), beta=-1.0)
    with pytest.raises(ValueError, match="latents have size 5"):
        eg.conditional_energy(ebm, torch.ones(5), beta=1.0)(torch.ones(2, 6))


@pytest.mark.parametrize("name", ["strong", "weak", "flip", "none"])
@pytest.mark.parametrize("channels", [1, 3])
def test_augmentations_keep_shape_and_range(name: str, channels: int) -> None:
    aug = eg.make_augmentation(name, 16, channels=channels)
    x = torch.rand(32, channels, 16, 16)
    y = eg.apply_augment(aug, x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_augmentation_is_per_sample_and_reproducible() -> None:
    aug = eg.make_augmentation("strong", 16)
    x = torch.rand(1, 3, 16, 16).expand(16, -1, -1, -1).contiguous()
    a = eg.apply_augment(aug, x, torch.Generator().manual_seed(1))
    b = eg.apply_augment(aug, x, torch.Generator().manual_seed(1))
    c = eg.apply_augment(aug, x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(v.flatten()[:8].tolist()) for v in a}) > 8  # parameters drawn per sample


def test_any_callable_is_accepted_and_made_reproducible() -> None:
    def user_aug(x: torch.Tensor) -> torch.Tensor:
        return (x + 0.1 * torch.randn_like(x)).clamp(0, 1)

    x = torch.rand(4, 3, 8, 8)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(eg.apply_augment(user_aug, x, g1), eg.apply_augment(user_aug, x, g2))
    with pytest.raises(ValueError, match="changed the batch shape"):
        eg.apply_augment(lambda v: v[:2], x, g1)


def test_unknown_augmentation_name() -> None:
    with pytest.raises(ValueError, match="unknown augmentation 'blur'"):
        eg.make_augmentation("blur", 8)
    with pytest.raises(ValueError, match="unknown augmentation"):
        eg.SimCLRGuide(nn.Flatten(), feature_dim=4, augment="blur")
