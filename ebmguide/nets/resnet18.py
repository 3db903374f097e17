"""CIFAR ResNet-18, the encoder of CLEL's contrastive guide, without torchvision.

He et al. (2016)'s ResNet-18 adapted to 32×32 images as in SimCLR's CIFAR experiments: a 3×3
stride-1 stem and no max-pool. The last BatchNorm of every residual branch starts at zero
(Goyal et al., 2017), so each block starts as the identity. The network returns pooled features
``(B, 512)``; the projection head belongs to :class:`~ebmguide.guide.SimCLRGuide`.
About 11.17 M parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ebmguide.nets.clel_resnet import ChannelNormalize

__all__ = ["BasicBlock", "CIFARResNet18", "cifar_resnet18"]


class BasicBlock(nn.Module):
    """conv3×3 → BN → ReLU → conv3×3 → BN, plus the (projected) input, then ReLU.

    Args:
        c_in: input channels.
        c_out: output channels.
        stride: stride of the first conv and of the 1×1 projection shortcut.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        nn.init.zeros_(self.bn2.weight)  # zero-init residual: the block starts as the identity
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, c_in, H, W) -> (B, c_out, H / stride, W / stride)``."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: Tensor = self.relu(out + self.shortcut(x))
        return result


class CIFARResNet18(nn.Module):
    """ResNet-18 for small images: 3×3 stride-1 stem, no max-pool, blocks [2, 2, 2, 2].

    Args:
        in_channels: image channels.
        mean: optional per-channel input mean; with ``std``, inputs are normalized inside the
            network. None (default) feeds the images as they are.
        std: optional per-channel input std, given together with ``mean``.

    Attributes:
        feature_dim: 512.

    Example:
        >>> import torch
        >>> net = CIFARResNet18()
        >>> net(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 512])
    """

    def __init__(
        self,
        in_channels: int = 3,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels}.")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std to normalize inputs, or neither.")
        self.normalize: nn.Module = (
            nn.Identity() if mean is None or std is None else ChannelNormalize(mean, std)
        )
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        c = 64
        for i, channels in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(c, channels, stride),
                                        BasicBlock(channels, channels)))
            c = channels
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, H, W) -> (B, 512)`` features."""
        out = self.layers(self.stem(self.normalize(x)))
        result: Tensor = self.pool(out).flatten(1)
        return result


def cifar_resnet18(in_channels: int = 3) -> CIFARResNet18:
    """CIFAR ResNet-18 encoder ``(B, in_channels, H, W) -> (B, 512)`` (:class:`CIFARResNet18`)."""
    return CIFARResNet18(in_channels)
