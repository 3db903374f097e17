"""Every recipe under examples/ runs with --smoke (in-process; one also as a subprocess)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ["toy2d/train.py", "shapes/train.py", "cifar10_clel/train.py"]


def load(script: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{Path(script).parent.name}",
                                                  ROOT / "examples" / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def one_thread() -> object:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # the recipes set their own thread counts


@pytest.mark.parametrize("script", EXAMPLES)
def test_example_runs_with_smoke(script: str, tmp_path: Path) -> None:
    module = load(script)
    out = tmp_path / "run"
    args = module.get_args_parser().parse_args(["--smoke", "--seed", "1", "--out", str(out)])
    assert args.smoke and args.seed == 1
    module.main(args)
    assert sorted(p.name for p in (out / "checkpoints").iterdir())
    assert (out / "metrics.jsonl").is_file() and (out / "config.toml").is_file()
    assert (ROOT / "examples" / Path(script).parent / "README.md").is_file()


def test_example_runs_as_a_script(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "toy2d" / "train.py"), "--smoke",
         "--out", str(tmp_path / "run")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "run folder:" in result.stdout


def test_conditional_experiments_run_with_smoke() -> None:
    """The script behind docs/conditional.md: every table and grid is produced (tiny model)."""
    module = load("conditional/run_experiments.py")
    torch.set_num_threads(1)
    res = module.main(module.get_args_parser().parse_args(["--smoke"]))
    factors = {row["condition"].split("=")[0] for row in res["single"]}
    assert factors == {"shape", "colour", "scale", "quadrant"}
    assert all(0.0 <= row["conditional"] <= 1.0 for row in res["single"])
    assert {"and", "not", "or"} == set(res["compositions"])
    assert {"novel_colours", "novel_shapes", "noise"} <= set(res["ood"])
    assert all(0.0 <= v <= 1.0 for row in res["ood"].values() for v in row.values())


@pytest.mark.usefixtures("small_feature_nets")
def test_guidance_ablation_runs_with_smoke(tmp_path: Path) -> None:
    """The script behind docs/guidance.md: both β, one table; finished runs are reused."""
    module = load("guidance_ablation/run.py")
    out = tmp_path / "ablation"
    argv = ["--smoke", "--seeds", "0", "--threads", "1", "--out", str(out)]
    raw = module.main(module.get_args_parser().parse_args(argv))
    assert set(raw) == {"0.01", "0"} and all(len(runs) == 1 for runs in raw.values())
    for runs in raw.values():
        for figures in runs:
            assert set(figures) == {*module.METRICS, "colour_match"}
            assert 0.0 <= figures["colour_match"] <= 1.0 and figures["buffer_fd"] > 0
    table = (out / "table.md").read_text(encoding="utf-8")
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 3 and "colour match" in rows[0]
    assert (out / "beta0-seed0" / module.CONDITIONAL_GRID).stat().st_size > 0
    stamp = (out / "beta0.01-seed0" / "metrics.jsonl").stat().st_mtime_ns
    module.main(module.get_args_parser().parse_args(argv))  # reuses the finished runs
    assert (out / "beta0.01-seed0" / "metrics.jsonl").stat().st_mtime_ns == stamp


@pytest.mark.usefixtures("small_feature_nets")
def test_guidance_ablation_scores_labelled_images_by_class(tmp_path: Path) -> None:
    """The CIFAR-10 16x16 recipe: FDs on the in-domain classifier and a class match rate."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split, per_class in (("train", 8), ("test", 4)):
        for label, name in enumerate(("airplane", "cat")):
            folder = tmp_path / "cifar" / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):  # class 1 is brighter: a learnable task
                pixels = torch.randint(0, 128, (32, 32, 3), generator=g) + 127 * label
                Image.fromarray(pixels.to(torch.uint8).numpy()).save(folder / f"{i}.png")
    module = load("guidance_ablation/run.py")
    out = tmp_path / "ablation"
    argv = ["--smoke", "--config", str(ROOT / "examples/guidance_ablation/cifar10_16.toml"),
            "--seeds", "0", "--betas", "0.01", "--threads", "1", "--out", str(out),
            "--set", f'data.path="{tmp_path / "cifar"}"', "--set", "eval.n_samples=4",
            "--set", 'eval.feature_net="auto"']
    raw = module.main(module.get_args_parser().parse_args(argv))
    (figures,) = raw["0.01"]
    assert set(figures) == {*module.IMAGE_METRICS, "class_match"}
    assert 0.0 <= figures["class_match"] <= 1.0 and figures["buffer_fd"] > 0
    header = (out / "table.md").read_text(encoding="utf-8").splitlines()[0]
    assert "class match" in header and "clean" not in header
    assert (out / "beta0.01-seed0" / module.CONDITIONAL_GRID).stat().st_size > 0
    scores = out / "beta0.01-seed0" / module.SCORES
    saved = json.loads(scores.read_text(encoding="utf-8"))
    saved["figures"]["buffer_fd"] = 123.0  # a marker: reused scores come back as saved
    scores.write_text(json.dumps(saved), encoding="utf-8")
    assert module.main(module.get_args_parser().parse_args(argv))["0.01"][0]["buffer_fd"] == 123.0
    other = module.main(module.get_args_parser().parse_args([*argv, "--set", "eval.fresh_steps=3"]))
    assert other["0.01"][0]["buffer_fd"] != 123.0  # other settings: scored again


def _tiny_run(tmp_path: Path, size: int) -> Path:
    from ebmguide.run.config import load_config
    from ebmguide.run.trainer import Trainer

    cfg = load_config(str(ROOT / "tests" / "tiny_run.toml"),
                      [f"data.size={size}", "train.iterations=3", "train.checkpoint_every=3"])
    run = tmp_path / f"run{size}"
    Trainer(cfg, run, progress=False).run()
    return run


def test_the_basins_script_reads_real_shapes_back_before_any_step(tmp_path: Path) -> None:
    """examples/shapes/basins.py (docs/recipes/demo.md): 0 steps keeps every real shape."""
    module = load("shapes/basins.py")
    torch.set_num_threads(1)
    run = _tiny_run(tmp_path, 16)
    table = module.main(module.get_args_parser().parse_args(
        ["--checkpoint", str(run), "--n", "48", "--steps", "0,3"]))
    assert set(table) == {"real energy", "buffer energy", "0 steps", "3 steps"}
    assert set(table["0 steps"]) == {"circle", "square", "triangle", "cross"}
    assert all(v == 1.0 for v in table["0 steps"].values())  # the rule reader on real images
    assert all(0.0 <= v <= 1.0 for v in table["3 steps"].values())
    assert all(v >= 0 and v == v for v in table["real energy"].values())
    with pytest.raises(ValueError, match="size >= 16"):
        module.main(module.get_args_parser().parse_args(
            ["--checkpoint", str(_tiny_run(tmp_path, 8)), "--steps", "1"]))
