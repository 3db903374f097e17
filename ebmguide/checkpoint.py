"""Crash-safe, code-free checkpoints.

Writing (:func:`save_checkpoint`): the state goes to a temporary file in the destination folder,
which is flushed and ``fsync``-ed, then renamed over the destination with :func:`os.replace`
(atomic on POSIX and Windows), and the folder itself is ``fsync``-ed so the rename survives a power
cut. A process killed at any moment leaves either the old file or the new one, never a half-written
file under the checkpoint's name (at worst a hidden ``.<name>.*.tmp`` file, removed by the next
:meth:`CheckpointManager.save`).

Reading (:func:`load_checkpoint`): :func:`torch.load` with ``weights_only=True``, so a file can hold
tensors and plain data but never makes Python run code (a pickle ``__reduce__`` is refused). Before
unpickling, the CRC-32 of every record of the zip container is checked: ``torch.load`` alone loads
a bit-flipped tensor without complaint. Any unreadable file raises :class:`CheckpointError` naming
the file, the reason and the fix.

:class:`CheckpointManager` keeps the last ``keep`` checkpoints of a run as
``<prefix>-<iteration:08d>.pt``; older ones are deleted only after the new one is complete, and
:meth:`CheckpointManager.load_latest` falls back (with a warning) to the previous checkpoint when
the newest one is damaged.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ebmguide._payload import check_state
from ebmguide.limits import MAX_ARCHIVE_RECORDS, check_loaded_tensors

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "CheckpointWarning",
    "load_checkpoint",
    "save_checkpoint",
]

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's (default) zip container starts with a local file header


class CheckpointError(ValueError):
    """A checkpoint file is missing its content, damaged, or holds something other than data."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped in favour of an older one."""


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened: Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _default_mode() -> int:
    """The permissions a plain ``open(..., "w")`` would give (mkstemp makes files 0600)."""
    try:  # Linux: read the umask without changing it (os.umask is process-wide, not thread-safe)
        status = Path("/proc/self/status").read_text(encoding="ascii")
        umask = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("Umask:")),
                    8)
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0)
        os.umask(umask)
    return 0o666 & ~umask


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename, fsync of the folder).

    Args:
        state: tensors, numbers, strings, bools, None, and lists/tuples/dicts of these (store a
            ``torch.Generator`` as its ``get_state()`` uint8 tensor), so it loads with
            ``weights_only=True``.
        path: the destination file; its folder is created when missing.

    Returns:
        The destination as a :class:`~pathlib.Path`.

    Raises:
        TypeError: ``state`` is not a mapping or holds an object that cannot be loaded safely
            (nothing is written then).

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> p = save_checkpoint({"w": torch.ones(2), "step": 3}, f"{folder}/a.pt")
        >>> load_checkpoint(p)["step"]
        3
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a mapping (a dict of tensors and plain data), got "
                        f"{type(state).__name__}.")
    check_state(dict(state), "")
    dest = Path(path)
    if dest.is_dir():
        raise IsADirectoryError(f"checkpoint path {dest} is a folder: pass a file name such as "
                                f"{dest / 'ckpt.pt'}.")
    folder = dest.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(folder)
    return dest


def _check_header(path: Path) -> None:
    """Refuse empty, truncated-to-nothing and non-zip files (raises CheckpointError).

    Only torch's zip container is accepted: the legacy (pre-1.6) format is a bare pickle stream,
    which ebmguide never writes and need not parse.
    """
    with path.open("rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): its write was interrupted. "
                              f"Use an older checkpoint of the run.")
    if len(head) < len(_ZIP_MAGIC) and _ZIP_MAGIC.startswith(head):
        raise CheckpointError(f"checkpoint {path} is truncated ({len(head)} bytes): its write was "
                              f"interrupted. Use an older checkpoint of the run.")
    if head != _ZIP_MAGIC:
        raise CheckpointError(f"{path} is not a checkpoint written by torch.save/ebmguide (no zip "
                              f"container). Pass a .pt file written by ebmguide.")


def _check_records(path: Path, archive: zipfile.ZipFile) -> None:
    """Refuse archives torch.save never writes, before reading any record (caps the load time).

    torch.save stores its records uncompressed, one per tensor storage: a compressed record (a
    2 MB file can inflate to gigabytes), records larger than the file, or a huge record count
    mean a crafted file, refused without decompressing anything.
    """
    infos = archive.infolist()
    size = path.stat().st_size
    if len(infos) > MAX_ARCHIVE_RECORDS:
        raise CheckpointError(f"checkpoint {path} holds {len(infos):,} records (at most "
                              f"{MAX_ARCHIVE_RECORDS:,}): not a file written by ebmguide.")
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
            raise CheckpointError(
                f"checkpoint {path}: record {info.filename!r} is compressed or larger than the "
                f"file ({info.file_size:,} bytes from {info.compress_size:,}); torch.save never "
                f"writes such records: the file was crafted or damaged. Use a checkpoint written "
                f"by ebmguide.")


def _verify_zip(path: Path, *, crc: bool = True) -> None:
    """Check the zip container, its records and (``crc``) every record's CRC-32."""
    try:
        with zipfile.ZipFile(path) as archive:
            _check_records(path, archive)
            bad = archive.testzip() if crc else None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({err}). Use an older "
                              f"checkpoint of the run.") from err
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt: record {bad!r} fails its CRC-32 "
                              f"check (the file was damaged after it was written). Use an older "
                              f"checkpoint of the run.")


def load_checkpoint(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu",
                    verify: bool = True) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(..., weights_only=True)``: no code from the file runs.

    Args:
        path: the checkpoint file.
        map_location: where tensors are put (``"cpu"`` by default).
        verify: check the CRC-32 of every record first (reads the file once more; catches
            bit-flips that ``torch.load`` would load silently).

    Returns:
        The saved dict.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is empty, truncated, corrupt, not a checkpoint, or holds objects
            other than tensors and plain data (e.g. a pickle that would run code).
    """
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"{p} is a folder, not a checkpoint file: pass a .pt file, or use "
                              f"CheckpointManager({str(p)!r}).load_latest().")
    if not p.is_file():
        raise FileNotFoundError(f"no checkpoint file at {p}: check the path.")
    _check_header(p)
    _verify_zip(p, crc=verify)
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [ln for ln in str(err).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
        reason = (lines[0] if lines else str(err).splitlines()[0])[:200]
        raise CheckpointError(
            f"checkpoint {p} was refused: it holds objects other than tensors and plain data, and "
            f"loading it could run code from the file ({reason}). Load only checkpoints written "
            f"by ebmguide; do not disable weights_only for an untrusted file.") from err
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as err:
        raise CheckpointError(f"checkpoint {p} cannot be read ({type(err).__name__}: "
                              f"{str(err)[:200]}): it is truncated or corrupt. Use an older "
                              f"checkpoint of the run.") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{p} holds a {type(state).__name__}, not a checkpoint dict. Pass a "
                              f"file written by ebmguide.save_checkpoint.")
    try:
        check_loaded_tensors(state, f"checkpoint {p}")  # no stride-0 expansion into gigabytes
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    return state


class CheckpointManager:
    """The last ``keep`` checkpoints of a run, written atomically as ``<prefix>-<iteration>.pt``.

    Args:
        directory: the folder (created on the first :meth:`save`).
        keep: how many complete checkpoints to keep (>= 1); older ones are deleted only after the
            new one is safely on disk.
        prefix: the file name prefix.

    Example:
        >>> import tempfile
        >>> m = CheckpointManager(tempfile.mkdtemp(), keep=2)
        >>> for it in (10, 20, 30):
        ...     _ = m.save({"iteration": it}, it)
        >>> [p.name for p in m.checkpoints()]
        ['ckpt-00000020.pt', 'ckpt-00000030.pt']
        >>> m.load_latest()[0]["iteration"]
        30
    """

    def __init__(self, directory: str | os.PathLike[str], *, keep: int = 2,
                 prefix: str = "ckpt") -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an int >= 1 (how many checkpoints to keep), got "
                             f"{keep!r}.")
        plain = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
        if not isinstance(prefix, str) or not re.fullmatch(plain, prefix):
            raise ValueError(f"prefix must be a plain file-name prefix such as 'ckpt' (letters, "
                             f"digits, '_', '-', '.'; starting with a letter, digit or '_'), got "
                             f"{prefix!r}.")
        self.directory, self.keep, self.prefix = Path(directory), keep, prefix
        self._pattern = re.compile(rf"{re.escape(prefix)}-(\d+)\.pt")

    def path_for(self, iteration: int) -> Path:
        """The file name of the checkpoint of ``iteration``."""
        if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
            raise ValueError(f"iteration must be an int >= 0, got {iteration!r}.")
        return self.directory / f"{self.prefix}-{iteration:08d}.pt"

    def checkpoints(self) -> list[Path]:
        """The complete checkpoints of the folder, sorted by iteration (newest last)."""
        if not self.directory.is_dir():
            return []
        found = []
        for p in self.directory.iterdir():
            m = self._pattern.fullmatch(p.name)
            if m is not None and p.is_file():
                found.append((int(m.group(1)), p))
        return [p for _, p in sorted(found)]

    def save(self, state: Mapping[str, Any], iteration: int) -> Path:
        """Write the checkpoint of ``iteration`` atomically, then prune beyond ``keep``.

        While the new file is written the ``keep`` newest complete checkpoints stay on disk, so a
        process killed at any moment leaves at least those (plus at most the new one); the one just
        written is never pruned, even when its iteration is older than the others'.
        """
        target = self.path_for(iteration)
        for extra in self.checkpoints()[:-self.keep]:  # left by a kill between rename and pruning
            if extra != target:
                extra.unlink(missing_ok=True)
        path = save_checkpoint(state, target)
        for stale in self.directory.glob(f".{self.prefix}-*.pt.*.tmp"):
            stale.unlink(missing_ok=True)  # left by a process killed mid-write
        others = [p for p in self.checkpoints() if p != path]  # never the one just written
        for old in others[:max(0, len(others) + 1 - self.keep)]:
            old.unlink(missing_ok=True)
        _fsync_dir(self.directory)
        return path

    def load_latest(self, *, map_location: str | torch.device = "cpu",
                    verify: bool = True) -> tuple[dict[str, Any], Path] | None:
        """The newest checkpoint that loads, and its path; None when the folder has none.

        A damaged newer checkpoint is skipped with a :class:`CheckpointWarning` naming it and
        the reason.

        Raises:
            CheckpointError: every checkpoint of the folder is damaged.
        """
        found = self.checkpoints()
        errors = []
        for path in reversed(found):
            try:
                return load_checkpoint(path, map_location=map_location, verify=verify), path
            except CheckpointError as err:
                errors.append(str(err))
                warnings.warn(f"skipping damaged checkpoint {path}: {err}", CheckpointWarning,
                              stacklevel=2)
        if not found:
            return None
        raise CheckpointError(f"all {len(found)} checkpoint(s) in {self.directory} are damaged: "
                              + " | ".join(errors))
