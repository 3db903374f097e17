"""What guidance buys: one recipe trained with the alignment term of CLEL (β > 0) and without.

For each β and seed, trains a recipe (the shipped ``demo`` by default) with ``loss.beta`` set,
then scores the run's final checkpoint with the recipe's evaluation settings, as the Trainer's final
evaluation does: replay-buffer FD and fresh-chain FD (on the run's independent feature network),
and for the shapes the clean-sample rates (by rule). It also measures conditional sampling: one
latent per value (the guide's mean embedding of labelled images), p(x | z) sampled from the run's
buffer at the test-time β of docs/conditional.md. For the shapes the value is a colour, read back
by rule; for labelled image data (CIFAR-10) it is a class, read back by the run's in-domain
classifier (its accuracy on real held-out images is the ceiling). With β = 0 the EBM's projection
head never learns to align with the guide, so its conditional match rate is the control (a row
of conditional samples per value goes to the run's ``conditional_grid.png``). Prints
one markdown table (mean ± standard deviation over seeds, then each seed's figure) and writes it
with the raw numbers to ``--out``.

Usage (from the repository root; each demo run takes about 4 minutes on 2 CPU cores)::

    python examples/guidance_ablation/run.py --out runs/ablation               # 2 β x 3 seeds
    python examples/guidance_ablation/run.py --betas 0.01 0 --seeds 0 1 2 --threads 1
    python examples/guidance_ablation/run.py --config examples/guidance_ablation/cifar10_16.toml \
        --set data.path=PATH/cifar10 --threads 1 --out runs/ablation-cifar10   # CIFAR-10, 16x16
    python examples/guidance_ablation/run.py --smoke                            # CI: seconds

A run folder (``<out>/beta<β>-seed<s>``) whose newest checkpoint is at the recipe's last iteration
is reused, and its figures too when it was scored with the same settings (saved in the run's
``ablation_scores.json``), so an interrupted sweep continues.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ebmguide.conditional import composed_energy, latent_from_examples, sample_energy
from ebmguide.data import CIFAR10_CLASSES, COLOURS, read_factors
from ebmguide.feature_choice import choose_feature_net
from ebmguide.in_domain import InDomainFeatureNet
from ebmguide.run.checkpoints import find_checkpoint, load_run
from ebmguide.run.components import init_range, langevin_settings
from ebmguide.run.conditions import ConditionContext, load_context, resolve_condition, save_rows
from ebmguide.run.config import RunConfig, load_config
from ebmguide.run.data_sources import load_training_data
from ebmguide.run.logger import read_metrics
from ebmguide.run.trainer import Trainer

METRICS = ("buffer_fd", "buffer_clean", "fresh_fd", "fresh_clean")  # shapes
IMAGE_METRICS = ("buffer_fd", "fresh_fd", "feature_net_accuracy")  # other labelled images
HEADERS = {"buffer_fd": "buffer FD", "buffer_clean": "buffer clean", "fresh_fd": "fresh FD",
           "fresh_clean": "fresh clean", "feature_net_accuracy": "classifier accuracy (real)",
           "colour_match": "colour match (β_test = 0.03)",
           "class_match": "class match (β_test = 0.03)"}
TEST_BETA = 0.03  # the test-time guidance strength measured in docs/conditional.md
EXAMPLES_PER_CLASS = 100  # labelled training images whose mean embedding is a class latent
SCORES = "ablation_scores.json"  # a run's figures and the settings they were computed with
CONDITIONAL_GRID = "conditional_grid.png"  # a row of conditional samples per colour or class
GRID_PER_ROW = 10
SMOKE = ("data.n_train=64", "data.size=8", "model.width=4", "model.latent_dim=8",
         "model.hidden_dim=16", "guide.width=4", "guide.hidden_dim=16", "sampler.buffer_size=64",
         "sampler.n_steps=2", "train.iterations=4", "train.batch_size=8", "train.log_every=2",
         "eval.every=0", "eval.n_samples=16", "eval.fresh_steps=2", "eval.grid_size=4",
         "train.sample_every=1000", "train.checkpoint_every=1000", "optim.warmup_iterations=2",
         "ema.copy_iterations=2", 'eval.feature_net="shapes_classifier"')


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="demo", help="shipped recipe name or TOML file")
    p.add_argument("--betas", type=float, nargs="+", default=[0.01, 0.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every run (repeatable)")
    p.add_argument("--per-colour", type=int, default=50,
                   help="conditional samples per colour (shapes) or per class (other images)")
    p.add_argument("--threads", type=int, default=2, help="torch threads per run")
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--smoke", action="store_true", help="tiny runs for CI")
    return p


def finished(run: Path) -> bool:
    """Whether the run's newest checkpoint is at its last iteration."""
    try:
        state, cfg = load_run(find_checkpoint(run))
    except FileNotFoundError:
        return False
    return int(state["iteration"]) >= cfg.train.iterations


def metric_names(recipe: RunConfig) -> tuple[str, ...]:
    """The final-evaluation figures the table reports for the recipe's data."""
    return METRICS if recipe.data.name == "shapes" else IMAGE_METRICS


def logged_final_evaluation(run: Path, cfg: RunConfig, keys: Sequence[str]
                            ) -> dict[str, float] | None:
    """The figures of the final evaluation the Trainer logged, if it holds every one of ``keys``."""
    records = [r for r in read_metrics(run / "metrics.jsonl")
               if r.get("kind") == "eval" and r.get("iteration") == cfg.train.iterations]
    if not records or any(k not in records[-1] for k in keys):
        return None
    return {k: float(records[-1][k]) for k in keys}


def final_evaluation(run: Path, recipe: RunConfig, threads: int) -> dict[str, float]:
    """The Trainer's final evaluation of the run's newest checkpoint, with ``recipe.eval``.

    Taken from the run's metrics.jsonl when the run was trained with ``recipe.eval`` (the same
    evaluation), else computed again on the checkpoint.
    """
    checkpoint = find_checkpoint(run)
    _, cfg = load_run(checkpoint)
    if cfg.eval == recipe.eval:
        logged = logged_final_evaluation(run, cfg, metric_names(recipe))
        if logged is not None:
            return logged
    cfg = dataclasses.replace(cfg, eval=recipe.eval, train=dataclasses.replace(
        cfg.train, tensorboard=False, num_threads=threads))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "score"
        folder.mkdir()
        for cached in run.glob("feature_net*.pt"):  # the run's feature networks, not retrained
            shutil.copy2(cached, folder / cached.name)
        trainer = Trainer(cfg, folder, resume=checkpoint, progress=False)
        try:
            values = trainer.evaluate(fresh=True)
        finally:
            trainer.close()
    if not values:
        raise RuntimeError(f"{run}: the recipe has no feature network (eval.feature_net = "
                           f"'none'); this comparison needs one.")
    return {k: float(values[k]) for k in metric_names(recipe)}


def conditional_samples(ctx: ConditionContext, latent: torch.Tensor, n: int, seed: int,
                        n_steps: int) -> torch.Tensor:
    """``n`` samples of p(x | z) ∝ exp(−E(x) + β_test·cos(g(x), z)), started from the buffer."""
    assert ctx.buffer is not None
    energy = composed_energy(ctx.ebm, beta=TEST_BETA, and_latents=latent[None])
    g = torch.Generator().manual_seed(seed)
    x = sample_energy(energy, n, settings=langevin_settings(ctx.cfg, ctx.device),
                      n_steps=n_steps, shape=ctx.shape, init_range=init_range(ctx.cfg),
                      generator=g, device=ctx.device, init=ctx.buffer, batch_size=256)
    return x.clamp(0, 1).cpu()


def colour_match(run: Path, per_colour: int, seed: int, n_steps: int) -> float:
    """Mean over the six colours of the fraction of p(x | z_colour) samples read as that colour."""
    ctx = load_context(run)
    hits, rows = [], []
    for index, colour in enumerate(COLOURS):
        latent = resolve_condition(f"colour={colour}", ctx)
        x = conditional_samples(ctx, latent, per_colour, 1000 * seed + index, n_steps)
        hits.append(float((read_factors(x)["colour"] == index).float().mean()))
        rows.append((colour, x[:GRID_PER_ROW]))
    save_rows(rows, run / CONDITIONAL_GRID)
    return sum(hits) / len(hits)


def class_match(run: Path, per_class: int, seed: int, n_steps: int) -> float:
    """Mean over the classes of the fraction of p(x | z_class) samples the classifier calls so.

    z_class is the guide's mean embedding of the first :data:`EXAMPLES_PER_CLASS` training
    images of the class; the judge is the run's in-domain classifier (trained on the training
    split with its labels, never on samples, never the guide).
    """
    ctx = load_context(run)
    cfg = ctx.cfg
    data = load_training_data(cfg)
    if data.labels is None or not isinstance(data.train, torch.Tensor):
        raise ValueError(f"{run}: class match needs labelled in-memory images; "
                         f"{cfg.data.name!r} has no labels.")
    chosen = choose_feature_net("in_domain", data_name=cfg.data.name, kind=data.kind,
                                size=cfg.data.size, inception_weights="",
                                training_images=lambda: (data.train, data.labels), run_dir=run,
                                seed=cfg.seed)
    judge = None if chosen is None else chosen[0]
    if not isinstance(judge, InDomainFeatureNet):
        raise ValueError(f"{run}: class match needs the in-domain classifier, got {judge!r}.")
    judge.eval()
    names = CIFAR10_CLASSES if cfg.data.name == "cifar10" else ()
    hits, rows = [], []
    for label in torch.unique(data.labels).tolist():
        examples = data.train[data.labels == label][:EXAMPLES_PER_CLASS].float() / 255
        latent = latent_from_examples(ctx.guide, examples.to(ctx.device)).cpu()
        x = conditional_samples(ctx, latent, per_class, 1000 * seed + label, n_steps)
        with torch.no_grad():
            predicted = judge.logits(x).argmax(1)
        hits.append(float((predicted == label).float().mean()))
        rows.append((names[label] if label < len(names) else f"class {label}", x[:GRID_PER_ROW]))
    save_rows(rows, run / CONDITIONAL_GRID)
    return sum(hits) / len(hits)


def train_one(args: argparse.Namespace, beta: float, seed: int) -> dict[str, float]:
    run = args.out / f"beta{beta:g}-seed{seed}"
    overrides = [*(SMOKE if args.smoke else ()), *args.set, f"loss.beta={beta}", f"seed={seed}",
                 f"train.num_threads={args.threads}", "train.tensorboard=false"]
    recipe = load_config(args.config, overrides)
    if not finished(run):
        Trainer(recipe, run, progress=False).run()
    steps = recipe.eval.fresh_steps or recipe.sampler.n_steps
    per_value = 4 if args.smoke else args.per_colour
    scoring = {"eval": dataclasses.asdict(recipe.eval), "per_value": per_value, "steps": steps,
               "test_beta": TEST_BETA, "checkpoint": find_checkpoint(run).name}
    scores = run / SCORES
    if scores.is_file():  # scored before with the same settings: an interrupted sweep continues
        saved = json.loads(scores.read_text(encoding="utf-8"))
        if saved.get("scoring") == scoring:
            return {k: float(v) for k, v in saved["figures"].items()}
    figures = final_evaluation(run, recipe, args.threads)
    if recipe.data.name == "shapes":
        figures["colour_match"] = colour_match(run, per_value, seed, steps)
    else:
        figures["class_match"] = class_match(run, per_value, seed, steps)
    scores.write_text(json.dumps({"scoring": scoring, "figures": figures}, indent=2),
                      encoding="utf-8")
    return figures


def table(results: dict[float, list[dict[str, float]]], seeds: Sequence[int]) -> str:
    """Markdown: one row per β, mean ± std over seeds, then every seed's value."""
    keys = list(next(iter(results.values()))[0])
    lines = ["| β | " + " | ".join(HEADERS[k] for k in keys) + " |", "|---" * (1 + len(keys)) + "|"]
    for beta, runs in results.items():
        cells = []
        for key in keys:
            values = [r[key] for r in runs]
            scale, digits = (1.0, 1) if key.endswith("_fd") else (100.0, 0)
            mean = statistics.fmean(values) * scale
            spread = statistics.stdev(values) * scale if len(values) > 1 else 0.0
            each = ", ".join(f"{v * scale:.{digits}f}" for v in values)
            unit = " %" if scale == 100.0 else ""
            cells.append(f"{mean:.{digits}f}{unit} ± {spread:.{digits}f} ({each})")
        lines.append(f"| {beta:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nseeds: {', '.join(map(str, seeds))}\n"


def main(args: argparse.Namespace) -> dict[str, Any]:
    args.out.mkdir(parents=True, exist_ok=True)
    results = {beta: [train_one(args, beta, seed) for seed in args.seeds] for beta in args.betas}
    text = table(results, args.seeds)
    print(text)
    (args.out / "table.md").write_text(text, encoding="utf-8")
    raw = {f"{beta:g}": runs for beta, runs in results.items()}
    (args.out / "results.json").write_text(json.dumps(raw, indent=2), encoding="utf-8")
    return raw


if __name__ == "__main__":
    main(get_args_parser().parse_args())
