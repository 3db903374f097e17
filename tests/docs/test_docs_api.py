"""Every public name of ebmguide appears in the rendered API reference.

Public names are those in the ``__all__`` of the package and of every module and subpackage. The
site is built (as in test_docs_build.py) and the anchors mkdocstrings writes for each documented
object (``id="ebmguide.energy.SphericalEBM"``) are collected from every page. A name passes when
it is documented under the module that exports it or under any module where the same object lives
(``ebmguide.SphericalEBM`` is documented as ``ebmguide.energy.SphericalEBM``).

A name fails when no ``:::`` directive renders its module (add one to a page under docs/api/ and
to the nav of mkdocs.yml) or when it has no docstring (mkdocstrings hides objects without one).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import ebmguide

ROOT = Path(__file__).resolve().parents[2]


def public_modules() -> list[ModuleType]:
    """ebmguide and every module below it (``__main__`` excluded: importing it runs the CLI)."""
    names = ["ebmguide"] + [
        info.name for info in pkgutil.walk_packages(ebmguide.__path__, "ebmguide.")
        if not info.name.endswith("__main__")
        and not any(part.startswith("_") for part in info.name.split("."))
    ]
    return [importlib.import_module(name) for name in names]


def public_names() -> list[tuple[str, str]]:
    """(module, name) for every name in an ``__all__`` (dunders such as __version__ excluded)."""
    return [(module.__name__, name) for module in public_modules()
            for name in getattr(module, "__all__", ()) if not name.startswith("__")]


@pytest.fixture(scope="module")
def anchors(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    site = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found: set[str] = set()
    for page in site.rglob("*.html"):  # docs/api/ and pages with a reference section
        found.update(re.findall(r'id="(ebmguide(?:\.\w+)*)"', page.read_text(encoding="utf-8")))
    return found


def test_there_are_public_names_to_check() -> None:
    names = public_names()
    assert len(names) > 50
    assert ("ebmguide", "SphericalEBM") in names


def test_every_public_name_is_in_the_api_reference(anchors: set[str]) -> None:
    modules = {module.__name__: module for module in public_modules()}
    missing = []
    for module_name, name in public_names():
        obj = getattr(modules[module_name], name)
        documented_under = [
            anchor.rsplit(".", 1)[0] for anchor in anchors if anchor.endswith(f".{name}")
        ]
        if not any(
            prefix == module_name or getattr(modules.get(prefix), name, None) is obj
            for prefix in documented_under
        ):
            missing.append(f"{module_name}.{name}")
    assert not missing, (
        "public names missing from the API reference (render their module with a `:::` directive "
        "in docs/api/*.md and give each a docstring):\n  " + "\n  ".join(missing)
    )
