"""Device-correct timing of the benchmark suite: which stopwatch, peak memory, the header."""

from __future__ import annotations

import itertools
import subprocess

import pytest
import torch

from benchmarks import report, run
from benchmarks.device import (
    CudaStopwatch,
    HostStopwatch,
    PeakMemory,
    accelerator,
    clocks_mode,
    stopwatch,
)
from benchmarks.timing import interleaved

CUDA = torch.cuda.is_available()


def test_stopwatch_is_chosen_by_device() -> None:
    assert isinstance(stopwatch("cpu", lambda: 0.0), HostStopwatch)
    assert isinstance(stopwatch(torch.device("cpu"), lambda: 0.0), HostStopwatch)
    # Building the CUDA stopwatch touches no device: the choice is testable anywhere.
    for name in ("cuda", "cuda:1", torch.device("cuda", 0)):
        watch = stopwatch(name, lambda: 0.0)
        assert isinstance(watch, CudaStopwatch) and watch.device.type == "cuda"


def test_cuda_stopwatch_refuses_other_devices() -> None:
    with pytest.raises(ValueError, match="needs a CUDA device"):
        CudaStopwatch(torch.device("cpu"))
    with pytest.raises(RuntimeError, match="before start"):
        CudaStopwatch(torch.device("cuda")).stop()


def test_host_stopwatch_reads_its_clock() -> None:
    ticks = iter([10.0, 10.25, 20.0, 21.5])
    watch = HostStopwatch(lambda: next(ticks))
    watch.start()
    assert watch.stop() == 0.25
    watch.start()
    assert watch.stop() == 1.5


def test_interleaved_on_cpu_times_each_call_with_the_host_clock() -> None:
    calls: list[str] = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    peaks = PeakMemory("cpu")
    times = interleaved(fns, repeats=3, warmup=1, clock="wall", device="cpu", peaks=peaks)
    assert set(times) == {"a", "b"} and all(len(t) == 3 for t in times.values())
    assert all(t >= 0 for t in itertools.chain(*times.values()))
    assert calls.count("a") == calls.count("b") == 4  # one warm-up each, then 3
    assert calls[2:] == ["a", "b", "b", "a", "a", "b"]  # rotated order
    assert peaks.peaks_mb == {}  # nothing to measure on CPU


def test_peak_memory_is_inert_on_cpu() -> None:
    peaks = PeakMemory("cpu")
    peaks.reset()
    peaks.record("x")
    assert not peaks.active and peaks.peaks_mb == {}
    assert PeakMemory("cuda:0").active  # chosen by device, without touching it


def test_clocks_mode_parses_nvidia_smi() -> None:
    seen: list[list[str]] = []

    def fake(args: list[str]) -> str:
        seen.append(args)
        return "Enabled, 1980, 1980, 1755\n"

    text = clocks_mode(2, run=fake)
    assert text.startswith("SM clock 1980 of max 1980 MHz, application clock 1755 MHz")
    assert "persistence Enabled" in text and "not locked" in text
    assert seen[0][0] == "--id=2"


def test_clocks_mode_says_why_it_is_unknown() -> None:
    def missing(args: list[str]) -> str:
        raise FileNotFoundError("nvidia-smi")

    def failing(args: list[str]) -> str:
        raise subprocess.CalledProcessError(9, "nvidia-smi")

    assert clocks_mode(0, run=missing) == "unknown (nvidia-smi: FileNotFoundError)"
    assert clocks_mode(0, run=failing) == "unknown (nvidia-smi: CalledProcessError)"
    assert clocks_mode(0, run=lambda a: "[N/A]\n").startswith("unknown (nvidia-smi said")
    assert clocks_mode(0, run=lambda a: "").startswith("unknown")


def test_header_names_the_accelerator() -> None:
    meta = {"machine": {"cpu": "Some CPU", "logical_cpus": 16, "bf16_flags": [], "torch": "2.x",
                        "threads": 1, "python": "3.11"},
            "accelerator": {"name": "NVIDIA H200", "memory_gib": 139.8, "capability": "9.0",
                            "torch": "2.x", "cuda": "12.8", "cudnn": 91000, "tf32_matmul": False,
                            "clocks": "SM clock 1980 of max 1980 MHz"},
            "mode": "quick", "repeats": 5, "clock": "cuda", "device": "cuda", "load_before": 0.0,
            "load_after": 0.0, "duration_s": 1.0, "started": "now"}
    text = report.header(meta)
    assert "Device: NVIDIA H200 (140 GiB, compute capability 9.0)" in text
    assert "CUDA 12.8" in text and "TF32 matmul off" in text and "SM clock 1980" in text
    assert "CUDA events, device synchronised before and after every timed call" in text
    cpu = {**meta, "accelerator": None, "clock": "cpu", "device": "cpu"}
    assert "Device:" not in report.header(cpu) and "process CPU time" in report.header(cpu)


def test_peak_column_only_when_measured() -> None:
    row = {"case": "demo", "batch": 2, "steps": 1, "impl": "floor",
           "per_iter": {"median": 0.1, "q1": 0.1, "q3": 0.1},
           "vs_floor": {"median": 1.0, "q1": 1.0, "q3": 1.0}, "max_diff_clel_step_vs_floor": 0.0}
    assert "peak MiB" not in report.floor_table([row])
    assert "| 12 |" in report.floor_table([{**row, "peak_mb": 12.3}])


def test_device_argument_is_checked() -> None:
    assert run._device("cpu") == "cpu"
    with pytest.raises(SystemExit, match="not a torch device"):
        run._device("gpu7")
    with pytest.raises(SystemExit, match="cpu or cuda"):
        run._device("meta")
    if not CUDA:
        with pytest.raises(SystemExit, match="sees no CUDA device"):
            run._device("cuda")
    assert accelerator("cpu") is None


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_stopwatch_waits_for_the_kernels() -> None:
    device = torch.device("cuda")
    watch = stopwatch(device, lambda: 0.0)
    a = torch.randn(2048, 2048, device=device)
    watch.start()
    for _ in range(20):
        a = a @ a
        a = a / a.norm()
    seconds = watch.stop()
    watch.start()
    short = watch.stop()
    assert seconds > short >= 0.0
    peaks = PeakMemory(device)
    peaks.reset()
    b = torch.empty(64 * 2**20, dtype=torch.uint8, device=device)
    peaks.record("b")
    del b
    assert peaks.peaks_mb["b"] >= 64
    info = accelerator(device)
    assert info is not None and info["cuda"] == torch.version.cuda
