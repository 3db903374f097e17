"""DDP wrappers for the EBM and the guide that keep SGLD sampling off DDP's hooks.

``DistributedDataParallel`` averages gradients only for what goes through its ``forward``; the
CLEL protocols call named methods (``energy_and_direction``, ``contrastive_loss``) instead. The
wrappers here route exactly one call per network and iteration through DDP (the one whose
parameter gradients must be averaged) and everything else (the sampler's many input-gradient
evaluations of ``energy``, evaluation-time ``embed``) to the plain module, so sampling triggers no
hooks and no communication.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ebmguide.distributed.runtime import DistributedContext
from ebmguide.protocols import ContrastiveGuide, EnergyModel, EnergyOutput, GuideOutput

__all__ = ["DDPEnergyModel", "DDPGuide", "release_ddp", "unwrap", "wrap_ddp"]

EBM = TypeVar("EBM", bound=nn.Module)
Guide = TypeVar("Guide", bound=nn.Module)


class _MethodCall(nn.Module):
    """Lets DDP's ``forward(name, *args)`` run ``module.name(*args)`` with DDP's hooks."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call the named method of the wrapped module."""
        return getattr(self.module, method)(*args, **kwargs)


class _DDPWrapper(nn.Module):
    """Holds a DDP module; ``.module`` is the plain network (for EMA, sampling, checkpoints).

    ``train()``/``eval()`` reach the network through DDP; ``parameters()`` are the network's.
    """

    module: nn.Module

    def __init__(self, ddp: DistributedDataParallel) -> None:
        super().__init__()
        self.ddp: DistributedDataParallel | None = ddp
        inner = cast(_MethodCall, ddp.module)
        object.__setattr__(self, "module", inner.module)  # plain attribute: not a second child

    def _through_ddp(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.ddp is None:
            raise RuntimeError("this DDP wrapper was released by shutdown(); use .module.")
        return self.ddp(method, *args, **kwargs)

    def release_ddp(self) -> None:
        """Drop the DDP module and its reducer (before ``destroy_process_group``)."""
        self._modules.pop("ddp", None)
        object.__setattr__(self, "ddp", None)


class DDPEnergyModel(_DDPWrapper):
    """An :class:`~ebmguide.protocols.EnergyModel` whose training forward goes through DDP.

    ``energy`` (what the sampler calls K times per iteration for input gradients) uses the plain
    module; ``energy_and_direction`` (the one forward per iteration whose parameter gradients are
    averaged) goes through DDP.
    """

    def energy(self, x: Tensor) -> Tensor:
        """E(x) ``(B,)`` from the plain module: no DDP hooks, no communication."""
        return cast(EnergyModel, self.module).energy(x)

    def energy_and_direction(self, x: Tensor) -> EnergyOutput:
        """E(x) and g(x) through DDP."""
        return cast(EnergyOutput, self._through_ddp("energy_and_direction", x))


class DDPGuide(_DDPWrapper):
    """A :class:`~ebmguide.protocols.ContrastiveGuide` whose contrastive loss goes through DDP."""

    def embed(self, x: Tensor) -> Tensor:
        """Unit latents from the plain module (no gradient averaging)."""
        return cast(ContrastiveGuide, self.module).embed(x)

    def contrastive_loss(self, x: Tensor, *, extra_negatives: Tensor | None = None,
                         generator: torch.Generator | None = None) -> GuideOutput:
        """The guide's loss through DDP (over the global batch when ``gather_distributed``)."""
        out = self._through_ddp("contrastive_loss", x, extra_negatives=extra_negatives,
                                generator=generator)
        return cast(GuideOutput, out)


def wrap_ddp(ebm: EBM, guide: Guide, ctx: DistributedContext, *,
             sync_batchnorm: bool | None = None) -> tuple[EBM | DDPEnergyModel, Guide | DDPGuide]:
    """DDP-wrap the EBM and the guide for a multi-process run; the identity on one process.

    Call it after the networks are on ``ctx.device`` and before building optimizers or EMA copies
    if ``sync_batchnorm`` may apply (the conversion keeps the parameter objects, so optimizers
    built earlier stay valid). The guide's loss is its own business: build a
    :class:`~ebmguide.guide.SimCLRGuide` with ``gather_distributed=True`` for the global-batch
    NT-Xent (the :class:`~ebmguide.run.trainer.Trainer` does); a guide of your own must gather
    its negatives itself (see :func:`~ebmguide.distributed.gathered_nt_xent`).

    Args:
        ebm: the EBM (an ``nn.Module`` satisfying :class:`~ebmguide.protocols.EnergyModel`).
        guide: the guide (an ``nn.Module`` satisfying
            :class:`~ebmguide.protocols.ContrastiveGuide`).
        ctx: from :func:`~ebmguide.distributed.init_distributed`.
        sync_batchnorm: turn the guide's BatchNorm layers into ``SyncBatchNorm`` (statistics over
            the global batch, as in SimCLR). Default: on GPUs; ``SyncBatchNorm`` needs a GPU.

    Returns:
        ``(ebm, guide)`` as :class:`DDPEnergyModel` and :class:`DDPGuide` (``.module`` is the
        plain network; DDP has broadcast rank 0's parameters and buffers to all ranks), or the
        inputs unchanged on one process.
    """
    if not ctx.enabled:
        return ebm, guide
    if sync_batchnorm is None:
        sync_batchnorm = ctx.device.type == "cuda"
    module: nn.Module = guide
    if sync_batchnorm:  # in place for a guide that is not itself a BatchNorm layer
        module = nn.SyncBatchNorm.convert_sync_batchnorm(guide)  # type: ignore[no-untyped-call]
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    ddp_ebm, ddp_guide = (DistributedDataParallel(_MethodCall(m), device_ids=ids)
                          for m in (ebm, module))
    return DDPEnergyModel(ddp_ebm), DDPGuide(ddp_guide)


def release_ddp(*models: object) -> None:
    """Drop the DDP modules inside :func:`wrap_ddp` wrappers (others are ignored); idempotent.

    Call it before the process group is destroyed (:func:`~ebmguide.distributed.shutdown` does):
    a DDP reducer alive at ``destroy_process_group`` can abort the process at exit.
    """
    for model in models:
        if isinstance(model, _DDPWrapper):
            model.release_ddp()


def unwrap(model: nn.Module) -> nn.Module:
    """The plain network inside a :func:`wrap_ddp` wrapper, or ``model`` itself."""
    return model.module if isinstance(model, _DDPWrapper) else model
