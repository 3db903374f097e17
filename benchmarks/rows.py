"""The measurements behind each table of ``benchmarks.run``; each returns plain dicts."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

import ebmguide as eg
from benchmarks.device import PeakMemory
from benchmarks.energies import ClelCase, SamplerCase, clel_components
from benchmarks.floor import floor_sgld
from benchmarks.naive_clel import build_naive
from benchmarks.others import OTHERS
from benchmarks.timing import interleaved, paired_ratio, summarize

SEED = 7


def _peak(row: dict[str, Any], peaks: PeakMemory, name: str) -> dict[str, Any]:
    """``row`` with ``peak_mb`` (CUDA's max_memory_allocated over ``name``'s calls) when known."""
    if name in peaks.peaks_mb:
        row["peak_mb"] = peaks.peaks_mb[name]
    return row


def _ours(model: nn.Module, case: SamplerCase, **options: Any) -> Callable[[Tensor, int], Tensor]:
    def run(x0: Tensor, seed: int) -> Tensor:
        settings = eg.LangevinSettings(n_steps=case.steps, step_size=case.step_size,
                                       noise_scale=case.noise_scale, clamp=case.clamp, **options)
        return eg.langevin_dynamics(
            model.energy, x0, settings,  # type: ignore[arg-type]
            generator=torch.Generator(x0.device).manual_seed(seed)).samples
    return run


def _floor(model: nn.Module, case: SamplerCase) -> Callable[[Tensor, int], Tensor]:
    def run(x0: Tensor, seed: int) -> Tensor:
        return floor_sgld(model.energy, x0, n_steps=case.steps,  # type: ignore[arg-type]
                          step_size=case.step_size, noise_scale=case.noise_scale,
                          clamp=case.clamp,
                          generator=torch.Generator(x0.device).manual_seed(seed))
    return run


def _max_diff(a: Tensor, b: Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def sampler_rows(case: SamplerCase, *, repeats: int, clock: str, others: bool,
                 device: str = "cpu") -> list[dict[str, Any]]:
    """ebmguide's sampler (and torchebm's, ebmkit's: CPU only) against the floor on one energy."""
    model = case.model().to(device)
    x0 = case.start().to(device)
    runners: dict[str, Callable[[Tensor, int], Tensor]] = {
        "floor": _floor(model, case), "ebmguide": _ours(model, case)}
    notes: dict[str, str] = {"floor": "bare loop", "ebmguide": f"ebmguide {eg.__version__}"}
    if others:
        for name, make in OTHERS.items():
            run, note = make(model, case) if device == "cpu" else (None, "CPU only here")
            notes[name] = note
            if run is not None:
                runners[name] = run
    reference = runners["floor"](x0, SEED)
    moved = _max_diff(reference, x0)
    fns = {name: (lambda r=run: r(x0, SEED)) for name, run in runners.items()}
    peaks = PeakMemory(device)
    times = interleaved(fns, repeats=repeats, clock=clock, device=device, peaks=peaks)
    rows = []
    for name, note in notes.items():
        row: dict[str, Any] = {"energy": case.name, "batch": case.batch, "steps": case.steps,
                               "impl": name, "note": note}
        if name in runners:
            per_step = summarize([t / case.steps for t in times[name]])
            row.update(per_step=per_step.as_dict(),
                       vs_floor=paired_ratio(times, name, "floor").as_dict(),
                       vs_ebmguide=paired_ratio(times, name, "ebmguide").as_dict(),
                       max_diff_vs_floor=_max_diff(runners[name](x0, SEED), reference),
                       chain_moved=moved)
        rows.append(_peak(row, peaks, name))
    return rows


def option_rows(case: SamplerCase, *, repeats: int, clock: str,
                device: str = "cpu") -> list[dict[str, Any]]:
    """Speed options of the sampler on one energy: each against the fp32 default."""
    model = case.model().to(device)
    x0 = case.start().to(device)
    variants: dict[str, tuple[Callable[[Tensor, int], Tensor], Tensor]] = {
        "default (fp32)": (_ours(model, case), x0),
        "bf16 autocast": (_ours(model, case, autocast_dtype=torch.bfloat16), x0),
        "parameters not frozen": (_unfrozen(model, case), x0),
    }
    if x0.dim() == 4:
        variants["channels_last"] = (
            _ours(model, case, memory_format=torch.channels_last), x0)
        variants["bf16 + channels_last"] = (
            _ours(model, case, autocast_dtype=torch.bfloat16,
                  memory_format=torch.channels_last), x0)
    reference = variants["default (fp32)"][0](x0, SEED)
    fns = {name: (lambda r=run, x=x: r(x, SEED)) for name, (run, x) in variants.items()}
    peaks = PeakMemory(device)
    times = interleaved(fns, repeats=repeats, clock=clock, device=device, peaks=peaks)
    rows = []
    for name, (run, x) in variants.items():
        rows.append(_peak({
            "energy": case.name, "batch": case.batch, "steps": case.steps, "option": name,
            "per_step": summarize([t / case.steps for t in times[name]]).as_dict(),
            "speedup": paired_ratio(times, "default (fp32)", name).as_dict(),
            "max_diff": _max_diff(run(x, SEED), reference)}, peaks, name))
    return rows


def _unfrozen(model: nn.Module, case: SamplerCase) -> Callable[[Tensor, int], Tensor]:
    """The library's sampler on a plain function, which it cannot freeze parameters of."""
    def energy(v: Tensor) -> Tensor:
        out: Tensor = model.energy(v)  # type: ignore[operator]
        return out

    def run(x0: Tensor, seed: int) -> Tensor:
        return eg.langevin_dynamics(energy, x0,
                                    eg.LangevinSettings(n_steps=case.steps,
                                                        step_size=case.step_size,
                                                        noise_scale=case.noise_scale,
                                                        clamp=case.clamp),
                                    generator=torch.Generator(x0.device).manual_seed(seed)).samples
    return run


def compile_row(case: SamplerCase, *, repeats: int, clock: str,
                device: str = "cpu") -> dict[str, Any]:
    """torch.compile on the energy network against eager, after compilation."""
    model = case.model().to(device)
    x0 = case.start().to(device)
    row: dict[str, Any] = {"energy": case.name, "batch": case.batch, "steps": case.steps,
                           "option": "torch.compile(backbone)"}
    try:
        compiled = case.model().to(device)
        compiled.backbone = torch.compile(compiled.backbone)  # type: ignore[assignment]
        start = time.perf_counter()
        _ours(compiled, case)(x0, SEED)
        row["compile_s"] = time.perf_counter() - start
    except Exception as exc:  # a missing C++ compiler, an unsupported op, ...
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        return row
    eager, comp = _ours(model, case), _ours(compiled, case)
    times = interleaved({"eager": lambda: eager(x0, SEED), "compiled": lambda: comp(x0, SEED)},
                        repeats=repeats, clock=clock, device=device)
    row.update(per_step=summarize([t / case.steps for t in times["compiled"]]).as_dict(),
               speedup=paired_ratio(times, "eager", "compiled").as_dict(),
               max_diff=_max_diff(comp(x0, SEED), eager(x0, SEED)))
    return row


def _clel_fn(case: ClelCase, device: str = "cpu", **step_options: Any) -> Callable[[], object]:
    parts = clel_components(case, device=device, **step_options.pop("sampler_options", {}))
    x = case.data().to(device)
    g = torch.Generator(device).manual_seed(SEED)

    def step() -> object:
        return eg.clel_step(parts["ebm"], parts["guide"], parts["sampler"], x,  # type: ignore[arg-type]
                            ebm_optimizer=parts["ebm_optimizer"],  # type: ignore[arg-type]
                            guide_optimizer=parts["guide_optimizer"],  # type: ignore[arg-type]
                            generator=g, **step_options)
    return step


def clel_rows(case: ClelCase, *, repeats: int, clock: str,
              device: str = "cpu") -> list[dict[str, Any]]:
    """A CLEL iteration: naive baseline (CPU only), ebmguide defaults, and ebmguide's options.

    Off CPU the ratios are taken against ebmguide's defaults instead of the naive baseline.
    """
    fns: dict[str, Callable[[], object]] = {}
    if device == "cpu":
        naive = build_naive(case)
        x = case.data()
        fns["naive (research-code habits)"] = lambda: naive.step(x)
    fns["ebmguide clel_step (defaults)"] = _clel_fn(case, device)
    fns["ebmguide, joint_forward=False"] = _clel_fn(case, device, joint_forward=False)
    fns["ebmguide, bf16 sampler"] = _clel_fn(
        case, device, sampler_options={"autocast_dtype": torch.bfloat16})
    peaks = PeakMemory(device)
    times = interleaved(fns, repeats=repeats, clock=clock, warmup=1, device=device, peaks=peaks)
    base = next(iter(fns))
    return [_peak({"case": case.name, "batch": case.batch, "steps": case.steps, "impl": name,
                   "per_iter": summarize(times[name]).as_dict(), "base": base,
                   "speedup_vs_naive": paired_ratio(times, base, name).as_dict()}, peaks, name)
            for name in fns]


def linear_fit(xs: list[float], ys: list[float]) -> dict[str, float]:
    """Least-squares y = a + b·x: slope b, intercept a, R²."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return {"slope": slope, "intercept": intercept,
            "r2": 1 - ss_res / ss_tot if ss_tot > 0 else math.nan}


def scaling_rows(case: ClelCase, *, steps: list[int], batches: list[int], repeats: int,
                 clock: str, device: str = "cpu") -> list[dict[str, Any]]:
    """clel_step time against K (batch fixed) and against B (K fixed), with linear fits."""
    from dataclasses import replace

    out = []
    for axis, values in (("K", steps), ("B", batches)):
        cases = {v: replace(case, steps=v) if axis == "K" else replace(case, batch=v)
                 for v in values}
        fns = {str(v): _clel_fn(c, device) for v, c in cases.items()}
        times = interleaved(fns, repeats=repeats, clock=clock, warmup=1, device=device)
        medians = [summarize(times[str(v)]).median for v in values]
        fit = linear_fit([float(v) for v in values], medians)
        out.append({"case": case.name, "axis": axis, "values": values,
                    "fixed": {"K": case.steps, "B": case.batch},
                    "median_s": medians, "fit": fit})
    return out
