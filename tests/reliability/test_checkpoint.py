"""Crash-safe, code-free checkpoints (ebmguide.checkpoint)."""

from __future__ import annotations

import collections
import os
import pickle
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ebmguide.checkpoint import (
    CheckpointError,
    CheckpointManager,
    CheckpointWarning,
    load_checkpoint,
    save_checkpoint,
)


def sample_state(i: int = 3) -> dict[str, Any]:
    g = torch.Generator().manual_seed(i)
    return {
        "format": "ebmguide-checkpoint", "version": 1, "iteration": i,
        "weights": torch.randn(64, 64, generator=g),
        "half": torch.ones(4, dtype=torch.bfloat16), "mask": torch.tensor([True, False]),
        "param": torch.nn.Parameter(torch.zeros(2)),
        "nested": {"list": [1, 2.5, "x", None, True], "tuple": (1, (2, 3)), 7: "int key"},
        "ordered": collections.OrderedDict(a=torch.arange(3)),
        "rng": {"generator": g.get_state(), "torch": torch.get_rng_state()},
        "size": torch.Size([2, 3]), "dtype": torch.float16, "device": torch.device("cpu"),
        "bytes": b"\x00\x01", "complex": 1 + 2j, "set": {1, 2},
    }


def assert_same(a: Any, b: Any) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b and type(a) is type(b)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# -- round trip and the atomic write -------------------------------------------------------------

def test_round_trip_keeps_every_value_and_type(tmp_path: Path) -> None:
    state = sample_state()
    path = save_checkpoint(state, tmp_path / "sub" / "a.pt")  # folder created
    assert path == tmp_path / "sub" / "a.pt" and path.is_file()
    assert_same(state, load_checkpoint(path))
    assert leftovers(path.parent) == []


def test_map_location_and_generator_state_restore(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(5)
    torch.rand(3, generator=g)
    save_checkpoint({"g": g.get_state()}, tmp_path / "a.pt")
    expected = torch.rand(4, generator=g)
    h = torch.Generator()
    h.set_state(load_checkpoint(tmp_path / "a.pt", map_location=torch.device("cpu"))["g"])
    assert torch.equal(torch.rand(4, generator=h), expected)


def test_file_gets_the_ordinary_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        path = save_checkpoint({"a": 1}, tmp_path / "a.pt")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600


@pytest.mark.parametrize(
    ("bad", "where"),
    [(torch.Generator(), "torch.Generator"), (np.zeros(3), "numpy"), (np.float64(1.0), "numpy"),
     (object(), "builtins.object"), (lambda: 1, "function"),
     (collections.defaultdict(int), "defaultdict"), (slice(1, 2), "slice"),
     (frozenset([1]), "frozenset"), (collections.namedtuple("P", "a")(1), "P")],
)
def test_unsafe_state_is_refused_before_anything_is_written(tmp_path: Path, bad: Any,
                                                            where: str) -> None:
    with pytest.raises(TypeError, match=where) as info:
        save_checkpoint({"ok": torch.ones(1), "deep": {"list": [1, bad]}}, tmp_path / "a.pt")
    assert "state['deep']['list'][1]" in str(info.value)
    assert "weights_only=True" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_non_mapping_state_and_folder_path_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="state must be a mapping"):
        save_checkpoint([1, 2], tmp_path / "a.pt")  # type: ignore[arg-type]
    with pytest.raises(IsADirectoryError, match="is a folder"):
        save_checkpoint({"a": 1}, tmp_path)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint({"v": torch.zeros(10)}, tmp_path / "a.pt")
    real_save = torch.save

    def half_then_die(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_die)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint({"v": torch.ones(10)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(load_checkpoint(path)["v"], torch.zeros(10))
    assert leftovers(tmp_path) == []


def test_write_order_is_fsync_file_replace_fsync_folder(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}") if Path("/proc/self/fd").is_dir() else "?"
        events.append(("fsync", target))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(("replace", f"{Path(src).name}->{Path(dst).name}"))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    save_checkpoint({"a": torch.ones(3)}, tmp_path / "a.pt")
    kinds = [e[0] for e in events]
    assert kinds == ["fsync", "replace", "fsync"], events
    assert events[0][1].endswith(".tmp") and Path(events[0][1]).parent == tmp_path  # same folder
    assert events[1][1].startswith(".a.pt.") and events[1][1].endswith("->a.pt")
    assert events[2][1] == str(tmp_path)  # the folder itself, so the rename is durable


# -- damaged files ------------------------------------------------------------------------------

@pytest.mark.parametrize("keep", [0, 3, 100, "half", -22, -1])
def test_truncated_file_is_detected_with_a_clear_error(tmp_path: Path, keep: int | str) -> None:
    path = save_checkpoint(sample_state(), tmp_path / "a.pt")
    data = path.read_bytes()
    n = len(data) // 2 if keep == "half" else int(keep) % len(data) if int(keep) < 0 else int(keep)
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "older checkpoint" in message
    assert isinstance(info.value, ValueError)


def test_bit_flip_in_tensor_data_is_caught_by_the_crc(tmp_path: Path) -> None:
    state = {"w": torch.arange(100_000, dtype=torch.float32)}
    path = save_checkpoint(state, tmp_path / "a.pt")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    loaded = load_checkpoint(path, verify=False)  # what torch.load alone does: silently wrong
    assert not torch.equal(loaded["w"], state["w"])
    with pytest.raises(CheckpointError, match="CRC-32"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "empty"), (b"hello, not a checkpoint\n", "not a checkpoint"),
     (b"PK\x03\x04" + b"\x00" * 200, "truncated or corrupt")],
)
def test_files_that_are_not_checkpoints(tmp_path: Path, content: bytes, match: str) -> None:
    (tmp_path / "x.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path / "x.pt")


def test_legacy_format_and_non_dict_payload_are_refused(tmp_path: Path) -> None:
    torch.save({"a": 1}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="no zip"):
        load_checkpoint(tmp_path / "legacy.pt")
    torch.save(torch.ones(2), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="holds a Tensor, not a checkpoint dict"):
        load_checkpoint(tmp_path / "tensor.pt")
    zipfile.ZipFile(tmp_path / "other.zip", "w").writestr("readme.txt", "hi")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "other.zip")


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)


# -- malicious files ---------------------------------------------------------------------------

class Payload:
    """Unpickling this runs ``os.system`` (the classic pickle attack)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"echo pwned > {self.marker}",)


class ExecPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


@pytest.mark.parametrize("payload", [Payload, ExecPayload])
@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path: Path, payload: type,
                                                      container: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    state = {"format": "ebmguide-checkpoint", "ebm": {"w": torch.ones(2)}, "x": payload(marker)}
    if container == "torch.save":
        torch.save(state, path)  # a valid zip container: the CRC check passes, unpickling refuses
    else:
        path.write_bytes(pickle.dumps(state))
    # An attacker may also set the variable that turns weights_only off where it is not explicit.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    for verify in (True, False):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path, verify=verify)
        assert "evil.pt" in str(info.value)
    assert not marker.exists()
    # Planted in a run folder under a checkpoint's name: skipped with a warning, never run.
    path.rename(tmp_path / "ckpt-00000001.pt")
    with pytest.warns(CheckpointWarning, match="refused|not a checkpoint"), \
            pytest.raises(CheckpointError, match="all 1 checkpoint"):
        CheckpointManager(tmp_path).load_latest()
    assert not marker.exists()


def test_the_payload_is_live_without_weights_only(tmp_path: Path) -> None:
    """Control: the same file does run code under a plain pickle load (so the test above means
    something). Run in a child process so nothing leaks into this one."""
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"x": Payload(marker)}, path)
    code = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
    assert marker.read_text().strip() == "pwned"


# -- the manager ---------------------------------------------------------------------------------

def test_manager_names_keeps_and_sorts_numerically(tmp_path: Path) -> None:
    m = CheckpointManager(tmp_path / "run", keep=3)
    assert m.checkpoints() == [] and m.load_latest() is None  # folder not created yet
    for it in (5, 10, 99_999_999, 100_000_000, 7):
        m.save({"iteration": it}, it)
    names = [p.name for p in m.checkpoints()]
    # The one just written (7) is never pruned; the oldest others go.
    assert names == ["ckpt-00000007.pt", "ckpt-99999999.pt", "ckpt-100000000.pt"]
    loaded = m.load_latest()
    assert loaded is not None and loaded[0]["iteration"] == 100_000_000


def test_manager_ignores_other_files_and_cleans_stale_temps(tmp_path: Path) -> None:
    m = CheckpointManager(tmp_path, keep=2)
    (tmp_path / "ckpt-00000003.pt.bak").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "ckpt-latest.pt").write_text("x")
    (tmp_path / "other-00000009.pt").write_text("x")
    stale = tmp_path / ".ckpt-00000004.pt.abc123.tmp"
    stale.write_bytes(b"PK\x03\x04half")
    assert m.checkpoints() == []
    m.save({"iteration": 1}, 1)
    assert not stale.exists() and [p.name for p in m.checkpoints()] == ["ckpt-00000001.pt"]
    assert (tmp_path / "notes.txt").exists() and (tmp_path / "other-00000009.pt").exists()


def test_old_checkpoints_survive_a_failed_save(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    m = CheckpointManager(tmp_path, keep=1)
    m.save({"iteration": 1}, 1)

    def die(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", die)
    with pytest.raises(KeyboardInterrupt):
        m.save({"iteration": 2}, 2)
    assert [p.name for p in m.checkpoints()] == ["ckpt-00000001.pt"]
    assert leftovers(tmp_path) == []


def test_load_latest_falls_back_to_the_previous_one_with_a_warning(tmp_path: Path) -> None:
    m = CheckpointManager(tmp_path, keep=3)
    for it in (1, 2, 3):
        m.save({"iteration": it, "w": torch.full((1000,), float(it))}, it)
    newest = m.checkpoints()[-1]
    newest.write_bytes(newest.read_bytes()[:500])
    with pytest.warns(CheckpointWarning, match=r"skipping damaged checkpoint .*ckpt-00000003\.pt"):
        loaded = m.load_latest()
    assert loaded is not None
    state, path = loaded
    assert state["iteration"] == 2 and path.name == "ckpt-00000002.pt"
    assert torch.equal(state["w"], torch.full((1000,), 2.0))


def test_load_latest_raises_when_every_checkpoint_is_damaged(tmp_path: Path) -> None:
    m = CheckpointManager(tmp_path, keep=2)
    for it in (1, 2):
        m.save({"iteration": it}, it)
    for p in m.checkpoints():
        p.write_bytes(b"")
    with pytest.warns(CheckpointWarning), pytest.raises(CheckpointError, match="all 2 checkpoint"):
        m.load_latest()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"keep": 0}, "keep must be an int >= 1"), ({"keep": 1.5}, "keep must be"),
     ({"keep": True}, "keep must be"), ({"prefix": ""}, "prefix must be"),
     ({"prefix": "a/b"}, "prefix must be"), ({"prefix": ".hidden"}, "prefix must be"),
     ({"prefix": "-x"}, "prefix must be")],
)
def test_manager_arguments_are_checked(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CheckpointManager(tmp_path, **kwargs)


@pytest.mark.parametrize("iteration", [-1, 1.0, "3", None, True])
def test_manager_iteration_is_checked(tmp_path: Path, iteration: Any) -> None:
    with pytest.raises(ValueError, match="iteration must be an int >= 0"):
        CheckpointManager(tmp_path).save({"a": 1}, iteration)
    assert list(tmp_path.iterdir()) == []
