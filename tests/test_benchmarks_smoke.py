"""The benchmark entry point still runs (tiniest mode, library rows only; no timing checks).

The sampler rows and the iteration-floor row (floor, ``clel_step`` and the Trainer on the same
tiny networks) run in one call of the entry point.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ebmguide.run.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_entry_point_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--rows", "sampler,floor", "--repeats",
         "1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SGLD sampler against the floor" in proc.stdout
    assert "The CLEL iteration against its floor" in proc.stdout
    result = json.loads(out.read_text())
    meta = result["meta"]
    assert meta["mode"] == "smoke" and meta["groups"] == ["sampler", "floor"]
    assert meta["device"] == "cpu" and meta["accelerator"] is None and meta["clock"] == "cpu"
    impls = {(row["energy"], row["impl"]) for row in result["sampler"]}
    assert impls == {(e, i) for e in ("mlp", "cnn16") for i in ("floor", "ebmguide")}
    for row in result["sampler"]:
        assert row["per_step"]["median"] > 0
        assert row["max_diff_vs_floor"] < 1e-5, "the library and the floor run the same chain"
    floor = result["floor"]
    assert [row["impl"] for row in floor] == ["floor", "clel_step", "Trainer"]
    for row in floor:
        assert row["per_iter"]["n"] == 1 and row["per_iter"]["median"] > 0
        assert row["vs_floor"]["median"] > 0 and "peak_mb" not in row  # no CUDA peak on CPU
        # the floor does the same work: one iteration of each from one state, same parameters
        assert row["max_diff_clel_step_vs_floor"] == 0.0
    assert floor[0]["vs_floor"]["median"] == 1.0


def test_floor_cases_are_the_demo_recipe_and_clel_small() -> None:
    from benchmarks.floor_rows import floor_cases

    demo, small = floor_cases("full")
    shipped = load_config("demo")
    cfg = demo.config("cpu")
    assert (cfg.train.batch_size, cfg.sampler.n_steps) == (shipped.train.batch_size,
                                                           shipped.sampler.n_steps)
    assert cfg.sampler == shipped.sampler and cfg.model == shipped.model
    assert cfg.eval.every == 0 and cfg.train.num_threads == 0  # nothing periodic, our threads
    s = small.config("cpu")
    assert (s.model.backbone, s.guide.encoder, s.data.size) == ("clel_resnet_small",
                                                               "cifar_resnet18", 32)
    assert (s.train.batch_size, s.sampler.n_steps) == (16, 10)
    quick = floor_cases("quick")[1].config("cpu")
    assert (quick.train.batch_size, quick.sampler.n_steps) == (8, 5)
