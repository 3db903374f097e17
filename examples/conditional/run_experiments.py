"""Measure conditional / compositional generation and OOD detection of a CLEL checkpoint.

Produces the tables and grids of docs/conditional.md:

1. single-factor conditions (every shape, colour, scale and quadrant): the fraction of conditional
   samples whose factor matches the condition, against the unconditional rate of that value;
2. two-factor compositions (AND), negations (NOT) and a mixture (OR);
3. a sweep of the test-time guidance strength β;
4. OOD AUROC of held-out shapes against shifted sets (novel colours, novel shapes, noise and, when
   a local copy is given, CIFAR-10), joint score against the energy-only score, over β.

Judges: colour, scale and quadrant are read by rule (``ebmguide.data.read_factors``); the shape by
an independently trained classifier (``ebmguide.feature_nets.shapes_feature_net``, a small CNN
trained on generated shapes with their labels, never on samples and never the guide).

Usage (from the repository root; the model is the one ``make demo`` trains, about 5 minutes;
this script takes about 2 more on 2 CPU cores)::

    ebmguide demo --out runs/demo
    python examples/conditional/run_experiments.py --checkpoint runs/demo \\
        --out docs/assets/conditional [--cifar PATH_TO_CIFAR10]
    python examples/conditional/run_experiments.py --smoke      # CI: tiny run, seconds
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ebmguide.conditional import composed_energy, sample_energy
from ebmguide.data import make_shapes, read_factors
from ebmguide.feature_nets import shapes_feature_net, train_shapes_feature_net
from ebmguide.metrics import auroc
from ebmguide.ood import ood_scores
from ebmguide.run.conditions import ConditionContext, load_context, resolve_condition, save_rows

FACTORS = ("shape", "colour", "scale", "quadrant")
PAIRS = [("colour=red", "shape=square"), ("colour=blue", "shape=circle"),
         ("shape=triangle", "quadrant=top-right"), ("colour=yellow", "scale=large"),
         ("shape=cross", "colour=green"), ("scale=small", "quadrant=bottom-left")]
NEGATIONS = [((), ("colour=red",)), (("shape=circle",), ("colour=red",)),
             ((), ("scale=small",)), (("colour=blue",), ("shape=square",))]
ORS = [("colour=red", "colour=blue"), ("shape=circle", "shape=cross")]
SWEEP_CONDITIONS = ("shape=circle", "shape=triangle", "colour=red", "colour=cyan",
                    "scale=large", "scale=small", "quadrant=top-left", "quadrant=bottom-right")
OOD_SETS = ("novel_colours", "novel_shapes", "noise")
OOD_BETAS = (0.0001, 0.001, 0.01, 0.1, 1.0)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="run folder or checkpoint file (required unless --smoke)")
    p.add_argument("--out", type=Path, default=Path("docs/assets/conditional"),
                   help="folder for the grids, results.json and tables.md")
    # The demo model's energies are small (about 1e-4), so the useful test-time β is small too:
    # the sweep of docs/conditional.md peaks in matches near β = 0.03.
    p.add_argument("--beta", type=float, default=0.03, help="guidance strength of the tables")
    p.add_argument("--betas", type=float, nargs="+",
                   default=[0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0],
                   help="β sweep")
    p.add_argument("--init", choices=("buffer", "fresh"), default="buffer",
                   help="start chains from the checkpoint's replay buffer or from noise")
    p.add_argument("--n", type=int, default=100, help="samples per condition")
    p.add_argument("--n-sweep", type=int, default=50, help="samples per condition in the sweep")
    p.add_argument("--steps", type=int, default=None, help="SGLD steps (default: run's)")
    p.add_argument("--labelled", type=int, default=600, help="labelled images for the latents")
    p.add_argument("--ood-n", type=int, default=1000, help="images per OOD set")
    p.add_argument("--cifar", default=None, help="optional local CIFAR-10 folder or archive")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (1 is fastest on a busy 2-core machine)")
    p.add_argument("--smoke", action="store_true", help="tiny run in a temp folder (CI)")
    return p


class Judge:
    """Reads the four factors of images: rules for colour/scale/quadrant, a classifier for shape."""

    def __init__(self, size: int, cache: Path | None, *, smoke: bool = False) -> None:
        if smoke:  # a barely trained classifier: exercises the code path in seconds
            self.net, _ = train_shapes_feature_net(size=size, iterations=3, batch_size=16)
        else:
            self.net = shapes_feature_net(cache, size=size)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        read = read_factors(x.clamp(0, 1))
        out = {k: read[k] for k in ("colour", "scale", "quadrant")}
        out["shape"] = self.net.logits(x.clamp(0, 1))["shape"].argmax(1)
        return out


def _parse(spec: str, names: dict[str, tuple[str, ...]]) -> tuple[str, int]:
    factor, value = spec.split("=")
    return factor, names[factor].index(value)


class Experiment:
    def __init__(self, ctx: ConditionContext, judge: Judge, args: argparse.Namespace) -> None:
        self.ctx, self.judge, self.args = ctx, judge, args
        self.names = ctx.labelled().factor_names
        self.latents: dict[str, torch.Tensor] = {}
        self.steps = args.steps or ctx.cfg.eval.fresh_steps or ctx.cfg.sampler.n_steps
        self.calls = 0

    def latent(self, spec: str) -> torch.Tensor:
        if spec not in self.latents:
            self.latents[spec] = resolve_condition(spec, self.ctx)
        return self.latents[spec]

    def sample(self, n: int, beta: float, *, and_: tuple[str, ...] = (), not_: tuple[str, ...] = (),
               or_: tuple[str, ...] = (), init: str | None = None) -> torch.Tensor:
        from ebmguide.run.components import init_range, langevin_settings

        self.calls += 1
        g = torch.Generator(self.ctx.device).manual_seed(self.args.seed * 7919 + self.calls)
        terms: dict[str, Any] = {}
        if and_ or not_:
            terms["and_latents"] = torch.stack([self.latent(s) for s in (*and_, *not_)])
            terms["and_weights"] = [1.0] * len(and_) + [-1.0] * len(not_)
        if or_:
            terms["or_latents"] = torch.stack([self.latent(s) for s in or_])
        energy = (composed_energy(self.ctx.ebm, beta=beta, **terms) if terms
                  else self.ctx.ebm.energy)
        start = self.ctx.buffer if (init or self.args.init) == "buffer" else None
        return sample_energy(energy, n, settings=langevin_settings(self.ctx.cfg, self.ctx.device),
                             n_steps=self.steps, shape=self.ctx.shape,
                             init_range=init_range(self.ctx.cfg), generator=g,
                             device=self.ctx.device, batch_size=256,
                             init=start).cpu()  # networks: eval mode

    def rate(self, read: dict[str, torch.Tensor], specs: tuple[str, ...],
             negate: tuple[str, ...] = ()) -> float:
        ok = torch.ones(len(next(iter(read.values()))), dtype=torch.bool)
        for spec in specs:
            f, v = _parse(spec, self.names)
            ok &= read[f] == v
        for spec in negate:
            f, v = _parse(spec, self.names)
            ok &= read[f] != v
        return float(ok.float().mean())


def judge_accuracy(judge: Judge, size: int, n: int) -> dict[str, float]:
    data = make_shapes(n, size=size, generator=torch.Generator().manual_seed(4242))
    read = judge(data.images)
    return {f: float((read[f] == data.factors[f]).float().mean()) for f in FACTORS}


def single_factor(exp: Experiment, uncond: dict[str, torch.Tensor], out: Path) -> list[dict]:
    rows, beta = [], exp.args.beta
    for factor in FACTORS:
        grid_rows = []
        for value in exp.names[factor]:
            spec = f"{factor}={value}"
            x = exp.sample(exp.args.n, beta, and_=(spec,))
            grid_rows.append((spec, x[:10]))
            rows.append({"condition": spec, "conditional": exp.rate(exp.judge(x), (spec,)),
                         "unconditional": exp.rate(uncond, (spec,)),
                         "chance": 1 / len(exp.names[factor])})
        save_rows(grid_rows, out / f"factor-{factor}.png", scale=2)
    return rows


def compositions(exp: Experiment, uncond: dict[str, torch.Tensor], out: Path) -> dict[str, list]:
    beta, n, grid_rows = exp.args.beta, exp.args.n, []
    pairs = []
    for a, b in PAIRS:
        x = exp.sample(n, beta, and_=(a, b))
        read = exp.judge(x)
        grid_rows.append((f"{a} AND {b}", x[:10]))
        pairs.append({"condition": f"{a} AND {b}", "both": exp.rate(read, (a, b)),
                      "first": exp.rate(read, (a,)), "second": exp.rate(read, (b,)),
                      "unconditional": exp.rate(uncond, (a, b))})
    negations = []
    for pos, neg in NEGATIONS:
        x = exp.sample(n, beta, and_=pos, not_=neg)
        read = exp.judge(x)
        label = " AND ".join([*pos, *(f"NOT {s}" for s in neg)])
        grid_rows.append((label, x[:10]))
        negations.append({"condition": label, "satisfied": exp.rate(read, pos, neg),
                          "negated_value_rate": exp.rate(read, neg),
                          "unconditional_satisfied": exp.rate(uncond, pos, neg),
                          "unconditional_negated_value_rate": exp.rate(uncond, neg)})
    ors = []
    for alternatives in ORS:
        x = exp.sample(n, beta, or_=alternatives)
        read = exp.judge(x)
        grid_rows.append((" OR ".join(alternatives), x[:10]))
        each = [exp.rate(read, (s,)) for s in alternatives]
        ors.append({"condition": " OR ".join(alternatives), "any": sum(each), "each": each,
                    "unconditional_any": sum(exp.rate(uncond, (s,)) for s in alternatives)})
    save_rows(grid_rows, out / "compositions.png", scale=2)
    return {"and": pairs, "not": negations, "or": ors}


def beta_sweep(exp: Experiment, judge_clean: Any, out: Path) -> list[dict]:
    rows, grid_rows = [], []
    for init in ("buffer", "fresh"):
        for beta in exp.args.betas:
            rates, clean = [], []
            for i, spec in enumerate(SWEEP_CONDITIONS):
                x = exp.sample(exp.args.n_sweep, beta, and_=(spec,), init=init)
                rates.append(exp.rate(exp.judge(x), (spec,)))
                clean.append(judge_clean(x))
                if i == 0:
                    grid_rows.append((f"{init}: {spec}, beta={beta:g}", x[:10]))
            rows.append({"init": init, "beta": beta, "match": sum(rates) / len(rates),
                         "per_condition": dict(zip(SWEEP_CONDITIONS, rates, strict=True)),
                         "clean": sum(clean) / len(clean)})
    save_rows(grid_rows, out / "beta-sweep.png", scale=2)
    return rows


def clean_rate(x: torch.Tensor) -> float:
    """Fraction of samples holding one readable shape (as feature_nets.factor_statistics)."""
    read = read_factors(x.clamp(0, 1))
    ok = (read["shape_iou"] >= 0.6) & (read["colour_error"] <= 0.3) & (read["shape"] >= 0)
    return float(ok.float().mean())


def ood(exp: Experiment, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    from ebmguide.run.ood_sets import load_set

    sets = list(OOD_SETS) + ([f"cifar10:{args.cifar}"] if args.cifar else [])
    shape, ctx = exp.ctx.shape, exp.ctx
    inside = ood_scores(ctx.ebm, ctx.guide, load_set("shapes", args.ood_n, shape, seed=args.seed))
    results = {}
    for name in sets:
        outside = ood_scores(ctx.ebm, ctx.guide, load_set(name, args.ood_n, shape, seed=args.seed))
        row = {"energy only": auroc(inside.energy_only(), outside.energy_only())}
        row.update({f"beta={b:g}": auroc(inside.joint(b), outside.joint(b))
                    for b in OOD_BETAS if b > 0})
        row["cosine only"] = auroc(inside.cosine, outside.cosine)
        results[name.split(":")[0]] = row
    return results


def tables(res: dict[str, Any]) -> str:
    pct = lambda v: f"{100 * v:.0f} %"  # noqa: E731
    lines = ["Judges' accuracy on real held-out images: " + ", ".join(
        f"{k} {pct(v)}" for k, v in res["judge_accuracy"].items()), "",
        f"Unconditional samples: {pct(res['unconditional_clean'])} clean.", "",
        "| condition | conditional | unconditional | chance |", "|---|---|---|---|"]
    lines += [f"| {r['condition']} | {pct(r['conditional'])} | {pct(r['unconditional'])} | "
              f"{pct(r['chance'])} |" for r in res["single"]]
    lines += ["", "| AND | both match | first | second | unconditional (both) |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['condition']} | {pct(r['both'])} | {pct(r['first'])} | {pct(r['second'])} "
              f"| {pct(r['unconditional'])} |" for r in res["compositions"]["and"]]
    lines += ["", "| NOT | satisfied | negated value present | unconditional satisfied | "
              "unconditional negated value |", "|---|---|---|---|---|"]
    lines += [f"| {r['condition']} | {pct(r['satisfied'])} | {pct(r['negated_value_rate'])} | "
              f"{pct(r['unconditional_satisfied'])} | "
              f"{pct(r['unconditional_negated_value_rate'])} |"
              for r in res["compositions"]["not"]]
    lines += ["", "| OR | either | each | unconditional either |", "|---|---|---|---|"]
    lines += [f"| {r['condition']} | {pct(r['any'])} | {' / '.join(pct(v) for v in r['each'])} "
              f"| {pct(r['unconditional_any'])} |" for r in res["compositions"]["or"]]
    lines += ["", "| chains start from | β | mean match (8 conditions) | clean samples |",
              "|---|---|---|---|"]
    lines += [f"| {r['init']} | {r['beta']:g} | {pct(r['match'])} | {pct(r['clean'])} |"
              for r in res["sweep"]]
    cols = list(next(iter(res["ood"].values())))
    lines += ["", "| OOD set | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(f"{v[c]:.3f}" for c in cols) + " |"
              for k, v in res["ood"].items()]
    return "\n".join(lines) + "\n"


def smoke_checkpoint(folder: Path) -> Path:
    from ebmguide.cli import main as cli

    sets = ["data.n_train=128", "model.width=4", "model.latent_dim=8", "model.hidden_dim=16",
            "guide.width=4", "guide.hidden_dim=16", "sampler.buffer_size=32",
            "sampler.n_steps=2", "train.iterations=2", "train.batch_size=8",
            "train.checkpoint_every=2", "train.sample_every=1000", "eval.every=0",
            'eval.feature_net="none"', "eval.fresh_steps=2"]
    argv = ["train", "--config", "demo", "--out", str(folder), "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    if cli(argv) != 0:
        raise RuntimeError("the smoke run's training failed")
    return folder


def main(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    if args.threads or args.smoke:
        torch.set_num_threads(args.threads or 1)
    tmp = tempfile.TemporaryDirectory() if args.smoke else None
    if tmp is not None:
        root = Path(tmp.name)
        args.checkpoint = str(smoke_checkpoint(root / "run"))
        args.out, args.n, args.n_sweep, args.ood_n = root / "out", 4, 2, 16
        args.labelled, args.steps, args.betas = 120, 1, [0.0, 3.0]
    elif args.checkpoint is None:
        raise SystemExit("give --checkpoint RUN (or --smoke)")
    start = time.time()
    ctx = load_context(args.checkpoint, n_labelled=args.labelled)
    run_dir = ctx.checkpoint.parent.parent
    judge = Judge(ctx.shape[-1], run_dir / "feature_net.pt", smoke=args.smoke)
    exp = Experiment(ctx, judge, args)
    args.out.mkdir(parents=True, exist_ok=True)
    uncond_x = exp.sample(max(4 * args.n, 8), 0.0)
    save_rows([("unconditional", uncond_x[:10])], args.out / "unconditional.png", scale=2)
    uncond = judge(uncond_x)
    res: dict[str, Any] = {
        "checkpoint": str(ctx.checkpoint), "init": args.init, "beta": args.beta,
        "n": args.n, "steps": exp.steps, "seed": args.seed,
        "judge_accuracy": judge_accuracy(judge, ctx.shape[-1], 64 if args.smoke else 1000),
        "unconditional_clean": clean_rate(uncond_x),
    }
    res["single"] = single_factor(exp, uncond, args.out)
    res["compositions"] = compositions(exp, uncond, args.out)
    res["sweep"] = beta_sweep(exp, clean_rate, args.out)
    res["ood"] = ood(exp, args)
    res["seconds"] = round(time.time() - start, 1)
    (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "tables.md").write_text(tables(res))
    print(tables(res))
    print(f"wrote {args.out} in {res['seconds']} s")
    if tmp is not None:
        tmp.cleanup()
    return res


if __name__ == "__main__":
    main(get_args_parser().parse_args())
