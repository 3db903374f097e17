"""Build a run's networks, sampler, optimizers and EMA copies from a :class:`RunConfig`.

Also reads the networks of a training checkpoint back (:func:`networks_from_checkpoint`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ebmguide.augment import GaussianJitter
from ebmguide.ema import make_ema
from ebmguide.energy import SphericalEBM
from ebmguide.guide import SimCLRGuide
from ebmguide.layer_checks import check_energy_layers
from ebmguide.losses import CLELLoss
from ebmguide.nets import CIFARResNet18, MLPBackbone, SmallCNN, clel_resnet
from ebmguide.optim import Optimizers, clel_optimizers, warmup_cosine
from ebmguide.protocols import ContrastiveGuide, EnergyModel, LangevinSampler
from ebmguide.run.config import RunConfig
from ebmguide.run.config_schema import GuideConfig, ModelConfig, is_import_path
from ebmguide.run.imports import import_object
from ebmguide.sampling import LangevinSettings, SamplerWarning, SGLDSampler
from ebmguide.torch_utils import native_bf16, resolve_device

__all__ = [
    "Components", "build_components", "build_ebm", "build_guide", "build_sampler", "init_range",
    "langevin_settings", "networks_from_checkpoint", "sample_shape", "sampler_autocast",
]

def _in_size(shape: tuple[int, ...]) -> int:
    return shape[0]


def _user_module(path: str, kwargs: dict[str, Any], *, key: str) -> nn.Module:
    """The ``nn.Module`` an import path builds with its keyword arguments."""
    module = import_object(path, key=key)(**kwargs)
    if not isinstance(module, nn.Module):
        raise TypeError(f"{key} = {path!r} built a {type(module).__name__}, not a torch.nn.Module.")
    return module


def _builtin_backbone(m: ModelConfig, shape: tuple[int, ...]) -> nn.Module:
    channels = _in_size(shape)
    if m.backbone == "mlp":
        return MLPBackbone(in_dim=channels, hidden=m.width, feature_dim=m.width,
                           spectral_norm=m.spectral_norm)
    if m.backbone == "small_cnn":
        if m.pool == "flatten" and len(shape) != 3:
            raise ValueError(f"model.pool = 'flatten' needs images (C, H, W), but the data's "
                             f"samples have shape {shape}; use model.pool = 'avg'.")
        return SmallCNN(channels, m.width, spectral_norm=m.spectral_norm, pool=m.pool,
                        input_size=(shape[1], shape[2]) if m.pool == "flatten" else None)
    return clel_resnet(m.backbone.removeprefix("clel_resnet_"), channels,
                       spectral_norm=m.spectral_norm)


def _builtin_encoder(gc: GuideConfig, channels: int) -> nn.Module:
    if gc.encoder == "mlp":
        return MLPBackbone(in_dim=channels, hidden=gc.width, feature_dim=gc.width,
                           activation=nn.ReLU())
    if gc.encoder == "small_cnn":  # BatchNorm is fine in the guide (not in the EBM)
        return SmallCNN(channels, gc.width, spectral_norm=False, norm="batch",
                        activation=nn.ReLU())
    return CIFARResNet18(channels)


def build_ebm(cfg: RunConfig, shape: tuple[int, ...]) -> SphericalEBM:
    """The EBM named by ``cfg.model`` for samples of ``shape`` (an import path is called)."""
    m = cfg.model
    backbone = (_user_module(m.backbone, m.backbone_args, key="model.backbone")
                if is_import_path(m.backbone) else _builtin_backbone(m, shape))
    return SphericalEBM(backbone, latent_dim=m.latent_dim, hidden_dim=m.hidden_dim,
                        init_std=m.head_init_std)


def build_guide(cfg: RunConfig, shape: tuple[int, ...]) -> SimCLRGuide:
    """The contrastive guide named by ``cfg.guide`` (its latent size is ``model.latent_dim``)."""
    gc = cfg.guide
    encoder = (_user_module(gc.encoder, gc.encoder_args, key="guide.encoder")
               if is_import_path(gc.encoder) else _builtin_encoder(gc, _in_size(shape)))
    augment = GaussianJitter(gc.jitter) if gc.augment == "jitter" else gc.augment
    return SimCLRGuide(encoder, latent_dim=cfg.model.latent_dim, hidden_dim=gc.hidden_dim,
                       augment=augment, temperature=gc.temperature)


def sampler_autocast(cfg: RunConfig, device: str | torch.device | None = None
                     ) -> torch.dtype | None:
    """The autocast dtype of the SGLD gradients: ``sampler.autocast`` resolved for ``device``.

    ``"auto"`` is bfloat16 where the device runs it natively (:func:`~ebmguide.torch_utils.
    native_bf16`) and float32 elsewhere; ``"bf16"`` is bfloat16 everywhere, with a
    :class:`~ebmguide.sampling.SamplerWarning` on a device that only emulates it.

    Args:
        cfg: the run's configuration.
        device: where the chains run (default: ``cfg.device`` resolved).
    """
    choice = cfg.sampler.autocast
    if choice == "none":
        return None
    dev = resolve_device(cfg.device) if device is None else torch.device(device)
    native = native_bf16(dev)
    if choice == "bf16" and not native:
        warnings.warn(f"sampler.autocast = \"bf16\" on {dev.type}, which has no native bfloat16 "
                      f"kernels (on a CPU: no AVX512-BF16 or AMX): the SGLD steps run emulated, "
                      f"several times slower than float32. Set sampler.autocast = \"auto\" to use "
                      f"bfloat16 only where it is fast.", SamplerWarning, stacklevel=2)
    return torch.bfloat16 if choice == "bf16" or native else None


def langevin_settings(cfg: RunConfig, device: str | torch.device | None = None
                      ) -> LangevinSettings:
    """The Langevin settings of ``cfg.sampler`` (what every chain of the run uses).

    Args:
        cfg: the run's configuration.
        device: where the chains run, for ``sampler.autocast = "auto"`` (default: ``cfg.device``
            resolved).
    """
    s = cfg.sampler
    layout = torch.channels_last if s.memory_format == "channels_last" else torch.preserve_format
    return LangevinSettings(n_steps=s.n_steps, step_size=s.step_size, noise_scale=s.noise_scale,
                            grad_clip=s.grad_clip, clamp=s.clamp,
                            autocast_dtype=sampler_autocast(cfg, device), memory_format=layout)


def init_range(cfg: RunConfig) -> tuple[float, float]:
    """``(low, high)`` of the uniform chain starts: the clamp range, else ``sampler.init_range``."""
    s = cfg.sampler
    low, high = s.clamp if s.clamp is not None else s.init_range
    return float(low), float(high)


def build_sampler(cfg: RunConfig, shape: tuple[int, ...], device: torch.device,
                  generator: torch.Generator, *, buffer_size: int | None = None) -> SGLDSampler:
    """The SGLD sampler of ``cfg.sampler``; its buffer is initialised from ``generator``."""
    s = cfg.sampler
    augment = None if s.augment == "none" or len(shape) != 3 else s.augment
    return SGLDSampler.from_settings(
        shape, langevin_settings(cfg, device),
        buffer_size=s.buffer_size if buffer_size is None else buffer_size,
        init_range=s.init_range, reinit_prob=s.reinit_prob, augment=augment, device=device,
        generator=generator,
    )


@dataclass
class Components:
    """Everything a training run updates, built from one config (or given by the user)."""

    ebm: nn.Module  # an EnergyModel
    guide: nn.Module  # a ContrastiveGuide
    ebm_ema: AveragedModel
    guide_ema: AveragedModel
    sampler: SGLDSampler  # or another LangevinSampler with a replay buffer
    optimizers: Optimizers
    loss_fn: CLELLoss


def _given_module(value: object, what: str, protocol: type) -> nn.Module:
    if not isinstance(value, nn.Module) or not isinstance(value, protocol):
        raise TypeError(f"{what} must be a torch.nn.Module satisfying {protocol.__name__}, got "
                        f"{type(value).__name__}; wrap a backbone with "
                        f"ebmguide.{'SphericalEBM' if what == 'ebm' else 'SimCLRGuide'}.")
    return value


def build_components(cfg: RunConfig, shape: tuple[int, ...], device: torch.device,
                     generator: torch.Generator, *, ebm: object | None = None,
                     guide: object | None = None, sampler: object | None = None) -> Components:
    """Networks (initialised from the global RNG seeded with ``cfg.seed``), sampler, optimizers.

    ``ebm``, ``guide`` and ``sampler``, when given, are used instead of the ones ``cfg`` names
    (moved to ``device``); optimizers, EMA copies and the loss always follow ``cfg``.
    """
    torch.manual_seed(cfg.seed)
    ebm_net = (build_ebm(cfg, shape) if ebm is None
               else _given_module(ebm, "ebm", EnergyModel)).to(device)
    check_energy_layers(ebm_net, name=f"the EBM (model.backbone = {cfg.model.backbone!r})"
                        if ebm is None else "the EBM")
    guide_net = (build_guide(cfg, shape) if guide is None
                 else _given_module(guide, "guide", ContrastiveGuide)).to(device)
    if sampler is not None and not isinstance(sampler, LangevinSampler):
        raise TypeError(f"sampler ({type(sampler).__name__}) does not satisfy LangevinSampler.")
    o = cfg.optim
    optimizers = clel_optimizers(
        ebm_net, guide_net, total_iterations=cfg.train.iterations, ebm_lr=o.ebm_lr,
        ebm_betas=o.ebm_betas, warmup_iterations=o.warmup_iterations, guide_lr=o.guide_lr,
        guide_momentum=o.guide_momentum, guide_weight_decay=o.guide_weight_decay,
    )
    if o.ebm_schedule == "cosine":
        optimizers = optimizers._replace(ebm_scheduler=warmup_cosine(
            optimizers.ebm, o.warmup_iterations, cfg.train.iterations))
    half_life, copies, batch = (cfg.ema.half_life_images, cfg.ema.copy_iterations,
                                cfg.train.batch_size)
    return Components(
        ebm_net, guide_net,
        make_ema(ebm_net, half_life_images=half_life, batch_size=batch, copy_iterations=copies),
        make_ema(guide_net, half_life_images=half_life, batch_size=batch,
                 copy_iterations=copies),
        build_sampler(cfg, shape, device, generator) if sampler is None else sampler,  # type: ignore[arg-type]
        optimizers, CLELLoss(alpha=cfg.loss.alpha, beta=cfg.loss.beta),
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
    """The EBM and guide of a training checkpoint in eval mode (EMA weights by default).

    ``cfg`` must come from the user or have passed
    :func:`~ebmguide.run.imports.check_trusted` (as :func:`~ebmguide.run.checkpoints.load_run`
    does): a backbone or encoder named by import path is imported here.
    """
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
