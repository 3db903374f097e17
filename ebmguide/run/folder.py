"""Safe writes into a run folder: no symlinks followed, nothing outside the folder, one writer.

Every file a run writes lies under the folder the user named (``--out``, or ``runs/<name>``).
:func:`checked_path` resolves a path inside that folder and refuses it when any part of it below
the folder is a symbolic link (a symlinked ``config.toml``, ``metrics.jsonl``, ``checkpoints/`` or
``samples/`` would make a write, a prune or a clean-up land on the link's target) or when it
leaves the folder. The run folder itself may be a link (``runs -> /big/disk``): the user named it.
:func:`write_text_atomic` writes a small file by temp file and rename, which replaces a directory
entry and never writes through a link.

:class:`RunLock` is an OS file lock (``fcntl.flock``) on ``<run>/.lock`` that holds the writer's
pid; a second writer gets :class:`RunLockedError` naming that pid. The kernel drops the lock when
its process dies, so a killed run never leaves the folder locked.

Limits: the checks run before each write; a process that swaps a link in between the check and the
write (a race against a running training) is outside what a file-based check can stop. Where
``fcntl`` is missing (Windows) the lock is skipped.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TextIO

try:  # imported once here: a lock released at interpreter exit can no longer import it
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks here
    fcntl = None  # type: ignore[assignment]

__all__ = ["RUN_ENTRIES", "RunFolderError", "RunLock", "RunLockedError", "check_run_dir",
           "checked_path", "clean_stale_temps", "default_run_dir", "open_append",
           "open_run_folder", "write_text_atomic"]

LOCK_NAME = ".lock"
RUN_ENTRIES = ("config.toml", "metrics.jsonl", "checkpoints", "samples", "tensorboard",
               "feature_net.pt", "feature_net_in_domain.pt", LOCK_NAME)
"""What a training run writes in its folder; none of them may be a symbolic link."""
_STALE = re.compile(r"\..+\.tmp")  # the hidden temporary files of atomic writes


class RunFolderError(ValueError):
    """A run folder cannot be written safely (a symlink, a path outside it, a file in its place)."""


class RunLockedError(RunFolderError):
    """Another live process holds the run folder's lock."""


def default_run_dir(name: str, root: str | Path = "runs") -> Path:
    """``<root>/<name>``, refused when ``name`` would place the run elsewhere.

    Args:
        name: the config's ``name``.
        root: the folder holding runs.

    Raises:
        RunFolderError: ``name`` is empty, absolute, or climbs out of ``root`` (``"../x"``).
    """
    base = Path(root)
    if not name or Path(name).is_absolute() or name in (".", ".."):
        raise RunFolderError(f"config name {name!r} cannot name a folder under {base}/: use a "
                             f"plain name (e.g. name = \"my_run\"), or pick the folder with --out.")
    target = base / name
    resolved, inside = os.path.abspath(target), os.path.abspath(base)
    if os.path.commonpath([resolved, inside]) != inside or resolved == inside:
        raise RunFolderError(f"config name {name!r} would place the run outside {base}/ (at "
                             f"{resolved}): use a plain name, or pick the folder with --out.")
    return target


def checked_path(run_dir: str | Path, relative: str | Path) -> Path:
    """``run_dir / relative`` after checking that writing there cannot leave the run folder.

    Args:
        run_dir: the run folder (it may itself be a symlink).
        relative: a path inside it, e.g. ``"checkpoints/ckpt-00000010.pt"``.

    Returns:
        The path, unchanged (``run_dir / relative``).

    Raises:
        RunFolderError: ``relative`` is absolute or climbs out, or an existing part of it below
            ``run_dir`` is a symbolic link.
    """
    base, rel = Path(run_dir), Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise RunFolderError(f"{rel} is not a path inside the run folder {base}.")
    current = base
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            raise RunFolderError(
                f"{current} is a symbolic link (to {os.readlink(current)}): a run never writes "
                f"through links, which would change files outside {base}. Remove the link, or "
                f"pick another folder with --out.")
    return base / rel


def check_run_dir(run_dir: str | Path, entries: tuple[str, ...]) -> None:
    """Refuse a run folder that is a file, or whose ``entries`` include a symlink.

    Raises:
        RunFolderError: as :func:`checked_path`, or ``run_dir`` is an existing file.
    """
    base = Path(run_dir)
    if base.exists() and not base.is_dir():
        raise RunFolderError(f"the run folder {base} is a file: pick a folder with --out.")
    for entry in entries:
        checked_path(base, entry)


@contextlib.contextmanager
def atomic_text_file(path: str | Path) -> Iterator[TextIO]:
    """A text file that replaces ``path`` only when the block ends without an exception.

    It is written as a temporary file beside ``path``, flushed, ``fsync``-ed and renamed over
    ``path`` with :func:`os.replace`: a process killed at any moment leaves either the complete old
    file or the complete new one. On an exception the temporary file is removed.
    """
    dest = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` by temporary file, fsync and rename: a kill leaves the old or the new file."""
    with atomic_text_file(path) as f:
        f.write(text)
    return Path(path)


def open_append(path: str | Path) -> int:
    """A file descriptor appending to ``path`` (created), refusing a symlink (``O_NOFOLLOW``)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(path, flags, 0o644)
    except OSError as err:
        if Path(path).is_symlink():
            raise RunFolderError(f"{path} is a symbolic link: a run never writes through links. "
                                 f"Remove it, or pick another folder with --out.") from err
        raise


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the hidden ``.<name>.*.tmp`` files a killed write left in ``folder``; return them.

    Call it only while holding the run's :class:`RunLock` (a live writer's temp file is not stale).
    """
    base = Path(folder)
    if not base.is_dir() or base.is_symlink():
        return []
    removed = []
    for p in base.iterdir():
        if _STALE.fullmatch(p.name) and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


class RunLock:
    """An exclusive OS lock on ``<run>/.lock`` (holding the pid), taken by every run writer.

    Args:
        run_dir: the run folder (created when missing).

    Raises (from :meth:`acquire`):
        RunLockedError: another process (or another open lock) holds it; names the holder's pid.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock (no-op when already held); see the class docstring."""
        if self._fd is not None:
            return self
        if fcntl is None:  # pragma: no cover - Windows: no advisory locks here
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = checked_path(self.run_dir, LOCK_NAME)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"the run folder {self.run_dir} is in use by another ebmguide process (pid "
                f"{holder}): wait for it to finish or stop it, or pick another folder with "
                f"--out.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (idempotent); the lock file stays, empty of meaning."""
        if self._fd is not None:
            if fcntl is not None:  # unlock first: forked children (DataLoader workers) share it
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def open_run_folder(run_dir: str | Path) -> RunLock:
    """Check a run folder, take its lock and remove stale temporary files; returns the lock.

    Raises:
        RunFolderError: ``run_dir`` is a file or one of :data:`RUN_ENTRIES` is a symlink.
        RunLockedError: another process is writing this run.
    """
    check_run_dir(run_dir, RUN_ENTRIES)
    lock = RunLock(run_dir).acquire()
    base = Path(run_dir)
    clean_stale_temps(base)
    clean_stale_temps(base / "checkpoints")
    return lock
