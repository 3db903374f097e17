"""The built documentation works with no network, served and opened from disk, in a real browser.

The site is built as `make docs` builds it, then Debian's headless Chromium opens its pages inside
a new network namespace (`unshare -n`: no way out but loopback), or, where no namespace can be
made, with Chromium told to resolve no host and to send every request to a closed port. Checked:
every equation of the pages that hold some was typeset by the bundled MathJax (an SVG
`mjx-container` in each arithmatex element, no raw `\\(` or `\\[` left) and the diagram of the
concepts page was drawn by the bundled Mermaid, served over HTTP and opened as `file://`; and a
search from disk (`index.html?q=...`, which mkdocs-material's search reads) lists results. A
control run on a copy of the site without the bundled scripts must fail every check, so they can
fail.

`make test` installs what this needs (the bundled scripts with `make docs-assets`, Chromium with
apt-get when it is missing); run directly, the test fails (never skips) when either is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HELPER = Path(__file__).with_name("docs_browser.py")
VENDOR = ROOT / "docs" / "javascripts" / "vendor"
BUNDLED = (VENDOR / "mathjax" / "tex-svg-full.js", VENDOR / "iframe-worker" / "shim.js",
           VENDOR / "mermaid" / "mermaid.min.js")
MATH_PAGES = ("index.html", "concepts.html", "data.html", "extend.html")
SEARCH = ("index.html?q=langevin", "concepts.html?q=nt-xent")


VOID = {"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
        "wbr"}


class MathCollector(HTMLParser):
    """Each element with class "arithmatex": whether it holds an mjx-container, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict[str, Any]] = []
        self._stack: list[tuple[str, dict[str, Any] | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        entry = {"rendered": False, "text": ""} if "arithmatex" in classes else None
        if entry is not None:
            self.found.append(entry)
        if tag == "mjx-container":
            for _, open_entry in self._stack:
                if open_entry is not None:
                    open_entry["rendered"] = True
        if tag not in VOID:
            self._stack.append((tag, entry))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "mjx-container":
            self.handle_starttag(tag, attrs)
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if any(t == tag for t, _ in self._stack):
            while self._stack and self._stack.pop()[0] != tag:
                pass

    def handle_data(self, data: str) -> None:
        for _, open_entry in self._stack:
            if open_entry is not None:
                open_entry["text"] += data


def math_problems(dom: str) -> list[str]:
    collector = MathCollector()
    collector.feed(dom)
    if not collector.found:
        return ["no arithmatex element on the page"]
    raw = [e["text"].strip()[:60] for e in collector.found
           if not e["rendered"] or re.search(r"\\[\[\(]", e["text"])]
    return [f"{len(raw)} of {len(collector.found)} equations not typeset, e.g. {raw[0]!r}"] if raw \
        else []


def diagram_drawn(dom: str) -> bool:
    """mkdocs-material swaps a drawn diagram's ``<pre class="mermaid">`` for a ``<div>`` host."""
    return bool(re.search(r'<div class="mermaid"', dom)) and "flowchart TD" not in dom


def build_site(site_dir: Path) -> subprocess.CompletedProcess[str]:
    """Build the site as `make docs` does (mkdocs build --strict), into ``site_dir``."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(site_dir)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1200, check=False)


def search_results(dom: str) -> int:
    return len(re.findall(r'class="md-search-result__item"', dom))


def chromium() -> str:
    name = os.environ.get("CHROMIUM", "chromium")
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: the offline-docs test needs Debian's headless Chromium. "
                    f"`make test` installs it (as root); or apt-get install chromium, or set "
                    f"CHROMIUM to another Chromium binary.")
    return found


def no_network_prefix() -> list[str]:
    """``unshare -n`` (root) or ``unshare -rn`` (user namespaces), whichever works; else []."""
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if shutil.which("unshare") and subprocess.run([*prefix, "true"], capture_output=True,
                                                      check=False).returncode == 0:
            return prefix
    return []


def open_pages(site: Path, pages: list[str]) -> tuple[dict[str, str], bool, bool]:
    """The DOMs of ``pages``, whether the browser ran in a namespace, and if it had a network."""
    prefix = no_network_prefix()
    args = [*prefix, sys.executable, str(HELPER), chromium(), str(site), *pages]
    if not prefix:
        args.append("--block")
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    return result["pages"], bool(prefix), bool(result["network"])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [str(p.relative_to(ROOT)) for p in BUNDLED if not p.is_file()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `make docs-assets` (part of `make docs` "
                    f"and `make test`), which fetches the scripts the site bundles.")
    out = tmp_path_factory.mktemp("docs") / "site"
    built = build_site(out)
    assert built.returncode == 0, built.stderr[-3000:]
    return out


def test_equations_and_search_work_offline_in_chromium(site: Path) -> None:
    html = (site / "index.html").read_text(encoding="utf-8")
    outside = re.findall(r'<(?:script|link)\b[^>]*\b(?:src|href)="(?:https?:)?//[^"]*"', html)
    assert outside == []  # no script or stylesheet from another host
    pages = [f"{scheme}:{p}" for p in MATH_PAGES for scheme in ("file", "http")]
    pages += [f"file:{q}" for q in SEARCH]
    doms, namespaced, network = open_pages(site, pages)
    if namespaced:
        assert not network, "the network namespace still reached the outside"
    for page in pages[:len(MATH_PAGES) * 2]:
        assert math_problems(doms[page]) == [], page
    assert diagram_drawn(doms["file:concepts.html"]) and diagram_drawn(doms["http:concepts.html"])
    for page in pages[len(MATH_PAGES) * 2:]:
        assert search_results(doms[page]) > 0, f"{page}: the search listed no result"


def test_the_checks_fail_without_the_bundled_scripts(site: Path, tmp_path: Path) -> None:
    bare = tmp_path / "site"
    shutil.copytree(site, bare)
    for script in BUNDLED:  # as with the CDN links of before: nothing loads with no network
        (bare / script.relative_to(ROOT / "docs")).unlink()
    doms, _, _ = open_pages(bare, ["file:concepts.html", f"file:{SEARCH[0]}"])
    problems = math_problems(doms["file:concepts.html"])
    assert problems and "not typeset" in problems[0]
    assert "\\[" in problems[0] or "\\(" in problems[0]
    assert search_results(doms[f"file:{SEARCH[0]}"]) == 0
    assert not diagram_drawn(doms["file:concepts.html"])
