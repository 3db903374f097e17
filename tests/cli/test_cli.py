"""The `ebmguide` command: help, errors, train, sample, evaluate, demo (tiny sizes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ebmguide.cli import COMMANDS, build_parser, main

from .conftest import TINY


def test_help_of_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    top = capsys.readouterr().out
    available = [c for c in COMMANDS if f" {c} " in top or f"    {c}" in top]
    assert {"demo", "train", "sample", "evaluate"} <= set(available)
    for command in available:
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        assert f"usage: ebmguide {command}" in capsys.readouterr().out


def test_python_dash_m_and_version() -> None:
    out = subprocess.run([sys.executable, "-m", "ebmguide", "--version"], capture_output=True,
                         text=True, check=True, timeout=120)
    assert out.stdout.startswith("ebmguide ")


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: ebmguide" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "words"), [
    (["train", "--config", "demo", "--set", "train.iteratons=3"], ["train.iteratons"]),
    (["train", "--config", "demo", "--set", "sampler.n_steps=-1"], ["sampler.n_steps"]),
    (["train", "--config", "nope"], ["no shipped config named 'nope'"]),
    (["train"], ["--config"]),
    (["train", "--config", "cifar10_clel_base"], ["data.path"]),
    (["train", "--config", "cifar10_clel_base", "--set", "data.path=/nonexistent/cifar"],
     ["No CIFAR-10 train split"]),
    (["sample", "--checkpoint", "/nonexistent/run"], ["no checkpoint"]),
])
def test_user_errors_are_one_line_messages(argv: list[str], words: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ebmguide: error: ") and "Traceback" not in err
    for word in words:
        assert word in err


def test_debug_shows_the_traceback() -> None:
    with pytest.raises(ValueError, match=r"train\.iteratons"):
        main(["--debug", "train", "--config", "demo", "--set", "train.iteratons=3"])


def test_list_and_print_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--list"]) == 0
    assert "cifar10_clel_base" in capsys.readouterr().out.split()
    assert main(["train", "--config", "cifar10_clel_base", "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "grad_clip = 100.0" in text and "n_steps = 60" in text


def test_train_writes_a_complete_run_folder(tiny_run: Path) -> None:
    assert (tiny_run / "config.toml").is_file()
    assert (tiny_run / "metrics.jsonl").is_file()
    assert (tiny_run / "checkpoints" / "ckpt-00000006.pt").is_file()
    assert (tiny_run / "samples" / "iter-00000006.png").is_file()


def test_train_refuses_to_mix_runs_and_resumes(tiny_run: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", str(TINY), "--out", str(tiny_run)]) == 2
    assert "--resume" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["train", "--config", str(TINY), "--out", str(run), "--until", "3",
                 "--no-progress"]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ckpt-00000003.pt"]
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "ckpt-00000006.pt" in out and "ebmguide sample --checkpoint" in out


def test_sample_fresh_and_buffer_protocol(tiny_run: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fresh"
    assert main(["sample", "--checkpoint", str(tiny_run), "--n", "10", "--steps", "3",
                 "--out", str(out)]) == 0
    images = np.load(out / "samples.npz")["images"]
    assert images.shape == (10, 3, 8, 8) and images.dtype == np.uint8
    assert (out / "samples.png").is_file()
    buf = tmp_path / "buffer"
    assert main(["sample", "--checkpoint", str(tiny_run / "checkpoints" / "ckpt-00000006.pt"),
                 "--protocol", "buffer", "--n", "12", "--rounds", "2", "--chunk", "5",
                 "--format", "pt", "--out", str(buf)]) == 0
    tensor = torch.load(buf / "samples.pt", weights_only=True)
    assert tensor.shape == (12, 3, 8, 8) and tensor.dtype == torch.uint8
    assert "12 samples (buffer, EMA EBM)" in capsys.readouterr().out


def test_buffer_protocol_runs_every_slot_through_the_sampler(tiny_run: Path) -> None:
    from ebmguide.run.checkpoints import load_run
    from ebmguide.run.components import networks_from_checkpoint
    from ebmguide.run.evaluator import buffer_protocol

    state, cfg = load_run(tiny_run)
    ebm, _ = networks_from_checkpoint(state, cfg, torch.device("cpu"))
    seen: list[int] = []
    g = torch.Generator().manual_seed(0)
    x = buffer_protocol(ebm.energy, cfg, (3, 8, 8), 12, rounds=2, chunk=5, generator=g,
                        device=torch.device("cpu"), on_chunk=seen.append)
    assert seen == [5, 5, 2, 5, 5, 2] and x.shape == (12, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    untouched = buffer_protocol(ebm.energy, cfg, (3, 8, 8), 12, rounds=0, chunk=5, generator=g,
                                device=torch.device("cpu"))
    assert not torch.equal(untouched, x)


def test_evaluate_prints_fd_with_floor_and_never_fid(tiny_run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import ebmguide.run.checkpoint_evaluation as evaluate
    from ebmguide.feature_nets import train_shapes_feature_net

    net, _ = train_shapes_feature_net(size=8, iterations=3, batch_size=16)
    monkeypatch.setattr(evaluate, "load_feature_net",
                        lambda args, cfg, run_dir: (net, "shapes-classifier"))
    result = tmp_path / "fd.json"
    assert main(["evaluate", "--checkpoint", str(tiny_run), "--n", "20", "--steps", "2",
                 "--kid", "--json", str(result)]) == 0
    out = capsys.readouterr().out
    table = out[out.index("metric"):].splitlines()
    assert "real-vs-real floor" in table[0] and "FID" not in out
    assert table[1].startswith("FD (features: shapes-classifier)")
    assert table[2].startswith("KID (features: shapes-classifier)")
    assert "(held-out 20 vs held-out 20)" in table[1] and "fresh: 20 chains" in table[1]
    values = json.loads(result.read_text())
    assert values["n"] == 20 and values["fd"] > 0 and values["fd_floor"] >= 0
    assert values["n_real"] == 20 and values["floor_sets"] == "held-out 20 vs held-out 20"
    assert "kid_floor" in values and values["kid_std"] > 0


def test_evaluate_refuses_the_guide(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = str(tiny_run / "checkpoints" / "ckpt-00000006.pt")
    for feature_net in ("guide", ckpt):
        assert main(["evaluate", "--checkpoint", str(tiny_run), "--feature-net",
                     feature_net]) == 2
        assert "guid" in capsys.readouterr().err


def test_evaluate_with_missing_inception_weights(tiny_run: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--checkpoint", str(tiny_run), "--inception-weights",
                 "/nonexistent/pt_inception.pth"]) == 2
    err = capsys.readouterr().err
    assert "Inception weights file" in err and "does not exist" in err


def test_evaluate_samples_file_with_an_exported_feature_net(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 6))
    batch = torch.export.Dim("batch", min=2)
    program = torch.export.export(net, (torch.rand(4, 3, 8, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "features.pt2"))
    samples = tmp_path / "s"
    assert main(["sample", "--checkpoint", str(tiny_run), "--n", "16", "--steps", "1",
                 "--out", str(samples)]) == 0
    assert main(["evaluate", "--checkpoint", str(tiny_run), "--samples",
                 str(samples / "samples.npz"), "--feature-net",
                 str(tmp_path / "features.pt2")]) == 0
    assert "\nFD (features: features)  " in capsys.readouterr().out


def test_demo_command_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    overrides = []
    small = ["data.size=8", "data.n_train=64", "model.width=4", "model.hidden_dim=16",
             "model.latent_dim=8", "guide.width=4", "guide.hidden_dim=16",
             "sampler.buffer_size=64", "sampler.n_steps=2", "train.batch_size=8",
             "train.log_every=2", "train.sample_every=4", "train.checkpoint_every=4",
             "eval.every=0", "eval.feature_net=none", "eval.fresh_steps=2", "eval.grid_size=4",
             "train.tensorboard=false"]
    for item in small:
        overrides += ["--set", item]
    run = tmp_path / "demo"
    assert main(["demo", "--out", str(run), "--iterations", "4", "--threads", "1",
                 "--no-progress", *overrides]) == 0
    out = capsys.readouterr().out
    assert f"run folder:  {run}" in out
    assert "ebmguide sample --checkpoint" in out and "ckpt-00000004.pt" in out
    assert build_parser().parse_args(["demo"]).out == Path("runs/demo")
