"""The floor: the barest loop of input-gradient SGLD steps a user could write.

The same update as :func:`ebmguide.langevin_dynamics` (clip, step, noise from the generator, clamp),
with nothing else: no argument checks, no finiteness flags, no callback, no autocast switch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def floor_sgld(
    energy: Callable[[Tensor], Tensor], x: Tensor, *, n_steps: int, step_size: float,
    noise_scale: float, clamp: tuple[float, float] | None, generator: torch.Generator,
    grad_clip: float | None = None,
) -> Tensor:
    """Run ``n_steps`` of SGLD from ``x`` (not modified) and return the detached final state."""
    x = x.detach().clone()
    for _ in range(n_steps):
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(x).sum(), x)
        x = x.detach()
        if grad_clip is not None:
            grad = grad.clamp(-grad_clip, grad_clip)
        x.add_(grad, alpha=-step_size)
        x.add_(torch.randn(x.shape, generator=generator, device=x.device), alpha=noise_scale)
        if clamp is not None:
            x.clamp_(*clamp)
    return x
