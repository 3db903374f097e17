"""``ebmguide evaluate``: Fréchet distance and KID of a checkpoint's samples on feature networks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ebmguide.cli._common import add_progress_options, progress_mode
from ebmguide.cli.sample import add_sampling_options

__all__ = ["format_table", "load_feature_net", "register", "run"]

DESCRIPTION = """\
Score samples of a checkpoint against real data with an independent feature network and print one
table: the metric, the feature network, n generated, n real, the real-vs-real floor with the sizes
of its two real sets, and the protocol. The metric is "FD (features: <net>)"; it is a standard
"FID" only with Inception-v3 weights (--inception-weights FILE or eval.inception_weights in the
config: the local pt_inception-2015-12-05 file; needs torch-fidelity). Otherwise the config's
eval.feature_net ("auto": the shapes classifier for shapes runs, else the in-domain network
trained once on the run's training split; both cached in the run folder), or a network file
(--feature-net: torch.export .pt2 or TorchScript). The guiding encoder, or any copy of it, is
refused: sampling is steered towards its features.
Every check runs before sampling. The buffer protocol saves its buffer after every round into
the output folder (default <run>/evaluate-<protocol>-<checkpoint>-n<N>-seed<S>): run the same
command again to resume a killed sweep from its last finished round.
The paper's final number: --protocol buffer --n 50000 --rounds 10 --chunk 512 --real train
(50,000 samples against the 50,000 training images; the floor is then training half against
half). In-training monitoring compares 10,000 samples with the 10,000 test images (--real
held-out, the default): a different number, never to be compared with the final one."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``evaluate`` subcommand."""
    p = subparsers.add_parser("evaluate", help="FD / KID of a checkpoint's samples",
                              description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
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
                        "default; the in-training protocol) or the training data (the paper's "
                        "final protocol)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="folder of the sweep state, the samples and results.json (default: "
                        "<run folder>/evaluate-<protocol>-<checkpoint>-n<N>-seed<S>); the same "
                        "folder resumes a sweep")
    p.add_argument("--kid", action="store_true", help="also compute KID")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    add_progress_options(p, what="the sweep", lines="a line every 30 s")
    p.set_defaults(func=run)


def load_feature_net(args: argparse.Namespace, cfg: Any, run_dir: Path) -> tuple[Any, str]:
    """The feature network the options name, and its label."""
    from ebmguide.feature_choice import INCEPTION_LABEL
    from ebmguide.metrics import inception_features

    if args.inception_weights:
        return inception_features(args.inception_weights), INCEPTION_LABEL
    if args.feature_net:
        if args.feature_net.lower() in ("guide", "encoder"):
            raise ValueError("the guiding encoder must not be the feature network: sampling is "
                             "steered towards its features, so it flatters the samples.")
        return _load_network_file(Path(args.feature_net))
    from ebmguide.builders import load_training_data
    from ebmguide.feature_choice import choose_feature_net

    def training_images() -> tuple[Any, Any]:
        data = load_training_data(cfg)
        return data.train, data.labels

    choice = "auto" if cfg.eval.feature_net == "none" else cfg.eval.feature_net
    chosen = choose_feature_net(
        choice, data_name=cfg.data.name, kind="vector" if cfg.data.name == "toy2d" else "image",
        size=cfg.data.size, inception_weights=cfg.eval.inception_weights,
        training_images=training_images, run_dir=run_dir, seed=cfg.seed)
    if chosen is None:  # cannot happen: "none" became "auto", which always finds a network
        raise ValueError("no feature network for this run; pass --feature-net FILE.")
    return chosen


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


def format_table(values: dict[str, Any]) -> str:
    """The one table ``ebmguide evaluate`` prints (rows FD, and KID when computed)."""
    header = ("metric", "value", "feature network", "n generated", "n real",
              "real-vs-real floor", "protocol")
    n_real = values["real"]
    rows = [(values["metric"], f"{values['fd']:.4g}", values["features"], f"{values['n']:,}",
             n_real, f"{values['fd_floor']:.4g} ({values['floor_sets']})", values["protocol"])]
    if "kid" in values:
        kid_name = values["metric"].replace("FID", "KID").replace("FD (", "KID (")
        rows.append((kid_name, f"{values['kid']:.4g} +- {values['kid_std']:.2g}",
                     values["features"], f"{values['n']:,}", n_real,
                     f"{values['kid_floor']:.2g} ({values['floor_sets']})", values["protocol"]))
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in (header, *rows)]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``ebmguide evaluate``: every check first, then the sweep, then the table."""
    from ebmguide.evaluate_run import draw, prepare, score

    plan = prepare(args, load_feature_net)
    where = "" if plan.folder is None else f"; samples and sweep state in {plan.folder.folder}"
    done = 0 if plan.resume is None else plan.resume.rounds_done
    resumed = ("" if done == 0 else f"; the saved sweep is complete ({done} rounds)"
               if done >= args.rounds else f"; resuming after round {done} of {args.rounds}")
    print(f"checks passed: {plan.protocol}; real {plan.sets.plan.reference}, floor "
          f"{plan.sets.plan.floor_label}{where}{resumed}", flush=True)
    fake = draw(plan, progress=progress_mode(args))
    values = score(plan, fake)
    print(format_table(values))
    text = json.dumps(values, indent=2) + "\n"
    if plan.folder is not None:
        (plan.folder.folder / "results.json").write_text(text, encoding="utf-8")
    if args.json is not None:
        args.json.write_text(text, encoding="utf-8")
    return 0
