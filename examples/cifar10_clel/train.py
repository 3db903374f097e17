"""The paper's CIFAR-10 recipe, CLEL-Base (or --large), on a GPU; see README.md.

    python examples/cifar10_clel/train.py --data /data/cifar10              # CLEL-Base, 100k its
    python examples/cifar10_clel/train.py --data /data/cifar10 --large      # CLEL-Large
    python examples/cifar10_clel/train.py --data /data/cifar10 --resume runs/cifar10_clel_base
    python examples/cifar10_clel/train.py --smoke          # 1 iteration of the real networks on a
                                                           # generated image folder (CI, CPU)

The same as `ebmguide train --config cifar10_clel_base --set data.path=...`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from ebmguide.run.config import load_config
from ebmguide.run.trainer import Trainer

SMOKE = ["train.iterations=1", "train.batch_size=4", "sampler.buffer_size=8", "sampler.n_steps=1",
         "eval.fresh_steps=1", "eval.grid_size=4", "eval.n_samples=4", "train.log_every=1",
         "device=cpu", "train.tensorboard=false"]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="CLEL on CIFAR-10 with the paper's recipe.")
    parser.add_argument("--data", type=Path, help="CIFAR-10: python batches, image folder or "
                                                  ".tar.gz (nothing is downloaded)")
    parser.add_argument("--large", action="store_true", help="CLEL-Large instead of CLEL-Base")
    parser.add_argument("--out", type=Path, default=None, help="default: runs/<config name>")
    parser.add_argument("--resume", type=Path, default=None, help="a run folder or checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="any config override")
    parser.add_argument("--smoke", action="store_true",
                        help="one iteration of the real networks on generated images (CPU)")
    return parser


def fake_image_folder(root: Path, per_class: int = 4) -> Path:
    """A CIFAR-shaped image folder of random PNGs (two classes, train and test)."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for label in ("airplane", "automobile"):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = torch.randint(0, 256, (32, 32, 3), generator=g, dtype=torch.uint8)
                Image.fromarray(pixels.numpy()).save(folder / f"{i:04d}.png")
    return root


def main(args: argparse.Namespace) -> dict[str, float]:
    name = "cifar10_clel_large" if args.large else "cifar10_clel_base"
    overrides = [f"seed={args.seed}", *args.overrides]
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if args.smoke:
            data = data or fake_image_folder(Path(scratch) / "images")
            overrides += SMOKE
        if data is None and args.resume is None:
            raise SystemExit("pass --data PATH (CIFAR-10 batches, image folder or .tar.gz)")
        if data is not None:
            overrides.append(f"data.path={json.dumps(str(data))}")
        cfg = load_config(name, overrides)
        out = args.out or (Path(scratch) / "run" if args.smoke else Path("runs") / name)
        trainer = Trainer(cfg, out, resume=args.resume, progress=not args.smoke)
        final = trainer.run()
        print(f"{name}: {trainer.iteration} iterations, last terms "
              f"{ {k: round(v, 4) for k, v in trainer.last.items()} }")
    return final


if __name__ == "__main__":
    main(get_args_parser().parse_args())
