"""Build a run's data, networks, sampler, optimizers and EMA copies from a :class:`RunConfig`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel

from ebmguide.config import RunConfig
from ebmguide.data import InfiniteBatches, dequantize, load_cifar10, make_shapes, toy2d
from ebmguide.data.streaming import LazyImages, StreamingBatches
from ebmguide.ema import make_ema
from ebmguide.energy import SphericalEBM
from ebmguide.guide import SimCLRGuide
from ebmguide.layer_checks import check_energy_layers
from ebmguide.losses import CLELLoss
from ebmguide.nets import CIFARResNet18, MLPBackbone, SmallCNN, clel_resnet
from ebmguide.optim import Optimizers, clel_optimizers
from ebmguide.sampling import SGLDSampler

__all__ = [
    "Components", "GaussianJitter", "TrainingData", "build_components", "build_ebm",
    "build_guide", "build_sampler", "load_training_data", "networks_from_checkpoint",
    "resolve_device", "sample_shape",
]

_EVAL_SEED_OFFSET = 7919  # held-out shapes/toy data use seed + this offset: disjoint from training


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else CPU; any other name as ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device {name!r} is not a torch device; use auto, cpu or cuda.") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for CUDA, which this torch cannot use; set "
                         f"device = \"cpu\" (or \"auto\").")
    return device


class GaussianJitter(nn.Module):
    """The "jitter" augmentation for vector data: x + std · N(0, I).

    Its noise comes from the global RNG, which :func:`~ebmguide.augment.apply_augment` seeds from
    the run's generator.
    """

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = std

    def forward(self, x: Tensor) -> Tensor:
        """Add Gaussian noise of standard deviation ``std``."""
        return x + self.std * torch.randn(x.shape, dtype=x.dtype, device=x.device)


@dataclass
class TrainingData:
    """The training set and how to get held-out real data for evaluation.

    Attributes:
        train: ``(N, *shape)`` uint8 (8-bit images, dequantized per batch) or float.
        shape: the shape of one sample.
        kind: ``"image"`` or ``"vector"``.
    """

    train: Tensor | LazyImages  # LazyImages: streamed from disk (ebmguide.folder_data)
    shape: tuple[int, ...]
    kind: str
    cfg: RunConfig
    _held_out: Tensor | None = None
    labels: Tensor | None = None  # (N,) int64 class labels of ``train``, when the data have them
    held_out_source: Tensor | LazyImages | None = None  # real images never trained on
    info: dict[str, Any] = field(default_factory=dict)  # what was loaded, logged by the run

    def batches(self, batch_size: int, seed: int, device: torch.device, *, rank: int = 0,
                world_size: int = 1) -> InfiniteBatches[Tensor] | StreamingBatches:
        """The endless, resumable minibatch stream (dequantized when 8-bit).

        Under torchrun, ``rank`` of ``world_size`` gets a disjoint share of every epoch (pass the
        same ``seed`` on every rank). Streamed data give the same batches as in memory.
        """
        if isinstance(self.train, LazyImages):
            return StreamingBatches(self.train, batch_size,
                                    generator=torch.Generator().manual_seed(seed), device=device,
                                    transform=dequantize, rank=rank, world_size=world_size,
                                    num_workers=self.cfg.data.num_workers)
        data = self.train.to(device)
        transform = dequantize if data.dtype == torch.uint8 else None
        return InfiniteBatches(data, batch_size, generator=torch.Generator().manual_seed(seed),
                               transform=transform, rank=rank, world_size=world_size)

    def held_out(self, n: int, *, at_least: int | None = None) -> Tensor:
        """``n`` real samples never used for training, as floats (images in [0, 1]).

        Generated (or drawn from the test split) once with a fixed seed, then cached. A finite
        test split smaller than ``n`` gives all its images when it has ``at_least`` of them
        (default ``n``) and raises ``ValueError`` otherwise.
        """
        need = n if at_least is None else min(n, at_least)
        if self._held_out is None or len(self._held_out) < n:
            # Twice eval.n_samples where the data allow it: the real-vs-real floor needs two halves.
            self._held_out = self._make_held_out(max(n, 2 * self.cfg.eval.n_samples), need=need)
        if len(self._held_out) < need:
            raise ValueError(f"the test split has {len(self._held_out)} images, fewer than the "
                             f"{need} asked for; lower eval.n_samples.")
        return self._held_out[:n]

    def _make_held_out(self, want: int, *, need: int) -> Tensor:
        """``want`` held-out samples, or as many as a finite test split has (at least ``need``)."""
        d = self.cfg.data
        g = torch.Generator().manual_seed(self.cfg.seed + _EVAL_SEED_OFFSET)
        if self.held_out_source is None and d.name == "shapes":
            return make_shapes(want, size=d.size, generator=g).images
        if self.held_out_source is None and d.name == "toy2d":
            return toy2d(d.toy, want, generator=g)
        test = (self.held_out_source if self.held_out_source is not None
                else load_cifar10(d.path, "test").images)
        if len(test) < need:
            raise ValueError(f"the test split has {len(test)} images, fewer than the {need} asked "
                             f"for; lower eval.n_samples.")
        n = min(want, len(test))
        pool = test[torch.randperm(len(test), generator=g)[:n]]
        return dequantize(pool, g) if pool.dtype == torch.uint8 else pool.float()


def load_training_data(cfg: RunConfig) -> TrainingData:
    """Generate or load the training set named by ``cfg.data`` (fails at once when absent)."""
    d = cfg.data
    g = torch.Generator().manual_seed(cfg.seed)
    if d.name == "shapes":
        images = make_shapes(d.n_train, size=d.size, generator=g).images
        return TrainingData(images, tuple(images.shape[1:]), "image", cfg)
    if d.name == "toy2d":
        points = toy2d(d.toy, d.n_train, generator=g)
        return TrainingData(points, (2,), "vector", cfg)
    if not d.path:
        raise ValueError(f"data.path is required for data.name = {d.name!r}: the folder or "
                         f".tar.gz holding the images (nothing is downloaded), e.g. "
                         f"--set data.path=/data/cifar10.")
    if d.name == "image_folder":
        from ebmguide.folder_data import load_folder_data

        return load_folder_data(cfg)
    from ebmguide.folder_data import tensor_training_data

    images, labels = load_cifar10(d.path, "train")
    try:  # checked now, not after training: without a test split, one is held out of train
        test: Tensor | None = load_cifar10(d.path, "test").images
    except FileNotFoundError:
        test = None
    return tensor_training_data(images, labels, cfg, test=test)


def _in_size(shape: tuple[int, ...]) -> int:
    return shape[0]


def build_ebm(cfg: RunConfig, shape: tuple[int, ...]) -> SphericalEBM:
    """The EBM named by ``cfg.model`` for samples of ``shape``."""
    m = cfg.model
    backbone: nn.Module
    if m.backbone == "mlp":
        backbone = MLPBackbone(in_dim=_in_size(shape), hidden=m.width, feature_dim=m.width,
                               spectral_norm=m.spectral_norm)
    elif m.backbone == "small_cnn":
        backbone = SmallCNN(_in_size(shape), m.width, spectral_norm=m.spectral_norm)
    else:
        backbone = clel_resnet(m.backbone.removeprefix("clel_resnet_"), _in_size(shape),
                               spectral_norm=m.spectral_norm)
    return SphericalEBM(backbone, latent_dim=m.latent_dim, hidden_dim=m.hidden_dim,
                        init_std=m.head_init_std)


def build_guide(cfg: RunConfig, shape: tuple[int, ...]) -> SimCLRGuide:
    """The contrastive guide named by ``cfg.guide`` (its latent size is ``model.latent_dim``)."""
    gc = cfg.guide
    encoder: nn.Module
    if gc.encoder == "mlp":
        encoder = MLPBackbone(in_dim=_in_size(shape), hidden=gc.width, feature_dim=gc.width,
                              activation=nn.ReLU())
    elif gc.encoder == "small_cnn":
        encoder = SmallCNN(_in_size(shape), gc.width, spectral_norm=False, norm="batch",
                           activation=nn.ReLU())
    else:
        encoder = CIFARResNet18(_in_size(shape))
    augment = GaussianJitter(gc.jitter) if gc.augment == "jitter" else gc.augment
    return SimCLRGuide(encoder, latent_dim=cfg.model.latent_dim, hidden_dim=gc.hidden_dim,
                       augment=augment, temperature=gc.temperature)


def build_sampler(cfg: RunConfig, shape: tuple[int, ...], device: torch.device,
                  generator: torch.Generator, *, buffer_size: int | None = None) -> SGLDSampler:
    """The SGLD sampler of ``cfg.sampler``; its buffer is initialised from ``generator``."""
    s = cfg.sampler
    augment = None if s.augment == "none" or len(shape) != 3 else s.augment
    return SGLDSampler(
        shape, buffer_size=s.buffer_size if buffer_size is None else buffer_size,
        n_steps=s.n_steps, step_size=s.step_size, noise_scale=s.noise_scale,
        grad_clip=s.grad_clip, clamp=s.clamp, init_range=s.init_range, reinit_prob=s.reinit_prob,
        augment=augment, autocast_dtype=torch.bfloat16 if s.autocast == "bf16" else None,
        device=device, generator=generator,
    )


def _warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> LambdaLR:
    """Linear warm-up over ``warmup`` iterations, then cosine decay to 0 at ``total``."""

    def factor(it: int) -> float:
        if it < warmup:
            return (it + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(it - warmup, total) / max(total - warmup, 1)))

    return LambdaLR(optimizer, factor)


@dataclass
class Components:
    """Everything a training run updates, built from one config."""

    ebm: SphericalEBM
    guide: SimCLRGuide
    ebm_ema: AveragedModel
    guide_ema: AveragedModel
    sampler: SGLDSampler
    optimizers: Optimizers
    loss_fn: CLELLoss


def build_components(cfg: RunConfig, shape: tuple[int, ...], device: torch.device,
                     generator: torch.Generator) -> Components:
    """Networks (initialised from the global RNG seeded with ``cfg.seed``), sampler, optimizers."""
    torch.manual_seed(cfg.seed)
    ebm = build_ebm(cfg, shape).to(device)
    check_energy_layers(ebm, name=f"the EBM (model.backbone = {cfg.model.backbone!r})")
    guide = build_guide(cfg, shape).to(device)
    o = cfg.optim
    optimizers = clel_optimizers(
        ebm, guide, total_iterations=cfg.train.iterations, ebm_lr=o.ebm_lr, ebm_betas=o.ebm_betas,
        warmup_iterations=o.warmup_iterations, guide_lr=o.guide_lr,
        guide_momentum=o.guide_momentum, guide_weight_decay=o.guide_weight_decay,
    )
    if o.ebm_schedule == "cosine":
        optimizers = optimizers._replace(ebm_scheduler=_warmup_cosine(
            optimizers.ebm, o.warmup_iterations, cfg.train.iterations))
    half_life, copies, batch = (cfg.ema.half_life_images, cfg.ema.copy_iterations,
                                cfg.train.batch_size)
    return Components(
        ebm, guide,
        make_ema(ebm, half_life_images=half_life, batch_size=batch, copy_iterations=copies),
        make_ema(guide, half_life_images=half_life, batch_size=batch, copy_iterations=copies),
        build_sampler(cfg, shape, device, generator), optimizers,
        CLELLoss(alpha=cfg.loss.alpha, beta=cfg.loss.beta),
    )


def sample_shape(state: dict[str, Any]) -> tuple[int, ...]:
    """The shape of one sample of a training checkpoint (read from its replay buffer)."""
    try:
        return tuple(int(s) for s in state["sampler"]["buffer"]["states"].shape[1:])
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError("the checkpoint has no replay buffer to read the sample shape from; "
                         "is it an ebmguide training checkpoint?") from err


def networks_from_checkpoint(state: dict[str, Any], cfg: RunConfig, device: torch.device, *,
                             ema: bool = True) -> tuple[SphericalEBM, SimCLRGuide]:
    """The EBM and guide of a training checkpoint in eval mode (EMA weights by default)."""
    shape = sample_shape(state)
    ebm, guide = build_ebm(cfg, shape), build_guide(cfg, shape)
    for net, key in ((ebm, "ebm"), (guide, "guide")):
        weights = state[f"{key}_ema"] if ema else state[key]
        if ema:  # AveragedModel keys: "module.<name>" plus its counter "n_averaged"
            weights = {k.removeprefix("module."): v for k, v in weights.items()
                       if k.startswith("module.")}
        net.load_state_dict(weights)
        net.to(device).eval()
    return ebm, guide
