"""EBMs with normalisation or dropout layers get one warning where they enter the library."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import ebmguide as eg
import ebmguide.run.components as builders
from ebmguide.layer_checks import EnergyLayerWarning, energy_layer_problems
from ebmguide.run.config import load_config

TINY = Path(__file__).resolve().parents[1] / "tiny_run.toml"


def ebm_with(*layers: nn.Module) -> eg.SphericalEBM:
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), *layers, nn.Flatten())
    return eg.SphericalEBM(backbone, feature_dim=4 * 8 * 8, latent_dim=4, hidden_dim=8)


def parts(ebm: eg.SphericalEBM) -> tuple[eg.SphericalEBM, eg.SimCLRGuide, eg.SGLDSampler]:
    guide = eg.SimCLRGuide(nn.Sequential(nn.BatchNorm2d(3), nn.Flatten()), feature_dim=192,
                           latent_dim=4, hidden_dim=8)  # BatchNorm in the guide is fine
    return ebm, guide, eg.SGLDSampler((3, 8, 8), buffer_size=16, n_steps=1)


@pytest.mark.parametrize(("layer", "words"), [
    (nn.BatchNorm2d(4), "BatchNorm2d): its batch statistics make a sample's energy depend"),
    (nn.Dropout(0.1), "Dropout): it makes the energy random"),
    (nn.GroupNorm(2, 4), "GroupNorm): it makes the energy blind to the scale"),
    (nn.InstanceNorm2d(4), "InstanceNorm2d): it makes the energy blind to the scale"),
    (nn.LayerNorm([4, 8, 8]), "LayerNorm): it makes the energy blind to the scale"),
])
def test_check_components_warns_naming_the_layer(layer: nn.Module, words: str) -> None:
    with pytest.warns(EnergyLayerWarning) as caught:
        eg.check_components(*parts(ebm_with(layer, nn.ReLU())))
    message = str(caught[0].message)
    assert message.startswith("ebm holds layers that CLEL's energy should not have: "
                              "backbone.1 (")
    assert words in message and "remove these layers" in message


def test_a_clean_ebm_and_a_batchnorm_guide_give_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", EnergyLayerWarning)
        eg.check_components(*parts(ebm_with(nn.ReLU())))
    assert energy_layer_problems(ebm_with(nn.ReLU())) == []
    assert energy_layer_problems(object()) == []


def test_clel_step_does_not_warn_per_step() -> None:
    ebm, guide, sampler = parts(ebm_with(nn.BatchNorm2d(4), nn.ReLU()))
    o = eg.clel_optimizers(ebm, guide, total_iterations=2)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 8, 8, generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EnergyLayerWarning)
        for _ in range(2):
            eg.clel_step(ebm, guide, sampler, x, ebm_optimizer=o.ebm, guide_optimizer=o.guide,
                         generator=g)


def test_a_run_warns_once_when_its_ebm_has_such_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(str(TINY))
    plain = builders.build_ebm

    def with_dropout(cfg: object, shape: tuple[int, ...]) -> eg.SphericalEBM:
        ebm = plain(cfg, shape)  # type: ignore[arg-type]
        ebm.backbone = nn.Sequential(ebm.backbone, nn.Dropout(0.1))
        return ebm

    monkeypatch.setattr(builders, "build_ebm", with_dropout)
    with pytest.warns(EnergyLayerWarning, match=r"the EBM \(model.backbone = 'small_cnn'\) holds "
                                                r"layers .* backbone.1 \(Dropout\)") as caught:
        builders.build_components(cfg, (3, 8, 8), torch.device("cpu"), torch.Generator())
    assert len([w for w in caught if w.category is EnergyLayerWarning]) == 1
    with warnings.catch_warnings():  # the shipped recipes' EBMs have none
        warnings.simplefilter("error", EnergyLayerWarning)
        monkeypatch.setattr(builders, "build_ebm", plain)
        builders.build_components(cfg, (3, 8, 8), torch.device("cpu"), torch.Generator())


@pytest.mark.parametrize("name", ["demo", "toy2d", "cifar10_cpu", "cifar10_clel_base"])
def test_the_shipped_recipes_ebms_have_no_such_layers(name: str) -> None:
    cfg = load_config(name)
    shape = (2,) if cfg.data.name == "toy2d" else (3, cfg.data.size, cfg.data.size)
    assert energy_layer_problems(builders.build_ebm(cfg, shape)) == []
