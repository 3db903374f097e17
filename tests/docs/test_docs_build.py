"""The documentation site builds with `mkdocs build --strict` and without a single warning.

Strict mode turns every warning into a failure: a page missing from the nav, a broken link or
anchor, an unresolved cross-reference in a docstring, a snippet file that does not exist. The build
takes a few seconds, so it runs in the default suite (and so in CI).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def build_site(site_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run this interpreter's mkdocs on the repository's mkdocs.yml, building into ``site_dir``."""
    try:
        import mkdocs  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        pytest.fail("mkdocs is not installed: install the docs extra, pip install -e '.[docs]'")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(site_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False,
    )


def test_docs_build_strict_without_warnings(tmp_path: Path) -> None:
    result = build_site(tmp_path / "site")
    log = result.stdout + result.stderr
    problems = [line for line in log.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert result.returncode == 0 and not problems, (
        f"mkdocs build --strict failed (exit {result.returncode}):\n" + "\n".join(problems or [log])
    )
    assert (tmp_path / "site" / "index.html").is_file()
    # the offline plugin: page files, not folders, so that links work from disk (file://)
    assert (tmp_path / "site" / "api" / "protocols.html").is_file()
