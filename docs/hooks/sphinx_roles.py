"""MkDocs hook: render the Sphinx roles of ebmguide's docstrings as cross-references.

The library's docstrings use roles such as ``:class:`~ebmguide.energy.SphericalEBM``` (readable in
``help()`` and in editors). This hook adds a small Markdown preprocessor that rewrites a role whose
target is a full ``ebmguide.`` path into an autorefs link
``[`SphericalEBM`][ebmguide.energy.SphericalEBM]`` (so a target that does not exist fails the strict
build) and any other role (a relative name, a torch object) into inline code. It runs after fenced
code blocks are stashed, so code is never touched.
"""

from __future__ import annotations

import re
from typing import Any

from markdown import Extension, Markdown
from markdown.preprocessors import Preprocessor
from mkdocs.config.defaults import MkDocsConfig

ROLE = re.compile(
    r":(?:py:)?(?P<role>class|func|meth|attr|mod|data|exc|obj|const):`(?P<target>[^`]+)`"
)


def _rewrite(match: re.Match[str]) -> str:
    role, target = match["role"], match["target"].strip()
    short = target.startswith("~")
    target = target.lstrip("~.")
    title = target.rsplit(".", 1)[-1] if short else target
    if role in ("func", "meth"):
        title += "()"
    if target.startswith("ebmguide.") or target == "ebmguide":
        return f"[`{title}`][{target}]"
    return f"`{title}`"


class _RolesPreprocessor(Preprocessor):
    """Rewrites the roles of the whole text at once (a role may not span lines)."""

    def run(self, lines: list[str]) -> list[str]:
        return ROLE.sub(_rewrite, "\n".join(lines)).split("\n")


class SphinxRolesExtension(Extension):
    """Registers the preprocessor after the fenced-code preprocessors (priority 25)."""

    def extendMarkdown(self, md: Markdown) -> None:  # noqa: N802 - Markdown's API name
        """Register the preprocessor."""
        md.preprocessors.register(_RolesPreprocessor(md), "ebmguide_sphinx_roles", 5)


def on_config(config: MkDocsConfig, **_: Any) -> MkDocsConfig:
    """Add the extension to the Markdown extensions (mkdocstrings shares the same list)."""
    config.markdown_extensions.append(SphinxRolesExtension())  # type: ignore[arg-type]
    return config
