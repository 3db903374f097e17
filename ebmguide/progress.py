"""Training progress: a tqdm bar on a terminal, one plain line per log interval elsewhere.

tqdm redraws its bar with carriage returns, which a terminal overwrites but a log file (a batch
job's output, ``ebmguide train > log 2>&1``) keeps, frame after frame. :func:`progress_bar` picks
the bar when the stream it writes to (standard error, as tqdm) is a terminal or a notebook, and
:class:`LineProgress` otherwise, which prints one line each time the trainer logs its terms
(every ``train.log_every`` iterations)::

    demo: iteration 20/700 (2.9%)  loss=1.234  cd=1.20e-03  nce=2.31  gap=1.20e-04  2.10 it/s
    elapsed 0:00:10  ETA 0:05:24

(shown on two lines here; one line in the output).
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import Any, TextIO

__all__ = ["PROGRESS_MODES", "LineProgress", "progress_bar", "resolve_progress"]

PROGRESS_MODES = ("auto", "bar", "lines", "none")
"""``auto``: a bar on a terminal, lines elsewhere; ``bar``; ``lines``; ``none``: nothing."""


def resolve_progress(progress: bool | str) -> str:
    """One of :data:`PROGRESS_MODES` from a mode or a bool (True: ``auto``, False: ``none``).

    Raises:
        ValueError: an unknown mode.
    """
    if isinstance(progress, bool):
        return "auto" if progress else "none"
    if progress not in PROGRESS_MODES:
        raise ValueError(f"progress must be one of {', '.join(PROGRESS_MODES)} (or a bool), got "
                         f"{progress!r}.")
    return progress


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(max(seconds, 0.0))))


class LineProgress:
    """The part of tqdm's interface the trainer uses, printing a line per :meth:`set_postfix`.

    Args:
        total: the iteration the run goes to.
        initial: the iteration it starts from (a resumed run).
        desc: the run's name, at the start of each line.
        stream: where the lines go (default: standard error, as tqdm's bar).
    """

    def __init__(self, total: int, initial: int = 0, desc: str = "",
                 stream: TextIO | None = None) -> None:
        self.total, self.n, self.initial, self.desc = total, initial, initial, desc
        self.stream = stream if stream is not None else sys.stderr
        self._start = time.perf_counter()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more iterations (prints nothing)."""
        self.n += n

    def refresh(self) -> None:
        """Nothing to redraw."""

    def close(self) -> None:
        """Nothing to close."""

    def line(self, values: dict[str, Any]) -> str:
        """The progress line for the current iteration and ``values``."""
        elapsed = time.perf_counter() - self._start
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 else 0.0
        share = f" ({self.n / self.total:.1%})" if self.total > 0 else ""
        eta = _clock((self.total - self.n) / rate) if rate > 0 else "?"
        terms = "  ".join(f"{k}={v}" for k, v in values.items())
        prefix = f"{self.desc}: " if self.desc else ""
        return (f"{prefix}iteration {self.n}/{self.total}{share}  {terms}  {rate:.2f} it/s  "
                f"elapsed {_clock(elapsed)}  ETA {eta}")

    def set_postfix(self, values: dict[str, Any], refresh: bool = True) -> None:
        """Print one line with ``values`` (the trainer calls this once per log interval)."""
        print(self.line(values), file=self.stream, flush=True)


def progress_bar(mode: str, *, total: int, initial: int, desc: str) -> Any:
    """A tqdm bar, a :class:`LineProgress` or a disabled bar, by ``mode`` (see the module).

    Args:
        mode: one of :data:`PROGRESS_MODES`.
        total: the iteration the run goes to.
        initial: the iteration it starts from.
        desc: the run's name.
    """
    from tqdm.auto import tqdm

    if mode == "auto":  # a notebook (ipykernel) gets tqdm's widget, which redraws in place
        mode = "bar" if sys.stderr.isatty() or "ipykernel" in sys.modules else "lines"
    if mode == "lines":
        return LineProgress(total, initial, desc)
    return tqdm(total=total, initial=initial, disable=mode == "none", desc=desc, unit="it",
                dynamic_ncols=True, mininterval=0.5)
