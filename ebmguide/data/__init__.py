"""Data: the embedded coloured-shapes set, 2-D toy sets, CIFAR-10 from local files, batching.

- :mod:`ebmguide.data.shapes`: procedurally generated shapes with known factors, and
  :mod:`ebmguide.data.factors`: their rule-based factor reader, for exact evaluation of
  (conditional) generation on a CPU;
- :mod:`ebmguide.data.toy2d`: classic 2-D densities;
- :mod:`ebmguide.data.cifar`: CIFAR-10 from python batches, an image folder or an archive, and
  dequantization;
- :mod:`ebmguide.data.folder`: image folders (flat, by class, or split) of any size and channel
  count, read lazily;
- :mod:`ebmguide.data.loader`: endless, resumable, shardable minibatches, and
  :mod:`ebmguide.data.streaming`: the same streamed from any map-style ``Dataset`` by workers.
"""

from ebmguide.data.cifar import (
    CIFAR10_CLASSES,
    LabelledImages,
    average_pool,
    dequantize,
    load_cifar10,
)
from ebmguide.data.factors import read_factors
from ebmguide.data.folder import FolderSplits, ImageFolder, scan_image_folder
from ebmguide.data.loader import BatchTransform, InfiniteBatches
from ebmguide.data.noise import GaussianNoise
from ebmguide.data.shapes import (
    COLOUR_RGB,
    COLOURS,
    NOVEL_COLOURS,
    NOVEL_SHAPES,
    QUADRANTS,
    SCALE_RADII,
    SCALES,
    SHAPES,
    SHIFT_KINDS,
    ShapesConfig,
    ShapesData,
    make_shapes,
    make_shifted_shapes,
)
from ebmguide.data.streaming import LazyImages, StreamingBatches
from ebmguide.data.toy2d import (
    TOY2D_NAMES,
    checkerboard,
    eight_gaussians,
    gaussian_mixture_modes,
    rings,
    swiss_roll,
    toy2d,
    twentyfive_gaussians,
    two_moons,
)

__all__ = [
    "CIFAR10_CLASSES",
    "COLOURS",
    "COLOUR_RGB",
    "NOVEL_COLOURS",
    "NOVEL_SHAPES",
    "QUADRANTS",
    "SCALES",
    "SCALE_RADII",
    "SHAPES",
    "SHIFT_KINDS",
    "TOY2D_NAMES",
    "BatchTransform",
    "FolderSplits",
    "GaussianNoise",
    "ImageFolder",
    "InfiniteBatches",
    "LabelledImages",
    "LazyImages",
    "ShapesConfig",
    "ShapesData",
    "StreamingBatches",
    "average_pool",
    "checkerboard",
    "dequantize",
    "eight_gaussians",
    "gaussian_mixture_modes",
    "load_cifar10",
    "make_shapes",
    "make_shifted_shapes",
    "read_factors",
    "rings",
    "scan_image_folder",
    "swiss_roll",
    "toy2d",
    "twentyfive_gaussians",
    "two_moons",
]
