"""The sampling behind ``ebmguide sample``: draw from a checkpoint as the options say, and save."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from typing_extensions import Self

from ebmguide._validation import check_finite
from ebmguide.energy import SphericalEBM
from ebmguide.grid import save_panels, to_uint8
from ebmguide.limits import check_bound
from ebmguide.run.checkpoints import find_checkpoint, load_run
from ebmguide.run.components import networks_from_checkpoint, sample_shape
from ebmguide.run.config import RunConfig
from ebmguide.run.evaluator import buffer_protocol, fresh_chains
from ebmguide.run.progress import progress_bar
from ebmguide.torch_utils import resolve_device

__all__ = ["SampleOptions", "draw_samples", "save_samples"]


@dataclass(frozen=True)
class SampleOptions:
    """The options of ``ebmguide sample`` (see ``ebmguide sample --help``)."""

    checkpoint: str | Path
    n: int = 64
    protocol: str = "fresh"
    steps: int | None = None
    rounds: int = 10
    chunk: int = 512
    no_ema: bool = False
    seed: int = 0
    device: str | None = None
    trust_config_imports: bool = False

    @classmethod
    def from_namespace(cls, values: Mapping[str, object]) -> Self:
        """The options among ``values`` (e.g. ``vars(args)``); other keys are left out."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})  # type: ignore[arg-type]


def draw_samples(args: SampleOptions) -> tuple[Tensor, Path]:
    """Load the checkpoint and draw samples as the options say.

    Returns:
        ``(samples (N, *shape) CPU tensor, checkpoint path)``.
    """
    for name in ("n", "rounds", "chunk"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be a positive integer, got {getattr(args, name)}.")
    if args.steps is not None and args.steps < 0:
        raise ValueError(f"--steps must not be negative, got {args.steps}.")
    for name in ("n", "steps", "rounds", "chunk"):  # before anything is allocated
        if getattr(args, name) is not None:
            check_bound(f"cli.{name}", getattr(args, name), f" (--{name})")
    checkpoint = find_checkpoint(args.checkpoint)
    state, cfg = load_run(checkpoint, trust_imports=args.trust_config_imports)
    device = resolve_device(args.device or cfg.device)
    ebm, _ = networks_from_checkpoint(state, cfg, device, ema=not args.no_ema)
    shape, g = sample_shape(state), torch.Generator(device).manual_seed(args.seed)
    if args.protocol == "fresh":
        steps = args.steps if args.steps is not None else (cfg.eval.fresh_steps
                                                           or cfg.sampler.n_steps)
        x = fresh_chains(ebm.energy, cfg, shape, args.n, steps=steps, generator=g, device=device,
                         chunk=args.chunk)
    else:
        x = _buffer_with_progress(ebm, cfg, shape, args, g, device)
    return x, checkpoint


def _buffer_with_progress(ebm: SphericalEBM, cfg: RunConfig, shape: tuple[int, ...],
                          args: SampleOptions, g: torch.Generator,
                          device: torch.device) -> Tensor:
    # a bar on a terminal, a line every 30 s in a log file
    with progress_bar("auto", total=args.n * args.rounds, initial=0, desc="buffer protocol",
                      unit="chain", sweep=True) as bar:
        return buffer_protocol(ebm.energy, cfg, shape, args.n, rounds=args.rounds, generator=g,
                               device=device, chunk=args.chunk, steps=args.steps,
                               on_chunk=bar.update)


def save_samples(x: Tensor, out: Path, fmt: str) -> tuple[Path, Path]:
    """Write ``samples.png`` and ``samples.<fmt>`` (uint8 images, or float vectors) into ``out``."""
    check_finite("samples drawn by ebmguide sample", x)  # nothing is written then
    out.mkdir(parents=True, exist_ok=True)
    grid = save_panels([(f"{len(x)} samples", x[:256])], out / "samples.png", scale=4)
    data = to_uint8(x) if x.dim() == 4 else x.float()
    tensor_file = out / f"samples.{fmt}"
    if fmt == "npz":
        np.savez_compressed(tensor_file, images=data.numpy())
    else:
        torch.save(data, tensor_file)
    return grid, tensor_file
