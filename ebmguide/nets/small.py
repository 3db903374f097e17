"""CPU-sized backbones for toy 2-D data and small (16×16 or 32×32) images.

Both return features ``(B, feature_dim)`` for :class:`~ebmguide.energy.SphericalEBM` or
:class:`~ebmguide.guide.SimCLRGuide` to put their heads on. As an EBM backbone use spectral
normalization and no normalization layers (the defaults); as a contrastive encoder use
``spectral_norm=False, norm="batch", activation=nn.ReLU()``.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn.utils import parametrizations

from ebmguide.nets.clel_resnet import ChannelNormalize

__all__ = ["MLPBackbone", "SmallCNN"]

_NORMS = ("none", "batch")
_POOLS = ("avg", "flatten")


def _activation(activation: nn.Module | None) -> nn.Module:
    """A fresh copy of ``activation`` (LeakyReLU(0.2) when None)."""
    if activation is None:
        return nn.LeakyReLU(0.2)
    if not isinstance(activation, nn.Module):
        raise TypeError(
            f"activation must be an nn.Module instance such as nn.ReLU(), got "
            f"{type(activation).__name__}."
        )
    return copy.deepcopy(activation)


def _positive(**values: int) -> None:
    """Raise ValueError naming the first argument that is not a positive integer."""
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}.")


class MLPBackbone(nn.Module):
    """``depth`` Linear layers, each followed by the activation; ``(B, in_dim) -> (B, F)``.

    Args:
        in_dim: input size (2 for toy 2-D data).
        hidden: width of the hidden layers.
        depth: number of Linear layers (≥ 1); the last maps to ``feature_dim``.
        feature_dim: output size.
        activation: activation module, copied after every layer; LeakyReLU(0.2) by default.
        spectral_norm: wrap every Linear in spectral normalization.

    Example:
        >>> import torch
        >>> MLPBackbone(in_dim=2, feature_dim=16)(torch.randn(5, 2)).shape
        torch.Size([5, 16])
    """

    def __init__(
        self,
        in_dim: int = 2,
        hidden: int = 128,
        depth: int = 3,
        feature_dim: int = 128,
        *,
        activation: nn.Module | None = None,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        _positive(in_dim=in_dim, hidden=hidden, depth=depth, feature_dim=feature_dim)
        sizes = [in_dim] + [hidden] * (depth - 1) + [feature_dim]
        layers: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(sizes):
            linear = nn.Linear(n_in, n_out)
            layers.append(parametrizations.spectral_norm(linear) if spectral_norm else linear)
            layers.append(_activation(activation))
        self.net = nn.Sequential(*layers)
        self.in_dim = in_dim
        self.feature_dim = feature_dim

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_dim) -> (B, feature_dim)``."""
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"expected inputs of shape (B, {self.in_dim}), got {tuple(x.shape)}.")
        out: Tensor = self.net(x)
        return out


class SmallCNN(nn.Module):
    """Four 3×3 convs (two of stride 2), then global average pooling or a flattened map.

    Channels go ``in_channels → width → 2·width → 2·width → channels``; the spatial size halves
    twice (16×16 → 4×4, 32×32 → 8×8). Average pooling (``pool="avg"``) makes any size ≥ 4 work
    and gives ``channels`` features. ``pool="flatten"`` keeps the last map's layout, where in the
    image each feature was found, and gives ``channels · ⌈H/4⌉ · ⌈W/4⌉`` features for the one
    ``input_size`` it is built for. On the demo's 16×16 shapes the flattened map lowered the
    replay-buffer FD on every seed of three (docs/recipes/demo.md), for about 10 % more time.

    Args:
        in_channels: image channels.
        width: channels of the first conv.
        feature_dim: channels of the last conv, ``4 * width`` when None; the output size with
            ``pool="avg"``.
        spectral_norm: wrap every conv in spectral normalization (for an EBM).
        norm: ``"none"`` or ``"batch"`` (BatchNorm after every conv, for a contrastive encoder;
            convs then have no bias).
        activation: activation module, copied after every conv; LeakyReLU(0.2) by default.
        mean: optional per-channel input mean; with ``std``, inputs are normalized inside.
        std: optional per-channel input std, given together with ``mean``.
        pool: ``"avg"`` (global average pooling) or ``"flatten"`` (the last map, flattened).
        input_size: ``(H, W)`` or ``H`` of a square input; required by ``pool="flatten"`` (the
            feature size depends on it), not used by ``"avg"``.

    Raises:
        ValueError: for an unknown ``pool`` or ``norm``, or ``pool="flatten"`` without a
            positive ``input_size``.

    Example:
        >>> import torch
        >>> SmallCNN(width=8)(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 32])
        >>> SmallCNN(width=8, pool="flatten", input_size=16)(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 512])
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 32,
        feature_dim: int | None = None,
        *,
        spectral_norm: bool = True,
        norm: str = "none",
        activation: nn.Module | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pool: str = "avg",
        input_size: int | tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        feature_dim = 4 * width if feature_dim is None else feature_dim
        _positive(in_channels=in_channels, width=width, feature_dim=feature_dim)
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}.")
        if pool not in _POOLS:
            raise ValueError(f"pool must be one of {_POOLS}, got {pool!r}.")
        # flatten: the one input size the features are counted for
        self.input_size = None if pool == "avg" else _input_size(input_size)
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std to normalize inputs, or neither.")
        self.normalize: nn.Module = (
            nn.Identity() if mean is None or std is None else ChannelNormalize(mean, std)
        )
        plan = [(in_channels, width, 1), (width, 2 * width, 2),
                (2 * width, 2 * width, 1), (2 * width, feature_dim, 2)]
        layers: list[nn.Module] = []
        for c_in, c_out, stride in plan:
            conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=norm == "none")
            layers.append(parametrizations.spectral_norm(conv) if spectral_norm else conv)
            if norm == "batch":
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(_activation(activation))
        layers += [nn.AdaptiveAvgPool2d(1) if self.input_size is None else nn.Identity(),
                   nn.Flatten()]
        self.net = nn.Sequential(*layers)
        positions = 1 if self.input_size is None else math.prod(map(_last_map_side,
                                                                     self.input_size))
        self.feature_dim = feature_dim * positions

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, H, W) -> (B, feature_dim)``."""
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            h, w = self.input_size
            raise ValueError(f"this SmallCNN(pool='flatten') was built for {h}×{w} inputs, got "
                             f"{tuple(x.shape)}; build it with input_size=(H, W) of your images "
                             "or use pool='avg', which takes any size.")
        out: Tensor = self.net(self.normalize(x))
        return out


def _input_size(size: int | tuple[int, int] | None) -> tuple[int, int]:
    """``(H, W)`` from an int or a pair of positive ints (``pool="flatten"`` needs one)."""
    if size is None:
        raise ValueError("SmallCNN(pool='flatten') needs input_size=(H, W) of its inputs: the "
                         "number of features depends on it.")
    pair = (size, size) if isinstance(size, int) else size
    if (isinstance(size, bool) or not isinstance(pair, tuple | list) or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)):
        raise TypeError(f"input_size must be an int or a pair (H, W) of ints, got {size!r}.")
    h, w = pair
    if h < 1 or w < 1:
        raise ValueError(f"input_size must be positive, got {(h, w)}.")
    return h, w


def _last_map_side(n: int) -> int:
    """Side of the last map: each 3×3 conv of stride 2 and padding 1 maps n to ⌈n/2⌉."""
    return ((n + 1) // 2 + 1) // 2
