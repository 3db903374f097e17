"""Conditions for ``ebmguide sample --condition`` and ``ebmguide compose``, from a checkpoint.

A condition is a factor of the embedded shapes data (``colour=red``, ``shape=circle``,
``scale=small``, ``quadrant=top-left``), whose latent is the normalized mean embedding of the
labelled shapes images with that value, or a reference image file (PNG, JPEG), whose latent is its
own embedding. The checkpoint's EMA guide embeds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from ebmguide.conditional import composed_energy, embed_images, latent_from_examples, sample_energy
from ebmguide.data.shapes import ShapesData, make_shapes
from ebmguide.energy import SphericalEBM
from ebmguide.grid import image_grid
from ebmguide.guide import SimCLRGuide
from ebmguide.run.checkpoints import find_checkpoint, load_run
from ebmguide.run.components import (
    init_range,
    langevin_settings,
    networks_from_checkpoint,
    sample_shape,
)
from ebmguide.run.config import RunConfig
from ebmguide.torch_utils import resolve_device

__all__ = ["DEFAULT_BETA", "DEFAULT_INIT", "ConditionContext", "load_context",
           "resolve_condition", "sample_rows", "save_rows"]

DEFAULT_BETA = 0.1
"""Default test-time guidance strength of the CLI: the paper's test-time β of the OOD score, ten
times the training β. The best value depends on the scale of the model's energy; sweep it (on the
demo model, docs/conditional.md measured the most matches at 0.03-0.1 and saturated patches from
about 0.3 on)."""

DEFAULT_INIT = "buffer"
"""Default start of the CLI's conditional chains (measured in docs/conditional.md)."""

FACTOR_ALIASES = {"color": "colour", "size": "scale"}


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

    def __init__(self, ebm: SphericalEBM, guide: SimCLRGuide, cfg: RunConfig,
                 shape: tuple[int, ...], device: torch.device, checkpoint: Path, n_labelled: int,
                 buffer: Tensor | None = None) -> None:
        self.ebm, self.guide, self.cfg, self.shape = ebm, guide, cfg, shape
        self.device, self.checkpoint, self.n_labelled = device, checkpoint, n_labelled
        self.buffer = buffer
        self._labelled: ShapesData | None = None

    def labelled(self) -> ShapesData:
        """The labelled shapes images (generated once, from a fixed seed apart from training's)."""
        if self._labelled is None:
            if self.cfg.data.name != "shapes":
                raise ValueError(
                    f"factor conditions need a model trained on the shapes data; this one was "
                    f"trained on {self.cfg.data.name!r}: give reference image files instead.")
            g = torch.Generator().manual_seed(987_654_321)  # not the training seed's stream
            self._labelled = make_shapes(self.n_labelled, size=self.shape[-1], generator=g)
        return self._labelled


def load_context(checkpoint: str | Path, *, device: str | None = None, ema: bool = True,
                 n_labelled: int = 600, trust_imports: bool = False) -> ConditionContext:
    """Load a training checkpoint's networks for conditioning.

    ``trust_imports``: allow a stored configuration that names code (see
    :func:`~ebmguide.run.checkpoints.load_run`).
    """
    if n_labelled < 1:
        raise ValueError(f"--labelled must be positive, got {n_labelled}.")
    path = find_checkpoint(checkpoint)
    state, cfg = load_run(path, trust_imports=trust_imports)
    dev = resolve_device(device or cfg.device)
    ebm, guide = networks_from_checkpoint(state, cfg, dev, ema=ema)
    shape = sample_shape(state)
    if len(shape) != 3:
        raise ValueError(f"conditions need an image model; this checkpoint samples {shape}.")
    buffer = state["sampler"]["buffer"]["states"].to(dev)
    return ConditionContext(ebm, guide, cfg, shape, dev, path, n_labelled, buffer)


def _load_image(path: Path, shape: tuple[int, ...]) -> Tensor:
    """A reference image file as a ``(1, C, H, W)`` float tensor in [0, 1] at the model's size."""
    with Image.open(path) as img:
        small = img.convert("RGB" if shape[0] == 3 else "L").resize(
            (shape[2], shape[1]), Image.Resampling.BOX)
    array = np.asarray(small, dtype=np.float32) / 255.0
    x = torch.from_numpy(array.copy())
    return (x.permute(2, 0, 1) if x.dim() == 3 else x.unsqueeze(0)).unsqueeze(0)


def resolve_condition(spec: str, ctx: ConditionContext) -> Tensor:
    """The unit latent ``(d,)`` of a condition: ``factor=value`` or an image file."""
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
                init: str = DEFAULT_INIT) -> list[tuple[str, Tensor]]:
    """Sample ``n`` images for each ``(label, composed_energy keyword arguments)`` row.

    ``init="buffer"`` starts every row's chains from the same ``n`` replay-buffer states (so rows
    differ only by their condition); ``"fresh"`` from uniform noise.
    """
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
    out, settings, starts = [], langevin_settings(ctx.cfg, ctx.device), init_range(ctx.cfg)
    for index, (label, terms) in enumerate(rows):
        g = torch.Generator(ctx.device).manual_seed(seed + (0 if init == "buffer" else index))
        energy = composed_energy(ctx.ebm, beta=beta, **terms) if terms else ctx.ebm.energy
        x = sample_energy(energy, n, settings=settings, n_steps=k, shape=ctx.shape,
                          init_range=starts, generator=g, device=ctx.device, batch_size=256,
                          init=ctx.buffer if init == "buffer" else None)
        out.append((label, x.cpu()))
    return out


def save_rows(rows: Sequence[tuple[str, Tensor]], path: Path, *, scale: int = 3) -> Path:
    """One labelled row of images per condition, stacked into one PNG."""
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
