"""The floor of a CLEL iteration: the barest loop a user could write for the same work.

One iteration: draw B chains from the replay buffer (re-initialising some) and augment them, K
input-gradient steps of the EBM on the B chains, write them back, one EBM forward and backward on
the 2B real and generated images, one guide forward and backward on the 2B augmented views of the
real batch, and the two optimizer steps. The same arithmetic, in the same order and with the same
draws from the generator as :func:`ebmguide.clel_step` with an :class:`ebmguide.SGLDSampler`, so
one iteration of each from the same state gives the same parameters; and nothing else: no argument
or data checks, no finiteness flags, no movement diagnostics, no loss-term dictionary, no
context managers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ebmguide import SGLDSampler, SimCLRGuide, SphericalEBM, apply_augment, nt_xent


class FloorCLEL:
    """One bare CLEL iteration per call of :meth:`step`, on components built for ``clel_step``.

    Args:
        ebm: the EBM (its parameters are updated).
        guide: the guide (its parameters are updated).
        sampler: the sampler whose buffer and settings are used (its buffer is updated).
        ebm_optimizer, guide_optimizer: the two optimizers.
        alpha, beta: the CLEL loss weights.
    """

    def __init__(self, ebm: SphericalEBM, guide: SimCLRGuide, sampler: SGLDSampler, *,
                 ebm_optimizer: torch.optim.Optimizer, guide_optimizer: torch.optim.Optimizer,
                 alpha: float, beta: float) -> None:
        self.ebm, self.guide, self.sampler = ebm, guide, sampler
        self.ebm_optimizer, self.guide_optimizer = ebm_optimizer, guide_optimizer
        self.alpha, self.beta = alpha, beta
        self.ebm_params = list(ebm.parameters())

    def chains(self, batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(B,)`` slots and ``(B, *shape)`` start states: buffer draw, re-init, augmentation."""
        s, buffer = self.sampler, self.sampler.buffer
        states = buffer.states
        slots = torch.randperm(len(states), generator=generator, device=states.device)[:batch]
        reinit = torch.rand(batch, generator=generator, device=states.device) < s.reinit_prob
        fresh = torch.rand((batch, *s.shape), generator=generator, device=states.device)
        fresh = fresh.mul_(buffer.high - buffer.low).add_(buffer.low)
        x = torch.where(reinit.view(-1, *([1] * len(s.shape))), fresh, states[slots])
        if s.augment is not None:
            x = apply_augment(s.augment, x, generator)
        return slots, x

    def sgld(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """K steps of SGLD from ``x`` with the EBM in eval mode and its weights frozen."""
        s = self.sampler.settings
        self.ebm.eval()
        for p in self.ebm_params:
            p.requires_grad_(False)
        x = x.clone()
        for _ in range(s.n_steps):
            x.requires_grad_(True)
            if s.autocast_dtype is None:
                energy = self.ebm.energy(x)
            else:
                with torch.autocast(x.device.type, dtype=s.autocast_dtype):
                    energy = self.ebm.energy(x)
            (grad,) = torch.autograd.grad(energy.sum(), x)
            x = x.detach()
            if s.grad_clip is not None:
                grad = grad.clamp(-s.grad_clip, s.grad_clip)
            x.add_(grad, alpha=-s.step_size)
            x.add_(torch.randn(x.shape, generator=generator, device=x.device),
                   alpha=s.noise_scale)
            if s.clamp is not None:
                x.clamp_(*s.clamp)
        for p in self.ebm_params:
            p.requires_grad_(True)
        self.ebm.train()
        return x

    def step(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """One iteration on real images ``x`` ``(B, C, H, W)``; returns the detached total loss."""
        b = x.shape[0]
        slots, start = self.chains(b, generator)
        samples = self.sgld(start, generator)
        self.sampler.buffer.states.index_copy_(0, slots, samples)
        out = self.ebm.energy_and_direction(torch.cat([x, samples]))
        views = apply_augment(self.guide.augmentation(x), torch.cat([x, x]), generator)
        z1, z2 = F.normalize(self.guide.project(views), dim=1).chunk(2)
        fake_direction = out.direction[b:].detach()
        nce = nt_xent(z1, z2, temperature=self.guide.temperature, extra_negatives=fake_direction)
        real, fake = out.energy[:b], out.energy[b:]
        align = F.cosine_similarity(out.direction[:b], z1.detach(), dim=1).mean()
        ebm_loss = (real.mean() - fake.mean() + self.alpha * (real.square().mean()
                                                               + fake.square().mean())
                    - self.beta * align)
        total = ebm_loss + nce
        self.ebm_optimizer.zero_grad(set_to_none=True)
        self.guide_optimizer.zero_grad(set_to_none=True)
        total.backward()  # type: ignore[no-untyped-call]
        self.ebm_optimizer.step()
        self.guide_optimizer.step()
        return total.detach()


def floor_from_parts(parts: Any) -> FloorCLEL:
    """A :class:`FloorCLEL` on the networks, sampler and optimizers of ``build_components``."""
    return FloorCLEL(parts.ebm, parts.guide, parts.sampler, ebm_optimizer=parts.optimizers.ebm,
                     guide_optimizer=parts.optimizers.guide, alpha=parts.loss_fn.alpha,
                     beta=parts.loss_fn.beta)
