"""Stopping a training run cleanly on SIGINT (Ctrl-C) or SIGTERM (a batch system's stop).

While :meth:`~ebmguide.run.trainer.Trainer.run` trains, :func:`stop_on_signals` replaces the
handlers of
SIGINT and SIGTERM by one that only records the request (:class:`StopRequest`) and prints a line
saying what will happen. The trainer looks at the request between iterations, writes a checkpoint
of the finished iteration and raises :class:`RunInterrupted`, which names that checkpoint. A second
SIGINT while the run is stopping raises :class:`KeyboardInterrupt` at once (the checkpoint writes
are atomic, so even that loses nothing that was complete). The previous handlers come back when
the run returns.

Handlers can only be installed from the main thread; elsewhere (a run inside a worker thread) the
signals keep their usual behaviour.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["STOP_SIGNALS", "RunInterrupted", "StopRequest", "exit_code", "stop_on_signals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""The signals that stop a run after its current iteration."""


def exit_code(signum: int) -> int:
    """The shell's exit code for a process ended by ``signum``: 128 + n (130 for SIGINT)."""
    return 128 + int(signum)


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by a signal after writing a checkpoint of its last finished iteration.

    A subclass of :class:`KeyboardInterrupt`, so code that does not expect it ends as it would on
    Ctrl-C (``except Exception`` does not swallow it).

    Attributes:
        signum: the signal that stopped the run.
        iteration: the iterations done, all of them in ``checkpoint``.
        total: the run's ``train.iterations``.
        checkpoint: the checkpoint holding ``iteration`` (continue with ``--resume``).
    """

    def __init__(self, signum: int, iteration: int, total: int, checkpoint: Path) -> None:
        self.signum, self.iteration, self.total = signum, iteration, total
        self.checkpoint = checkpoint
        super().__init__(f"interrupted by {signal.Signals(signum).name} after iteration "
                         f"{iteration} of {total}; checkpoint written to {checkpoint}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return exit_code(self.signum)


class StopRequest:
    """Whether (and by which signal) a run has been asked to stop; set from a signal handler."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        """True once :meth:`request` was called."""
        return self.signum is not None

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask the run to stop after its current iteration (callable from code or a handler)."""
        if self.signum is None:
            self.signum = int(signum)

    def clear(self) -> None:
        """Forget an earlier request (a new ``Trainer.run`` starts clean)."""
        self.signum = None


def _handler(stop: StopRequest, announce: bool) -> Callable[[int, FrameType | None], Any]:
    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: quit now
        first = not stop.requested
        stop.request(signum)
        if first and announce:
            print(f"\nebmguide: {signal.Signals(signum).name} received: stopping after this "
                  f"iteration to write a checkpoint (Ctrl-C again quits at once)",
                  file=sys.stderr, flush=True)
    return handle


@contextmanager
def stop_on_signals(stop: StopRequest, *, announce: bool = True) -> Iterator[bool]:
    """Route SIGINT and SIGTERM to ``stop.request`` while the block runs.

    Args:
        stop: the request the handlers set.
        announce: print one line on standard error when the first signal arrives.

    Yields:
        Whether the handlers were installed (False outside the main thread).
    """
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    handler = _handler(stop, announce)
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield True
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
