"""The ``>>>`` examples in the docstrings of every ebmguide module run and print what they show.

A floor on the number of examples attempted keeps the test from passing vacuously (for instance if
module discovery broke): raise it when you add examples, never lower it to make the test pass.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest
import torch

import ebmguide

MIN_EXAMPLES = 45
OPTIONS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def all_modules() -> list[ModuleType]:
    """ebmguide and every module below it, ``__main__`` excluded (importing it runs the CLI)."""
    names = ["ebmguide"] + [info.name for info in
                            pkgutil.walk_packages(ebmguide.__path__, "ebmguide.")
                            if not info.name.endswith("__main__")]
    return [importlib.import_module(name) for name in names]


MODULES = all_modules()


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_doctests_of_module(module: ModuleType) -> None:
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    report: list[str] = []
    state = torch.get_rng_state()
    try:
        for test in doctest.DocTestFinder().find(module, module.__name__):
            runner.run(test, out=report.append)
    finally:
        torch.set_rng_state(state)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)


def test_doctests_are_not_vacuous() -> None:
    finder = doctest.DocTestFinder()
    attempted = sum(len(test.examples) for module in MODULES for test in finder.find(module)
                    if test.examples)
    assert attempted >= MIN_EXAMPLES, (
        f"only {attempted} doctest examples found across {len(MODULES)} modules "
        f"(expected at least {MIN_EXAMPLES})"
    )
