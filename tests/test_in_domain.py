"""The in-domain feature network: it learns its task (bounds that fail for a broken network),
keeps the data's channels, is reproducible, cached by data and settings, and chosen by "auto"."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import ebmguide.in_domain as in_domain
from ebmguide.feature_choice import INCEPTION_LABEL, choose_feature_net
from ebmguide.in_domain import (
    InDomainSettings,
    in_domain_feature_net,
    train_in_domain_feature_net,
)
from ebmguide.metrics import frechet_distance

FAST = InDomainSettings(iterations=150, batch_size=64)


def patterns(n: int, channels: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Four classes of noisy uint8 textures: horizontal/vertical stripes, checkerboard, a blob."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(4, (n,), generator=g)
    i = torch.arange(size).view(-1, 1).expand(size, size)
    j = i.t()
    centre = (size - 1) / 2
    masks = torch.stack([(i // 2) % 2, (j // 2) % 2, ((i // 2) + (j // 2)) % 2,
                         ((i - centre) ** 2 + (j - centre) ** 2 < (size / 4) ** 2).long()]).float()
    low = 0.5 * torch.rand(n, channels, 1, 1, generator=g)
    amp = 0.3 + 0.2 * torch.rand(n, 1, 1, 1, generator=g)
    x = low + amp * masks[labels].unsqueeze(1) + 0.05 * torch.randn(n, channels, size, size,
                                                                    generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), labels


def gradients(n: int, size: int, seed: int) -> torch.Tensor:
    """Unlabelled images bright at the top, dark at the bottom, with noise: rotations show."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(1, 0, size).view(1, 1, size, 1).expand(n, 3, size, size)
    scale = 0.5 + 0.5 * torch.rand(n, 1, 1, 1, generator=g)
    x = scale * ramp + 0.1 * torch.randn(n, 3, size, size, generator=g)
    return x.clamp(0, 1)


@pytest.mark.parametrize("channels", [1, 3])
def test_the_classifier_learns_the_classes(channels: int) -> None:
    images, labels = patterns(1200, channels, 12, seed=0)
    net = train_in_domain_feature_net(images, labels, generator=torch.Generator().manual_seed(1),
                                      settings=FAST)
    assert net.task == "classes" and net.config["in_channels"] == channels
    assert net.held_out_accuracy >= 0.9 > 0.4 > net.chance  # chance is about 0.25
    features = net(images[:5].float() / 255)
    assert features.shape == (5, net.feature_dim) == (5, 128)


def test_rotation_prediction_without_labels() -> None:
    images = gradients(1200, 12, seed=0)
    net = train_in_domain_feature_net(images, generator=torch.Generator().manual_seed(1),
                                      settings=FAST)
    assert net.task == "rotation"
    assert net.held_out_accuracy >= 0.8 and net.chance < 0.35


def test_untrained_accuracy_is_near_chance() -> None:
    """The bound above can fail: a network trained 0 steps scores about chance."""
    images, labels = patterns(1200, 3, 12, seed=0)
    net = train_in_domain_feature_net(images, labels, generator=torch.Generator().manual_seed(1),
                                      settings=InDomainSettings(iterations=1, lr=1e-6))
    assert net.held_out_accuracy < 0.6


def test_training_is_reproducible_from_the_generator() -> None:
    images, labels = patterns(300, 3, 8, seed=2)
    settings = InDomainSettings(iterations=10, batch_size=32)
    a, b, c = (train_in_domain_feature_net(images, labels, settings=settings,
                                           generator=torch.Generator().manual_seed(s))
               for s in (5, 5, 6))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(),
                                                 b.state_dict().values(), strict=True))
    assert not torch.equal(a.head.weight, c.head.weight)


def test_features_separate_classes_in_fd() -> None:
    """FD on the features: two real halves score far less than real against another class."""
    images, labels = patterns(1200, 3, 12, seed=0)
    net = train_in_domain_feature_net(images, labels, generator=torch.Generator().manual_seed(1),
                                      settings=FAST)
    test, test_labels = patterns(600, 3, 12, seed=9)
    x = test.float() / 255
    same = frechet_distance(x[:400], x[400:600], net, features="in-domain")
    other = frechet_distance(x[:400], x[test_labels == 0][:200], net, features="in-domain")
    assert other.fd > 5 * same.fd


def test_cache_is_keyed_by_data_seed_and_settings(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_train = in_domain.train_in_domain_feature_net

    def counting(*args: object, **kwargs: object) -> in_domain.InDomainFeatureNet:
        calls.append(1)
        return real_train(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(in_domain, "train_in_domain_feature_net", counting)
    images, labels = patterns(200, 3, 8, seed=3)
    cache, tiny = tmp_path / "net.pt", InDomainSettings(iterations=3, batch_size=16)
    first = in_domain_feature_net(images, labels, seed=0, cache=cache, settings=tiny)
    second = in_domain_feature_net(images, labels, seed=0, cache=cache, settings=tiny)
    assert len(calls) == 1 and torch.equal(first.head.weight, second.head.weight)
    assert second.held_out_accuracy == first.held_out_accuracy and second.task == "classes"
    in_domain_feature_net(images, labels, seed=1, cache=cache, settings=tiny)
    changed = images.clone()
    changed[0, 0, 0, 0] ^= 1
    in_domain_feature_net(changed, labels, seed=1, cache=cache, settings=tiny)
    in_domain_feature_net(changed, labels, seed=1, cache=cache,
                          settings=InDomainSettings(iterations=4, batch_size=16))
    in_domain_feature_net(changed, None, seed=1, cache=cache, settings=tiny)
    assert len(calls) == 5
    cache.write_bytes(b"not a checkpoint")
    in_domain_feature_net(changed, None, seed=1, cache=cache, settings=tiny)
    assert len(calls) == 6  # a broken file is replaced


def test_bad_input_is_a_clear_error() -> None:
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="at least 8 images"):
        train_in_domain_feature_net(torch.rand(5, 3, 8, 8), generator=g)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        train_in_domain_feature_net(torch.rand(50, 8, 8), generator=g)
    with pytest.raises(ValueError, match="int64"):
        train_in_domain_feature_net(torch.rand(50, 3, 8, 8), torch.zeros(50), generator=g)
    with pytest.raises(TypeError, match="uint8"):
        train_in_domain_feature_net(torch.zeros(50, 3, 8, 8, dtype=torch.int32), generator=g)


def _choose(choice: str, *, name: str = "image_folder", kind: str = "image",
            weights: str = "", run_dir: Path | None = None) -> tuple[object, str] | None:
    images, labels = patterns(100, 1, 8, seed=0)
    return choose_feature_net(choice, data_name=name, kind=kind, size=8,
                              inception_weights=weights, run_dir=run_dir, seed=0,
                              training_images=lambda: (images, labels))


def test_auto_picks_the_in_domain_network_without_inception_weights(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(in_domain, "InDomainSettings",
                        lambda: InDomainSettings(iterations=3, batch_size=16))
    chosen = _choose("auto", run_dir=tmp_path)
    assert chosen is not None and chosen[1] == "in-domain classifier"
    assert (tmp_path / "feature_net_in_domain.pt").is_file()
    assert "FID" not in chosen[1] and chosen[1] != INCEPTION_LABEL
    vector = _choose("auto", name="toy2d", kind="vector")
    assert vector is not None and vector[1] == "coordinates"
    assert _choose("none") is None
    with pytest.raises(FileNotFoundError, match="weights-inception-2015-12-05"):
        _choose("auto", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match=r"eval\.inception_weights"):
        _choose("inception")
    with pytest.raises(ValueError, match="needs shapes data"):
        _choose("shapes_classifier")
    with pytest.raises(ValueError, match="one of"):
        _choose("guide")


@pytest.mark.slow
def test_default_settings_train_on_50k_16px_images_in_about_a_minute_on_one_thread() -> None:
    images, labels = patterns(50_000, 3, 16, seed=0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        net = train_in_domain_feature_net(images, labels,
                                          generator=torch.Generator().manual_seed(0))
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(before)
    print(f"\nin-domain network, 50,000 16x16 images, 1 thread: {seconds:.1f} s, "
          f"held-out accuracy {net.held_out_accuracy:.3f}")
    assert seconds < 90 and net.held_out_accuracy > 0.9  # about 20 s idle, 55-65 s loaded


def test_an_image_folder_run_logs_in_domain_fd_and_evaluate_reuses_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image_folder: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    from ebmguide.cli import main
    from ebmguide.run.config import load_config
    from ebmguide.run.trainer import Trainer

    monkeypatch.setattr(in_domain, "InDomainSettings",
                        lambda: InDomainSettings(iterations=20, batch_size=16))
    root = image_folder(tmp_path / "data", train=48, test=16)
    cfg = load_config(str(Path(__file__).parent / "tiny_run.toml"), [
        'data.name="image_folder"', f'data.path="{root}"', "eval.every=3",
        'eval.feature_net="auto"'])
    run = tmp_path / "run"
    Trainer(cfg, run, progress=False).run()
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
             if '"eval"' in line]
    assert [r["iteration"] for r in evals] == [0, 3, 6]
    assert all(r["buffer_fd"] >= 0 and r["fd_floor"] >= 0 for r in evals)
    assert 0 <= evals[0]["feature_net_accuracy"] <= 1
    cache = run / "feature_net_in_domain.pt"
    stamp = cache.stat().st_mtime_ns

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("evaluate trained the in-domain network again")

    monkeypatch.setattr(in_domain, "train_in_domain_feature_net", no_training)
    assert main(["evaluate", "--checkpoint", str(run), "--protocol", "fresh", "--n", "8",
                 "--steps", "1", "--no-progress", "--out", str(tmp_path / "ev")]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("FD (features: in-domain classifier)") and "FID" not in last
    assert cache.stat().st_mtime_ns == stamp


def test_the_example_script_reports_the_accuracy_and_fails_below_the_bound(
        capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "cifar10_clel" / \
        "in_domain_features.py"
    spec = importlib.util.spec_from_file_location("example_in_domain", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    before = torch.get_num_threads()
    try:
        result = module.main(module.get_args_parser().parse_args(["--smoke"]))
        assert "held-out accuracy" in capsys.readouterr().out and result["accuracy"] > 0.8
        with pytest.raises(SystemExit, match="below --min-accuracy"):
            module.main(module.get_args_parser().parse_args(["--smoke", "--min-accuracy", "1.01"]))
    finally:
        torch.set_num_threads(before)
