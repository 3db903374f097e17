"""SphericalEBM(head_spectral_norm=True): the energy head's layers are spectrally normalized."""

from __future__ import annotations

import torch
from torch import nn

import ebmguide as eg
from ebmguide.nets import MLPBackbone


def _ebm(head_spectral_norm: bool) -> eg.SphericalEBM:
    torch.manual_seed(0)
    backbone = MLPBackbone(in_dim=6, hidden=32, feature_dim=32, spectral_norm=True)
    return eg.SphericalEBM(backbone, latent_dim=8, hidden_dim=64,
                           head_spectral_norm=head_spectral_norm)


def _largest_singular_values(ebm: eg.SphericalEBM) -> list[float]:
    return [torch.linalg.matrix_norm(layer.weight.detach(), ord=2).item()
            for layer in ebm.head if isinstance(layer, nn.Linear)]


def test_head_layers_have_unit_spectral_norm_after_power_iterations() -> None:
    ebm = _ebm(True)
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    for _ in range(30):  # each training-mode forward runs one power iteration
        ebm.energy(x)
    norms = _largest_singular_values(ebm)
    assert len(norms) == 2
    assert all(abs(n - 1.0) < 1e-3 for n in norms), norms


def test_scaling_the_raw_head_weights_does_not_steepen_the_energy() -> None:
    """The growth that makes the energy too steep for a fixed step size cannot happen."""
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(2), requires_grad=True)

    def grad_norm(ebm: eg.SphericalEBM) -> float:
        ebm.eval()
        (g,) = torch.autograd.grad(ebm.energy(x).sum(), x)
        return g.norm().item()

    for constrained in (True, False):
        ebm = _ebm(constrained)
        for _ in range(30):
            ebm.energy(x.detach())
        before = grad_norm(ebm)
        with torch.no_grad():
            for layer in ebm.head:
                if isinstance(layer, nn.Linear):
                    weight = (layer.parametrizations.weight.original if constrained
                              else layer.weight)
                    weight.mul_(10.0)
        after = grad_norm(ebm)
        if constrained:
            assert after < 1.5 * before, (before, after)
        else:
            assert after > 50 * before, (before, after)  # ~100x: two layers scaled by 10


def test_config_builds_it() -> None:
    from ebmguide.builders import build_ebm
    from ebmguide.config import load_config

    cfg = load_config("demo", ["model.head_spectral_norm=true", "model.width=4",
                               "model.hidden_dim=8", "model.latent_dim=4"])
    ebm = build_ebm(cfg, (3, 16, 16))
    assert all(hasattr(layer, "parametrizations")
               for layer in ebm.head if isinstance(layer, nn.Linear))
    plain = build_ebm(load_config("demo", ["model.width=4"]), (3, 16, 16))
    assert not any(hasattr(layer, "parametrizations") for layer in plain.head)
