"""A CLEL iteration written the way research code usually is, as the baseline.

Same networks, hyperparameters, losses and update as :func:`ebmguide.clel_step`, with the habits
that cost time:

- the replay buffer is read in a per-sample Python loop, with Python's ``random`` choosing slots
  and re-initialisations, and the augmentation is applied one image at a time;
- every SGLD step clones and detaches the chain and allocates a fresh state;
- the EBM runs two forwards (real, then generated) instead of one over both;
- the encoder runs three passes: one (no grad) for the alignment target on its own augmented view,
  then one per view for NT-Xent, each view augmented image by image.

The EBM is in eval mode while sampling, as in ebmguide, so spectral norm costs the same on both
sides. This is our own code, written from the paper's description ; the research
code itself is not used.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ebmguide.augment import make_augmentation


class NaiveCLEL:
    """One naive CLEL iteration per call of :meth:`step`.

    Args:
        ebm: a :class:`~ebmguide.SphericalEBM` (any module with ``energy`` and
            ``energy_and_direction``).
        guide: a :class:`~ebmguide.SimCLRGuide` (uses its ``project``).
        shape: image shape ``(C, H, W)``.
        buffer_size, n_steps, step_size, noise_scale, reinit_prob: the sampler's settings.
        buffer_augment, guide_augment: augmentation names.
        ebm_optimizer, guide_optimizer: the two optimizers.
        alpha, beta, temperature: loss weights (paper: 1, 0.01, 0.2).
        seed: seeds Python's ``random`` and the buffer's initial states.
    """

    def __init__(
        self, ebm: nn.Module, guide: nn.Module, shape: tuple[int, int, int], *,
        buffer_size: int, n_steps: int, step_size: float, noise_scale: float, reinit_prob: float,
        buffer_augment: str, guide_augment: str, ebm_optimizer: torch.optim.Optimizer,
        guide_optimizer: torch.optim.Optimizer, alpha: float = 1.0, beta: float = 0.01,
        temperature: float = 0.2, seed: int = 0,
    ) -> None:
        random.seed(seed)
        self.ebm, self.guide, self.shape = ebm, guide, shape
        self.buffer = torch.rand((buffer_size, *shape),
                                 generator=torch.Generator().manual_seed(seed))
        self.n_steps, self.step_size, self.noise_scale = n_steps, step_size, noise_scale
        self.reinit_prob = reinit_prob
        self.buffer_augment: Callable[[Tensor], Tensor] = make_augmentation(
            buffer_augment, shape[1:], shape[0])
        self.guide_augment: Callable[[Tensor], Tensor] = make_augmentation(
            guide_augment, shape[1:], shape[0])
        self.ebm_optimizer, self.guide_optimizer = ebm_optimizer, guide_optimizer
        self.alpha, self.beta, self.temperature = alpha, beta, temperature

    def augment_each(self, augment: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        """Augment image by image, as a per-sample dataset transform would."""
        return torch.stack([augment(x[i:i + 1])[0] for i in range(x.shape[0])])

    def sample(self, batch: int) -> Tensor:
        """Draw chains from the buffer sample by sample, run SGLD, write back."""
        slots = random.sample(range(self.buffer.shape[0]), batch)
        chains = []
        for slot in slots:
            if random.random() < self.reinit_prob:
                chain = torch.rand(self.shape)
            else:
                chain = self.buffer[slot].clone()
            chains.append(self.buffer_augment(chain[None])[0])
        x = torch.stack(chains)
        self.ebm.eval()
        for _ in range(self.n_steps):
            x = x.clone().detach().requires_grad_(True)
            energy = self.ebm.energy(x)
            grad = torch.autograd.grad(energy.sum(), [x])[0]
            x = x.detach() - self.step_size * grad + self.noise_scale * torch.randn_like(x)
            x = x.clamp(0.0, 1.0)
        self.ebm.train()
        x = x.detach()
        self.buffer[slots] = x.clone()
        return x

    def step(self, x: Tensor) -> dict[str, Tensor]:
        """One iteration on real images ``x`` ``(B, C, H, W)``; returns the loss terms."""
        negatives = self.sample(x.shape[0])
        real = self.ebm.energy_and_direction(x)
        fake = self.ebm.energy_and_direction(negatives)
        with torch.no_grad():
            target = F.normalize(self.guide.project(self.augment_each(self.guide_augment, x)),
                                 dim=1)
        z1 = F.normalize(self.guide.project(self.augment_each(self.guide_augment, x)), dim=1)
        z2 = F.normalize(self.guide.project(self.augment_each(self.guide_augment, x)), dim=1)
        cd = real.energy.mean() - fake.energy.mean()
        reg = (real.energy ** 2).mean() + (fake.energy ** 2).mean()
        align = F.cosine_similarity(real.direction, target, dim=1).mean()
        ebm_loss = cd + self.alpha * reg - self.beta * align
        nce = self.nt_xent(z1, z2, fake.direction.detach())
        loss = ebm_loss + nce
        self.ebm_optimizer.zero_grad()
        self.guide_optimizer.zero_grad()
        loss.backward()
        self.ebm_optimizer.step()
        self.guide_optimizer.step()
        return {"loss": loss.detach(), "nce": nce.detach(), "cd": cd.detach()}

    def nt_xent(self, z1: Tensor, z2: Tensor, extra: Tensor) -> Tensor:
        """SimCLR NT-Xent over 2B anchors with the generated directions as extra negatives."""
        b = z1.shape[0]
        anchors = torch.cat([z1, z2])
        logits = anchors @ anchors.T / self.temperature
        logits = logits - 1e9 * torch.eye(2 * b)
        logits = torch.cat([logits, anchors @ F.normalize(extra, dim=1).T / self.temperature], 1)
        labels = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])
        return F.cross_entropy(logits, labels)


def build_naive(case: object, seed: int = 0) -> NaiveCLEL:
    """A :class:`NaiveCLEL` on the networks and settings of a ``benchmarks.energies.ClelCase``."""
    from benchmarks.energies import ClelCase, optimizers

    assert isinstance(case, ClelCase)
    ebm, guide = case.networks(seed)
    return NaiveCLEL(ebm, guide, case.shape, buffer_size=case.buffer_size, n_steps=case.steps,
                     step_size=case.step_size, noise_scale=case.noise_scale,
                     reinit_prob=case.reinit_prob, buffer_augment=case.buffer_augment,
                     guide_augment=case.guide_augment, seed=seed, **optimizers(ebm, guide))

