"""Sizes and step counts from configs, commands and files are bounded before any allocation.

Before this pass: a 152 KB checkpoint whose buffer was a stride-0 (1, 3, 30000, 30000) tensor made
`sample` allocate 10.8 GB; a 10^9-slot buffer made `train --resume` try 768 GB; config sizes of
1e5-1e9 ended in a raw allocator error; sampler.n_steps = 10^12 ran until killed; a 2 MB checkpoint
with a 2 GiB deflated extra record cost 270x the normal load time in the CRC check.
"""

from __future__ import annotations

import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from ebmguide.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ebmguide.cli import main
from ebmguide.limits import BOUNDS, bound
from ebmguide.run.checkpoints import load_state
from ebmguide.run.config import load_config
from ebmguide.run.trainer import Trainer

TINY = Path(__file__).resolve().parents[1] / "tiny_run.toml"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    Trainer(load_config(TINY), run, progress=False).run()
    return run


@pytest.mark.parametrize("override,key", [
    ("sampler.buffer_size=1000000000", "sampler.buffer_size"),
    ("data.n_train=1000000000", "data.n_train"),
    ("model.hidden_dim=100000", "model.hidden_dim"),
    ("data.size=100000", "data.size"),
    ("eval.grid_size=1000000", "eval.grid_size"),
    ("sampler.n_steps=1000000000000", "sampler.n_steps"),
    ("eval.fresh_steps=1000000000000000", "eval.fresh_steps"),
    ("train.iterations=1000000000000", "train.iterations"),
    ("sampler.buffer_size=900000 data.size=64", "buffer values"),  # each under its bound
])
def test_config_sizes_are_bounded(override: str, key: str) -> None:
    with pytest.raises(ValueError) as info:
        load_config(TINY, ["train.batch_size=8", *override.split()])
    message = str(info.value)
    assert message.startswith(f"{key} = ") and "exceeds its bound" in message
    assert "EBMGUIDE_LIMIT_" in message  # how to raise it


def test_a_bound_can_be_raised_for_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"sampler\.n_steps"):
        load_config(TINY, ["sampler.n_steps=200000"])
    monkeypatch.setenv("EBMGUIDE_LIMIT_SAMPLER_N_STEPS", "300000")
    assert bound("sampler.n_steps") == 300_000
    assert load_config(TINY, ["sampler.n_steps=200000"]).sampler.n_steps == 200_000
    monkeypatch.setenv("EBMGUIDE_LIMIT_SAMPLER_N_STEPS", "lots")
    with pytest.raises(ValueError, match="EBMGUIDE_LIMIT_SAMPLER_N_STEPS must be a positive"):
        load_config(TINY)


def test_shipped_recipes_sit_far_below_the_bounds() -> None:
    from ebmguide.run.config import config_to_dict, shipped_configs

    for name in shipped_configs():
        flat = {f"{s}.{k}": v for s, sec in config_to_dict(load_config(name)).items()
                if isinstance(sec, dict) for k, v in sec.items()}
        for key, limit in BOUNDS.items():
            if key in flat:
                assert flat[key] * 10 <= limit, (name, key)


def test_resume_of_a_checkpoint_with_a_huge_buffer_size_fails_before_allocating(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state, _ = load_state(tiny_run)
    state["config"]["sampler"]["buffer_size"] = 10**9
    save_checkpoint(state, tmp_path / "huge.pt")
    assert main(["train", "--resume", str(tmp_path / "huge.pt"), "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    assert "sampler.buffer_size = 1,000,000,000 exceeds its bound" in capsys.readouterr().err


def test_stride_zero_tensor_in_a_checkpoint_is_refused(tiny_run: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    state, _ = load_state(tiny_run)
    state["sampler"]["buffer"]["states"] = torch.zeros(1, 3, 1, 1).expand(1, 3, 30000, 30000)
    path = tmp_path / "stride0.pt"
    save_checkpoint(state, path)
    assert path.stat().st_size < 1_000_000  # small file, 10.8 GB once expanded
    with pytest.raises(CheckpointError, match="overlapping strides"):
        load_checkpoint(path)
    assert main(["sample", "--checkpoint", str(path), "--n", "2",
                 "--out", str(tmp_path / "out")]) == 2
    assert "sampler.buffer.states" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_sample_arguments_are_bounded(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", "--checkpoint", str(tiny_run), "--steps", "1000000000000"]) == 2
    assert "cli.steps = 1,000,000,000,000 exceeds its bound" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(tiny_run), "--n", "1000000000"]) == 2
    assert "(--n)" in capsys.readouterr().err


def test_deflated_record_is_refused_without_inflating_it(tiny_run: Path, tmp_path: Path) -> None:
    source = sorted((tiny_run / "checkpoints").glob("*.pt"))[-1]
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(bomb, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr(zipfile.ZipInfo("archive/extra"), b"\0" * (256 << 20),
                     compress_type=zipfile.ZIP_DEFLATED)  # 256 MiB in ~0.3 MB
    assert bomb.stat().st_size < 2 * source.stat().st_size + 2_000_000
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="compressed or larger than the file"):
        load_checkpoint(bomb)
    assert time.perf_counter() - start < 0.5  # the CRC check of 256 MiB would take longer


CAP = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
from ebmguide.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_oversized_inputs_fail_within_a_memory_cap(tiny_run: Path, tmp_path: Path) -> None:
    """Each refusal happens before any large allocation: the process runs under a 3 GiB
    address-space cap (torch itself maps about 1 GiB)."""
    state, _ = load_state(tiny_run)
    state["sampler"]["buffer"]["states"] = torch.zeros(1, 3, 1, 1).expand(1, 3, 30000, 30000)
    save_checkpoint(state, tmp_path / "stride0.pt")
    cases = [["sample", "--checkpoint", str(tmp_path / "stride0.pt"), "--n", "2"],
             ["train", "--config", str(TINY), "--set", "sampler.buffer_size=1000000000",
              "--out", str(tmp_path / "big")]]
    for argv in cases:
        proc = subprocess.run([sys.executable, "-c", CAP, str(3 << 30), *argv],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.startswith("ebmguide: error: ") and "MemoryError" not in proc.stderr
