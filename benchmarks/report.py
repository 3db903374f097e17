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


def header(meta: dict[str, Any]) -> str:
    m = meta["machine"]
    flags = ", ".join(m["bf16_flags"]) or "none"
    return "\n".join([
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs (bf16 flags: {flags}); "
        f"torch {m['torch']}, {m['threads']} intra-op thread(s); Python {m['python']}.",
        f"Mode {meta['mode']}, {meta['repeats']} interleaved repetitions, clock "
        f"{meta['clock']} ({'process CPU time' if meta['clock'] == 'cpu' else 'elapsed'}); "
        f"load average {meta['load_before']:.2f} before, {meta['load_after']:.2f} after; "
        f"{meta['duration_s']:.0f} s; started {meta['started']}.",
        "Cells: median [first–third quartile]; ratios are per-repetition (paired) ratios.",
    ])


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
    return _table(["energy", "implementation", "ms / step", "÷ floor", "÷ ebmguide",
                   "max |Δ| vs floor"], body)


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
    return _table(["energy", "option", "ms / step", "speed-up vs fp32 default",
                   "max |Δ| samples"], body)


def clel_table(rows: list[dict[str, Any]]) -> str:
    body = [[f"{r['case']} (B={r['batch']}, K={r['steps']})", r["impl"], _ms(r["per_iter"]),
             _x(r["speedup_vs_naive"])] for r in rows]
    return _table(["set-up", "implementation", "ms / iteration", "naive ÷ this"], body)


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
              "memory": ("Peak memory of training iterations (fresh process each)", memory_table),
              "scaling": ("Cost growth of clel_step", scaling_table)}
    for key, (title, fn) in titles.items():
        if payload.get(key):
            parts.append(f"### {title}\n\n{fn(payload[key])}")
    return "\n\n".join(parts)
