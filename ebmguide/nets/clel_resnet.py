"""The CLEL energy backbones: pre-activation ResNets without normalization layers.

Every convolution carries spectral normalization and every activation is LeakyReLU(0.2); inputs in
[0, 1] are normalized per channel inside the network. The networks return pooled *features*
``(B, feature_dim)``: the energy head and the projection P belong to
:class:`~ebmguide.energy.SphericalEBM`, which wraps them.

Presets (Lee et al., "Guiding Energy-based Models via Contrastive Latent Variables", ICLR 2023):

- ``small``: stages (64,1) (64,1) (128,1) (128,1), 128 features.
- ``base`` (CLEL-Base): stem 3→128, stages (128,2) (128,2) (256,2) (256,2), 256 features; 5.64 M
  parameters, 6.96 M with SphericalEBM's two heads.
- ``large`` (CLEL-Large, FID 8.61 in the paper): three towers of (256,2)×4 on x, x/2 and x/4,
  768 features; 28.3 M parameters, 30.7 M with the heads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrizations

__all__ = [
    "BASE_STAGES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "LARGE_STAGES",
    "SMALL_STAGES",
    "CLELResNet",
    "CLELResNetLarge",
    "ChannelNormalize",
    "PreActBlock",
    "clel_resnet",
    "clel_resnet_base",
    "clel_resnet_large",
    "clel_resnet_small",
]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
"""Per-channel mean of the CIFAR-10 training images in [0, 1] (also used for ImageNet 32×32)."""
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
"""Per-channel standard deviation of the CIFAR-10 training images in [0, 1]."""

SMALL_STAGES: tuple[tuple[int, int], ...] = ((64, 1), (64, 1), (128, 1), (128, 1))
"""(channels, residual blocks) per stage of the ``small`` preset."""
BASE_STAGES: tuple[tuple[int, int], ...] = ((128, 2), (128, 2), (256, 2), (256, 2))
"""(channels, residual blocks) per stage of CLEL-Base."""
LARGE_STAGES: tuple[tuple[int, int], ...] = ((256, 2),) * 4
"""(channels, residual blocks) per stage of each of CLEL-Large's three towers."""

_SLOPE = 0.2  # LeakyReLU negative slope of the paper's EBM


class ChannelNormalize(nn.Module):
    """Per-channel ``(x − mean) / std`` with the statistics held as buffers.

    Args:
        mean: one value per channel.
        std: one positive value per channel, as many as ``mean``.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or len(mean) == 0:
            raise ValueError(
                f"mean and std need one value per input channel, got {len(mean)} and {len(std)}."
            )
        if min(std) <= 0:
            raise ValueError(f"every std must be positive, got {tuple(std)}.")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Normalize ``(B, C, H, W)`` images; returns the same shape."""
        if x.dim() != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"expected images of shape (B, {self.mean.shape[1]}, H, W), got {tuple(x.shape)}."
            )
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        """Show the statistics in ``print(model)``."""
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def _stats(
    in_channels: int, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[Sequence[float], Sequence[float]]:
    """Default normalization: CIFAR-10 statistics for RGB, 0.5/0.5 otherwise."""
    rgb = in_channels == 3
    if mean is None:
        mean = CIFAR10_MEAN if rgb else (0.5,) * in_channels
    if std is None:
        std = CIFAR10_STD if rgb else (0.5,) * in_channels
    return mean, std


def _conv(c_in: int, c_out: int, kernel: int, *, bias: bool, sn: bool) -> nn.Module:
    """Conv (stride 1, 'same' padding), Kaiming-normal (fan_in, linear) init, zero bias, then SN."""
    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=bias)
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="linear")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return parametrizations.spectral_norm(conv) if sn else conv


class PreActBlock(nn.Module):
    """act → conv3×3 → act → conv3×3, plus the identity or a 1×1 conv (no bias) shortcut.

    Args:
        c_in: input channels.
        c_out: output channels; a 1×1 shortcut is used when it differs from ``c_in``.
        spectral_norm: wrap every conv in spectral normalization.
        negative_slope: LeakyReLU slope.
    """

    def __init__(self, c_in: int, c_out: int, *, spectral_norm: bool = True,
                 negative_slope: float = _SLOPE) -> None:
        super().__init__()
        self.act = nn.LeakyReLU(negative_slope)
        self.conv1 = _conv(c_in, c_out, 3, bias=True, sn=spectral_norm)
        self.conv2 = _conv(c_out, c_out, 3, bias=True, sn=spectral_norm)
        self.shortcut = (nn.Identity() if c_in == c_out
                         else _conv(c_in, c_out, 1, bias=False, sn=spectral_norm))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, c_in, H, W) -> (B, c_out, H, W)``."""
        out: Tensor = self.conv2(self.act(self.conv1(self.act(x))))
        skip: Tensor = self.shortcut(x)
        return out + skip


class CLELResNet(nn.Module):
    """Pre-activation ResNet without normalization layers: images → pooled features.

    Args:
        stages: ``(channels, n_blocks)`` per stage; an AvgPool2d(2) precedes every stage but the
            first. Default: CLEL-Base.
        in_channels: image channels.
        mean: per-channel input mean; CIFAR-10's for 3 channels, else 0.5.
        std: per-channel input std; CIFAR-10's for 3 channels, else 0.5.
        spectral_norm: spectral normalization on every conv (True in the paper).
        negative_slope: LeakyReLU slope (0.2 in the paper).

    Attributes:
        feature_dim: output size, the channels of the last stage.

    Example:
        >>> import torch
        >>> net = CLELResNet(((8, 1), (16, 1)))
        >>> net(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 16])
    """

    def __init__(
        self,
        stages: Sequence[tuple[int, int]] = BASE_STAGES,
        *,
        in_channels: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        spectral_norm: bool = True,
        negative_slope: float = _SLOPE,
    ) -> None:
        super().__init__()
        try:
            plan = [(int(c), int(n)) for c, n in stages]
        except (TypeError, ValueError):
            plan = []
        if not plan or min(min(s) for s in plan) < 1:
            raise ValueError(
                f"stages must be a non-empty list of (channels, n_blocks) pairs of positive "
                f"integers, got {stages!r}."
            )
        if in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels}.")
        self.normalize = ChannelNormalize(*_stats(in_channels, mean, std))
        c = plan[0][0]
        self.stem = _conv(in_channels, c, 3, bias=True, sn=spectral_norm)
        layers: list[nn.Module] = []
        for i, (channels, n_blocks) in enumerate(plan):
            stage: list[nn.Module] = [nn.AvgPool2d(2)] if i > 0 else []
            for _ in range(n_blocks):
                stage.append(PreActBlock(c, channels, spectral_norm=spectral_norm,
                                         negative_slope=negative_slope))
                c = channels
            layers.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*layers)
        self.act = nn.LeakyReLU(negative_slope)
        self.feature_dim = c
        self.min_size = 2 ** (len(plan) - 1)

    def forward(self, x: Tensor) -> Tensor:
        """Features of ``(B, in_channels, H, W)`` images in [0, 1], shape ``(B, feature_dim)``.

        Raises:
            ValueError: if H or W is below ``2 ** (len(stages) − 1)``, too small for the poolings.
        """
        if x.dim() == 4 and min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"images of size {tuple(x.shape[-2:])} are too small for {len(self.stages)} "
                f"stages; height and width must be at least {self.min_size}."
            )
        out = self.stages(self.stem(self.normalize(x)))
        return F.adaptive_avg_pool2d(self.act(out), 1).flatten(1)


class CLELResNetLarge(nn.Module):
    """CLEL-Large: one :class:`CLELResNet` tower per input scale, features concatenated.

    Tower k sees ``AvgPool2d(scales[k])(x)``; the paper uses scales 1, 2, 4 (x, x/2, x/4).

    Args:
        stages: ``(channels, n_blocks)`` per stage of every tower; default (256, 2)×4.
        scales: average-pooling factor of each tower's input.
        in_channels: image channels.
        mean: per-channel input mean (see :class:`CLELResNet`).
        std: per-channel input std (see :class:`CLELResNet`).
        spectral_norm: spectral normalization on every conv.
        negative_slope: LeakyReLU slope.

    Attributes:
        feature_dim: ``len(scales) × channels of the last stage`` (768 by default).
    """

    def __init__(
        self,
        stages: Sequence[tuple[int, int]] = LARGE_STAGES,
        *,
        scales: Sequence[int] = (1, 2, 4),
        in_channels: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        spectral_norm: bool = True,
        negative_slope: float = _SLOPE,
    ) -> None:
        super().__init__()
        if not scales or min(scales) < 1:
            raise ValueError(f"scales must be positive integers, got {tuple(scales)}.")
        self.scales = tuple(int(s) for s in scales)
        towers = [
            CLELResNet(stages, in_channels=in_channels, mean=mean, std=std,
                       spectral_norm=spectral_norm, negative_slope=negative_slope)
            for _ in self.scales
        ]
        self.towers = nn.ModuleList(towers)
        self.feature_dim = sum(t.feature_dim for t in towers)
        self.min_size = max(self.scales) * towers[0].min_size

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, H, W)`` images in [0, 1] → ``(B, feature_dim)`` features.

        Raises:
            ValueError: if H or W is below ``max(scales) × 2 ** (len(stages) − 1)`` (32 by default).
        """
        if x.dim() == 4 and min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"images of size {tuple(x.shape[-2:])} are too small for towers at scales "
                f"{self.scales}; height and width must be at least {self.min_size}."
            )
        feats = [tower(F.avg_pool2d(x, s) if s > 1 else x)
                 for s, tower in zip(self.scales, self.towers, strict=True)]
        return torch.cat(feats, dim=1)


def clel_resnet_small(in_channels: int = 3, *, spectral_norm: bool = True) -> CLELResNet:
    """The ``small`` preset: stages (64,1)(64,1)(128,1)(128,1); ``(B, C, H, W) -> (B, 128)``."""
    return CLELResNet(SMALL_STAGES, in_channels=in_channels, spectral_norm=spectral_norm)


def clel_resnet_base(in_channels: int = 3, *, spectral_norm: bool = True) -> CLELResNet:
    """CLEL-Base: stages (128,2)(128,2)(256,2)(256,2); ``(B, C, H, W) -> (B, 256)``."""
    return CLELResNet(BASE_STAGES, in_channels=in_channels, spectral_norm=spectral_norm)


def clel_resnet_large(in_channels: int = 3, *, spectral_norm: bool = True) -> CLELResNetLarge:
    """CLEL-Large: (256,2)×4 towers on x, x/2, x/4; ``(B, C, H, W) -> (B, 768)``, H, W ≥ 32."""
    return CLELResNetLarge(LARGE_STAGES, in_channels=in_channels, spectral_norm=spectral_norm)


_PRESETS: dict[str, Callable[..., CLELResNet | CLELResNetLarge]] = {
    "small": clel_resnet_small, "base": clel_resnet_base, "large": clel_resnet_large,
}


def clel_resnet(size: str, in_channels: int = 3, *,
                spectral_norm: bool = True) -> CLELResNet | CLELResNetLarge:
    """A CLEL EBM backbone by preset name.

    Args:
        size: ``"small"``, ``"base"`` or ``"large"``.
        in_channels: image channels.
        spectral_norm: spectral normalization on every conv (True in the paper; ``False`` leaves
            plain convolutions, e.g. for an ablation).

    Returns:
        The backbone, ``(B, in_channels, H, W) -> (B, feature_dim)``.

    Raises:
        ValueError: for an unknown ``size``.
    """
    if not isinstance(size, str) or size not in _PRESETS:
        raise ValueError(f"unknown CLEL ResNet size {size!r}; choose one of {sorted(_PRESETS)}.")
    return _PRESETS[size](in_channels, spectral_norm=spectral_norm)
