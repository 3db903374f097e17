"""Training progress: a tqdm bar on a terminal, one plain line per log interval elsewhere.

tqdm redraws its bar with carriage returns, which a terminal overwrites but a log file (a batch
job's output, ``ebmguide train > log 2>&1``) keeps, frame after frame. :func:`progress_bar` picks
the bar when the stream it writes to (standard error, as tqdm) is a terminal or a notebook, and
:class:`LineProgress` otherwise, which prints one line each time the trainer logs its terms
(every ``train.log_every`` iterations); the sampling sweeps of ``evaluate`` and ``sample`` print
one every :data:`SWEEP_LINE_EVERY_S` seconds::

    demo: iteration 20/700 (2.9%)  loss=1.234  cd=1.20e-03  nce=2.31  gap=1.20e-04  2.10 it/s
    elapsed 0:00:10  ETA 0:05:24

(shown on two lines here; one line in the output).
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import Any, TextIO

__all__ = ["PROGRESS_MODES", "SWEEP_LINE_EVERY_S", "LineProgress", "progress_bar",
           "resolve_progress"]

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
    """The part of tqdm's interface the trainer and the sweeps use, printing plain lines.

    A line is printed at each :meth:`set_postfix` (the trainer: once per log interval) and, with
    ``every_s``, at an :meth:`update` once ``every_s`` seconds have passed since the last line, and
    at the last one (the sampling sweeps of ``evaluate`` and ``sample``).

    Args:
        total: the count the task goes to (iterations, chains).
        initial: the count it starts from (a resumed run or sweep).
        desc: what runs, at the start of each line.
        stream: where the lines go (default: standard error, as tqdm's bar).
        unit: ``"it"`` (lines read "iteration n/total") or a noun (lines read "n/total chains").
        every_s: print from :meth:`update` at most this often (None: never).
    """

    def __init__(self, total: int, initial: int = 0, desc: str = "",
                 stream: TextIO | None = None, *, unit: str = "it",
                 every_s: float | None = None) -> None:
        self.total, self.n, self.initial, self.desc = total, initial, initial, desc
        self.stream = stream if stream is not None else sys.stderr
        self.unit, self.every_s = unit, every_s
        self._start = self._last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more; with ``every_s``, print a line when it is time (or at the end)."""
        self.n += n
        if self.every_s is not None and (time.perf_counter() - self._last >= self.every_s
                                         or self.n >= self.total):
            self.set_postfix({})

    def set_description(self, desc: str) -> None:
        """Change what the lines start with."""
        self.desc = desc

    def refresh(self) -> None:
        """Nothing to redraw."""

    def close(self) -> None:
        """Nothing to close."""

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def line(self, values: dict[str, Any]) -> str:
        """The progress line for the current count and ``values``."""
        elapsed = time.perf_counter() - self._start
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        share = f" ({self.n / self.total:.1%})" if self.total > 0 else ""
        eta = _clock((self.total - self.n) / rate) if rate > 0 else "?"
        count = (f"iteration {self.n}/{self.total}" if self.unit == "it"
                 else f"{self.n}/{self.total} {self.unit}s")
        terms = "".join(f"  {k}={v}" for k, v in values.items())
        prefix = f"{self.desc}: " if self.desc else ""
        return (f"{prefix}{count}{share}{terms}  {rate:.2f} {self.unit}/s  "
                f"elapsed {_clock(elapsed)}  ETA {eta}")

    def set_postfix(self, values: dict[str, Any], refresh: bool = True) -> None:
        """Print one line with ``values`` (the trainer calls this once per log interval)."""
        self._last = time.perf_counter()
        print(self.line(values), file=self.stream, flush=True)


SWEEP_LINE_EVERY_S = 30.0
"""How often a sampling sweep prints a progress line into a log file (seconds)."""


def progress_bar(mode: bool | str, *, total: int, initial: int, desc: str, unit: str = "it",
                 sweep: bool = False) -> Any:
    """A tqdm bar, a :class:`LineProgress` or a disabled bar, by ``mode`` (see the module).

    Args:
        mode: one of :data:`PROGRESS_MODES` (or a bool, see :func:`resolve_progress`).
        total: the count the task goes to.
        initial: the count it starts from.
        desc: what runs.
        unit: what is counted (``"it"``: training iterations).
        sweep: lines come from :meth:`LineProgress.update`, every :data:`SWEEP_LINE_EVERY_S`
            seconds, not from the trainer's log intervals.
    """
    from tqdm.auto import tqdm

    chosen = resolve_progress(mode)
    if chosen == "auto":  # a notebook (ipykernel) gets tqdm's widget, which redraws in place
        chosen = "bar" if sys.stderr.isatty() or "ipykernel" in sys.modules else "lines"
    if chosen == "lines":
        return LineProgress(total, initial, desc, unit=unit,
                            every_s=SWEEP_LINE_EVERY_S if sweep else None)
    return tqdm(total=total, initial=initial, disable=chosen == "none", desc=desc, unit=unit,
                dynamic_ncols=True, mininterval=0.5)
