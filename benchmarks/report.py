"""Markdown tables from the JSON results of ``benchmarks.run``."""

from __future__ import annotations

from typing import Any


def _ms(summary: dict[str, float]) -> str:
    return f"{summary['median'] * 1e3:.2f} [{summary['q1'] * 1e3:.2f}–{summary['q3'] * 1e3:.2f}]"


def _x(summary: dict[str, float]) -> str:
    return f"{summary['median']:.3f} [{summary['q1']:.3f}–{summary['q3']:.3f}]"


def _table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


CLOCK_NAMES = {"cpu": "process CPU time", "wall": "elapsed",
               "cuda": "CUDA events, device synchronised before and after every timed call"}


def _accelerator_line(a: dict[str, Any]) -> str:
    return (f"Device: {a['name']} ({a['memory_gib']:.0f} GiB, compute capability "
            f"{a['capability']}); torch {a['torch']}, CUDA {a['cuda']}, cuDNN {a['cudnn']}, "
            f"TF32 matmul {'on' if a['tf32_matmul'] else 'off'}; clocks: {a['clocks']}.")


def header(meta: dict[str, Any]) -> str:
    m = meta["machine"]
    flags = ", ".join(m["bf16_flags"]) or "none"
    lines = [
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs (bf16 flags: {flags}); "
        f"torch {m['torch']}, {m['threads']} intra-op thread(s); Python {m['python']}."]
    if meta.get("accelerator"):
        lines.append(_accelerator_line(meta["accelerator"]))
    return "\n".join([
        *lines,
        f"Mode {meta['mode']}, {meta['repeats']} interleaved repetitions, device "
        f"{meta.get('device', 'cpu')}, clock {meta['clock']} "
        f"({CLOCK_NAMES.get(meta['clock'], meta['clock'])}); "
        f"load average {meta['load_before']:.2f} before, {meta['load_after']:.2f} after; "
        f"{meta['duration_s']:.0f} s; started {meta['started']}.",
        "Cells: median [first–third quartile]; ratios are per-repetition (paired) ratios.",
    ])


def _with_peak(header: list[str], body: list[list[str]],
               rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Add a peak-memory column when any row has one (CUDA runs)."""
    if not any("peak_mb" in r for r in rows):
        return header, body
    cells = [f"{r['peak_mb']:.0f}" if "peak_mb" in r else "" for r in rows]
    return [*header, "peak MiB (CUDA)"], [[*b, c] for b, c in zip(body, cells, strict=True)]


def sampler_table(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        label = f"{r['energy']} (B={r['batch']}, K={r['steps']})"
        if "per_step" not in r:
            body.append([label, r["impl"], f"n/a: {r['note']}", "", "", ""])
            continue
        body.append([label, f"{r['impl']} ({r['note']})", _ms(r["per_step"]), _x(r["vs_floor"]),
                     _x(r["vs_ebmguide"]),
                     f"{r['max_diff_vs_floor']:.1e} (moved {r['chain_moved']:.2g})"])
    return _table(*_with_peak(["energy", "implementation", "ms / step", "÷ floor", "÷ ebmguide",
                               "max |Δ| vs floor"], body, rows))


def options_table(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        label = f"{r['energy']} (B={r['batch']}, K={r['steps']})"
        if "error" in r:
            body.append([label, r["option"], f"n/a: {r['error']}", "", ""])
            continue
        extra = f" (compile {r['compile_s']:.0f} s)" if "compile_s" in r else ""
        body.append([label, r["option"] + extra, _ms(r["per_step"]), _x(r["speedup"]),
                     f"{r['max_diff']:.1e}"])
    return _table(*_with_peak(["energy", "option", "ms / step", "speed-up vs fp32 default",
                               "max |Δ| samples"], body, rows))


def clel_table(rows: list[dict[str, Any]]) -> str:
    body = [[f"{r['case']} (B={r['batch']}, K={r['steps']})", r["impl"], _ms(r["per_iter"]),
             _x(r["speedup_vs_naive"])] for r in rows]
    base = "naive" if not rows or rows[0].get("base", "naive").startswith("naive") else "defaults"
    return _table(*_with_peak(["set-up", "implementation", "ms / iteration", f"{base} ÷ this"],
                              body, rows))


def floor_table(rows: list[dict[str, Any]]) -> str:
    body = [[f"{r['case']} (B={r['batch']}, K={r['steps']})", r["impl"], _ms(r["per_iter"]),
             _x(r["vs_floor"]), f"{r['max_diff_clel_step_vs_floor']:.1e}"] for r in rows]
    return _table(*_with_peak(["set-up", "implementation", "ms / iteration", "÷ floor",
                               "max |Δ| clel_step vs floor (one iteration)"], body, rows))


def memory_table(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        if "error" in r:
            body.append([r["case"], r["impl"], f"n/a: {r['error']}", "", ""])
            continue
        body.append([r["case"], r["impl"], f"{r['peak_rss_mb']:.0f}",
                     f"{r['rss_before_mb']:.0f}", f"{r['increment_mb']:.1f}"])
    return _table(["set-up", "implementation", "peak RSS MiB", "RSS before MiB",
                   "increment MiB"], body)


def scaling_table(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        fixed = f"B={r['fixed']['B']}" if r["axis"] == "K" else f"K={r['fixed']['K']}"
        points = ", ".join(f"{v}: {t * 1e3:.0f}" for v, t in
                           zip(r["values"], r["median_s"], strict=True))
        fit = r["fit"]
        body.append([f"{r['case']} ({fixed})", r["axis"], points,
                     f"{fit['slope'] * 1e3:.2f} ms per unit", f"{fit['intercept'] * 1e3:.0f} ms",
                     f"{fit['r2']:.4f}"])
    return _table(["set-up", "axis", "ms per iteration at each value", "slope", "intercept",
                   "R²"], body)


def markdown(payload: dict[str, Any]) -> str:
    parts = [header(payload["meta"])]
    titles = {"sampler": ("SGLD sampler against the floor", sampler_table),
              "options": ("Speed options of the sampler", options_table),
              "compile": ("torch.compile", options_table),
              "clel": ("One CLEL training iteration", clel_table),
              "floor": ("The CLEL iteration against its floor", floor_table),
              "memory": ("Peak memory of training iterations (fresh process each)", memory_table),
              "scaling": ("Cost growth of clel_step", scaling_table)}
    for key, (title, fn) in titles.items():
        if payload.get(key):
            parts.append(f"### {title}\n\n{fn(payload[key])}")
    return "\n\n".join(parts)
