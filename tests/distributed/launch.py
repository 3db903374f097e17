"""Launch ``torchrun`` on 127.0.0.1 with a free port, for the distributed tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun_env() -> dict[str, str]:
    """This environment without launcher variables, on CPU, one thread, loopback only."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
           "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def torchrun(args: Sequence[str], *, nproc: int = 2, cwd: Path | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m torch.distributed.run`` with ``nproc`` CPU ranks on the loopback interface."""
    env = torchrun_env()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1",
           f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
           *args]
    return subprocess.run(cmd, cwd=cwd or REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _forked_rank(rank: int, world: int, port: int, fn: Callable[..., None],
                 args: tuple[object, ...]) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "GLOO_SOCKET_IFNAME": "lo"})
    import torch

    torch.set_num_threads(1)  # the forked child must not reuse the parent's OpenMP pool
    fn(*args)


def run_forked(fn: Callable[..., None], *args: object, world: int = 2) -> None:
    """Run ``fn(*args)`` on ``world`` forked ranks with torchrun's environment variables.

    Forking skips the interpreter start and the imports (seconds per rank on small machines);
    the CLI tests use real ``torchrun`` launches instead.
    """
    import torch.multiprocessing as mp

    mp.start_processes(_forked_rank, args=(world, free_port(), fn, args), nprocs=world,
                       join=True, start_method="fork")
