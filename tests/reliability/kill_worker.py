"""Fork server for test_kill.py: children write checkpoints in a loop and are SIGKILLed.

``python kill_worker.py FOLDER SEED ROUNDS MEGABYTES`` imports torch once, then for each round
forks a child that resumes from the newest checkpoint of FOLDER (``CheckpointManager.load_latest``)
and writes checkpoints of the next iterations as fast as it can, acknowledging each completed
save on a pipe. The server kills the child with SIGKILL after a delay drawn from a seeded
generator (in half of the rounds counted from the fork, in the other half from the child's first
acknowledged save, so that rounds make progress however loaded the machine is), then checks
that:

- every file under a checkpoint name loads (no damaged file, no fallback warning);
- the newest iteration is at least the last acknowledged one (no completed save lost) and at most
  one past it;
- its content is exactly what was written for that iteration;
- the child resumed where the previous round's newest checkpoint left off.

The last line printed is a JSON summary.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from ebmguide.checkpoint import CheckpointManager, load_checkpoint

KEEP = 2


def make_state(iteration: int, numel: int) -> dict[str, Any]:
    return {
        "format": "ebmguide-checkpoint", "iteration": iteration,
        "weights": torch.arange(numel, dtype=torch.float32).add_(iteration),
        "buffer": torch.full((numel // 4,), iteration % 251, dtype=torch.uint8),
        "rng": {"generator": torch.Generator().manual_seed(iteration).get_state()},
        "metrics": {"loss": float(iteration) / 7},
    }


def check_state(state: dict[str, Any], numel: int) -> str | None:
    """None when ``state`` is exactly what make_state wrote for its iteration."""
    it = state.get("iteration")
    if not isinstance(it, int):
        return f"iteration is {it!r}"
    expected = make_state(it, numel)
    if not torch.equal(state["weights"], expected["weights"]):
        return f"weights of iteration {it} differ"
    if not torch.equal(state["buffer"], expected["buffer"]):
        return f"buffer of iteration {it} differs"
    if not torch.equal(state["rng"]["generator"], expected["rng"]["generator"]):
        return f"rng of iteration {it} differs"
    if state["metrics"] != expected["metrics"]:
        return f"metrics of iteration {it} differ"
    return None


def child(folder: Path, ack_fd: int, numel: int) -> None:
    """Resume from the newest checkpoint and write the next ones until killed."""
    manager = CheckpointManager(folder, keep=KEEP)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to an older checkpoint is a failure here
        loaded = manager.load_latest()
    start = 0
    if loaded is not None:
        problem = check_state(loaded[0], numel)
        if problem is not None:
            raise RuntimeError(f"resumed from a bad checkpoint: {problem}")
        start = loaded[0]["iteration"] + 1
    os.write(ack_fd, f"start {start}\n".encode())
    iteration = start
    while True:
        manager.save(make_state(iteration, numel), iteration)
        os.write(ack_fd, f"saved {iteration}\n".encode())
        iteration += 1


def wait_for_a_save(fd: int, timeout: float) -> bytes:
    """Read the pipe until the child acknowledged one save (or ``timeout`` passed)."""
    data, deadline = b"", time.monotonic() + timeout
    while b"saved" not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data


def read_all(fd: int, head: bytes = b"") -> list[str]:
    chunks = [head]
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode().split()


def time_one_write(numel: int) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        manager = CheckpointManager(scratch, keep=KEEP)
        manager.save(make_state(0, numel), 0)
        t0 = time.perf_counter()
        for i in range(1, 4):
            manager.save(make_state(i, numel), i)
        return (time.perf_counter() - t0) / 3


def verify(folder: Path, numel: int, last_ack: int, before: int) -> tuple[int, list[str]]:
    """The newest iteration and the problems found in the folder.

    ``last_ack`` is the last acknowledged save, ``before`` the newest iteration found before the
    round: the newest now is at least both, and at most one past the larger (a save completed but
    killed before its acknowledgement).
    """
    manager = CheckpointManager(folder, keep=KEEP)
    problems = []
    files = manager.checkpoints()
    if len(files) > KEEP + 1:  # killed between the rename and the pruning: one extra at most
        problems.append(f"{len(files)} checkpoints kept")
    for path in files:  # every file under a checkpoint name must be complete
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                state = load_checkpoint(path)
            except Exception as err:
                problems.append(f"{path.name}: {type(err).__name__}: {err}")
                continue
        problems += [f"warning: {w.message}" for w in caught]
        problem = check_state(state, numel)
        if problem is not None:
            problems.append(f"{path.name}: {problem}")
    newest = -1
    if files:
        newest = int(files[-1].stem.rsplit("-", 1)[-1])
    if newest < max(last_ack, before):
        problems.append(f"acknowledged save of iteration {last_ack} or the previous newest "
                        f"{before} lost (newest {newest})")
    if newest > max(last_ack, before) + 1:
        problems.append(f"newest {newest} is more than one past {max(last_ack, before)}")
    return newest, problems


def main(folder: Path, seed: int, rounds: int, megabytes: float) -> dict[str, Any]:
    torch.set_num_threads(1)
    numel = int(megabytes * 2**20 / 4 / 1.25)  # weights (4 B) + buffer (1 B per 4 elements)
    write_s = time_one_write(numel)
    rng = random.Random(seed)
    summary: dict[str, Any] = {"rounds": rounds, "killed": 0, "mid_write": 0, "with_progress": 0,
                               "saves_acknowledged": 0, "write_ms": round(write_s * 1e3, 2),
                               "failures": []}
    last_ack, newest = -1, -1
    for r in range(rounds):
        read_fd, ack_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            os.close(read_fd)
            try:
                child(folder, ack_fd, numel)
            except BaseException as err:
                sys.stderr.write(f"child failed: {type(err).__name__}: {err}\n")
                sys.stderr.flush()
            os._exit(3)
        os.close(ack_fd)
        head = b""
        if rng.random() < 0.5:  # any time from the fork on, also before the first save ...
            time.sleep(rng.uniform(0.0, 4.0 * write_s))
        else:  # ... or after at least one save, whatever the load of the machine
            head = wait_for_a_save(read_fd, timeout=60.0)
            time.sleep(rng.uniform(0.0, 2.0 * write_s))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        messages = read_all(read_fd, head)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            summary["killed"] += 1
        else:
            summary["failures"].append(f"round {r}: child ended with status {status}")
        starts = [int(v) for k, v in zip(messages[::2], messages[1::2], strict=True)
                  if k == "start"]
        saved = [int(v) for k, v in zip(messages[::2], messages[1::2], strict=True)
                 if k == "saved"]
        if starts and starts[0] != newest + 1:
            summary["failures"].append(f"round {r}: resumed at {starts[0]}, newest was {newest}")
        if saved:
            summary["with_progress"] += 1
            summary["saves_acknowledged"] += len(saved)
            last_ack = saved[-1]
        if any(p.name.endswith(".tmp") for p in folder.iterdir()):
            summary["mid_write"] += 1
        newest, problems = verify(folder, numel, last_ack, newest)
        summary["failures"] += [f"round {r}: {p}" for p in problems]
    # One more complete save cleans the temp files of killed writes.
    CheckpointManager(folder, keep=KEEP).save(make_state(newest + 1, numel), newest + 1)
    summary["temps_left"] = sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))
    summary["final_iteration"] = newest + 1
    return summary


if __name__ == "__main__":
    out = main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    print(json.dumps(out))
