"""The layers of the package hold: import-linter's contracts in pyproject.toml (`lint-imports`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> list[str]:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    return [exe, "--no-cache"]


def test_import_contracts_are_kept() -> None:
    out = subprocess.run([*_lint_imports()], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_a_broken_contract_fails(tmp_path: Path) -> None:
    # The same checker on a copy of the package in which the core imports the run layer.
    pkg = tmp_path / "ebmguide"
    shutil.copytree(ROOT / "ebmguide", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    grid = pkg / "grid.py"
    grid.write_text(grid.read_text() + "\nimport ebmguide.run.trainer  # noqa\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    out = subprocess.run([*_lint_imports()], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, check=False, env={"PYTHONPATH": str(tmp_path),
                                                        "PATH": "/usr/bin:/bin"})
    assert out.returncode != 0
    assert "The core knows no run and no CLI BROKEN" in out.stdout
