"""Peak memory of CLEL training iterations, one implementation per fresh process.

Run as ``python -m benchmarks.memory --impl ebmguide --case cnn16 --mode quick``; prints one JSON
line. On CPU the figure is the process's resident-set high-water mark (``VmHWM`` of
``/proc/self/status``; not ``ru_maxrss``, which Linux carries over from the parent across
fork and exec), so every measurement needs its own process. The mark is reset just before the
iterations (``/proc/self/clear_refs``), so ``peak_rss_mb`` is the peak during the iterations and
``increment_mb`` that peak minus the resident set before them (interpreter, torch, the networks
and the buffer). glibc's mmap threshold is pinned at 64 KiB (``MALLOC_MMAP_THRESHOLD_``) so that a
freed tensor goes back to the OS at once: the mark then follows live memory, not how much freed
memory the allocator happened to keep. On CUDA it is
``torch.cuda.max_memory_allocated`` over the iterations.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import torch

IMPLS = ("naive", "ebmguide", "ebmguide-two-forwards")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current resident set (Linux ≥ 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(impl: str, case_name: str, mode: str, iters: int, device: str) -> dict[str, Any]:
    """Build ``impl`` for the case, run ``iters`` iterations, return the memory figures."""
    import ebmguide as eg
    from benchmarks.energies import clel_cases, clel_components
    from benchmarks.naive_clel import build_naive

    case = next(c for c in clel_cases(mode) if c.name == case_name)
    x = case.data().to(device)
    if impl == "naive":
        if device != "cpu":
            raise SystemExit("the naive baseline runs on CPU only")
        naive = build_naive(case)

        def step() -> None:
            naive.step(x)
    else:
        parts = clel_components(case, device=device)
        g = torch.Generator(device=device).manual_seed(0)

        def step() -> None:
            eg.clel_step(parts["ebm"], parts["guide"], parts["sampler"], x,  # type: ignore[arg-type]
                         ebm_optimizer=parts["ebm_optimizer"],  # type: ignore[arg-type]
                         guide_optimizer=parts["guide_optimizer"],  # type: ignore[arg-type]
                         generator=g, joint_forward=impl == "ebmguide")
    before = _rss_mb()
    reset = _reset_peak()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for _ in range(iters):
        step()
    peak = _peak_rss_mb()
    out: dict[str, Any] = {"impl": impl, "case": case_name, "iters": iters,
                           "rss_before_mb": before, "peak_rss_mb": peak,
                           "increment_mb": peak - before, "peak_reset": reset}
    if device.startswith("cuda"):
        out["max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def in_subprocess(impl: str, case_name: str, mode: str, iters: int, threads: int,
                  device: str = "cpu") -> dict[str, Any]:
    """Run :func:`measure` in a fresh interpreter so that peaks do not mix."""
    cmd = [sys.executable, "-m", "benchmarks.memory", "--impl", impl, "--case", case_name,
           "--mode", mode, "--iters", str(iters), "--threads", str(threads), "--device", device]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env, check=False)
    if proc.returncode != 0:
        return {"impl": impl, "case": case_name, "error": proc.stderr.strip().splitlines()[-1:]}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=IMPLS, required=True)
    parser.add_argument("--case", required=True)
    parser.add_argument("--mode", default="full")
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(json.dumps(measure(args.impl, args.case, args.mode, args.iters, args.device)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
