"""Start and stop a torchrun process group; per-rank random streams; the world-size check."""

from __future__ import annotations

import datetime
import gc
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ebmguide.torch_utils import resolve_device

__all__ = ["DistributedContext", "RankTimeoutError", "check_world_size", "distributed_session",
           "init_distributed", "launched_by_torchrun", "local_context", "lost_rank_error",
           "rank_generator", "rank_seed", "shutdown"]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly one-process) run.

    Attributes:
        rank: global rank in ``[0, world_size)``.
        world_size: number of processes (1 without a launcher).
        local_rank: rank on this machine; picks the GPU ``cuda:<local_rank>``.
        device: the device this process trains on.
        backend: ``"nccl"``, ``"gloo"``..., or ``None`` when no process group was started.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that logs and writes files."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when several processes train together (collectives are needed)."""
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True when ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are set (torchrun sets all three)."""
    return all(v in os.environ for v in _TORCHRUN_VARS)


def _env_int(name: str) -> int:
    value = os.environ[name]
    if not value.isdigit():
        raise ValueError(f"environment variable {name}={value!r} must be a non-negative integer.")
    return int(value)


def _resolve_device(device: str | torch.device, local_rank: int, several: bool) -> torch.device:
    dev = resolve_device(device)
    name = str(device)
    if dev.type != "cuda" or not several:
        return dev
    if dev.index is not None and dev.index != local_rank:
        raise ValueError(f"under torchrun each process uses the GPU cuda:LOCAL_RANK (here "
                         f"cuda:{local_rank}); set device = \"cuda\" or \"auto\", not {name!r}, "
                         f"and choose GPUs with CUDA_VISIBLE_DEVICES.")
    if local_rank >= torch.cuda.device_count():
        raise ValueError(f"LOCAL_RANK {local_rank} has no GPU: this machine shows "
                         f"{torch.cuda.device_count()}; pass --nproc_per_node <= that number.")
    return torch.device("cuda", local_rank)


def init_distributed(
    device: str | torch.device = "auto",
    *,
    backend: str | None = None,
    timeout_s: float = 1800.0,
) -> DistributedContext:
    """Start the process group when launched by ``torchrun``; otherwise describe one process.

    Args:
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``. Under torchrun each rank
            takes ``cuda:<LOCAL_RANK>``.
        backend: default NCCL on GPUs, gloo on CPU.
        timeout_s: how long a collective may wait for the other ranks before failing.

    Returns:
        The :class:`DistributedContext`. Without torchrun (or with ``WORLD_SIZE=1``) no process
        group is started and every helper of :mod:`ebmguide.distributed` acts as on one process.

    Raises:
        ValueError: for inconsistent environment variables or an unusable device.
    """
    launched = launched_by_torchrun()
    rank, world, local = ((_env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK"))
                          if launched else (0, 1, 0))
    if world < 1 or rank >= world:
        raise ValueError(f"RANK={rank} must be below WORLD_SIZE={world}; launch with torchrun.")
    dev = _resolve_device(device, local, world > 1)
    if world == 1:
        return DistributedContext(0, 1, 0, dev, None)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s),
                                device_id=dev if dev.type == "cuda" else None)
    if (dist.get_rank(), dist.get_world_size()) != (rank, world):
        raise ValueError(f"the existing process group (rank {dist.get_rank()} of "
                         f"{dist.get_world_size()}) disagrees with RANK={rank}, "
                         f"WORLD_SIZE={world}.")
    return DistributedContext(rank, world, local, dev, str(dist.get_backend()))


def local_context(device: torch.device) -> DistributedContext:
    """The context of a one-process run on ``device``.

    Raises:
        ValueError: when launched by torchrun with several processes: such a run must start its
            process group with :func:`init_distributed` (``ebmguide train`` does).
    """
    if launched_by_torchrun() and _env_int("WORLD_SIZE") > 1:
        raise ValueError("this command runs on one process; under torchrun use `ebmguide train` "
                         "(which trains data-parallel), or launch without torchrun.")
    return DistributedContext(device=device)


def shutdown(*wrapped: object) -> None:
    """Tear the process group down without the exit-time abort.

    DDP's reducer must be freed *before* ``destroy_process_group``: otherwise about a third of the
    runs on gloo die at exit with "terminate called without an active exception".
    This releases the DDP modules inside the wrappers of :func:`~ebmguide.distributed.wrap_ddp`,
    collects garbage, waits for every rank and destroys the group. Drop your own references to
    raw ``DistributedDataParallel`` objects before calling it. Safe to call without a group.

    Args:
        wrapped: the wrappers returned by :func:`~ebmguide.distributed.wrap_ddp` (anything
            else is ignored).
    """
    for obj in wrapped:
        release = getattr(obj, "release_ddp", None)
        if callable(release):
            release()
    gc.collect()  # frees the reducers of DDP modules nothing refers to any more
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


@contextmanager
def distributed_session(device: str | torch.device = "auto",
                        backend: str | None = None,
                        timeout_s: float = 1800.0) -> Iterator[DistributedContext]:
    """:func:`init_distributed` on entry, :func:`shutdown` on exit.

    ``timeout_s`` is the process group's timeout (``train.ddp_timeout_s``): a collective that
    waits longer for a silent rank fails, and the run ends.

    After an error the group is destroyed without the final barrier (torchrun stops the other
    ranks when one fails). Drop (or ``shutdown(*wrappers)``) your DDP wrappers inside the block.
    """
    ctx = init_distributed(device, backend=backend, timeout_s=timeout_s)
    try:
        yield ctx
    except BaseException:
        gc.collect()
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        raise
    shutdown()


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s own random stream in a run seeded with ``seed``.

    Rank 0 keeps ``seed``, so a one-process run is unchanged; rank r > 0 gets a SplitMix64 mix of
    (seed, r), so the streams of different ranks, and of neighbouring seeds, do not coincide.

    Example:
        >>> rank_seed(7, 0), rank_seed(7, 1) != rank_seed(8, 0)
        (7, True)
    """
    if rank < 0:
        raise ValueError(f"rank must be non-negative, got {rank}.")
    value = seed % 2**64
    if rank > 0:  # SplitMix64's increment and finalizer (the published constants)
        value = (value + rank * 0x9E3779B97F4A7C15) % 2**64
        value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
        value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) % 2**64
        value ^= value >> 31
    return value % 2**63


def rank_generator(seed: int, rank: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded with :func:`rank_seed` (SGLD noise, augmentations, buffer).

    Example:
        >>> a = torch.rand(2, generator=rank_generator(7, 0))
        >>> torch.equal(a, torch.rand(2, generator=torch.Generator().manual_seed(7)))
        True
    """
    return torch.Generator(device=device).manual_seed(rank_seed(seed, rank))


def check_world_size(saved: int, ctx: DistributedContext, source: str = "the checkpoint") -> None:
    """Raise ``ValueError`` when a checkpoint's world size differs from this run's.

    Each rank's replay buffer, data position and random streams are saved per rank, so a run
    must resume with as many processes as wrote the checkpoint.
    """
    if int(saved) != ctx.world_size:
        how = ("run it without torchrun (or with --nproc_per_node=1)" if int(saved) == 1 else
               f"launch torchrun with --nnodes × --nproc_per_node = {saved}")
        raise ValueError(
            f"{source} was written by a run of {saved} process(es) but this run has "
            f"{ctx.world_size}: each rank's replay buffer, data position and random streams are "
            f"saved per rank. To resume, {how}; or start a new run in another folder.")


class RankTimeoutError(TimeoutError):
    """A torchrun rank stopped answering (frozen, stopped or dead) within the group's timeout."""


_LOST = re.compile(r"timed out|timeout|connection (reset|closed)|peer|broken pipe", re.IGNORECASE)


def lost_rank_error(err: BaseException, ctx: DistributedContext,
                    timeout_s: float) -> RankTimeoutError | None:
    """A clear :class:`RankTimeoutError` when ``err`` is a collective that lost another rank.

    Args:
        err: the exception a collective (or a DDP backward) raised.
        ctx: this process's context (None is returned on one process).
        timeout_s: the process group's timeout (``train.ddp_timeout_s``).
    """
    dist_error = getattr(dist, "DistError", ())
    if not ctx.enabled or not (isinstance(err, dist_error) or _LOST.search(str(err))):
        return None
    first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
    return RankTimeoutError(
        f"rank {ctx.rank} of {ctx.world_size}: another rank did not answer within "
        f"train.ddp_timeout_s = {timeout_s:g} s (frozen, stopped or dead), so the run ends. Its "
        f"last checkpoint is intact: resume with --resume once every rank is healthy, or raise "
        f"--ddp-timeout for slow steps ({first}).")
