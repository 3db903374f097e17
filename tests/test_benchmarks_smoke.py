"""The benchmark entry point still runs (tiniest mode, library rows only; no timing checks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_entry_point_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--rows", "sampler", "--repeats", "1",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SGLD sampler against the floor" in proc.stdout
    result = json.loads(out.read_text())
    assert result["meta"]["mode"] == "smoke" and result["meta"]["groups"] == ["sampler"]
    impls = {(row["energy"], row["impl"]) for row in result["sampler"]}
    assert impls == {(e, i) for e in ("mlp", "cnn16") for i in ("floor", "ebmguide")}
    for row in result["sampler"]:
        assert row["per_step"]["median"] > 0
        assert row["max_diff_vs_floor"] < 1e-5, "the library and the floor run the same chain"
