"""Code in the docs runs: the quick starts and the extension guide.

In README.md and docs/index.md the quick start is the first ```python block after the heading
"## Quick start". A file without that heading or without a python block under it fails (it never
skips): a quick start that is not tested is a quick start that breaks. The two must be the same
program; the default suite runs it with ``ITERATIONS = 3`` (every call, the printed format, the
grid), the slow suite as written (minutes), checking the sample quality the README shows. Every
```python block of docs/extend.md runs too, in order, as one program (use ```py for a block that
must not run).
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


ITERATIONS = re.compile(r"^ITERATIONS = \d[\d_]*", flags=re.MULTILINE)
CLEAN = re.compile(r"^clean samples: (\d+)%$", flags=re.MULTILINE)


def test_the_quick_starts_are_one_program() -> None:
    readme, index = (quick_start(ROOT / source) for source in SOURCES)
    assert readme == index, "README.md and docs/index.md show different quick starts"
    assert len(ITERATIONS.findall(readme)) == 1, "the quick start must set ITERATIONS = <n> once"


def test_quick_start_runs(tmp_path: Path) -> None:
    """The README's program with ITERATIONS = 3: every call works; the output has its format."""
    code = ITERATIONS.sub("ITERATIONS = 3", quick_start(ROOT / "README.md"))
    result = run_python(code, tmp_path)
    assert result.returncode == 0, f"the quick start failed:\n{result.stdout}{result.stderr}"
    assert CLEAN.search(result.stdout), result.stdout
    assert (tmp_path / "quickstart.png").stat().st_size > 0


@pytest.mark.slow
def test_quick_start_as_written_gives_recognisable_samples(tmp_path: Path) -> None:
    """As written (minutes): the replay buffer holds recognisable shapes, as the README says."""
    result = run_python(quick_start(ROOT / "README.md"), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    found = CLEAN.search(result.stdout)
    assert found, result.stdout
    assert int(found.group(1)) >= 25, result.stdout  # measured: 45 % (README); noise: 0 %


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
