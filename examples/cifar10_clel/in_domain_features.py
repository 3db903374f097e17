"""Train the in-domain feature network on 16x16 CIFAR-10 and report its held-out accuracy.

    python examples/cifar10_clel/in_domain_features.py --data /data/cifar10            # labels
    python examples/cifar10_clel/in_domain_features.py --data /data/cifar10 --no-labels  # rotation
    python examples/cifar10_clel/in_domain_features.py --smoke                         # CI

The network is what ``eval.feature_net = "auto"`` trains for a run without Inception weights
(see docs/cli.md, "ebmguide evaluate"). The script exits with status 1 when the held-out
accuracy is below ``--min-accuracy`` (default 0.5 for the 10 classes, whose chance level is 0.1;
0.5 for the 4 rotations, chance 0.25).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ebmguide.data import average_pool, load_cifar10
from ebmguide.in_domain import InDomainSettings, train_in_domain_feature_net


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="CIFAR-10: python batches, image folder or "
                                                  ".tar.gz (nothing is downloaded)")
    parser.add_argument("--size", type=int, default=16, help="image side after average pooling")
    parser.add_argument("--no-labels", action="store_true",
                        help="ignore the labels: the rotation-prediction pretext task")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-accuracy", type=float, default=0.5)
    parser.add_argument("--smoke", action="store_true",
                        help="a few steps on generated images instead of --data")
    return parser


def load(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images ``(N, 3, size, size)`` uint8 and labels ``(N,)``."""
    if args.smoke:
        g = torch.Generator().manual_seed(args.seed)
        labels = torch.randint(2, (256,), generator=g)
        images = torch.rand(256, 3, args.size, args.size, generator=g) * 0.5
        images[:, :, : args.size // 2] += 0.5 * labels.view(-1, 1, 1, 1)  # class 1: bright top
        return (images * 255).to(torch.uint8), labels
    if args.data is None:
        raise SystemExit("pass --data PATH (CIFAR-10 batches, image folder or .tar.gz), or --smoke")
    images, labels = load_cifar10(args.data, "train")
    if images.shape[-1] % args.size:
        raise SystemExit(f"--size must divide the image side {images.shape[-1]}.")
    return average_pool(images, images.shape[-1] // args.size), labels


def main(args: argparse.Namespace) -> dict[str, float]:
    torch.set_num_threads(args.threads)
    images, labels = load(args)
    settings = InDomainSettings(iterations=30, batch_size=32) if args.smoke else InDomainSettings()
    start = time.perf_counter()
    net = train_in_domain_feature_net(images, None if args.no_labels else labels,
                                      generator=torch.Generator().manual_seed(args.seed),
                                      settings=settings)
    seconds = time.perf_counter() - start
    print(f"in-domain network ({net.task}): {len(images):,} images of "
          f"{'x'.join(map(str, images.shape[1:]))}, {settings.iterations} steps of "
          f"{settings.batch_size}, {seconds:.1f} s on {args.threads} thread(s); held-out "
          f"accuracy {net.held_out_accuracy:.3f} (chance {net.chance:.3f})")
    if net.held_out_accuracy < args.min_accuracy:
        raise SystemExit(f"held-out accuracy {net.held_out_accuracy:.3f} is below "
                         f"--min-accuracy {args.min_accuracy}")
    return {"seconds": seconds, "accuracy": net.held_out_accuracy, "chance": net.chance}


if __name__ == "__main__":
    main(get_args_parser().parse_args())
