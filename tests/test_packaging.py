"""Installing ebmguide prints no setuptools warnings (licence metadata in today's form)."""

from __future__ import annotations

import warnings
from pathlib import Path

from setuptools.config.pyprojecttoml import apply_configuration
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_reads_without_setuptools_warnings() -> None:
    dist = Distribution()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_configuration(dist, ROOT / "pyproject.toml")
    assert [str(w.message).splitlines()[0] for w in caught] == []
    assert dist.metadata.license_expression == "Apache-2.0"  # an SPDX expression
    assert not [c for c in dist.metadata.classifiers if c.startswith("License ::")]
    assert "LICENSE" in [Path(f).name for f in dist.metadata.license_files]
