"""The text files of the docs and the shipped configs hold no control characters.

A TeX command written through an unescaped string (``"\\theta"`` becomes a tab and ``heta``,
``"\\rVert"`` a carriage return) renders broken in the site without failing the build.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEXT_FILES = sorted([*(ROOT / "docs").rglob("*.md"),
                     *(ROOT / "ebmguide" / "configs").glob("*.toml"),
                     ROOT / "README.md", ROOT / "CHANGELOG.md"])
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # every control character but the newline


def test_there_are_text_files_to_check() -> None:
    assert len(TEXT_FILES) > 20
    assert ROOT / "docs" / "concepts.md" in TEXT_FILES


@pytest.mark.parametrize("path", TEXT_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_control_characters(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    bad = [(text.count("\n", 0, m.start()) + 1, repr(m.group())) for m in CONTROL.finditer(text)]
    assert not bad, f"{path.relative_to(ROOT)}: control characters at (line, char) {bad[:5]}"


def test_the_check_finds_a_tab_and_a_carriage_return() -> None:
    assert CONTROL.search("$E_\theta$") and CONTROL.search("\\lVert x\rVert")
    assert not CONTROL.search("$E_\\theta$\nnext line")
