"""What ``ebmguide evaluate`` scores with and what it scores: options, feature network, samples."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import Tensor, nn

from ebmguide.data.streaming import LazyImages
from ebmguide.feature_choice import INCEPTION_LABEL, choose_feature_net
from ebmguide.feature_nets import inception_features
from ebmguide.run.checkpoint_sampling import SampleOptions
from ebmguide.run.config import RunConfig

__all__ = ["EvaluateOptions", "load_feature_net", "load_samples"]


@dataclass(frozen=True)
class EvaluateOptions(SampleOptions):
    """The options of ``ebmguide evaluate`` (see ``ebmguide evaluate --help``)."""

    n: int = 1000
    samples: Path | None = None
    feature_net: str | None = None
    inception_weights: str | None = None
    real: str = "held-out"
    out: Path | None = None
    kid: bool = False


def load_feature_net(options: EvaluateOptions, cfg: RunConfig,
                     run_dir: Path) -> tuple[nn.Module, str]:
    """The feature network the options name (or the data's default), and its label."""
    args = options
    if args.inception_weights:
        return inception_features(args.inception_weights), INCEPTION_LABEL
    if args.feature_net:
        if args.feature_net.lower() in ("guide", "encoder"):
            raise ValueError("the guiding encoder must not be the feature network: sampling is "
                             "steered towards its features, so it flatters the samples.")
        return _load_network_file(Path(args.feature_net))
    from ebmguide.run.data_sources import load_training_data

    def training_images() -> tuple[Tensor | LazyImages, Tensor | None]:
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


def _load_network_file(path: Path) -> tuple[nn.Module, str]:
    """A feature network from a ``torch.export`` file (.pt2) or a TorchScript archive."""
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
            return cast(nn.Module, net), path.stem
        except RuntimeError as err:
            raise ValueError(f"{path} is neither a torch.export (.pt2) nor a TorchScript "
                             f"network.") from err


def _read_samples(path: Path) -> Tensor:
    """The tensor of a samples file (``.npz`` with ``images``, or a ``.pt`` tensor)."""
    if path.is_dir():
        raise IsADirectoryError(f"samples file {path}: Is a directory; check the path, that it "
                                f"is a file (.npz with an 'images' array, or a .pt tensor).")
    if not path.is_file():
        raise FileNotFoundError(f"samples file {path} does not exist.")
    if path.suffix == ".npz":
        with np.load(path) as arrays:
            if "images" not in arrays:
                raise ValueError(f"{path} holds the arrays {sorted(arrays.files)} but no "
                                 f"'images': pass an .npz written by `ebmguide sample`, or save "
                                 f"yours with np.savez(path, images=array).")
            return torch.from_numpy(arrays["images"])
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, Tensor):
        raise ValueError(f"{path} holds a {type(data).__name__}, not a tensor: save the samples "
                         f"with torch.save(tensor, path) (N, C, H, W).")
    return data


def load_samples(path: Path, shape: tuple[int, ...]) -> Tensor:
    """Samples to score, refused unless they match the run: shape, count, dtype and range.

    Raises:
        ValueError: naming what the file holds and what this run's samples are.
    """
    data = _read_samples(path)
    if tuple(data.shape[1:]) != shape or len(data) < 2:
        expected = "x".join(map(str, shape))
        got = "x".join(map(str, data.shape[1:])) or "scalars"
        hint = (" (channels last? move them first: array.transpose(0, 3, 1, 2))"
                if len(shape) == 3 and tuple(data.shape[1:]) == (*shape[1:], shape[0]) else "")
        raise ValueError(f"{path} holds {len(data) if data.dim() else 0} samples of {got}; this "
                         f"run's samples are {expected} (and at least 2){hint}: score samples of "
                         f"this run, e.g. from `ebmguide sample --checkpoint <run>`.")
    if data.dtype == torch.uint8:
        return data.float() / 255
    if not data.is_floating_point():
        raise ValueError(f"{path} holds {data.dtype} samples: pass uint8 pixels (0-255) or "
                         f"floats in [0, 1].")
    data = data.float()
    if not bool(data.isfinite().all()):
        raise ValueError(f"{path} holds NaN or inf values: these samples cannot be scored.")
    low, high = float(data.min()), float(data.max())
    if len(shape) == 3 and (low < -1e-3 or high > 1 + 1e-3):
        raise ValueError(f"{path} holds image values in [{low:.4g}, {high:.4g}]; this run's "
                         f"images lie in [0, 1]: divide 8-bit pixels by 255 (or pass them as "
                         f"uint8).")
    return data
