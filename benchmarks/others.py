"""Adapters running torchebm's and ebmkit's Langevin samplers on the same chain as ebmguide.

Both libraries are optional: ``make bench`` installs them (``--no-deps``) into ``.venv-bench``.
When one cannot be imported its rows say why.

Noise conventions, read from their source (torchebm 0.8.9, ebmkit 0.16.0):

- ebmkit ``ebm.samplers.LangevinDynamics(step_size=ε, noise_scale=σ, grad_clip=c, clamp=...)``
  steps ``x ← clamp(x − ε·clip(∇E(x), −c, c) + σ·ξ)`` with ``ξ = torch.randn_like(x)`` from the
  *global* generator: the same update as ebmguide with ``step_size=ε, noise_scale=σ``. Seeding the
  global generator with the seed of ebmguide's ``torch.Generator`` gives the same noise. When the
  energy is an ``nn.Module``, ebmkit sets ``requires_grad=False`` on its parameters while sampling.
- torchebm ``torchebm.samplers.LangevinDynamics(model, step_size=η, noise_scale=s, clamp=...)``
  integrates ``dx = −∇U dt + √2·s dW`` with Euler–Maruyama:
  ``x ← clamp(x − η·∇U(x) + s·√(2η)·ξ)``, ``ξ`` drawn with the ``generator`` passed to ``sample``.
  ebmguide's σ is therefore torchebm's ``noise_scale = σ / √(2η)``. It has no gradient clipping
  (the benchmark uses none) and needs the energy wrapped in a ``torchebm.core.BaseModel``.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

Runner = Callable[[Tensor, int], Tensor]
"""``run(x0, seed) -> samples`` for one sampler call of the case's K steps."""


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def ebmkit_runner(model: nn.Module, case: Any) -> tuple[Runner | None, str]:
    """A runner over ebmkit's ``LangevinDynamics``, or ``(None, reason)``."""
    try:
        from ebm.samplers import LangevinDynamics
    except Exception as exc:  # ImportError, or a broken install
        return None, f"ebmkit not importable here ({type(exc).__name__}: {exc}); run `make bench`"
    sampler = LangevinDynamics(step_size=case.step_size, steps=case.steps,
                               noise_scale=case.noise_scale, grad_clip=None, clamp=case.clamp)

    def run(x0: Tensor, seed: int) -> Tensor:
        torch.manual_seed(seed)  # ebmkit draws its noise from the global generator
        out: Tensor = sampler.sample(model, x0)  # the module itself, as an ebmkit user passes it
        return out

    return run, f"ebmkit {_version('ebmkit')}"


def torchebm_runner(model: nn.Module, case: Any) -> tuple[Runner | None, str]:
    """A runner over torchebm's ``LangevinDynamics``, or ``(None, reason)``."""
    try:
        from torchebm.core import BaseModel
        from torchebm.samplers import LangevinDynamics
    except Exception as exc:
        return None, f"torchebm not importable here ({type(exc).__name__}: {exc}); run `make bench`"

    class Wrapped(BaseModel):  # type: ignore[misc]
        """torchebm needs a BaseModel; this one only forwards to the energy network."""

        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Tensor) -> Tensor:
            out: Tensor = self.net(x)
            return out

    wrapped = Wrapped(model)
    noise = case.noise_scale / (2 * case.step_size) ** 0.5  # torchebm adds noise·√(2η)·ξ
    sampler = LangevinDynamics(wrapped, step_size=case.step_size, noise_scale=noise,
                               clamp=case.clamp)

    def run(x0: Tensor, seed: int) -> Tensor:
        out: Tensor = sampler.sample(x=x0, n_steps=case.steps,
                                     generator=torch.Generator().manual_seed(seed))
        return out

    return run, f"torchebm {_version('torchebm')}"


OTHERS: dict[str, Callable[[nn.Module, Any], tuple[Runner | None, str]]] = {
    "torchebm": torchebm_runner,
    "ebmkit": ebmkit_runner,
}
