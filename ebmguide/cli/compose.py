"""``ebmguide compose``: compositional sampling (AND / NOT / OR of conditions) from a checkpoint.

Also home of the condition helpers used by ``ebmguide sample --condition``: a condition is a
factor of the embedded shapes data (``colour=red``, ``shape=circle``, ``scale=small``,
``quadrant=top-left``), whose latent is the normalized mean embedding of the labelled shapes images
with that value, or a reference image file (PNG, JPEG), whose latent is its own embedding. The
checkpoint's EMA guide embeds them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_BETA", "ConditionContext", "add_condition_options", "load_context",
           "register", "resolve_condition", "run", "run_conditions", "sample_rows", "save_rows"]

DEFAULT_BETA = 0.1
"""Default test-time guidance strength of the CLI: the paper's test-time β of the OOD score, ten
times the training β. The best value depends on the scale of the model's energy; sweep it (on the
demo model, docs/conditional.md measured the most matches at 0.03-0.1 and saturated patches from
about 0.3 on)."""

DEFAULT_INIT = "buffer"
"""Default start of the CLI's conditional chains (measured in docs/conditional.md)."""

FACTOR_ALIASES = {"color": "colour", "size": "scale"}

DESCRIPTION = """\
Sample from p(x | conditions) with the EMA networks of a checkpoint (chains start from its replay
buffer, or from noise with --init fresh).
Conditions: a factor of the embedded shapes data (colour=red, shape=circle, scale=small,
quadrant=top-left; latent = normalized mean embedding of labelled shapes images with that value)
or a reference image file (latent = its embedding). Energy, with c(z) = cos(g(x), z):
E(x) - beta*sum_and c(z) + beta*sum_not c(z) - logsumexp_or(beta*c(z) - log K).
Writes a PNG with one row per condition alone (unless --composed-only) and a last row for the
composition, plus the composed samples as uint8 in an .npz (key "images")."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``compose`` subcommand."""
    p = subparsers.add_parser("compose", help="sample AND / NOT / OR compositions of conditions",
                              description=DESCRIPTION)
    p.add_argument("--checkpoint", required=True, metavar="FILE|RUN",
                   help="a checkpoint file or a run folder (its newest checkpoint)")
    for flag, text in (("--and", "a condition the samples must have (repeatable)"),
                       ("--not", "a condition the samples must not have (repeatable)"),
                       ("--or", "one of several alternatives (repeatable; a mixture)")):
        p.add_argument(flag, dest=flag[2:] + "_", action="append", default=[], metavar="COND",
                       help=text)
    add_condition_options(p)
    p.add_argument("--n", type=int, default=8, help="samples per row (default 8)")
    p.add_argument("--steps", type=int, metavar="K",
                   help="SGLD steps per chain (default: the run's eval.fresh_steps)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: the run's)")
    p.add_argument("--no-ema", action="store_true", help="use the online networks")
    p.add_argument("--composed-only", action="store_true",
                   help="draw only the composition, not a row per condition")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="folder receiving compose.png (the grid) and compose.npz (the composed "
                        "samples) (default: the run folder)")
    # The option of earlier versions, refused with a pointer to --out.
    p.add_argument("--output", "-o", dest="old_output", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def output_folder(args: argparse.Namespace, run_dir: Path) -> Path:
    """``--out`` (a folder) or the run folder; refuses the old ``--output FILE`` and a file."""
    if args.old_output is not None:
        raise ValueError(f"--output is gone: --out is the output folder in every command; pass "
                         f"--out DIR (compose.png and compose.npz are written there), e.g. --out "
                         f"{Path(args.old_output).parent}.")
    if args.out is None:
        return run_dir
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file: pass a folder for compose.png and "
                         f"compose.npz.")
    if not args.out.exists() and args.out.suffix.lower() in (".png", ".npz"):
        raise ValueError(f"--out {args.out} looks like a file name: --out is the output folder "
                         f"(compose.png and compose.npz are written there); pass e.g. --out "
                         f"{args.out.with_suffix('')}.")
    return Path(args.out)


def add_condition_options(p: argparse.ArgumentParser, *, condition: bool = False) -> None:
    """Options shared by ``compose`` and ``sample`` (with ``condition``: also ``--condition``)."""
    if condition:
        p.add_argument("--condition", action="append", default=[], metavar="COND",
                       help="sample p(x | COND) instead, one grid row per condition "
                            "(repeatable): a factor of the shapes data, e.g. colour=red, "
                            "shape=circle, scale=small, quadrant=top-left, or a reference "
                            "image file; --n samples per condition")
    p.add_argument("--beta", type=float, default=DEFAULT_BETA,
                   help=f"test-time guidance strength beta (default {DEFAULT_BETA}; training "
                        "used 0.01, which is weak; the best value depends on the model: sweep "
                        "it)")
    p.add_argument("--init", choices=("fresh", "buffer"), default=DEFAULT_INIT,
                   help="start the chains from uniform noise (fresh) or from states of the "
                        f"checkpoint's replay buffer, i.e. unconditional samples (default "
                        f"{DEFAULT_INIT})")
    p.add_argument("--labelled", type=int, default=600, metavar="N",
                   help="labelled shapes images embedded to resolve factor conditions "
                        "(default 600)")


class ConditionContext:
    """A checkpoint's networks, settings and labelled data, ready to resolve and sample conditions.

    Attributes:
        ebm, guide: the networks (EMA by default), eval mode.
        cfg: the run's configuration.
        shape: the shape of one sample.
        device: where they run.
        checkpoint: the checkpoint file.
        buffer: the checkpoint's replay buffer ``(M, *shape)`` (unconditional samples).
    """

    def __init__(self, ebm: Any, guide: Any, cfg: Any, shape: tuple[int, ...], device: Any,
                 checkpoint: Path, n_labelled: int, buffer: Any = None) -> None:
        self.ebm, self.guide, self.cfg, self.shape = ebm, guide, cfg, shape
        self.device, self.checkpoint, self.n_labelled = device, checkpoint, n_labelled
        self.buffer = buffer
        self._labelled: Any = None

    def labelled(self) -> Any:
        """The labelled shapes images (generated once, from a fixed seed apart from training's)."""
        import torch

        from ebmguide.data import make_shapes

        if self._labelled is None:
            if self.cfg.data.name != "shapes":
                raise ValueError(
                    f"factor conditions need a model trained on the shapes data; this one was "
                    f"trained on {self.cfg.data.name!r}: give reference image files instead.")
            g = torch.Generator().manual_seed(987_654_321)  # not the training seed's stream
            self._labelled = make_shapes(self.n_labelled, size=self.shape[-1], generator=g)
        return self._labelled


def load_context(checkpoint: str | Path, *, device: str | None = None, ema: bool = True,
                 n_labelled: int = 600) -> ConditionContext:
    """Load a training checkpoint's networks for conditioning."""
    from ebmguide.builders import networks_from_checkpoint, resolve_device, sample_shape
    from ebmguide.runner import find_checkpoint, load_run

    if n_labelled < 1:
        raise ValueError(f"--labelled must be positive, got {n_labelled}.")
    path = find_checkpoint(checkpoint)
    state, cfg = load_run(path)
    dev = resolve_device(device or cfg.device)
    ebm, guide = networks_from_checkpoint(state, cfg, dev, ema=ema)
    shape = sample_shape(state)
    if len(shape) != 3:
        raise ValueError(f"conditions need an image model; this checkpoint samples {shape}.")
    buffer = state["sampler"]["buffer"]["states"].to(dev)
    return ConditionContext(ebm, guide, cfg, shape, dev, path, n_labelled, buffer)


def _load_image(path: Path, shape: tuple[int, ...]) -> Any:
    """A reference image file as a ``(1, C, H, W)`` float tensor in [0, 1] at the model's size."""
    import numpy as np
    import torch
    from PIL import Image

    with Image.open(path) as img:
        small = img.convert("RGB" if shape[0] == 3 else "L").resize(
            (shape[2], shape[1]), Image.Resampling.BOX)
    array = np.asarray(small, dtype=np.float32) / 255.0
    x = torch.from_numpy(array.copy())
    return (x.permute(2, 0, 1) if x.dim() == 3 else x.unsqueeze(0)).unsqueeze(0)


def resolve_condition(spec: str, ctx: ConditionContext) -> Any:
    """The unit latent ``(d,)`` of a condition: ``factor=value`` or an image file."""
    from ebmguide.conditional import embed_images, latent_from_examples

    if "=" in spec and not Path(spec).is_file():
        factor, value = (s.strip() for s in spec.split("=", 1))
        factor = FACTOR_ALIASES.get(factor, factor)
        data = ctx.labelled()
        if factor not in data.factor_names:
            raise ValueError(f"unknown factor {factor!r} in condition {spec!r}; factors: "
                             f"{', '.join(data.factor_names)}.")
        names = data.factor_names[factor]
        if value not in names:
            raise ValueError(f"unknown {factor} {value!r} in condition {spec!r}; choose one of "
                             f"{', '.join(names)}.")
        images = data.images[data.factors[factor] == names.index(value)]
        return latent_from_examples(ctx.guide, images.to(ctx.device)).cpu()
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"condition {spec!r} is neither factor=value (e.g. colour=red) "
                                f"nor an image file.")
    return embed_images(ctx.guide, _load_image(path, ctx.shape).to(ctx.device))[0].cpu()


def sample_rows(ctx: ConditionContext, rows: Sequence[tuple[str, dict[str, Any]]], *, n: int,
                beta: float, steps: int | None, seed: int,
                init: str = DEFAULT_INIT) -> list[tuple[str, Any]]:
    """Sample ``n`` images for each ``(label, composed_energy keyword arguments)`` row.

    ``init="buffer"`` starts every row's chains from the same ``n`` replay-buffer states (so rows
    differ only by their condition); ``"fresh"`` from uniform noise.
    """
    import torch

    from ebmguide.builders import init_range, langevin_settings
    from ebmguide.conditional import composed_energy, sample_energy

    if n < 1:
        raise ValueError(f"--n must be a positive integer, got {n}.")
    k = steps if steps is not None else (ctx.cfg.eval.fresh_steps or ctx.cfg.sampler.n_steps)
    if k < 0:
        raise ValueError(f"--steps must not be negative, got {k}.")
    if init not in ("fresh", "buffer"):
        raise ValueError(f"init must be 'fresh' or 'buffer', got {init!r}.")
    if init == "buffer" and (ctx.buffer is None or len(ctx.buffer) < n):
        raise ValueError(f"the checkpoint's replay buffer holds fewer than --n {n} states; "
                         "ask for fewer samples or use --init fresh.")
    out, settings, starts = [], langevin_settings(ctx.cfg), init_range(ctx.cfg)
    for index, (label, terms) in enumerate(rows):
        g = torch.Generator(ctx.device).manual_seed(seed + (0 if init == "buffer" else index))
        energy = composed_energy(ctx.ebm, beta=beta, **terms) if terms else ctx.ebm.energy
        x = sample_energy(energy, n, settings=settings, n_steps=k, shape=ctx.shape,
                          init_range=starts, generator=g, device=ctx.device, batch_size=256,
                          init=ctx.buffer if init == "buffer" else None)
        out.append((label, x.cpu()))
    return out


def save_rows(rows: Sequence[tuple[str, Any]], path: Path, *, scale: int = 3) -> Path:
    """One labelled row of images per condition, stacked into one PNG."""
    from PIL import Image, ImageDraw

    from ebmguide.grid import image_grid

    arrays = [image_grid(x, nrow=len(x), scale=scale) for _, x in rows]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w, gap = 12 + int(max(measure.textlength(label) for label, _ in rows)), 4
    width = label_w + max(a.shape[1] for a in arrays)
    height = sum(a.shape[0] + gap for a in arrays) + gap
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw, y = ImageDraw.Draw(image), gap
    for (label, _), array in zip(rows, arrays, strict=True):
        draw.text((4, y + array.shape[0] // 2 - 5), label, fill=(0, 0, 0))
        image.paste(Image.fromarray(array), (label_w, y))
        y += array.shape[0] + gap
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)
    return path


def _group(alternatives: Sequence[str], bracket: bool) -> str:
    text = " OR ".join(alternatives)
    return f"({text})" if bracket and len(alternatives) > 1 else text


def _composition(args: argparse.Namespace, ctx: ConditionContext) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    import torch

    if not (args.and_ or args.not_ or args.or_):
        raise ValueError("give at least one condition: --and COND, --not COND or --or COND.")
    latents = {spec: resolve_condition(spec, ctx) for spec in [*args.and_, *args.not_, *args.or_]}
    terms: dict[str, Any] = {}
    if args.and_ or args.not_:
        specs = [*args.and_, *args.not_]
        terms["and_latents"] = torch.stack([latents[s] for s in specs])
        terms["and_weights"] = [1.0] * len(args.and_) + [-1.0] * len(args.not_)
    if args.or_:
        terms["or_latents"] = torch.stack([latents[s] for s in args.or_])
    label = " AND ".join([*args.and_, *(f"NOT {s}" for s in args.not_)]
                         + ([_group(args.or_, bool(args.and_ or args.not_))] if args.or_ else []))
    rows: list[tuple[str, dict]] = []  # type: ignore[type-arg]
    if not args.composed_only:
        rows.append(("unconditional", {}))
        rows += [(s, {"and_latents": latents[s]}) for s in dict.fromkeys(latents)]
    return [*rows, (label, terms)]


def _check_rows(rows: Sequence[tuple[str, Any]], command: str) -> None:
    """Refuse NaN/inf samples before anything is written (never black pixels)."""
    from ebmguide._validation import check_finite

    for name, x in rows:
        check_finite(f"samples of {name!r} drawn by {command}", x)


def run_conditions(args: argparse.Namespace) -> int:
    """``ebmguide sample --condition ...``: one row of ``--n`` samples per condition."""
    import numpy as np

    from ebmguide.grid import to_uint8

    if args.protocol != "fresh":
        raise ValueError("--condition samples fresh chains; leave out --protocol buffer.")
    ctx = load_context(args.checkpoint, device=args.device, ema=not args.no_ema,
                       n_labelled=args.labelled)
    specs = list(dict.fromkeys(args.condition))
    rows = sample_rows(ctx, [(s, {"and_latents": resolve_condition(s, ctx)}) for s in specs],
                       n=args.n, beta=args.beta, steps=args.steps, seed=args.seed,
                       init=args.init)
    out = args.out or ctx.checkpoint.parent.parent / "samples-conditional"
    _check_rows(rows, "ebmguide sample --condition")
    grid = save_rows(rows, out / "conditional.png")
    tensors = out / "conditional.npz"
    np.savez_compressed(tensors, images=np.stack([to_uint8(x).numpy() for _, x in rows]),
                        conditions=np.array(specs))
    print(f"{args.n} samples for each of {len(specs)} conditions (beta {args.beta}) from "
          f"{ctx.checkpoint}\n  grid:    {grid}  (one row per condition)\n"
          f"  tensors: {tensors}  (images: conditions x n x C x H x W)")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``ebmguide compose``."""
    import numpy as np

    from ebmguide.grid import to_uint8

    ctx = load_context(args.checkpoint, device=args.device, ema=not args.no_ema,
                       n_labelled=args.labelled)
    rows = sample_rows(ctx, _composition(args, ctx), n=args.n, beta=args.beta, steps=args.steps,
                       seed=args.seed, init=args.init)
    folder = output_folder(args, ctx.checkpoint.parent.parent)
    _check_rows(rows, "ebmguide compose")
    out = save_rows(rows, folder / "compose.png")
    tensors = folder / "compose.npz"
    np.savez_compressed(tensors, images=to_uint8(rows[-1][1]).numpy())
    print(f"{rows[-1][0]}: {args.n} samples (beta {args.beta}) from {ctx.checkpoint}\n"
          f"  grid:    {out}\n  tensors: {tensors}")
    return 0
