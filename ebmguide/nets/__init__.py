"""Reference backbones: they map inputs to pooled features ``(B, feature_dim)``.

- :class:`CLELResNet` / :class:`CLELResNetLarge`: CLEL's EBM backbones (spectral norm, no
  normalization layers), presets ``small``, ``base``, ``large`` via :func:`clel_resnet`.
- :class:`CIFARResNet18`: the contrastive guide's encoder.
- :class:`MLPBackbone`, :class:`SmallCNN`: CPU-sized networks for toy data and small images.

Every network exposes ``feature_dim``, read by :class:`~ebmguide.energy.SphericalEBM` and
:class:`~ebmguide.guide.SimCLRGuide`, which own the heads.
"""

from ebmguide.nets.clel_resnet import (
    BASE_STAGES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    LARGE_STAGES,
    SMALL_STAGES,
    ChannelNormalize,
    CLELResNet,
    CLELResNetLarge,
    PreActBlock,
    clel_resnet,
    clel_resnet_base,
    clel_resnet_large,
    clel_resnet_small,
)
from ebmguide.nets.resnet18 import BasicBlock, CIFARResNet18, cifar_resnet18
from ebmguide.nets.small import MLPBackbone, SmallCNN

__all__ = [
    "BASE_STAGES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "LARGE_STAGES",
    "SMALL_STAGES",
    "BasicBlock",
    "CIFARResNet18",
    "CLELResNet",
    "CLELResNetLarge",
    "ChannelNormalize",
    "MLPBackbone",
    "PreActBlock",
    "SmallCNN",
    "cifar_resnet18",
    "clel_resnet",
    "clel_resnet_base",
    "clel_resnet_large",
    "clel_resnet_small",
]
