"""Collectives for data-parallel CLEL: gathers, the global-batch NT-Xent, metric averaging.

Every function is a collective when a process group with several ranks is active (all ranks must
call it, in the same order, with tensors of the same shape) and the single-process identity
otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from ebmguide.distributed.runtime import DistributedContext, check_world_size
from ebmguide.losses import nt_xent

__all__ = ["all_gather_with_grad", "all_ranks", "any_rank", "broadcast_object", "gather_objects",
           "gather_tensor", "gathered_nt_xent", "reduce_mean", "select_rank"]


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _AllGatherGrad(torch.autograd.Function):
    """all_gather whose backward gives each rank the summed gradient of its own rows."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rows = tensor.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        # Every rank's loss may depend on this rank's rows: sum the gradients over ranks. An
        # all_reduce runs on every backend (gloo has no reduce_scatter); the tensors are small.
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.rows
        return grad[start:start + ctx.rows]


def all_gather_with_grad(tensor: Tensor) -> Tensor:
    """``(n, ...)`` on each rank → ``(world_size·n, ...)`` in rank order, differentiable.

    The gradient reaching ``tensor`` is the sum over ranks of the gradients of the rows it
    contributed. All ranks must pass the same shape.
    """
    if not _active():
        return tensor
    out: Tensor = _AllGatherGrad.apply(tensor)  # type: ignore[no-untyped-call]
    return out


@torch.no_grad()
def gather_tensor(tensor: Tensor) -> Tensor:
    """``(n, ...)`` on each rank → ``(world_size·n, ...)`` in rank order, detached."""
    if not _active():
        return tensor.detach()
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.detach().contiguous())
    return torch.cat(parts)


def gathered_nt_xent(z1: Tensor, z2: Tensor, *, temperature: float = 0.2,
                     extra_negatives: Tensor | None = None) -> Tensor:
    """NT-Xent over the global batch: this rank's anchors against every rank's embeddings.

    Rank r's 2B anchors (its own two views, with gradient) are scored against the 2·W·B
    embeddings of all W ranks (gathered with gradient) and against every rank's extra negatives
    (gathered, detached); the loss is the mean over this rank's anchors. Hence the mean of the
    ranks' losses equals :func:`~ebmguide.losses.nt_xent` on the concatenated batch, and since
    the gathered rows carry their gradient back to the rank that owns them, DDP's *average* of
    the ranks' gradients equals the single-process gradient of that global loss. No rescaling by
    W is needed; taking the global mean on every rank instead would shrink the gradient W times.

    Args:
        z1: ``(B, d)`` first views of this rank's images (the same B on every rank).
        z2: ``(B, d)`` second views.
        temperature: τ.
        extra_negatives: ``(M, d)`` detached extra negatives of this rank, or ``None``.

    Returns:
        Scalar loss over this rank's 2B anchors; exactly :func:`~ebmguide.losses.nt_xent`
        without an active multi-rank process group.
    """
    if not _active():
        return nt_xent(z1, z2, temperature=temperature, extra_negatives=extra_negatives)
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must both be (B, d), got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}.")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    b, rank, world = z1.shape[0], dist.get_rank(), dist.get_world_size()
    anchors = F.normalize(torch.cat([z1, z2]), dim=1)
    # Gathered rows come as [rank 0: z1, z2; rank 1: z1, z2; ...]; reorder them to
    # [all first views in rank order; all second views], the layout of nt_xent's anchors.
    keys = all_gather_with_grad(anchors).view(world, 2, b, -1).transpose(0, 1).reshape(
        2 * world * b, -1)
    logits = anchors @ keys.T / temperature
    own = torch.arange(b, device=z1.device) + rank * b  # this rank's first views among the keys
    rows = torch.arange(2 * b, device=z1.device)
    self_cols = torch.cat([own, own + world * b])
    logits = logits.index_put((rows, self_cols), torch.tensor(float("-inf"), device=z1.device))
    if extra_negatives is not None:
        if extra_negatives.dim() != 2 or extra_negatives.shape[1] != z1.shape[1]:
            raise ValueError(f"extra_negatives must be (M, {z1.shape[1]}), got "
                             f"{tuple(extra_negatives.shape)}.")
        extra = F.normalize(gather_tensor(extra_negatives).to(anchors.dtype), dim=1)
        logits = torch.cat([logits, anchors @ extra.T / temperature], dim=1)
    positives = torch.cat([own + world * b, own])
    return F.cross_entropy(logits, positives)


def reduce_mean(values: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Average scalar tensors over ranks (every rank must pass the same keys).

    Per-rank batch means become global-batch means, so logged losses mean what they mean on one
    process.
    """
    if not values:
        return {}
    keys = sorted(values)
    stacked = torch.stack([values[k].detach().float().reshape(()) for k in keys])
    if _active():
        dist.all_reduce(stacked)
        stacked /= dist.get_world_size()
    return dict(zip(keys, stacked.unbind(), strict=True))


def all_ranks(flags: Tensor) -> Tensor:
    """Elementwise AND of a boolean tensor over ranks (same shape everywhere).

    Lets every rank take the same decision, e.g. the divergence guard's "is every term finite".
    """
    if not _active():
        return flags
    values = flags.to(torch.int32)
    dist.all_reduce(values, op=dist.ReduceOp.MIN)
    return values.bool()


def any_rank(flag: bool, device: str | torch.device = "cpu") -> bool:
    """True on every rank when ``flag`` is True on at least one (pass the NCCL device on GPUs)."""
    if not _active():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``obj`` on every rank."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, Mapping):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def gather_objects(obj: Any, dst: int = 0) -> list[Any] | None:
    """Every rank's picklable ``obj``, as a list in rank order on ``dst``, ``None`` elsewhere.

    Tensors are moved to the CPU first, so the list can go straight into a checkpoint (e.g. each
    rank's replay buffer).
    """
    obj = _to_cpu(obj)
    if not _active():
        return [obj]
    out: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def select_rank(per_rank: Sequence[Any], ctx: DistributedContext, saved_world: int) -> Any:
    """This rank's entry of a per-rank list written by :func:`gather_objects`.

    Raises:
        ValueError: when the list was written by another number of processes.
    """
    check_world_size(saved_world, ctx)
    if len(per_rank) != ctx.world_size:
        raise ValueError(f"the checkpoint holds {len(per_rank)} per-rank states for a world "
                         f"size of {saved_world}; the file is inconsistent.")
    return per_rank[ctx.rank]
