"""Feature networks for sample-quality metrics, independent of the model they evaluate.

- :func:`inception_features` builds the standard Inception-v3 network from a local weights file
  (needs ``torch-fidelity``), for users who have one: then the FD is a standard FID;
- :class:`ShapesFeatureNet` / :func:`train_shapes_feature_net` / :func:`shapes_feature_net`: a small
  classifier of the embedded shapes' factors, trained on generated data (never on samples) in
  seconds and cached, an independent in-domain feature network;
- :func:`factor_statistics`: rule-based quality of shapes samples via
  :func:`~ebmguide.data.read_factors`;
- :func:`check_not_guide`: the guiding encoder, or a copy of it, is refused as a feature network
  (sampling is steered towards its features, so it would flatter the samples).

Every name is also importable from :mod:`ebmguide.metrics`, whose Fréchet and kernel distances take
these networks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ebmguide.data import QUADRANTS, make_shapes, read_factors
from ebmguide.guide import SimCLRGuide

__all__ = [
    "ShapesFeatureNet", "check_not_guide", "factor_statistics", "inception_features",
    "shapes_feature_net", "train_shapes_feature_net",
]

_FACTOR_SIZES = {"shape": 4, "colour": 6, "scale": 2, "quadrant": len(QUADRANTS)}


def inception_features(weights: str | Path) -> nn.Module:
    """The standard FID Inception-v3 (pool3, 2048 features) from a local weights file.

    The file is torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` (the FID
    Inception weights that torchmetrics loads; docs/cli.md says where it is published); nothing
    is downloaded. Needs the ``torch-fidelity`` package (``pip install torch-fidelity``).

    Args:
        weights: path of the local ``.pth`` weights file.

    Returns:
        A module mapping uint8 images ``(B, 3, H, W)`` to features ``(B, 2048)``; it carries
        ``wants_uint8 = True`` and ``num_features = 2048``.

    Raises:
        FileNotFoundError: when ``weights`` does not exist.
        ImportError: when torch-fidelity is not installed.
    """
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Inception weights file {path} does not exist; pass the path of "
                                f"a local weights-inception-2015-12-05-6726825d.pth file "
                                f"(nothing is downloaded), or evaluate with another feature "
                                f"network.")
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

    Args:
        width: channels of the first convolution (the others have ``2 * width``).
        num_features: size of the feature layer.
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


_SHAPES_NET_VERSION = 2  # bump when the training changes: caches of another version are retrained


def train_shapes_feature_net(*, size: int = 16, iterations: int = 300, batch_size: int = 128,
                             seed: int = 12345) -> tuple[ShapesFeatureNet, dict[str, float]]:
    """Train :class:`ShapesFeatureNet` on freshly generated shapes (a few seconds on a CPU).

    Images get Gaussian noise of a random level in [0, 0.1] so the features stay meaningful on
    imperfect samples. The learning rate decays to zero (cosine): the last steps settle the weights,
    so the accuracy does not hinge on where a constant-rate run happens to stop (with a constant
    3e-3 the shape accuracy of one seed was 0.85 on one thread and 0.99 on two).

    Args:
        size: canvas side of the training images.
        iterations: optimizer steps (Adam, learning rate 3e-3 decayed to 0 on a cosine).
        batch_size: freshly generated images per step.
        seed: seed of the initialization and of the data (the result is reproducible).

    Returns:
        The network (eval mode) and its accuracy per factor on 1,000 held-out images.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ShapesFeatureNet()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iterations)
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
        schedule.step()
    net.eval()
    test = make_shapes(1000, size=size, generator=g)
    with torch.no_grad():
        logits = net.logits(test.images)
    accuracy = {k: float((logits[k].argmax(1) == test.factors[k]).float().mean())
                for k in _FACTOR_SIZES}
    return net, accuracy


def shapes_feature_net(cache: str | Path | None = None, *, size: int = 16) -> ShapesFeatureNet:
    """The shapes classifier, loaded from ``cache`` when it holds one, else trained and saved there.

    The cache is a plain state dict (loaded with ``weights_only=True``); one trained for another
    ``size`` or by an earlier version of the training is replaced.

    Args:
        cache: file of the cached network, or ``None`` to train without caching.
        size: canvas side of the images the network will see.

    Returns:
        The network in eval mode.
    """
    path = None if cache is None else Path(cache)
    if path is not None and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("size") == size and state.get("version") == _SHAPES_NET_VERSION:
            net = ShapesFeatureNet(**state["config"])
            net.load_state_dict(state["weights"])
            return net.eval()
    net, accuracy = train_shapes_feature_net(size=size)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"config": net.config, "size": size, "version": _SHAPES_NET_VERSION,
                    "weights": net.state_dict(), "accuracy": accuracy}, path)
    return net


def factor_statistics(samples: Tensor, real: Tensor) -> dict[str, float]:
    """Rule-based quality of shapes samples, read by :func:`~ebmguide.data.read_factors`.

    Args:
        samples: ``(N, 3, S, S)`` samples (clamped to [0, 1] here).
        real: ``(M, 3, S, S)`` real images in [0, 1].

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


def check_not_guide(feature_net: nn.Module,
                    guide: nn.Module | Mapping[str, Tensor] | None = None) -> None:
    """Refuse the guiding encoder (or anything holding it, or a copy of it) as a feature network.

    Parameters are compared by value, not by identity, so a deep copy, a TorchScript or
    ``torch.export`` file of the guide (or of its encoder) is refused as well. Only distinctive
    tensors count (at least 16 entries, not all equal): constant initialisations such as zero
    biases or unit BatchNorm scales occur in independent networks too.

    Args:
        feature_net: the candidate feature network.
        guide: the run's guide, or its state dict (e.g. a checkpoint's ``guide`` and
            ``guide_ema`` entries, one call each).

    Raises:
        ValueError: if ``feature_net`` is or contains a :class:`~ebmguide.guide.SimCLRGuide`, or
            holds a tensor equal to one of ``guide``'s.
    """
    message = ("the guiding encoder must not be the feature network of an evaluation: sampling is "
               "steered towards its features, so it flatters the samples. Use an "
               "independently trained network, e.g. the shapes classifier or Inception weights.")
    if any(isinstance(m, SimCLRGuide) for m in feature_net.modules()):
        raise ValueError(message)
    if guide is None:
        return
    tensors = guide.values() if isinstance(guide, Mapping) else guide.parameters()
    ours: dict[tuple[tuple[int, ...], torch.dtype], list[Tensor]] = {}
    for t in tensors:
        if isinstance(t, Tensor) and _distinctive(t):
            ours.setdefault((tuple(t.shape), t.dtype), []).append(t.detach())
    for p in feature_net.parameters():
        for t in ours.get((tuple(p.shape), p.dtype), ()):
            if torch.equal(p.detach().to(t.device), t):
                raise ValueError(message)


def _distinctive(t: Tensor) -> bool:
    """Whether a tensor could identify a trained network: 16+ floating entries, not all equal."""
    if not t.is_floating_point() or t.numel() < 16:
        return False
    flat = t.detach().flatten()
    return bool((flat != flat[0]).any())
