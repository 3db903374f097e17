"""A user's backbone, encoder and data set named by import path in a TOML config, through the CLI.

Trained, checkpointed, resumed, evaluated and sampled with `ebmguide train/evaluate/sample`; a
configuration read from a checkpoint alone names code that is imported only with
--trust-config-imports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ebmguide.cli import main
from ebmguide.run.checkpoints import load_run, load_state
from ebmguide.run.config import RunConfig, load_config
from ebmguide.run.trainer import Trainer
from ebmguide.run.training_data import TrainingData

HERE = Path(__file__).resolve().parent
TINY = HERE.parent / "tiny_run.toml"
USER = """
[data]
name = "my_nets:blobs"
[data.args]
n = 64
size = 8

[model]
backbone = "my_nets:TinyNet"
[model.backbone_args]
width = 6

[guide]
encoder = "my_nets:TinyNet"
[guide.encoder_args]
width = 5
"""


def tiny_config_with(tmp_path: Path, sections: str = USER) -> Path:
    """The tiny run's config file with its [data], [model] and [guide] replaced by ``sections``."""
    base = TINY.read_text()
    for section in ("[data]", "[model]", "[guide]"):
        start = base.index(section)
        end = base.index("\n[", start + 1)
        base = base[:start] + base[end + 1:]
    path = tmp_path / "user.toml"
    path.write_text(base + sections)
    return path


@pytest.fixture
def user_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HERE / "user_modules"))


def test_user_modules_train_resume_evaluate_sample(
        user_modules: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg_path, run = tiny_config_with(tmp_path), tmp_path / "run"
    cfg = load_config(cfg_path)
    assert cfg.model.backbone_args == {"width": 6} and cfg.data.args == {"n": 64, "size": 8}
    assert main(["train", "--config", str(cfg_path), "--out", str(run), "--no-progress",
                 "--until", "3"]) == 0
    state, _ = load_state(run)
    assert state["iteration"] == 3
    assert state["ebm"]["backbone.body.0.weight"].shape == (6, 3, 3, 3)  # the user's network
    assert state["guide"]["encoder.body.0.weight"].shape == (5, 3, 3, 3)
    assert state["config"]["model"]["backbone"] == "my_nets:TinyNet"  # plain data

    # A checkpoint alone never decides to import code.
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    assert "--trust-config-imports" in capsys.readouterr().err
    with pytest.raises(ValueError, match="trust-config-imports"):
        load_run(run)
    assert main(["train", "--resume", str(run), "--no-progress", "--trust-config-imports"]) == 0
    state, _ = load_state(run)
    assert state["iteration"] == 6

    # Resuming gives what a straight run gives (same seeds, same user modules).
    straight = tmp_path / "straight"
    assert main(["train", "--config", str(cfg_path), "--out", str(straight), "--no-progress"]) == 0
    other, _ = load_state(straight)
    for key, value in other["ebm"].items():
        assert torch.equal(value, state["ebm"][key]), key

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 6))
    batch = torch.export.Dim("batch", min=2)
    program = torch.export.export(net, (torch.rand(4, 3, 8, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "features.pt2"))
    for command in (["sample", "--checkpoint", str(run), "--n", "4", "--steps", "2",
                     "--out", str(tmp_path / "samples")],
                    ["evaluate", "--checkpoint", str(run), "--n", "8", "--steps", "2",
                     "--feature-net", str(tmp_path / "features.pt2"), "--no-progress", "--out",
                     str(tmp_path / "eval"),
                     "--json", str(tmp_path / "eval.json")]):
        capsys.readouterr()
        assert main(command) == 2, command[0]
        assert "--trust-config-imports" in capsys.readouterr().err
        assert main([*command, "--trust-config-imports"]) == 0, command[0]
    assert any((tmp_path / "samples").iterdir())
    scores = json.loads((tmp_path / "eval.json").read_text())
    assert scores


def test_a_bad_import_path_says_what_to_write(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TINY.read_text().replace('backbone = "small_cnn"', 'backbone = "no module"'))
    with pytest.raises(ValueError, match=r"package\.module:Name"):
        load_config(path)
    path.write_text(TINY.read_text().replace('backbone = "small_cnn"',
                                             'backbone = "no_such_module_xyz:Net"'))
    cfg = load_config(path)
    from ebmguide.run.components import build_ebm

    with pytest.raises(ValueError, match="does not import"):
        build_ebm(cfg, (3, 8, 8))


def _user_parts(cfg: RunConfig) -> dict[str, object]:
    from my_nets import TinyNet, blobs

    import ebmguide as eg

    torch.manual_seed(3)
    train, test = blobs(64, 8)
    ebm = eg.SphericalEBM(TinyNet(width=6), latent_dim=cfg.model.latent_dim, hidden_dim=16)
    guide = eg.SimCLRGuide(TinyNet(width=5), latent_dim=cfg.model.latent_dim, hidden_dim=16,
                           augment="flip")
    sampler = eg.SGLDSampler((3, 8, 8), buffer_size=cfg.sampler.buffer_size, n_steps=2,
                             step_size=1.0, noise_scale=0.005, clamp=(0.0, 1.0),
                             generator=torch.Generator().manual_seed(5))
    return {"ebm": ebm, "guide": guide, "sampler": sampler,
            "data": TrainingData.from_tensors(train, cfg, test=test)}


def test_trainer_takes_built_components_and_resumes_exactly(user_modules: None,
                                                            tmp_path: Path) -> None:
    cfg = load_config(TINY)
    straight = Trainer(cfg, tmp_path / "a", progress=False, **_user_parts(cfg))
    straight.run()
    assert straight.parts.ebm.backbone.feature_dim == 6  # the given network was trained
    half = Trainer(cfg, tmp_path / "b", progress=False, **_user_parts(cfg))
    half.run(until=3)
    resumed = Trainer(cfg, tmp_path / "b", progress=False, resume=tmp_path / "b",
                      **_user_parts(cfg))
    assert resumed.iteration == 3
    resumed.run()
    for key, value in straight.parts.ebm.state_dict().items():
        assert torch.equal(value, resumed.parts.ebm.state_dict()[key]), key
    assert torch.equal(straight.parts.sampler.buffer.states, resumed.parts.sampler.buffer.states)


def test_built_components_are_checked(user_modules: None, tmp_path: Path) -> None:
    cfg = load_config(TINY)
    parts = _user_parts(cfg)
    with pytest.raises(TypeError, match="EnergyModel"):
        Trainer(cfg, tmp_path / "x", progress=False, **{**parts, "ebm": torch.nn.Linear(2, 2)})
    with pytest.raises(ValueError, match="shape"):
        TrainingData.from_tensors(torch.zeros(4, 3, 8, 8), cfg, test=torch.zeros(4, 1, 8, 8))


def test_the_divergence_guard_rolls_back_a_user_network(user_modules: None,
                                                        tmp_path: Path) -> None:
    cfg = load_config(TINY, ["train.on_divergence=\"rollback\"", "train.max_rollbacks=2"])
    parts = _user_parts(cfg)
    ebm = parts["ebm"]
    assert isinstance(ebm, torch.nn.Module)
    poisoned = {"left": 1}

    def poison(module: torch.nn.Module, args: object, out: torch.Tensor) -> torch.Tensor:
        if poisoned["left"] and trainer.iteration == 4:
            poisoned["left"] -= 1
            return out * float("nan")
        return out

    ebm.backbone.register_forward_hook(poison)
    trainer = Trainer(cfg, tmp_path / "r", progress=False, **parts)
    trainer.run()
    assert trainer.rollbacks == 1 and trainer.iteration == cfg.train.iterations
    assert trainer.lr_scale == pytest.approx(cfg.train.rollback_lr_factor)
