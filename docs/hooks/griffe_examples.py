"""Griffe extension: read a Google-style ``Example:`` section as ``Examples:``.

Google style (and Napoleon) accept both spellings; griffe only parses ``Examples:`` into an examples
section whose ``>>>`` lines render as code, and would otherwise render ``Example:`` as an
admonition with the doctest lines as nested block quotes.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", flags=re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Renames ``Example:`` section headers before the docstrings are parsed."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the docstring of every object once the tree is built."""
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
