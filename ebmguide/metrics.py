"""Sample-quality metrics over any feature network: Fréchet distance, KID, AUROC.

Our numbers are "FD (features: <net>)", never "FID": FID means Inception-v3 features with the
standard weights, which cannot be downloaded here. Every FD is reported next to the real-vs-real
floor, the FD between two disjoint halves of real data of the same size as the sample set (FD is
biased upwards at finite sample sizes, so a perfect model scores about the floor, not 0).

- :func:`frechet_distance` / :class:`FrechetScorer` / :func:`kernel_distance` on any ``nn.Module``
  feature network (torchmetrics ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` with
  ``feature=<module>``, imported when called);
- :func:`auroc`: the area under the ROC curve of two score sets (used by :mod:`ebmguide.ood`).

The feature networks (Inception-v3 from a local weights file, the shapes classifier), the
rule-based ``factor_statistics`` and ``check_not_guide`` live in :mod:`ebmguide.feature_nets`.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn

from ebmguide._validation import check_finite
from ebmguide.feature_nets import check_not_guide
from ebmguide.grid import to_uint8
from ebmguide.torch_utils import module_device

if TYPE_CHECKING:
    from torchmetrics.image.fid import FrechetInceptionDistance

__all__ = ["FDResult", "FrechetScorer", "auroc", "frechet_distance", "kernel_distance"]


class _Quantized(nn.Module):
    """Runs a feature network without gradients and flattens its output (``num_features`` known)."""

    def __init__(self, net: nn.Module, num_features: int) -> None:
        super().__init__()
        self.net = net
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            out: Tensor = self.net(x)
        return out.flatten(1)


def _feature_size(net: nn.Module, example: Tensor) -> int:
    declared = getattr(net, "num_features", None) or getattr(net, "feature_dim", None)
    if isinstance(declared, int):
        return declared
    with torch.no_grad():
        return int(net(_quantize(example[:2], net)).flatten(1).shape[1])


def _batches(x: Tensor, batch_size: int) -> list[Tensor]:
    return list(torch.split(x, batch_size))


class FDResult(NamedTuple):
    """A Fréchet distance with its real-vs-real floor and the feature network's name.

    Attributes:
        fd: the FD of the samples against the reference.
        floor: the real-vs-real floor.
        features: the feature network's name.
        n: number of samples.
        n_real: number of reference images (``None``: not recorded).
        floor_sizes: sizes of the floor's two real sets (``None``: not recorded).
    """

    fd: float
    floor: float
    features: str
    n: int
    n_real: int | None = None
    floor_sizes: tuple[int, int] | None = None

    def __str__(self) -> str:
        sizes = "" if self.floor_sizes is None else " ({:,} vs {:,})".format(*self.floor_sizes)
        real = "" if self.n_real is None else f", {self.n_real:,} real"
        return (f"FD (features: {self.features}) = {self.fd:.3f}   "
                f"real-vs-real floor = {self.floor:.3f}{sizes}   (n = {self.n}{real})")


def _prepare(net: nn.Module, example: Tensor, guide: nn.Module | None) -> _Quantized:
    check_not_guide(net, guide)
    with contextlib.suppress(NotImplementedError):  # a torch.export module has no mode
        net.eval()
    return _Quantized(net, _feature_size(net, example))


class FrechetScorer:
    """Fréchet distances of sample sets against fixed real images (features computed once).

    Both sets are quantized to 8 bits (floor(x · 256)) first, as in the paper's protocol.

    Args:
        real: ``(2N, C, H, W)`` images in [0, 1] (or ``(2N, D)`` vectors, used as they are); the
            first half is the reference, the second half only serves the floor. With ``floor``
            given, all of ``real`` is the reference.
        feature_net: any module mapping a batch to ``(B, F)`` features; images reach it as floats
            in [0, 1] (uint8 for the Inception network of :func:`inception_features`).
        features: the network's name, for labels ("FD (features: <name>)").
        guide: the run's guide, refused if ``feature_net`` shares its parameters.
        batch_size: images per forward.
        floor: the real-vs-real floor's images: a tensor of real images disjoint from ``real``
            (the floor is their FD against the reference), or a pair of disjoint real sets
            (the floor is the FD between them); see :func:`ebmguide.run.real_sets.real_sets`.
    """

    def __init__(self, real: Tensor, feature_net: nn.Module, *, features: str,
                 guide: nn.Module | None = None, batch_size: int = 256,
                 floor: Tensor | tuple[Tensor, Tensor] | None = None) -> None:
        if floor is None:
            if len(real) < 4:
                raise ValueError(f"FD needs at least 2 x 2 real images, got {len(real)}.")
            self.n = len(real) // 2
            real, floor = real[: self.n], real[self.n: 2 * self.n]
        if len(real) < 2 or any(len(f) < 2 for f in (floor if isinstance(floor, tuple)
                                                    else (floor,))):
            raise ValueError("FD needs at least 2 images in every real set.")
        self.n, self.features, self.batch_size = len(real), features, batch_size
        self.net = feature_net
        self._wrapped = _prepare(feature_net, real, guide)
        self._metric = self._new_metric()
        self._update(self._metric, real, True)
        self._floor_sets = floor
        self.floor_sizes = ((len(real), len(floor)) if isinstance(floor, Tensor)
                            else (len(floor[0]), len(floor[1])))
        self._floor: float | None = None

    def _new_metric(self) -> FrechetInceptionDistance:
        from torchmetrics.image.fid import FrechetInceptionDistance

        # sync_on_compute=False: a score of this process's samples, also under torchrun (where
        # rank 0 alone evaluates and a cross-rank gather inside compute() would deadlock).
        return FrechetInceptionDistance(feature=self._wrapped, reset_real_features=False,
                                        sync_on_compute=False)

    def _update(self, metric: FrechetInceptionDistance, x: Tensor, real: bool) -> None:
        for chunk in _batches(_quantize(x, self.net), self.batch_size):
            metric.update(chunk.to(_device(self.net)), real=real)

    def __call__(self, fake: Tensor) -> float:
        """FD of ``fake`` (at least 2 samples) against the reference half."""
        if len(fake) < 2:
            raise ValueError(f"FD needs at least 2 samples, got {len(fake)}.")
        self._metric.reset()
        self._update(self._metric, fake, False)
        return self._finite(float(self._metric.compute()))

    def _finite(self, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"FD (features: {self.features}) is not finite: the samples hold "
                             f"NaN/inf values or the features are degenerate.")
        return value

    @property
    def floor(self) -> float:
        """The real-vs-real floor: FD between two disjoint real sets (computed once)."""
        if self._floor is None:
            if isinstance(self._floor_sets, Tensor):
                self._floor = self(self._floor_sets)
            else:
                metric = self._new_metric()
                self._update(metric, self._floor_sets[0], True)
                self._update(metric, self._floor_sets[1], False)
                self._floor = self._finite(float(metric.compute()))
        return self._floor

    def with_floor(self, fake: Tensor) -> FDResult:
        """:class:`FDResult` of ``fake``; use as many samples as reference images."""
        return FDResult(self(fake), self.floor, self.features, len(fake), self.n,
                        self.floor_sizes)


def _quantize(x: Tensor, net: nn.Module) -> Tensor:
    if x.dim() != 4:
        check_finite("samples to score", x)
        return x.float()
    q = to_uint8(x, "samples to score")
    return q if getattr(net, "wants_uint8", False) else q.float() / 255


def _device(net: nn.Module) -> torch.device:
    return module_device(net) or torch.device("cpu")


def frechet_distance(real: Tensor, fake: Tensor, feature_net: nn.Module, *, features: str,
                     guide: nn.Module | None = None) -> FDResult:
    """FD of ``fake`` against ``real[:n]`` and the floor ``real[:n]`` vs ``real[n:2n]``.

    Args:
        real: at least ``2 · len(fake)`` real images (two disjoint halves of ``n = len(fake)``).
        fake: the samples.
        feature_net: any feature network (see :class:`FrechetScorer`).
        features: its name.
        guide: the run's guide, refused as the feature network.

    Returns:
        :class:`FDResult`; ``str()`` gives "FD (features: <name>) = … real-vs-real floor = …".

    Example:
        >>> from torch import nn
        >>> g = torch.Generator().manual_seed(0)
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
        >>> real, fake = torch.rand(40, 3, 2, 2, generator=g), torch.rand(20, 3, 2, 2, generator=g)
        >>> result = frechet_distance(real, fake, net, features="random-linear")
        >>> result.features, result.n, result.fd > 0
        ('random-linear', 20, True)
    """
    n = len(fake)
    if len(real) < 2 * n:
        raise ValueError(f"the real-vs-real floor needs 2 x {n} real images, got {len(real)}.")
    scorer = FrechetScorer(real[: 2 * n], feature_net, features=features, guide=guide)
    return scorer.with_floor(fake)


def kernel_distance(real: Tensor, fake: Tensor, feature_net: nn.Module, *, features: str,
                    subsets: int = 50, subset_size: int | None = None, seed: int = 0,
                    guide: nn.Module | None = None) -> tuple[float, float]:
    """Kernel (Inception) distance, mean and std over random subsets; reproducible from ``seed``.

    Args:
        real: ``(N, C, H, W)`` reference images in [0, 1].
        fake: ``(M, C, H, W)`` images to score, in [0, 1].
        feature_net: maps images to ``(B, D)`` features (never the guiding encoder).
        features: the feature network's name, for the caller's label.
        subsets: number of random subsets the estimate is averaged over.
        subset_size: images per subset; default ``min(1000, min(N, M) // 2)``, so that the subsets
            differ and the std means something (a subset of every image would give std 0).
        seed: seed of the subset draws.
        guide: the guiding encoder, if any, to refuse it as ``feature_net``.

    Returns:
        ``(mean, std)``, labelled "KID (features: <name>)" by the caller.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(1000, min(len(real), len(fake)) // 2) if subset_size is None else subset_size
    if size < 2:
        raise ValueError(f"kernel_distance needs subsets of at least 2 images (subset_size="
                         f"{size}); pass at least 4 real and 4 fake images or a larger "
                         "subset_size.")
    wrapped = _prepare(feature_net, real, guide)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            metric = KernelInceptionDistance(feature=wrapped, subsets=subsets, subset_size=size,
                                             sync_on_compute=False)  # see FrechetScorer
        for x, is_real in ((real, True), (fake, False)):
            for chunk in _batches(_quantize(x, feature_net), 256):
                metric.update(chunk.to(_device(feature_net)), real=is_real)
        mean, std = metric.compute()
    return float(mean), float(std)


def auroc(in_scores: Tensor, out_scores: Tensor) -> float:
    """AUROC of telling in-distribution (positive) from out-of-distribution by score.

    Args:
        in_scores: ``(N,)`` scores of in-distribution inputs (higher = more in-distribution).
        out_scores: ``(M,)`` scores of out-of-distribution inputs.

    Returns:
        The area under the ROC curve in [0, 1]: 1 = perfect, 0.5 = chance.
    """
    try:
        from torchmetrics.functional.classification import binary_auroc
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "AUROC needs torchmetrics; install it with `pip install ebmguide[metrics]`."
        ) from err
    if in_scores.numel() == 0 or out_scores.numel() == 0:
        raise ValueError("both score sets must be non-empty.")
    preds = torch.cat([in_scores.flatten(), out_scores.flatten()]).double()
    if not bool(torch.isfinite(preds).all()):
        raise ValueError(
            "some OOD scores are not finite (NaN/inf); the model diverged or the input is "
            "outside its range. Check the checkpoint and the data range."
        )
    target = torch.cat([torch.ones(in_scores.numel()), torch.zeros(out_scores.numel())]).long()
    return float(binary_auroc(preds, target))
