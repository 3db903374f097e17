"""Run logging: a JSON-lines file always, TensorBoard when ``torch.utils.tensorboard`` imports.

TensorBoard receives every number of ``metrics.jsonl`` as a scalar (``train/loss``,
``eval/buffer_fd``, ...), each sample grid the run writes as an image (``samples``: data |
replay buffer | fresh chains) and the resolved configuration as text (``config``, TOML).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ebmguide.run.folder import atomic_text_file, open_append

__all__ = ["RunLogger", "read_metrics", "truncate_metrics"]


def _plain(value: Any) -> Any:
    """JSON-safe: non-finite floats become strings ("nan", "inf"), never silently numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class RunLogger:
    """Appends records to ``<run>/metrics.jsonl`` and mirrors numbers to TensorBoard.

    Each record is one JSON object on one line with at least ``kind`` (``"train"`` or
    ``"eval"``) and ``iteration``.

    Args:
        run_dir: the run folder.
        tensorboard: also write TensorBoard events to ``<run>/tensorboard`` when the optional
            dependency (``pip install tensorboard``) is importable.
        resume_iteration: on resume, records after this iteration (written by the interrupted
            run after its last checkpoint) are dropped first, so the file has no duplicates. The
            kept records go to a new file that is renamed over the old one
            (:func:`truncate_metrics`): a kill at any moment leaves the old or the new file.

    The file is only ever appended to, through a descriptor opened with ``O_NOFOLLOW``: a
    symlinked ``metrics.jsonl`` is refused, never written through.
    """

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True,
                 resume_iteration: int | None = None) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_iteration is not None and self.path.exists():
            truncate_metrics(self.path, resume_iteration)
        self._file = os.fdopen(open_append(self.path), "a", encoding="utf-8")
        self._writer: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:  # the optional dependency is missing: JSONL only
                self._writer = None

    @property
    def tensorboard(self) -> bool:
        """Whether TensorBoard events are written."""
        return self._writer is not None

    def log(self, kind: str, iteration: int, values: dict[str, Any]) -> None:
        """Write one record, flushed at once."""
        record = {"kind": kind, "iteration": iteration, **{k: _plain(v) for k, v in values.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{kind}/{key}", value, iteration)

    def log_image(self, tag: str, png: str | Path, iteration: int) -> None:
        """Send the PNG file ``png`` (e.g. a sample grid) to TensorBoard as image ``tag``."""
        if self._writer is None:
            return
        import numpy as np
        from PIL import Image

        with Image.open(png) as image:
            array = np.asarray(image.convert("RGB"))
        self._writer.add_image(tag, array, iteration, dataformats="HWC")
        self._writer.flush()

    def log_text(self, tag: str, text: str, iteration: int) -> None:
        """Send ``text`` to TensorBoard as preformatted text ``tag`` (its Markdown code block)."""
        if self._writer is None:
            return
        self._writer.add_text(tag, "\n".join("    " + line for line in text.splitlines()),
                              iteration)
        self._writer.flush()

    def close(self) -> None:
        """Close the files."""
        self._file.close()
        if self._writer is not None:
            self._writer.close()


def truncate_metrics(path: str | Path, iteration: int) -> int:
    """Drop the records of ``path`` after ``iteration`` (and torn lines); returns how many are kept.

    The kept lines are streamed into a temporary file beside ``path``, which is flushed,
    ``fsync``-ed and renamed over ``path`` with :func:`os.replace`: a process killed at any moment
    leaves either the complete old file or the complete new one, never an emptied file.
    """
    src = Path(path)
    if src.is_symlink():
        raise ValueError(f"{src} is a symbolic link: a run never writes through links. Remove it, "
                         f"or pick another folder with --out.")
    kept = 0
    with atomic_text_file(src) as out, src.open(encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line, from a crash
            if isinstance(record, dict) and record.get("iteration", 0) <= iteration:
                out.write(line if line.endswith("\n") else line + "\n")
                kept += 1
    return kept


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file (a torn last line, from a crash, is skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
