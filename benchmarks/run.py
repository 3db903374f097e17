"""Entry point: ``python -m benchmarks.run [--quick | --smoke] [--rows ...] [--device ...]``.

Prints markdown tables of medians and ratios over interleaved repetitions and writes every number
to JSON (``benchmarks/results/``, git-ignored, unless ``--json`` says where). Each table compares,
in this one process, ebmguide against the floor or the alternatives on the same work; see
docs/performance.md for what every row means. With ``--device cuda`` every timed call is measured
with CUDA events between two device synchronisations, each row reports its peak of
``torch.cuda.max_memory_allocated`` and the header names the GPU, the CUDA version and its clocks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks import report
from benchmarks.device import accelerator
from benchmarks.energies import MODES, clel_cases, sampler_cases
from benchmarks.timing import load_average, machine

GROUPS = ("sampler", "others", "options", "compile", "clel", "floor", "memory", "scaling")
DEFAULT_REPEATS = {"full": 11, "quick": 5, "smoke": 2}
RESULTS = Path(__file__).resolve().parent / "results"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Side-by-side speed and memory benchmarks of ebmguide (markdown + JSON).")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="smaller batches and K, 5 repetitions: a few minutes on 2 cores")
    size.add_argument("--smoke", action="store_true",
                      help="tiny networks, 2 repetitions: seconds; proves the code runs")
    parser.add_argument("--rows", default=None,
                        help=f"comma-separated groups to run, from {', '.join(GROUPS)} (default: "
                             "all; all but compile with --quick; sampler with --smoke). 'others' "
                             "adds torchebm and ebmkit to the sampler table; 'floor' times the "
                             "bare CLEL iteration, clel_step and the Trainer's iteration")
    parser.add_argument("--device", default="cpu",
                        help="cpu (default) or cuda[:index]: on CUDA every timed call is measured "
                             "with CUDA events between device synchronisations, and peak memory "
                             "(torch.cuda.max_memory_allocated) is reported per row")
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved repetitions per measurement (default 11 / 5 quick / "
                             "2 smoke)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: steady numbers on a shared "
                             "machine; see docs/performance.md)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default=None,
                        help="cpu: process CPU time (default with 1 thread); wall: elapsed time "
                             "(default with more threads); ignored on CUDA (CUDA events)")
    parser.add_argument("--json", type=Path, default=None,
                        help="where to write the JSON results (default benchmarks/results/"
                             "bench-<mode>-<time>.json)")
    return parser


def _groups(spec: str) -> list[str]:
    groups = [g.strip() for g in spec.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise SystemExit(f"unknown --rows {unknown}; choose from {', '.join(GROUPS)}")
    return groups


def collect(mode: str, groups: list[str], repeats: int, clock: str,
            device: str = "cpu") -> dict[str, Any]:
    """Run the requested groups on ``device``; returns the JSON-ready results."""
    from benchmarks import rows

    results: dict[str, Any] = {}
    cases = sampler_cases(mode)
    timing: dict[str, Any] = {"repeats": repeats, "clock": clock, "device": device}
    if "sampler" in groups or "others" in groups:
        results["sampler"] = [r for c in cases for r in rows.sampler_rows(
            c, others="others" in groups, **timing)]
        _progress("sampler")
    if "options" in groups:
        results["options"] = [r for c in cases for r in rows.option_rows(c, **timing)]
        _progress("options")
    if "compile" in groups:
        picks = [c for c in cases if c.name in ("mlp", "cnn16")]
        results["compile"] = [rows.compile_row(c, **timing) for c in picks]
        _progress("compile")
    ccases = clel_cases(mode)
    if "clel" in groups:
        results["clel"] = [r for c in ccases for r in rows.clel_rows(c, **timing)]
        _progress("clel")
    if "floor" in groups:
        from benchmarks.floor_rows import floor_rows

        results["floor"] = floor_rows(mode, **timing)
        _progress("floor")
    if "memory" in groups:
        from benchmarks.memory import IMPLS, in_subprocess

        impls = IMPLS if device == "cpu" else IMPLS[1:]  # the naive baseline is CPU only
        results["memory"] = [in_subprocess(impl, c.name, mode, 2, torch.get_num_threads(),
                                           device) for c in ccases for impl in impls]
        _progress("memory")
    if "scaling" in groups:
        k_values, b_values = {"full": ([5, 10, 20, 40], [16, 32, 64, 128]),
                              "quick": ([5, 10, 20], [16, 32, 64]),
                              "smoke": ([1, 2, 4], [4, 8])}[mode]
        results["scaling"] = rows.scaling_rows(ccases[0], steps=k_values, batches=b_values,
                                               **timing)
        _progress("scaling")
    return results


def _device(name: str) -> str:
    """``--device``, checked: ``cpu`` or an available ``cuda[:index]``."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SystemExit(f"--device {name!r} is not a torch device; use cpu or cuda[:index]"
                         ) from None
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device {name!r}: the suite runs on cpu or cuda[:index]")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name!r}: torch {torch.__version__} sees no CUDA device "
                         "here; run on a machine with one, or use --device cpu")
    return str(device)


def _progress(group: str) -> None:
    print(f"[bench] {group} done ({time.strftime('%H:%M:%S')}, load "
          f"{load_average():.2f})", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    assert mode in MODES
    default = {"full": GROUPS, "quick": tuple(g for g in GROUPS if g != "compile"),
               "smoke": ("sampler",)}[mode]
    groups = _groups(args.rows or ",".join(default))
    repeats = args.repeats or DEFAULT_REPEATS[mode]
    if repeats < 1 or args.threads < 1:
        raise SystemExit("--repeats and --threads must be positive")
    torch.set_num_threads(args.threads)
    device = _device(args.device)
    clock = "cuda" if device.startswith("cuda") else (
        args.clock or ("cpu" if args.threads == 1 else "wall"))
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_before = load_average()
    t0 = time.perf_counter()
    results = collect(mode, groups, repeats, "wall" if clock == "cuda" else clock, device)
    meta = {"mode": mode, "groups": groups, "repeats": repeats, "clock": clock, "device": device,
            "accelerator": accelerator(device),
            "started": started, "duration_s": time.perf_counter() - t0,
            "load_before": load_before, "load_after": load_average(), "machine": machine(),
            "command": "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None
                                                              else argv)}
    payload = {"meta": meta, **results}
    path = args.json or RESULTS / f"bench-{mode}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))
    print(report.markdown(payload))
    print(f"\nJSON: {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
