"""CLEL on the embedded coloured shapes, with the `demo` recipe or any override of it.

    python examples/shapes/train.py                               # the demo: ~5 min, 2 CPU cores
    python examples/shapes/train.py --size 32 --iterations 3000   # larger images, longer
    python examples/shapes/train.py --smoke                       # a few seconds (CI)

Prints the quality figures at the start and the end of the run: the Fréchet distance of the replay
buffer on the features of an independent shapes classifier ("FD (features: shapes-classifier)")
next to its real-vs-real floor, and the fraction of samples holding one readable shape
(rule-based, ebmguide.data.read_factors).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ebmguide.run.config import load_config
from ebmguide.run.logger import read_metrics
from ebmguide.run.trainer import Trainer


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="CLEL on the embedded shapes data.")
    parser.add_argument("--size", type=int, default=16, help="image side (16 or 32)")
    parser.add_argument("--iterations", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--out", type=Path, default=Path("runs/shapes"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="any config override, e.g. sampler.n_steps=40")
    parser.add_argument("--smoke", action="store_true", help="a few iterations, for CI")
    return parser


def main(args: argparse.Namespace) -> list[dict[str, float]]:
    overrides = [f"data.size={args.size}", f"seed={args.seed}", *args.overrides]
    if args.smoke:
        overrides += ["data.n_train=64", "model.width=4", "model.hidden_dim=16",
                      "model.latent_dim=8", "guide.width=4", "guide.hidden_dim=16",
                      "sampler.buffer_size=64", "sampler.n_steps=2", "train.iterations=4",
                      "train.batch_size=8", "train.log_every=2", "eval.every=0",
                      "eval.feature_net=none", "eval.fresh_steps=2", "eval.grid_size=4",
                      "train.tensorboard=false"]
    elif args.iterations is not None:
        overrides.append(f"train.iterations={args.iterations}")
    cfg = load_config("demo", overrides)
    Trainer(cfg, args.out, progress=not args.smoke).run()
    evals = [r for r in read_metrics(args.out / "metrics.jsonl") if r["kind"] == "eval"]
    for record in (evals[:1] + evals[-1:]) if evals else []:
        fd = (f"FD (features: shapes-classifier) of the buffer = {record['buffer_fd']:.2f} "
              f"(real-vs-real floor {record['fd_floor']:.2f}), " if "buffer_fd" in record else "")
        print(f"iteration {record['iteration']}: {fd}clean samples {record['buffer_clean']:.0%}")
    print(f"run folder: {args.out}")
    return evals


if __name__ == "__main__":
    main(get_args_parser().parse_args())
