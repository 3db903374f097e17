"""Interleaved repetitions, robust statistics and a description of the machine.

On a shared machine the wall clock measures other people's work too. With one intra-op thread
(the default of ``benchmarks.run``), the process CPU time (``time.process_time``) counts only this
process's work and is far steadier under load; it is the default clock. Implementations are timed
in interleaved repetitions, in a rotated order, so that a burst of load hits all of them alike,
and ratios are taken per repetition (paired) before the median.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from benchmarks.device import PeakMemory, stopwatch

CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}


@dataclass(frozen=True)
class Summary:
    """Statistics of one implementation's repeated timings, in seconds."""

    median: float
    q1: float
    q3: float
    min: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(q1, median, q3) of at least one value (inclusive method)."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def summarize(values: list[float]) -> Summary:
    q1, med, q3 = quartiles(values)
    return Summary(med, q1, q3, min(values), len(values))


def interleaved(
    fns: Mapping[str, Callable[[], object]], *, repeats: int, warmup: int = 1,
    clock: str = "cpu", device: torch.device | str = "cpu", peaks: PeakMemory | None = None,
) -> dict[str, list[float]]:
    """Time every callable ``repeats`` times, interleaved in a rotated order.

    Args:
        fns: the implementations to time, by name.
        repeats: timed calls of each.
        warmup: untimed calls of each first.
        clock: ``"cpu"`` or ``"wall"``, the host clock (used off CUDA).
        device: where the work runs; on a CUDA device every call is timed with CUDA events
            between two device synchronisations (:func:`benchmarks.device.stopwatch`).
        peaks: filled with each implementation's peak of ``torch.cuda.max_memory_allocated``
            (reset before every timed call).

    Returns:
        ``{name: [seconds per call, one per repetition]}``; index r of every list belongs to the
        same repetition, so ratios can be paired.
    """
    watch = stopwatch(device, CLOCKS[clock])
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            gc.disable()
            try:
                if peaks is not None:
                    peaks.reset()
                watch.start()
                fns[name]()
                times[name].append(watch.stop())
                if peaks is not None:
                    peaks.record(name)
            finally:
                gc.enable()
    return times


def paired_ratio(times: Mapping[str, list[float]], num: str, den: str) -> Summary:
    """Median and quartiles of ``times[num][r] / times[den][r]`` over repetitions r."""
    return summarize([a / b for a, b in zip(times[num], times[den], strict=True)])


def load_average() -> float:
    """1-minute load average (NaN where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def cpu_model() -> str:
    """The processor's model name as lscpu (or /proc/cpuinfo) reports it."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    flags = cpu_flags()
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"}),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cuda_version": torch.version.cuda,
    }
