"""Data-parallel CLEL under ``torchrun``, on PyTorch's own ``torch.distributed`` and DDP.

Every rank runs the same loop on its own slice of the data, with its own replay buffer and its own
random streams; DDP averages the gradients, so the parameters (and hence the EMA copies) stay
identical on all ranks. The contrastive loss is computed over the global batch
(:func:`gathered_nt_xent`), so a run on W processes with B images each optimises the same
objective as one process with W·B images. Launching, what is global and what is per rank, and
measured runs are in the "Distributed training" page of the docs.

- :mod:`~ebmguide.distributed.runtime`: start/stop (:func:`init_distributed`, :func:`shutdown`),
  per-rank generators, the world-size check of checkpoints;
- :mod:`~ebmguide.distributed.collectives`: gathers (with and without gradient), the global
  NT-Xent, metric averaging, object broadcast/gather;
- :mod:`~ebmguide.distributed.ddp`: DDP wrappers that keep the sampler off DDP's hooks.

Without a launcher everything degrades to one process:

    >>> import torch
    >>> ctx = init_distributed("cpu")
    >>> ctx.world_size, ctx.is_main, ctx.enabled
    (1, True, False)
    >>> gather_tensor(torch.ones(2, 3)).shape
    torch.Size([2, 3])
"""

from ebmguide.distributed.collectives import (
    all_gather_with_grad,
    all_ranks,
    any_rank,
    broadcast_object,
    gather_objects,
    gather_tensor,
    gathered_nt_xent,
    reduce_mean,
    select_rank,
)
from ebmguide.distributed.ddp import DDPEnergyModel, DDPGuide, release_ddp, unwrap, wrap_ddp
from ebmguide.distributed.runtime import (
    DistributedContext,
    check_world_size,
    distributed_session,
    init_distributed,
    launched_by_torchrun,
    local_context,
    rank_generator,
    rank_seed,
    shutdown,
)

__all__ = [
    "DDPEnergyModel",
    "DDPGuide",
    "DistributedContext",
    "all_gather_with_grad",
    "all_ranks",
    "any_rank",
    "broadcast_object",
    "check_world_size",
    "distributed_session",
    "gather_objects",
    "gather_tensor",
    "gathered_nt_xent",
    "init_distributed",
    "launched_by_torchrun",
    "local_context",
    "rank_generator",
    "rank_seed",
    "reduce_mean",
    "release_ddp",
    "select_rank",
    "shutdown",
    "unwrap",
    "wrap_ddp",
]
