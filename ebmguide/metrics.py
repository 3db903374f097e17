"""Sample-quality metrics over any feature network: Fréchet distance, KID, AUROC.

Our numbers are "FD (features: <net>)", never "FID": FID means Inception-v3 features with the
standard weights, which cannot be downloaded here. Every FD is reported next to the real-vs-real
floor, the FD between two disjoint halves of real data of the same size as the sample set (FD is
biased upwards at finite sample sizes, so a perfect model scores about the floor, not 0).

- :func:`frechet_distance` / :class:`FrechetScorer` / :func:`kernel_distance` on any ``nn.Module``
  feature network (torchmetrics ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` with
  ``feature=<module>``, imported when called);
- :func:`inception_features` builds the standard Inception-v3 network from a local weights file
  (needs ``torch-fidelity``), for users who have one: then the FD is a standard FID;
- :class:`ShapesFeatureNet` / :func:`train_shapes_feature_net` / :func:`shapes_feature_net`: a small
  classifier of the embedded shapes' factors, trained on generated data (never on samples) in
  seconds and cached, an independent in-domain feature network;
- :func:`factor_statistics`: rule-based quality of shapes samples via
  :func:`~ebmguide.data.read_factors`;
- :func:`check_not_guide`: the guiding encoder is refused as a feature network (sampling is steered
  towards its features, so it would flatter the samples).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ebmguide.data import QUADRANTS, make_shapes, read_factors
from ebmguide.grid import to_uint8
from ebmguide.guide import SimCLRGuide
from ebmguide.ood import auroc

__all__ = [
    "FDResult", "FrechetScorer", "ShapesFeatureNet", "auroc", "check_not_guide",
    "factor_statistics", "frechet_distance", "inception_features", "kernel_distance",
    "shapes_feature_net", "train_shapes_feature_net",
]

_FACTOR_SIZES = {"shape": 4, "colour": 6, "scale": 2, "quadrant": len(QUADRANTS)}


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


def check_not_guide(feature_net: nn.Module, guide: nn.Module | None = None) -> None:
    """Refuse the guiding encoder (or anything holding it) as a feature network.

    Raises:
        ValueError: if ``feature_net`` is or contains a :class:`~ebmguide.guide.SimCLRGuide`, or
            shares parameters with ``guide``.
    """
    message = ("the guiding encoder must not be the feature network of an evaluation: sampling is "
               "steered towards its features, so it flatters the samples. Use an "
               "independently trained network, e.g. the shapes classifier or Inception weights.")
    if any(isinstance(m, SimCLRGuide) for m in feature_net.modules()):
        raise ValueError(message)
    if guide is not None:
        ours = {p.data_ptr() for p in guide.parameters()}
        if any(p.data_ptr() in ours for p in feature_net.parameters()):
            raise ValueError(message)


def _eval_mode(net: nn.Module) -> None:
    """Put a feature network in eval mode (a torch.export module has no mode to set)."""
    with contextlib.suppress(NotImplementedError):
        net.eval()


def _feature_size(net: nn.Module, example: Tensor) -> int:
    declared = getattr(net, "num_features", None) or getattr(net, "feature_dim", None)
    if isinstance(declared, int):
        return declared
    with torch.no_grad():
        return int(net(_quantize(example[:2], net)).flatten(1).shape[1])


def _batches(x: Tensor, batch_size: int) -> list[Tensor]:
    return list(torch.split(x, batch_size))


class FDResult(NamedTuple):
    """A Fréchet distance with its real-vs-real floor and the feature network's name."""

    fd: float
    floor: float
    features: str
    n: int

    def __str__(self) -> str:
        return (f"FD (features: {self.features}) = {self.fd:.3f}   "
                f"real-vs-real floor = {self.floor:.3f}   (n = {self.n})")


def _prepare(net: nn.Module, example: Tensor, guide: nn.Module | None) -> _Quantized:
    check_not_guide(net, guide)
    _eval_mode(net)
    return _Quantized(net, _feature_size(net, example))


class FrechetScorer:
    """Fréchet distances of sample sets against fixed real images (features computed once).

    Both sets are quantized to 8 bits (floor(x · 256)) first, as in the paper's protocol.

    Args:
        real: ``(2N, C, H, W)`` images in [0, 1] (or ``(2N, D)`` vectors, used as they are); the
            first half is the reference, the second half only serves the floor.
        feature_net: any module mapping a batch to ``(B, F)`` features; images reach it as floats
            in [0, 1] (uint8 for the Inception network of :func:`inception_features`).
        features: the network's name, for labels ("FD (features: <name>)").
        guide: the run's guide, refused if ``feature_net`` shares its parameters.
        batch_size: images per forward.
    """

    def __init__(self, real: Tensor, feature_net: nn.Module, *, features: str,
                 guide: nn.Module | None = None, batch_size: int = 256) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance

        if len(real) < 4:
            raise ValueError(f"FD needs at least 2 x 2 real images, got {len(real)}.")
        self.n, self.features, self.batch_size = len(real) // 2, features, batch_size
        self.net = feature_net
        wrapped = _prepare(feature_net, real, guide)
        # sync_on_compute=False: a score of this process's samples, also under torchrun (where
        # rank 0 alone evaluates and a cross-rank gather inside compute() would deadlock).
        self._metric = FrechetInceptionDistance(feature=wrapped, reset_real_features=False,
                                                sync_on_compute=False)
        self._update(real[: self.n], True)
        self._other_half = real[self.n: 2 * self.n]
        self._floor: float | None = None

    def _update(self, x: Tensor, real: bool) -> None:
        for chunk in _batches(_quantize(x, self.net), self.batch_size):
            self._metric.update(chunk.to(_device(self.net)), real=real)

    def __call__(self, fake: Tensor) -> float:
        """FD of ``fake`` (at least 2 samples) against the reference half."""
        if len(fake) < 2:
            raise ValueError(f"FD needs at least 2 samples, got {len(fake)}.")
        self._metric.reset()
        self._update(fake, False)
        value = float(self._metric.compute())
        if not math.isfinite(value):
            raise ValueError(f"FD (features: {self.features}) is not finite: the samples hold "
                             f"NaN/inf values or the features are degenerate.")
        return value

    @property
    def floor(self) -> float:
        """The real-vs-real floor: FD between the two disjoint real halves."""
        if self._floor is None:
            self._floor = self(self._other_half)
        return self._floor

    def with_floor(self, fake: Tensor) -> FDResult:
        """:class:`FDResult` of ``fake``; use as many samples as real images in a half."""
        return FDResult(self(fake), self.floor, self.features, len(fake))


def _quantize(x: Tensor, net: nn.Module) -> Tensor:
    if x.dim() != 4:
        return x.float()
    q = to_uint8(x)
    return q if getattr(net, "wants_uint8", False) else q.float() / 255


def _device(net: nn.Module) -> torch.device:
    p = next(iter(net.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


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


def inception_features(weights: str | Path) -> nn.Module:
    """The standard FID Inception-v3 (pool3, 2048 features) from a local weights file.

    The file is the ``pt_inception-2015-12-05`` weights used by torch-fidelity / pytorch-fid;
    nothing is downloaded. Needs the ``torch-fidelity`` package (``pip install torch-fidelity``).

    Raises:
        FileNotFoundError: when ``weights`` does not exist.
        ImportError: when torch-fidelity is not installed.
    """
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Inception weights file {path} does not exist; pass the path of "
                                f"a local pt_inception-2015-12-05 .pth file (nothing is "
                                f"downloaded), or evaluate with another feature network.")
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3

        net: nn.Module = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                            feature_extractor_weights_path=str(path))
    except ModuleNotFoundError as err:
        raise ImportError("standard FID needs the torch-fidelity package: pip install "
                          "torch-fidelity (it does not need torchvision).") from err
    net.wants_uint8 = True  # type: ignore[assignment]
    net.num_features = 2048  # type: ignore[assignment]
    return net


class ShapesFeatureNet(nn.Module):
    """A small CNN classifying the shapes' factors; its penultimate layer gives the features.

    Trained by :func:`train_shapes_feature_net` on generated images with known factor labels (shape,
    colour, scale, quadrant), never on model samples: an independent in-domain feature network.
    """

    def __init__(self, width: int = 16, num_features: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width),
            nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(8 * width, num_features), nn.ReLU(),
        )
        self.heads = nn.ModuleDict({k: nn.Linear(num_features, n)
                                    for k, n in _FACTOR_SIZES.items()})
        self.num_features = num_features
        self.config = {"width": width, "num_features": num_features}

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in [0, 1] → features ``(B, num_features)``."""
        out: Tensor = self.body(x)
        return out

    def logits(self, x: Tensor) -> dict[str, Tensor]:
        """Per-factor logits."""
        h = self.body(x)
        return {k: head(h) for k, head in self.heads.items()}


def train_shapes_feature_net(*, size: int = 16, iterations: int = 300, batch_size: int = 128,
                             seed: int = 12345) -> tuple[ShapesFeatureNet, dict[str, float]]:
    """Train :class:`ShapesFeatureNet` on freshly generated shapes (a few seconds on a CPU).

    Images get Gaussian noise of a random level in [0, 0.1] so the features stay meaningful on
    imperfect samples. Returns the network (eval mode) and its held-out accuracy per factor.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ShapesFeatureNet()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(iterations):
        data = make_shapes(batch_size, size=size, generator=g)
        level = 0.1 * torch.rand(batch_size, 1, 1, 1, generator=g)
        x = (data.images + level * torch.randn(data.images.shape, generator=g)).clamp(0, 1)
        logits = net.logits(x)
        loss = sum(F.cross_entropy(logits[k], data.factors[k]) for k in _FACTOR_SIZES)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        opt.step()
    net.eval()
    test = make_shapes(1000, size=size, generator=g)
    with torch.no_grad():
        logits = net.logits(test.images)
    accuracy = {k: float((logits[k].argmax(1) == test.factors[k]).float().mean())
                for k in _FACTOR_SIZES}
    return net, accuracy


def shapes_feature_net(cache: str | Path | None = None, *, size: int = 16) -> ShapesFeatureNet:
    """The shapes classifier, loaded from ``cache`` when it holds one, else trained and saved there.

    The cache is a plain state dict (loaded with ``weights_only=True``).
    """
    path = None if cache is None else Path(cache)
    if path is not None and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("size") == size:
            net = ShapesFeatureNet(**state["config"])
            net.load_state_dict(state["weights"])
            return net.eval()
    net, accuracy = train_shapes_feature_net(size=size)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"config": net.config, "size": size, "weights": net.state_dict(),
                    "accuracy": accuracy}, path)
    return net


def factor_statistics(samples: Tensor, real: Tensor) -> dict[str, float]:
    """Rule-based quality of shapes samples, read by :func:`~ebmguide.data.read_factors`.

    Returns:
        ``clean``: fraction of samples holding one readable shape (template IoU ≥ 0.6 and colour
        error ≤ 0.3); ``factor_tv``: mean over shape, colour, scale and quadrant of the total
        variation distance between the read factor frequencies of samples and of ``real`` images
        (0 = same proportions, 1 = disjoint); ``shape_iou``: mean template IoU.
    """
    fake_f, real_f = read_factors(samples.clamp(0, 1)), read_factors(real)
    clean = (fake_f["shape_iou"] >= 0.6) & (fake_f["colour_error"] <= 0.3) & (fake_f["shape"] >= 0)
    tvs = []
    for key, n in _FACTOR_SIZES.items():
        p = torch.bincount(fake_f[key] + 1, minlength=n + 1).float() / len(samples)
        q = torch.bincount(real_f[key] + 1, minlength=n + 1).float() / len(real)
        tvs.append(0.5 * float((p - q).abs().sum()))
    return {"clean": float(clean.float().mean()), "factor_tv": sum(tvs) / len(tvs),
            "shape_iou": float(fake_f["shape_iou"].mean())}


def describe(net: Any) -> str:
    """A short name of a feature network for labels."""
    if isinstance(net, ShapesFeatureNet):
        return "shapes-classifier"
    return type(net).__name__
