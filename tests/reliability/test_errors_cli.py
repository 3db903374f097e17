"""Every catalogued bad command line ends in one line ``ebmguide: error: ...`` and exit code 2.

The table below is the source of the command-line part of docs/reliability/errors.md: each row is
(command, condition, arguments, message excerpt, fix). ``test_cli_row`` runs ``ebmguide`` in this
process and checks the exit code, that stderr is exactly one line starting with
``ebmguide: error: `` (no traceback) and that it holds the excerpt; ``test_docs_table`` checks the
page (regenerate with ``python tests/reliability/test_errors_cli.py`` and paste).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from ebmguide.checkpoint import save_checkpoint
from ebmguide.cli import main
from ebmguide.run.checkpoints import load_state
from ebmguide.run.config import load_config
from ebmguide.run.trainer import Trainer

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reliability" / "errors.md"
TINY = Path(__file__).resolve().parents[1] / "tiny_run.toml"


class Places(NamedTuple):
    """Files the rows refer to: a finished tiny run, crafted checkpoints, a scratch folder."""

    run: Path
    nan: Path
    stride0: Path
    partial: Path
    text: Path
    empty_toml: Path
    escaping_toml: Path
    symlinked: Path
    folder_npz: Path
    scratch: Path


class CliRow(NamedTuple):
    command: str
    condition: str
    argv: Callable[[Places], list[str]]
    excerpt: str
    fix: str


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Places:
    root = tmp_path_factory.mktemp("cli_errors")
    run = root / "run"
    Trainer(load_config(TINY), run, progress=False).run()
    state, _ = load_state(run)
    nan = {**state, "ebm": {k: torch.full_like(v, math.nan) if v.is_floating_point() else v
                            for k, v in state["ebm"].items()}}
    save_checkpoint(nan, root / "nan.pt")
    stride0 = {**state, "sampler": {"buffer": {**state["sampler"]["buffer"],
                                               "states": torch.zeros(1, 1).expand(900, 900)}}}
    save_checkpoint(stride0, root / "stride0.pt")
    save_checkpoint({k: v for k, v in state.items() if k != "ebm_ema"}, root / "partial.pt")
    (root / "notes.txt").write_text("not a checkpoint")
    (root / "empty.toml").write_text("")
    (root / "escape.toml").write_text(TINY.read_text().replace('name = "tiny"',
                                                               'name = "../../x"'))
    linked = root / "linked"
    linked.mkdir()
    (linked / "config.toml").symlink_to(root / "notes.txt")
    (root / "folder.npz").mkdir()
    return Places(run, root / "nan.pt", root / "stride0.pt", root / "partial.pt",
                  root / "notes.txt", root / "empty.toml", root / "escape.toml", linked,
                  root / "folder.npz", root / "scratch")


T = ["--config", str(TINY), "--no-progress"]


def _train(*extra: str) -> Callable[[Places], list[str]]:
    return lambda p: ["train", *T, "--out", str(p.scratch / "t"), *extra]


CLI_CATALOG: list[CliRow] = [
    CliRow("train", "neither --config nor --resume", lambda p: ["train"],
           "give --config NAME", "--config demo or --resume RUN"),
    CliRow("train", "--resume with --config", lambda p: ["train", *T, "--resume", str(p.run)],
           "leave out --config", "--set to change settings"),
    CliRow("train", "--until 0", _train("--until", "0"), "--until must be an iteration >= 1",
           "an iteration >= 1"),
    CliRow("train", "--out names a file", lambda p: ["train", *T, "--out", str(p.text)],
           "is a file: pass a folder for the run", "a folder"),
    CliRow("train", "config name '../../x' without --out",
           lambda p: ["train", "--config", str(p.escaping_toml)],
           "would place the run outside runs/", "a plain name, or --out"),
    CliRow("train", "a config file that does not exist",
           lambda p: ["train", "--config", str(p.scratch / "missing.toml")],
           "does not exist", "a TOML file or a shipped name"),
    CliRow("train", "an unknown recipe name", lambda p: ["train", "--config", "cifar11"],
           "no shipped config named 'cifar11'", "one of the listed names"),
    CliRow("train", "an empty config file", lambda p: ["train", "--config", str(p.empty_toml)],
           "is empty", "start from --print-config of a recipe"),
    CliRow("train", "--set without '='", _train("--set", "train.iterations"),
           "must look like section.key=value", "section.key=value"),
    CliRow("train", "--set with an unknown key", _train("--set", "train.iteratons=5"),
           "unknown key(s) train.iteratons", "the message lists the keys"),
    CliRow("train", "--set sampler.n_steps=10^12", _train("--set", "sampler.n_steps=10"
                                                           "00000000000"),
           "sampler.n_steps = 1,000,000,000,000 exceeds its bound", "lower it, or raise the bound"),
    CliRow("train", "--set sampler.buffer_size=10^9",
           _train("--set", "sampler.buffer_size=1000000000"), "sampler.buffer_size = ",
           "lower it, or EBMGUIDE_LIMIT_SAMPLER_BUFFER_SIZE"),
    CliRow("train", "batch larger than the buffer", _train("--set", "train.batch_size=128"),
           "exceeds sampler.buffer_size", "enlarge the buffer"),
    CliRow("train", "--ddp-timeout 0", _train("--ddp-timeout", "0"),
           "train.ddp_timeout_s must be positive", "seconds > 0"),
    CliRow("train", "--resume --set model.width=8",
           lambda p: ["train", "--resume", str(p.run), "--set", "model.width=8"],
           "model.width is fixed by the checkpoint", "drop the --set, or a new run"),
    CliRow("train", "--resume --set sampler.buffer_size=128",
           lambda p: ["train", "--resume", str(p.run), "--set", "sampler.buffer_size=128"],
           "sampler.buffer_size is fixed by the checkpoint", "drop the --set, or a new run"),
    CliRow("train", "--resume of a folder without checkpoints",
           lambda p: ["train", "--resume", str(p.scratch.parent)], "no checkpoint at",
           "a run folder or a checkpoint file"),
    CliRow("train", "--resume of a checkpoint holding NaN",
           lambda p: ["train", "--resume", str(p.nan), "--out", str(p.scratch / "n")],
           "holds non-finite values", "an older checkpoint"),
    CliRow("train", "--resume of a checkpoint missing ebm_ema",
           lambda p: ["train", "--resume", str(p.partial), "--out", str(p.scratch / "m")],
           "lacks the entries ['ebm_ema']", "a checkpoint of ebmguide train"),
    CliRow("train", "--out a folder that holds a run",
           lambda p: ["train", *T, "--out", str(p.run)], "already holds checkpoints",
           "--resume it, or another --out"),
    CliRow("train", "--out with a symlinked config.toml",
           lambda p: ["train", *T, "--out", str(p.symlinked)], "is a symbolic link",
           "remove the link, or another --out"),
    CliRow("demo", "--out a training run", lambda p: ["demo", "--out", str(p.run)],
           "ebmguide demo did not write", "another --out, or --overwrite"),
    CliRow("demo", "--out names a file", lambda p: ["demo", "--out", str(p.text)],
           "the run folder", "a folder"),
    CliRow("demo", "--iterations 0", lambda p: ["demo", "--out", str(p.scratch / "d"),
                                                "--iterations", "0"],
           "train.iterations must be positive", "N >= 1"),
    CliRow("demo", "--threads -1", lambda p: ["demo", "--out", str(p.scratch / "d"),
                                              "--threads", "-1"],
           "train.num_threads must not be negative", "N >= 0"),
    CliRow("sample", "a checkpoint that does not exist",
           lambda p: ["sample", "--checkpoint", str(p.scratch / "none.pt")], "no checkpoint",
           "check the path"),
    CliRow("sample", "a text file as checkpoint", lambda p: ["sample", "--checkpoint",
                                                             str(p.text)],
           "is not a checkpoint written by", "an ebmguide .pt file"),
    CliRow("sample", "--n 0", lambda p: ["sample", "--checkpoint", str(p.run), "--n", "0"],
           "--n must be a positive integer", "N >= 1"),
    CliRow("sample", "--steps -1", lambda p: ["sample", "--checkpoint", str(p.run), "--steps",
                                              "-1"],
           "--steps must not be negative", "K >= 0"),
    CliRow("sample", "--steps 10^12", lambda p: ["sample", "--checkpoint", str(p.run),
                                                 "--steps", "1000000000000"],
           "cli.steps = 1,000,000,000,000 exceeds its bound", "fewer steps, or raise the bound"),
    CliRow("sample", "--n 10^9", lambda p: ["sample", "--checkpoint", str(p.run), "--n",
                                            "1000000000"],
           "cli.n = 1,000,000,000 exceeds its bound", "fewer samples, or raise the bound"),
    CliRow("sample", "--out names a file", lambda p: ["sample", "--checkpoint", str(p.run),
                                                      "--out", str(p.text)],
           "is a file: pass a folder for samples.png", "a folder"),
    CliRow("sample", "a checkpoint holding NaN", lambda p: ["sample", "--checkpoint",
                                                            str(p.nan)],
           "holds non-finite values (ebm.", "an older checkpoint"),
    CliRow("sample", "a stride-0 buffer tensor", lambda p: ["sample", "--checkpoint",
                                                            str(p.stride0)],
           "has overlapping strides", "a checkpoint written by ebmguide"),
    CliRow("sample", "a checkpoint missing ebm_ema", lambda p: ["sample", "--checkpoint",
                                                                str(p.partial)],
           "lacks the entries ['ebm_ema']", "a checkpoint of ebmguide train"),
    CliRow("evaluate", "--samples names a folder",
           lambda p: ["evaluate", "--checkpoint", str(p.run), "--samples", str(p.folder_npz)],
           "Is a directory; check the path, that it is a file", "a samples file"),
    CliRow("evaluate", "a checkpoint holding NaN", lambda p: ["evaluate", "--checkpoint",
                                                              str(p.nan)],
           "holds non-finite values", "an older checkpoint"),
    CliRow("compose", "a checkpoint holding NaN",
           lambda p: ["compose", "--checkpoint", str(p.nan), "--and", "colour=red"],
           "holds non-finite values", "an older checkpoint"),
    CliRow("ood", "a checkpoint holding NaN", lambda p: ["ood", "--checkpoint", str(p.nan), "--ood",
                                                   "noise"],
           "holds non-finite values", "an older checkpoint"),
]


@pytest.mark.parametrize("row", CLI_CATALOG, ids=[f"{r.command}: {r.condition}"
                                                  for r in CLI_CATALOG])
def test_cli_row(row: CliRow, places: Places, capsys: pytest.CaptureFixture[str]) -> None:
    def files() -> list[str]:  # evaluate caches its feature network in the run, by design
        return sorted(p.name for p in places.run.rglob("*") if p.name != "feature_net.pt")

    before = files()
    assert main(row.argv(places)) == 2
    err = capsys.readouterr().err
    assert err.startswith("ebmguide: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and row.excerpt in err, err
    assert files() == before  # the run is untouched


def test_rows_are_distinct() -> None:
    assert len({(r.command, r.condition) for r in CLI_CATALOG}) == len(CLI_CATALOG)


def markdown() -> str:
    lines = ["| command | condition | message excerpt | fix |", "|---|---|---|---|"]
    for r in CLI_CATALOG:
        lines.append(f"| `ebmguide {r.command}` | {r.condition} | `{r.excerpt}` | {r.fix} |")
    return "\n".join(lines) + "\n"


def test_docs_table_lists_every_row() -> None:
    text = DOCS.read_text(encoding="utf-8")
    missing = [line for line in markdown().splitlines()[2:] if line not in text]
    assert not missing, "docs/reliability/errors.md is out of date:\n" + "\n".join(missing)
    assert len([ln for ln in text.splitlines() if re.match(r"\| `ebmguide ", ln)]) == \
        len(CLI_CATALOG)


if __name__ == "__main__":
    sys.stdout.write(markdown())
