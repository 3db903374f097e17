"""``ebmguide evaluate``: Fréchet distance and KID of a checkpoint's samples on feature networks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ebmguide.cli.sample import add_sampling_options

__all__ = ["load_feature_net", "register", "run"]

DESCRIPTION = """\
Score samples of a checkpoint against real data with an independent feature network: the
Frechet distance "FD (features: <net>)", printed next to its real-vs-real floor (two disjoint real
halves of the same size), and optionally KID. Feature networks: the shapes classifier (default for
shapes runs; trained on generated data in seconds and cached in the run folder), a network file
(--feature-net: torch.export .pt2 or TorchScript), or Inception-v3 from a local weights file
(--inception-weights; then the FD is a standard FID; needs torch-fidelity). The guiding encoder
is refused: sampling is steered towards its features."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``evaluate`` subcommand."""
    p = subparsers.add_parser("evaluate", help="FD / KID of a checkpoint's samples",
                              description=DESCRIPTION)
    add_sampling_options(p)
    p.set_defaults(n=1000)
    p.add_argument("--samples", type=Path, metavar="FILE",
                   help="score these samples (.npz from `ebmguide sample`, or .pt) instead of "
                        "drawing new ones")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--feature-net", metavar="FILE",
                       help="a feature network saved with torch.export.save (.pt2) or as "
                            "TorchScript; images arrive as floats in [0, 1], 8-bit quantized; "
                            "never the run's guide")
    group.add_argument("--inception-weights", metavar="FILE",
                       help="local Inception-v3 FID weights (pt_inception-2015-12-05): standard "
                            "FID")
    p.add_argument("--real", choices=("held-out", "train"), default="held-out",
                   help="real images: held-out (generated with another seed, or the test split; "
                        "default) or the training data (the paper's final protocol)")
    p.add_argument("--kid", action="store_true", help="also compute KID")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=run)


def load_feature_net(args: argparse.Namespace, cfg: Any, run_dir: Path) -> tuple[Any, str]:
    """The feature network the options name, and its label."""
    import torch

    from ebmguide.metrics import inception_features, shapes_feature_net

    if args.inception_weights:
        return inception_features(args.inception_weights), "Inception-v3 (FID)"
    if args.feature_net:
        if args.feature_net.lower() in ("guide", "encoder"):
            raise ValueError("the guiding encoder must not be the feature network: sampling is "
                             "steered towards its features, so it flatters the samples.")
        return _load_network_file(Path(args.feature_net))
    if cfg.data.name == "shapes":
        return shapes_feature_net(run_dir / "feature_net.pt", size=cfg.data.size), \
            "shapes-classifier"
    if cfg.data.name == "toy2d":
        return torch.nn.Identity(), "coordinates"
    raise ValueError("no feature network for this data: pass --inception-weights FILE for "
                     "standard FID or --feature-net FILE (a TorchScript network).")


def _load_network_file(path: Path) -> tuple[Any, str]:
    """A feature network from a ``torch.export`` file (.pt2) or a TorchScript archive."""
    import warnings

    import torch

    if not path.is_file():
        raise FileNotFoundError(f"feature network file {path} does not exist.")
    if path.suffix == ".pt2":
        program = torch.export.load(str(path))
        return program.module(), path.stem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # not a weights file: a TorchScript archive is expected
            state = None
        if isinstance(state, dict) and state.get("format") == "ebmguide-checkpoint":
            raise ValueError(f"{path} is a training checkpoint: its guide must not be the "
                             f"feature network (it flatters the samples); pass an independent "
                             f"network.")
        try:
            net = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
            return net, path.stem
        except RuntimeError as err:
            raise ValueError(f"{path} is neither a torch.export (.pt2) nor a TorchScript "
                             f"network.") from err


def _load_samples(path: Path) -> Any:
    import numpy as np
    import torch

    if path.suffix == ".npz":
        data = torch.from_numpy(np.load(path)["images"])
    else:
        data = torch.load(path, map_location="cpu", weights_only=True)
    return data.float() / 255 if data.dtype == torch.uint8 else data.float()


def _real(cfg: Any, which: str, n: int) -> Any:
    import torch

    from ebmguide.builders import load_training_data

    data = load_training_data(cfg)
    if which == "held-out":
        return data.held_out(2 * n)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    pool = data.train[torch.randperm(len(data.train), generator=g)[: 2 * n]]
    if pool.dtype == torch.uint8:
        from ebmguide.data import dequantize

        pool = dequantize(pool, g)
    if len(pool) < 2 * n:
        raise ValueError(f"the training data has {len(pool)} samples, fewer than 2 x {n}.")
    return pool


def run(args: argparse.Namespace) -> int:
    """Run ``ebmguide evaluate``."""
    from ebmguide.cli.sample import draw_samples
    from ebmguide.metrics import FrechetScorer, check_not_guide, kernel_distance
    from ebmguide.runner import find_checkpoint, load_run

    checkpoint = find_checkpoint(args.checkpoint)
    _, cfg = load_run(checkpoint)
    net, label = load_feature_net(args, cfg, checkpoint.parent.parent)
    if args.samples is not None:
        fake, guide = _load_samples(args.samples), None
    else:
        fake, _, guide, _ = draw_samples(args)
    if guide is not None:
        check_not_guide(net, guide)
    n = len(fake)
    real = _real(cfg, args.real, n)
    result = FrechetScorer(real, net, features=label).with_floor(fake)
    values: dict[str, Any] = {"fd": result.fd, "fd_floor": result.floor, "features": label,
                              "n": n, "protocol": "samples file" if args.samples else args.protocol}
    print(result)
    if args.kid:
        kid, kid_std = kernel_distance(real[:n], fake, net, features=label)
        kid_floor, _ = kernel_distance(real[:n], real[n:], net, features=label)
        values.update(kid=kid, kid_std=kid_std, kid_floor=kid_floor)
        print(f"KID (features: {label}) = {kid:.5g} +- {kid_std:.2g}   "
              f"real-vs-real floor = {kid_floor:.2g}")
    if args.json is not None:
        args.json.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")
    return 0
