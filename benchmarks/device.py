"""Device-correct timing, peak memory and a description of the accelerator.

On a CPU a timed call is over when it returns, and the clock is the process CPU time (or the wall
clock with several threads; see :mod:`benchmarks.timing`). On a CUDA device a call returns once its
kernels are queued, so a host clock would measure the launches, not the work: :class:`CudaStopwatch`
synchronises the device before the call, records CUDA events around it and synchronises again
before reading them. :func:`stopwatch` picks one by the device; :class:`PeakMemory` resets and
reads ``torch.cuda.max_memory_allocated`` around each measurement (nothing on CPU, whose peaks the
``memory`` group measures in fresh processes).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any, Protocol

import torch

__all__ = ["CudaStopwatch", "HostStopwatch", "PeakMemory", "Stopwatch", "accelerator",
           "clocks_mode", "stopwatch"]

Runner = Callable[[list[str]], str]


class Stopwatch(Protocol):
    """Times one call: ``start()`` just before it, ``stop()`` (seconds) just after."""

    def start(self) -> None: ...

    def stop(self) -> float: ...


class HostStopwatch:
    """A host clock (``time.process_time`` or ``time.perf_counter``): right for CPU work.

    Args:
        tick: the clock, returning seconds.
    """

    def __init__(self, tick: Callable[[], float]) -> None:
        self.tick = tick
        self._start = 0.0

    def start(self) -> None:
        self._start = self.tick()

    def stop(self) -> float:
        return self.tick() - self._start


class CudaStopwatch:
    """CUDA events around the call, with the device synchronised before and after.

    The synchronisation before the call keeps earlier queued work out of the measurement; the one
    after waits for the call's kernels, so ``stop()`` returns the device time of the call.

    Args:
        device: a CUDA device.
    """

    def __init__(self, device: torch.device) -> None:
        if device.type != "cuda":
            raise ValueError(f"CudaStopwatch needs a CUDA device, got {device}; use "
                             f"HostStopwatch (or stopwatch(device, clock)) for {device.type}.")
        self.device = device
        self._begin: Any = None
        self._end: Any = None

    def start(self) -> None:
        torch.cuda.synchronize(self.device)
        self._begin = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        self._end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        self._begin.record()

    def stop(self) -> float:
        if self._begin is None:
            raise RuntimeError("CudaStopwatch.stop() before start(); call start() first.")
        self._end.record()
        torch.cuda.synchronize(self.device)
        seconds: float = self._begin.elapsed_time(self._end) / 1e3  # elapsed_time is in ms
        return seconds


def stopwatch(device: torch.device | str, tick: Callable[[], float]) -> Stopwatch:
    """The stopwatch for work on ``device``: CUDA events on a CUDA device, ``tick`` elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        return CudaStopwatch(device)
    return HostStopwatch(tick)


class PeakMemory:
    """``torch.cuda.max_memory_allocated`` per measurement, reset before each; inert on CPU.

    Args:
        device: where the measured work runs.
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.active = self.device.type == "cuda"
        self.peaks_mb: dict[str, float] = {}

    def reset(self) -> None:
        """Forget the device's peak so far (before a measured call)."""
        if self.active:
            torch.cuda.reset_peak_memory_stats(self.device)

    def record(self, name: str) -> None:
        """Keep the largest peak seen for ``name`` (after a measured call), in MiB."""
        if self.active:
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
            self.peaks_mb[name] = max(peak, self.peaks_mb.get(name, 0.0))


def _nvidia_smi(args: list[str]) -> str:
    return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout


def clocks_mode(index: int = 0, run: Runner = _nvidia_smi) -> str:
    """The GPU's clocks as ``nvidia-smi`` reports them: current and maximum SM clock, application
    clock and persistence mode (the benchmark locks nothing), or why they are unknown.

    Args:
        index: the GPU's index.
        run: runs ``nvidia-smi`` with the given arguments and returns its output (for tests).
    """
    fields = "persistence_mode,clocks.sm,clocks.max.sm,clocks.applications.graphics"
    try:
        out = run([f"--id={index}", f"--query-gpu={fields}", "--format=csv,noheader,nounits"])
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown (nvidia-smi: {type(exc).__name__})"
    values = [v.strip() for v in out.strip().splitlines()[0].split(",")] if out.strip() else []
    if len(values) != 4:
        return f"unknown (nvidia-smi said {out.strip()[:80]!r})"
    persistence, sm, sm_max, application = values
    return (f"SM clock {sm} of max {sm_max} MHz, application clock {application} MHz, "
            f"persistence {persistence}; clocks not locked by the benchmark")


def accelerator(device: torch.device | str) -> dict[str, Any] | None:
    """Name, torch/CUDA/cuDNN versions, memory and clocks of a CUDA ``device``; None on CPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return {"name": props.name, "memory_gib": props.total_memory / 2**30,
            "capability": f"{props.major}.{props.minor}", "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),  # type: ignore[no-untyped-call]
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "clocks": clocks_mode(index)}
