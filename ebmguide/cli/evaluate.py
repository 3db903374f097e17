"""``ebmguide evaluate``: Fréchet distance and KID of a checkpoint's samples on feature networks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ebmguide.cli._common import add_progress_options, progress_mode
from ebmguide.cli.sample import add_sampling_options

__all__ = ["format_table", "register", "run"]

DESCRIPTION = """\
Score samples of a checkpoint against real data with an independent feature network and print one
table: the metric, the feature network, n generated, n real, the real-vs-real floor with the sizes
of its two real sets, and the protocol. The metric is "FD (features: <net>)"; it is a standard
"FID" only with Inception-v3 weights (--inception-weights FILE or eval.inception_weights in the
config: a local weights-inception-2015-12-05-6726825d.pth; needs torch-fidelity). Otherwise the
config's eval.feature_net ("auto": the shapes classifier for shapes runs, else the in-domain network
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
                       help="local Inception-v3 FID weights "
                            "(weights-inception-2015-12-05-6726825d.pth): standard FID")
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
    from ebmguide.run.checkpoint_evaluation import draw, prepare, score
    from ebmguide.run.evaluation_inputs import EvaluateOptions

    plan = prepare(EvaluateOptions.from_namespace(vars(args)))
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
