"""Code in the docs runs as written: the quick starts and the extension guide.

In README.md and docs/index.md the quick start is the first ```python block after the heading
"## Quick start". A file without that heading or without a python block under it fails (it never
skips): a quick start that is not tested is a quick start that breaks. Every ```python block of
docs/extend.md runs too, in order, as one program (use ```py for a block that must not run).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["README.md", "docs/index.md"]


def quick_start(path: Path) -> str:
    """The code of the first ```python block after "## Quick start" (before the next "## ")."""
    text = path.read_text(encoding="utf-8")
    heading = re.search(r"^## Quick start[^\n]*$", text, flags=re.MULTILINE | re.IGNORECASE)
    assert heading, f"{path.name} has no '## Quick start' heading"
    section = re.split(r"^## ", text[heading.end():], maxsplit=1, flags=re.MULTILINE)[0]
    block = re.search(r"^```python[^\n]*\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    assert block, f"the 'Quick start' section of {path.name} has no ```python block"
    return block.group(1)


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with this interpreter in a fresh process, the repository first on the path."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": path},
                          capture_output=True, text=True, timeout=1200, check=False)


@pytest.mark.parametrize("source", SOURCES)
def test_quick_start_runs_as_written(source: str, tmp_path: Path) -> None:
    code = quick_start(ROOT / source)
    result = run_python(code, tmp_path)
    assert result.returncode == 0, (
        f"the quick start of {source} failed:\n{code}\n--- output ---\n"
        f"{result.stdout}{result.stderr}"
    )


def test_extension_guide_code_runs(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "extend.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 6, "docs/extend.md lost its python examples"
    result = run_python("\n".join(blocks), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "['cd', 'loss', 'nce', 'reg']" in result.stdout


def test_quick_start_extraction_fails_loudly(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Quick start\n\nNo code here.\n\n## Next\n\n```python\nx = 1\n```\n"
    )
    with pytest.raises(AssertionError, match="no ```python block"):
        quick_start(page)
    page.write_text("# Title\n\n```python\nx = 1\n```\n")
    with pytest.raises(AssertionError, match="no '## Quick start' heading"):
        quick_start(page)
