"""What guidance buys: one recipe trained with the alignment term of CLEL (β > 0) and without.

For each β and seed, trains a recipe (the shipped ``demo`` by default) with ``loss.beta`` set,
then scores the run's final checkpoint with the recipe's evaluation settings, as the Trainer's final
evaluation does: replay-buffer FD and fresh-chain FD (on the independent shapes classifier), and the
clean-sample rates (by rule). It also measures conditional sampling: one latent per colour (the
guide's mean embedding of labelled shapes), p(x | z) sampled from the run's buffer at the test-time
β of docs/conditional.md, the colour of each sample read by rule. With β = 0 the EBM's projection
head never learns to align with the guide, so its conditional match rate is the control. Prints
one markdown table (mean ± standard deviation over seeds, then each seed's figure) and writes it
with the raw numbers to ``--out``.

Usage (from the repository root; each demo run takes about 4 minutes on 2 CPU cores)::

    python examples/guidance_ablation/run.py --out runs/ablation               # 2 β x 3 seeds
    python examples/guidance_ablation/run.py --betas 0.01 0 --seeds 0 1 2 --threads 1
    python examples/guidance_ablation/run.py --smoke                            # CI: seconds

A run folder (``<out>/beta<β>-seed<s>``) whose newest checkpoint is at the recipe's last iteration
is reused (only scored again), so an interrupted sweep continues.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ebmguide.conditional import composed_energy, sample_energy
from ebmguide.data import COLOURS, read_factors
from ebmguide.run.checkpoints import find_checkpoint, load_run
from ebmguide.run.components import init_range, langevin_settings
from ebmguide.run.conditions import load_context, resolve_condition
from ebmguide.run.config import RunConfig, load_config
from ebmguide.run.trainer import Trainer

METRICS = ("buffer_fd", "buffer_clean", "fresh_fd", "fresh_clean")
TEST_BETA = 0.03  # the test-time guidance strength measured in docs/conditional.md
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
    p.add_argument("--per-colour", type=int, default=50, help="conditional samples per colour")
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


def final_evaluation(run: Path, recipe: RunConfig, threads: int) -> dict[str, float]:
    """The Trainer's final evaluation of the run's newest checkpoint, with ``recipe.eval``."""
    checkpoint = find_checkpoint(run)
    _, cfg = load_run(checkpoint)
    cfg = dataclasses.replace(cfg, eval=recipe.eval, train=dataclasses.replace(
        cfg.train, tensorboard=False, num_threads=threads))
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(cfg, Path(scratch) / "score", resume=checkpoint, progress=False)
        try:
            values = trainer.evaluate(fresh=True)
        finally:
            trainer.close()
    if not values:
        raise RuntimeError(f"{run}: the recipe has no feature network (eval.feature_net = "
                           f"'none'); this comparison needs one.")
    return {k: float(values[k]) for k in METRICS}


def colour_match(run: Path, per_colour: int, seed: int, n_steps: int) -> float:
    """Mean over the six colours of the fraction of p(x | z_colour) samples read as that colour."""
    ctx = load_context(run)
    assert ctx.buffer is not None
    hits = []
    for index, colour in enumerate(COLOURS):
        latent = resolve_condition(f"colour={colour}", ctx)
        energy = composed_energy(ctx.ebm, beta=TEST_BETA, and_latents=latent[None])
        g = torch.Generator().manual_seed(1000 * seed + index)
        x = sample_energy(energy, per_colour, settings=langevin_settings(ctx.cfg, ctx.device),
                          n_steps=n_steps, shape=ctx.shape, init_range=init_range(ctx.cfg),
                          generator=g, device=ctx.device, init=ctx.buffer, batch_size=256)
        hits.append(float((read_factors(x.clamp(0, 1))["colour"] == index).float().mean()))
    return sum(hits) / len(hits)


def train_one(args: argparse.Namespace, beta: float, seed: int) -> dict[str, float]:
    run = args.out / f"beta{beta:g}-seed{seed}"
    overrides = [*(SMOKE if args.smoke else ()), *args.set, f"loss.beta={beta}", f"seed={seed}",
                 f"train.num_threads={args.threads}", "train.tensorboard=false"]
    recipe = load_config(args.config, overrides)
    if not finished(run):
        Trainer(recipe, run, progress=False).run()
    figures = final_evaluation(run, recipe, args.threads)
    steps = recipe.eval.fresh_steps or recipe.sampler.n_steps
    figures["colour_match"] = colour_match(run, 4 if args.smoke else args.per_colour, seed, steps)
    return figures


def table(results: dict[float, list[dict[str, float]]], seeds: Sequence[int]) -> str:
    """Markdown: one row per β, mean ± std over seeds, then every seed's value."""
    head = ("| β | " + " | ".join(("buffer FD", "buffer clean", "fresh FD", "fresh clean",
                                   "colour match (β_test = 0.03)")) + " |")
    lines = [head, "|---" * 6 + "|"]
    for beta, runs in results.items():
        cells = []
        for key in (*METRICS, "colour_match"):
            values = [r[key] for r in runs]
            scale, digits = (100.0, 0) if key != "buffer_fd" and key != "fresh_fd" else (1.0, 1)
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
