"""A tiny trained run (6 iterations on 8×8 shapes) shared by the CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebmguide.cli import main

TINY = Path(__file__).resolve().parents[1] / "tiny_run.toml"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder written by `ebmguide train --config tests/tiny_run.toml`."""
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--config", str(TINY), "--out", str(run), "--no-progress"]) == 0
    return run
