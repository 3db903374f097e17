"""Upper bounds on every size and step count read from a configuration, a command or a file.

A configuration or a checkpoint is data from somewhere else: a typo (``buffer_size = 1e9``), or a
crafted file, must not make ebmguide allocate hundreds of gigabytes or loop for years before it
fails. Every size and step count is checked against the bound of :data:`BOUNDS` before anything is
allocated, and every tensor of a loaded checkpoint against :func:`check_loaded_tensors` (no
overlapping strides that expand a small stored tensor into a huge one, at most
:data:`MAX_TENSOR_VALUES` values). The bounds sit far above every shipped recipe (the largest
setting of a recipe is at least 10 times below its bound).

Raise a bound for one process with the environment variable ``EBMGUIDE_LIMIT_<KEY>``, the key in
upper case with dots as underscores, e.g. ``EBMGUIDE_LIMIT_SAMPLER_BUFFER_SIZE=5000000``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["BOUNDS", "MAX_ARCHIVE_RECORDS", "MAX_TENSOR_VALUES", "bound", "check_bound",
           "check_config_bounds", "check_loaded_tensors"]

BOUNDS: dict[str, int] = {
    "data.size": 1_024,  # image side in pixels
    "data.n_train": 10_000_000,
    "model.width": 4_096,
    "model.latent_dim": 65_536,
    "model.hidden_dim": 65_536,
    "guide.width": 4_096,
    "guide.hidden_dim": 65_536,
    "sampler.buffer_size": 1_000_000,  # the paper's evaluation buffer holds 50,000
    "sampler.n_steps": 100_000,  # SGLD steps per iteration (the paper: 60)
    "train.iterations": 100_000_000,
    "train.batch_size": 65_536,
    "train.log_every": 100_000_000,
    "train.sample_every": 100_000_000,
    "train.checkpoint_every": 100_000_000,
    "train.keep_checkpoints": 1_000,
    "train.num_threads": 1_024,
    "train.max_rollbacks": 1_000,
    "optim.warmup_iterations": 100_000_000,
    "ema.copy_iterations": 100_000_000,
    "eval.every": 100_000_000,
    "eval.n_samples": 1_000_000,
    "eval.fresh_steps": 100_000,
    "eval.grid_size": 4_096,
    "buffer values": 4_000_000_000,  # sampler.buffer_size x values per sample (16 GB in float32)
    "data values": 4_000_000_000,  # generated data: data.n_train x values per sample
    "cli.n": 10_000_000,  # samples drawn by a command (--n)
    "cli.steps": 100_000,  # SGLD steps given on a command line (--steps)
    "cli.rounds": 10_000,
    "cli.chunk": 1_000_000,
}
"""The bound of each setting (inclusive)."""

MAX_TENSOR_VALUES = 4_000_000_000
"""Largest tensor (in values) a loaded checkpoint may hold."""

MAX_ARCHIVE_RECORDS = 100_000
"""Most records a checkpoint archive may hold (torch.save writes one per tensor storage)."""


def _env_name(key: str) -> str:
    return "EBMGUIDE_LIMIT_" + key.upper().replace(".", "_").replace(" ", "_")


def bound(key: str) -> int:
    """The bound of ``key``: :data:`BOUNDS`, or ``EBMGUIDE_LIMIT_<KEY>`` when set.

    Raises:
        ValueError: the environment variable is not a positive integer.
    """
    name = _env_name(key)
    text = os.environ.get(name)
    if text is None:
        return BOUNDS[key]
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a positive integer (the raised bound of {key}), got "
                         f"{text!r}.")
    return value


def check_bound(key: str, value: int, detail: str = "") -> None:
    """Raise ``ValueError`` naming ``key`` and how to raise its bound when ``value`` exceeds it."""
    limit = bound(key)
    if value > limit:
        raise ValueError(f"{key} = {value:,} exceeds its bound of {limit:,}{detail}: lower it, or "
                         f"raise the bound with the environment variable "
                         f"{_env_name(key)}=<n> if you mean it.")


def check_config_bounds(flat: Mapping[str, Any]) -> None:
    """Check every bounded setting of a flattened configuration, and the buffer's memory.

    Args:
        flat: ``{"section.key": value}`` of a whole configuration.

    Raises:
        ValueError: naming the first setting above its bound and how to raise the bound.
    """
    for key, value in flat.items():
        if key in BOUNDS and isinstance(value, int) and not isinstance(value, bool):
            check_bound(key, value)
    side = int(flat["data.size"]) if flat["data.name"] == "shapes" else 32
    per_sample = 2 if flat["data.name"] == "toy2d" else 3 * side * side
    for what, key in (("buffer values", "sampler.buffer_size"), ("data values", "data.n_train")):
        if what == "data values" and flat["data.name"] not in ("shapes", "toy2d"):
            continue  # read from files, not generated
        count = int(flat[key])
        check_bound(what, count * per_sample,
                    f" ({key} {count:,} x {per_sample:,} values per sample, "
                    f"{count * per_sample * 4 / 2**30:,.1f} GiB in float32)")


def _describe(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, strides {t.stride()}"


def check_loaded_tensors(state: Any, source: object, prefix: str = "") -> None:
    """Refuse tensors of a loaded file that would expand into more memory than the file holds.

    Raises:
        ValueError: a tensor's strides overlap (its storage is smaller than its values, e.g. a
            stride-0 ``(1, 3, 30000, 30000)`` tensor of 3 stored values), or it holds more than
            :data:`MAX_TENSOR_VALUES` values.
    """
    if isinstance(state, torch.Tensor):
        n = state.numel()
        if n > MAX_TENSOR_VALUES:
            raise ValueError(f"{source}: tensor {prefix or '<root>'} ({_describe(state)}) holds "
                             f"{n:,} values, above the bound of {MAX_TENSOR_VALUES:,}: not a "
                             f"checkpoint ebmguide writes.")
        if n and state.layout == torch.strided:
            span = 1 + sum((s - 1) * abs(st) for s, st in zip(state.shape, state.stride(),
                                                              strict=True))
            if span < n:
                raise ValueError(f"{source}: tensor {prefix or '<root>'} ({_describe(state)}) "
                                 f"has overlapping strides: {n:,} values over {span:,} stored "
                                 f"ones. ebmguide writes only dense tensors; this file was "
                                 f"crafted or damaged. Use a checkpoint written by ebmguide.")
        return
    if isinstance(state, Mapping):
        for key, value in state.items():
            check_loaded_tensors(value, source, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            check_loaded_tensors(value, source, f"{prefix}[{i}]")
