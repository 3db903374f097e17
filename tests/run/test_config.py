"""Configurations: shipped recipes, the paper's values, overrides, and clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ebmguide.run.config import (
    RunConfig,
    config_from_dict,
    config_to_dict,
    dumps_toml,
    load_config,
    parse_override,
    shipped_configs,
)


def test_every_shipped_config_loads_and_round_trips(tmp_path: Path) -> None:
    names = shipped_configs()
    assert {"demo", "toy2d", "cifar10_cpu", "cifar10_clel_base", "cifar10_clel_large",
            "imagenet32_clel_base"} <= set(names)
    for name in names:
        cfg = load_config(name)
        assert cfg.name == name
        path = tmp_path / f"{name}.toml"
        path.write_text(dumps_toml(cfg))
        assert load_config(path) == cfg
        assert config_from_dict(config_to_dict(cfg)) == cfg


def test_cifar10_clel_base_has_every_value_of_the_paper() -> None:
    cfg = load_config("cifar10_clel_base")
    assert (cfg.train.batch_size, cfg.train.iterations) == (64, 100_000)
    s = cfg.sampler
    assert (s.buffer_size, s.n_steps, s.step_size, s.noise_scale) == (10_000, 60, 100.0, 0.001)
    assert s.grad_clip == 100.0  # explicit: the research code's accidental c = η
    assert (s.reinit_prob, s.augment, s.clamp) == (0.001, "strong", (0.0, 1.0))
    assert (cfg.loss.alpha, cfg.loss.beta, cfg.guide.temperature) == (1.0, 0.01, 0.2)
    assert cfg.guide.augment == "strong" and cfg.guide.extra_negatives
    assert (cfg.ema.half_life_images, cfg.ema.copy_iterations) == (20_000.0, 312)
    o = cfg.optim
    assert (o.ebm_lr, o.ebm_betas, o.warmup_iterations) == (1e-4, (0.0, 0.999), 2_000)
    assert (o.guide_lr, o.guide_momentum, o.guide_weight_decay) == (0.03, 0.9, 5e-4)
    assert (cfg.model.backbone, cfg.guide.encoder) == ("clel_resnet_base", "cifar_resnet18")
    assert (cfg.model.latent_dim, cfg.model.hidden_dim, cfg.guide.hidden_dim) == (128, 2048, 2048)
    assert cfg.data.name == "cifar10"
    large = load_config("cifar10_clel_large")
    assert large.model.backbone == "clel_resnet_large"
    assert dataclasses.replace(large, name=cfg.name, model=cfg.model) == cfg


def test_overrides_parse_toml_literals() -> None:
    cfg = load_config("demo", ["train.iterations=200", "optim.ebm_betas=[0.5, 0.9]",
                               "sampler.grad_clip=0.5", "data.name=toy2d", "seed=3",
                               'device="cpu"'])
    assert cfg.train.iterations == 200 and cfg.optim.ebm_betas == (0.5, 0.9)
    assert cfg.sampler.grad_clip == 0.5 and cfg.data.name == "toy2d" and cfg.seed == 3
    assert load_config("demo", ["sampler.grad_clip=none"]).sampler.grad_clip is None
    assert load_config("demo", ["optim.ebm_lr=1"]).optim.ebm_lr == 1.0  # ints widen to floats
    assert parse_override("a.b = 1e-3") == (["a", "b"], 1e-3)


@pytest.mark.parametrize(("override", "words"), [
    ("train.iteratons=5", ["train.iteratons", "iterations"]),
    ("trian.iterations=5", ["trian"]),
    ("train.iterations=1.5", ["train.iterations", "int"]),
    ("train.iterations=0", ["train.iterations", "positive"]),
    ("train.iterations=true", ["train.iterations"]),
    ("sampler.augment=strongest", ["sampler.augment", "strong"]),
    ("sampler.reinit_prob=2", ["sampler.reinit_prob"]),
    ("sampler.step_size=nan", ["sampler.step_size"]),
    ("optim.ebm_betas=[0.9]", ["optim.ebm_betas"]),
    ("train.on_divergence=retry", ["train.on_divergence", "rollback"]),
    ("train.batch_size=100000", ["train.batch_size", "buffer_size"]),
    ("iterations", ["section.key=value"]),
    ("model.pool=max", ["model.pool", "flatten"]),
])
def test_bad_keys_and_values_are_rejected_with_their_name(override: str, words: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        load_config("demo", [override])
    for word in words:
        assert word in str(info.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no shipped config named 'nope'"):
        load_config("nope")
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\niterations = 3\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(broken)
    code = tmp_path / "code.toml"
    code.write_text('name = "__import__(\'os\').system(\'false\')"\n[train]\nbatch_size = 8\n')
    cfg = load_config(code)  # data only: the string stays a string
    assert cfg.name.startswith("__import__") and cfg.train.batch_size == 8


def test_defaults_are_the_paper_values() -> None:
    cfg = RunConfig()
    assert cfg.sampler.n_steps == 60 and cfg.sampler.step_size == 100.0
    assert cfg.train.on_divergence == "stop" and cfg.train.max_rollbacks == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1  # type: ignore[misc]


def test_recipe_head_comments_match_the_built_networks() -> None:
    """Every recipe's "head F→H→d" comment names the sizes of the EBM that the recipe builds."""
    import re
    from importlib import resources

    from ebmguide.run.components import build_ebm

    checked = 0
    for name in shipped_configs():
        text = (resources.files("ebmguide") / "configs" / f"{name}.toml").read_text("utf-8")
        found = re.search(r"head (\d+)→(\d+)→(\d+) \(bias\)", text)
        if found is None:
            continue
        cfg = load_config(name)
        shape = (3, 32, 32)
        features = build_ebm(cfg, shape).head[0].in_features
        assert tuple(map(int, found.groups())) == (
            features, cfg.model.hidden_dim, cfg.model.latent_dim), name
        checked += 1
    assert checked >= 4


def test_model_pool_builds_the_backbone_for_the_data_size() -> None:
    from ebmguide.run.components import build_ebm

    flat = build_ebm(load_config("demo"), (3, 16, 16))
    assert flat.feature_dim == 128 * 4 * 4
    avg = build_ebm(load_config("demo", ['model.pool="avg"']), (3, 16, 16))
    assert avg.feature_dim == 128
    assert build_ebm(load_config("demo", ["data.size=32"]), (3, 32, 32)).feature_dim == 128 * 64
    with pytest.raises(ValueError, match="small_cnn backbone only"):
        load_config("demo", ['model.backbone="mlp"'])
    assert load_config("demo", ['model.backbone="mlp"', 'model.pool="avg"']).model.pool == "avg"


def test_model_pool_names_are_small_cnns() -> None:
    from ebmguide.nets import small
    from ebmguide.run.config_schema import POOLS

    assert POOLS == small._POOLS
