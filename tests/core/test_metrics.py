"""Metrics: FD / KID on any feature network, the floor, the shapes classifier, guide refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from ebmguide.data import make_shapes
from ebmguide.feature_nets import (
    ShapesFeatureNet,
    check_not_guide,
    factor_statistics,
    inception_features,
    shapes_feature_net,
    train_shapes_feature_net,
)
from ebmguide.guide import SimCLRGuide
from ebmguide.metrics import FrechetScorer, auroc, frechet_distance, kernel_distance
from ebmguide.nets import SmallCNN


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> object:
    """Tiny networks run fastest on one thread, above all on a machine shared with other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shapes() -> torch.Tensor:
    return make_shapes(600, size=16, generator=torch.Generator().manual_seed(3)).images


@pytest.fixture(scope="module")
def classifier() -> ShapesFeatureNet:
    net, accuracy = train_shapes_feature_net(size=16)  # the shipped recipe: 300 x 128 images
    assert min(accuracy.values()) > 0.93, accuracy  # every factor, shape included, is learnt
    return net


def test_fd_orders_noise_above_data_and_data_near_the_floor(shapes: torch.Tensor,
                                                            classifier: ShapesFeatureNet) -> None:
    real, fake_good = shapes[:400], shapes[400:600]
    noise = torch.rand(200, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    scorer = FrechetScorer(real, classifier, features="shapes-classifier")
    good, bad = scorer(fake_good), scorer(noise)
    assert bad > 10 * max(good, scorer.floor)
    assert good < 3 * scorer.floor + 1.0
    result = scorer.with_floor(noise)
    assert str(result).startswith("FD (features: shapes-classifier) = ")
    assert "real-vs-real floor" in str(result) and "FID" not in str(result)
    assert frechet_distance(real, noise, classifier, features="x").fd == pytest.approx(
        scorer(noise), rel=1e-4)


def test_fd_works_on_any_module_and_vectors() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 2, generator=g), torch.randn(100, 2, generator=g) + 3.0
    fd = frechet_distance(a, b, nn.Identity(), features="coordinates").fd
    assert fd == pytest.approx(18.0, rel=0.25)  # |mean difference|² = 2 · 3²
    with pytest.raises(ValueError, match="2 x 100"):
        frechet_distance(a[:150], b, nn.Identity(), features="coordinates")


def test_kid_is_reproducible(shapes: torch.Tensor, classifier: ShapesFeatureNet) -> None:
    noise = torch.rand(100, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    first = kernel_distance(shapes[:100], noise, classifier, features="c", subsets=5)
    again = kernel_distance(shapes[:100], noise, classifier, features="c", subsets=5)
    same = kernel_distance(shapes[:100], shapes[100:200], classifier, features="c", subsets=5)
    assert first == again and first[0] > same[0]
    assert first[1] > 0  # the default subsets (50 images of 100) differ, so the std is informative


def test_the_guide_is_refused_as_feature_network(shapes: torch.Tensor) -> None:
    encoder = SmallCNN(width=4, spectral_norm=False, norm="batch")
    guide = SimCLRGuide(encoder, latent_dim=8, hidden_dim=16)
    for net in (guide, nn.Sequential(guide)):
        with pytest.raises(ValueError, match="guiding encoder"):
            check_not_guide(net)
        with pytest.raises(ValueError, match="guiding encoder"):
            frechet_distance(shapes[:40], shapes[40:60], net, features="guide")
    with pytest.raises(ValueError, match="guiding encoder"):
        check_not_guide(encoder, guide)  # the bare encoder shares the guide's parameters
    check_not_guide(SmallCNN(width=4), guide)  # an independent network is fine


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_copies_of_the_guide_are_refused_by_value(tmp_path: Path) -> None:
    """A deep copy, a TorchScript file or a torch.export file of the guide's encoder is refused."""
    import copy

    torch.manual_seed(0)
    encoder = SmallCNN(width=4, spectral_norm=False, norm="batch")
    guide = SimCLRGuide(encoder, latent_dim=8, hidden_dim=16).eval()
    example = torch.rand(2, 3, 8, 8)
    torch.jit.save(torch.jit.trace(encoder.eval(), example), str(tmp_path / "enc.pt"))
    exported = torch.export.export(encoder.eval(), (example,))
    torch.export.save(exported, str(tmp_path / "enc.pt2"))
    copies = {
        "deep copy": copy.deepcopy(encoder),
        "deep copy of the guide's parts": nn.Sequential(*copy.deepcopy(list(guide.children()))),
        "TorchScript": torch.jit.load(str(tmp_path / "enc.pt")),
        "torch.export": torch.export.load(str(tmp_path / "enc.pt2")).module(),
    }
    for name, net in copies.items():
        with pytest.raises(ValueError, match="guiding encoder"):
            check_not_guide(net, guide)
        with pytest.raises(ValueError, match="guiding encoder"):
            check_not_guide(net, guide.state_dict())  # a checkpoint's entry
        assert name
    # an independent network of the same architecture, with the same constant initialisations
    # (zero biases, unit BatchNorm scales), is accepted
    torch.manual_seed(1)
    check_not_guide(SmallCNN(width=4, spectral_norm=False, norm="batch"), guide)


def test_missing_inception_weights_error_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"Inception weights file .* does not exist"):
        inception_features(tmp_path / "pt_inception-2015-12-05.pth")


def test_shapes_feature_net_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ebmguide.feature_nets as feature_nets  # where shapes_feature_net looks it up

    calls = []

    def fake_train(**kwargs: int) -> tuple[ShapesFeatureNet, dict[str, float]]:
        calls.append(kwargs)
        return ShapesFeatureNet().eval(), {"shape": 1.0}

    monkeypatch.setattr(feature_nets, "train_shapes_feature_net", fake_train)
    cache = tmp_path / "feature_net.pt"
    first = shapes_feature_net(cache, size=16)
    second = shapes_feature_net(cache, size=16)
    assert len(calls) == 1 and cache.is_file()
    x = torch.rand(4, 3, 16, 16)
    assert torch.equal(first(x), second(x)) and not second.training
    shapes_feature_net(cache, size=32)  # another size: trained again
    assert len(calls) == 2
    state = torch.load(cache, weights_only=True)
    state["version"] = feature_nets._SHAPES_NET_VERSION - 1  # a cache of an earlier training
    torch.save(state, cache)
    shapes_feature_net(cache, size=32)
    assert len(calls) == 3


def test_factor_statistics(shapes: torch.Tensor) -> None:
    same = factor_statistics(shapes[:300], shapes[300:600])
    noise = factor_statistics(torch.rand(300, 3, 16, 16), shapes[:300])
    assert same["clean"] > 0.95 and same["factor_tv"] < 0.1
    assert noise["clean"] < 0.05 and noise["factor_tv"] > 0.2


def test_auroc_is_exported() -> None:
    assert auroc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
