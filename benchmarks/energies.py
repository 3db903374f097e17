"""The energies and CLEL set-ups the benchmark rows run on, with their sizes per mode.

Modes: ``full`` (the default), ``quick`` (``--quick``, a few minutes on 2 cores) and ``smoke``
(``--smoke``, tiny networks, a second or two; it only proves the code runs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

import ebmguide as eg
from ebmguide.nets import CIFARResNet18, MLPBackbone, SmallCNN, clel_resnet

MODES = ("full", "quick", "smoke")


@dataclass(frozen=True)
class SamplerCase:
    """One sampler row: an energy, its batch, K, and the SGLD settings."""

    name: str
    description: str
    build: Callable[[], nn.Module]
    shape: tuple[int, ...]
    batch: int
    steps: int
    step_size: float
    noise_scale: float
    clamp: tuple[float, float] | None

    def model(self, seed: int = 0) -> nn.Module:
        """The energy network in eval mode, initialised from ``seed``."""
        torch.manual_seed(seed)
        return self.build().eval()

    def start(self, seed: int = 0) -> Tensor:
        """Start states: U[0, 1] for images (the replay buffer's init), N(0, I) for 2-D points."""
        g = torch.Generator().manual_seed(seed)
        if self.clamp is not None:
            return torch.rand((self.batch, *self.shape), generator=g)
        return torch.randn((self.batch, *self.shape), generator=g)


def _mlp_ebm(hidden: int = 128, latent: int = 32) -> nn.Module:
    return eg.SphericalEBM(MLPBackbone(2, hidden, 3, hidden), latent_dim=latent,
                           hidden_dim=hidden)


def _cnn_ebm(width: int = 32, latent: int = 64, hidden: int = 256) -> nn.Module:
    return eg.SphericalEBM(SmallCNN(3, width), latent_dim=latent, hidden_dim=hidden)


def _clel_ebm(size: str) -> Callable[[], nn.Module]:
    return lambda: eg.SphericalEBM(clel_resnet(size))  # the paper's heads: 2048 wide, d = 128


# The toy 2-D chain is the true Langevin chain (σ = √(2η), no clamp); image chains use the paper's
# decoupled η = 100, σ = 0.001 in [0, 1]. No gradient clipping anywhere: torchebm's sampler has
# none, and the comparison rows must run the same chain.
_TOY = {"step_size": 0.01, "noise_scale": 0.02 ** 0.5, "clamp": None}
_IMG = {"step_size": 100.0, "noise_scale": 1e-3, "clamp": (0.0, 1.0)}

# (batch, K) per mode
_SIZES: dict[str, dict[str, tuple[int, int]]] = {
    "full": {"mlp": (256, 50), "cnn16": (64, 20), "clel-small": (16, 10), "clel-base": (8, 5)},
    "quick": {"mlp": (256, 20), "cnn16": (32, 10), "clel-small": (8, 5), "clel-base": (4, 3)},
    "smoke": {"mlp": (16, 2), "cnn16": (4, 2)},
}


def sampler_cases(mode: str) -> list[SamplerCase]:
    """The sampler rows of a mode, cheapest first."""
    sizes = _SIZES[mode]
    tiny = mode == "smoke"
    table = {
        "mlp": ("MLP 2→128→128→128 + heads (d=32), 2-D points",
                (lambda: _mlp_ebm(16, 8)) if tiny else _mlp_ebm, (2,), _TOY),
        "cnn16": ("SmallCNN width 32 + heads (d=64), 3×16×16",
                  (lambda: _cnn_ebm(4, 8, 16)) if tiny else _cnn_ebm,
                  (3, 8, 8) if tiny else (3, 16, 16), _IMG),
        "clel-small": ("CLEL ResNet small + paper heads, 3×32×32", _clel_ebm("small"),
                       (3, 32, 32), _IMG),
        "clel-base": ("CLEL ResNet base (CLEL-Base) + paper heads, 3×32×32", _clel_ebm("base"),
                      (3, 32, 32), _IMG),
    }
    cases = []
    for name, (batch, steps) in sizes.items():
        description, build, shape, sgld = table[name]
        cases.append(SamplerCase(name, description, build, shape, batch, steps,
                                 float(sgld["step_size"]), float(sgld["noise_scale"]),  # type: ignore[arg-type]
                                 sgld["clamp"]))  # type: ignore[arg-type]
    return cases


@dataclass(frozen=True)
class ClelCase:
    """One CLEL-iteration row: networks, batch, K and the sampler's settings."""

    name: str
    description: str
    shape: tuple[int, int, int]
    batch: int
    steps: int
    buffer_size: int = 1000
    step_size: float = 100.0
    noise_scale: float = 1e-3
    reinit_prob: float = 1e-3
    buffer_augment: str = "strong"
    guide_augment: str = "strong"

    def networks(self, seed: int = 0, device: str = "cpu") -> tuple[nn.Module, nn.Module]:
        """(EBM, guide) initialised from ``seed``; the same for both implementations."""
        torch.manual_seed(seed)
        if self.name == "clel-small":
            ebm = eg.SphericalEBM(clel_resnet("small"))
            encoder: nn.Module = CIFARResNet18()
            guide = eg.SimCLRGuide(encoder, augment=self.guide_augment)
        else:
            width = 4 if self.name == "smoke" else 32
            latent, hidden = (8, 16) if self.name == "smoke" else (64, 256)
            ebm = eg.SphericalEBM(SmallCNN(3, width), latent_dim=latent, hidden_dim=hidden)
            encoder = SmallCNN(3, width, spectral_norm=False, norm="batch", activation=nn.ReLU())
            guide = eg.SimCLRGuide(encoder, latent_dim=latent, hidden_dim=hidden,
                                   augment=self.guide_augment)
        return ebm.to(device), guide.to(device)

    def data(self, seed: int = 0) -> Tensor:
        """A batch of images in [0, 1] (random: the timings do not depend on content)."""
        g = torch.Generator().manual_seed(seed)
        return torch.rand((self.batch, *self.shape), generator=g)


def clel_cases(mode: str) -> list[ClelCase]:
    """The CLEL-iteration rows of a mode."""
    if mode == "smoke":
        return [ClelCase("smoke", "SmallCNN width 4, 3×8×8", (3, 8, 8), 4, 2, buffer_size=16)]
    cnn_b, cnn_k, small_b, small_k = (64, 20, 16, 10) if mode == "full" else (32, 10, 8, 5)
    return [
        ClelCase("cnn16", "EBM SmallCNN(32) + guide SmallCNN(32, BN), 3×16×16", (3, 16, 16),
                 cnn_b, cnn_k),
        ClelCase("clel-small", "EBM CLEL ResNet small + guide CIFAR ResNet-18, 3×32×32",
                 (3, 32, 32), small_b, small_k),
    ]


def clel_components(case: ClelCase, seed: int = 0, device: str = "cpu",
                    **sampler_options: object) -> dict[str, object]:
    """ebmguide's components for ``case``: ebm, guide, sampler and both optimizers."""
    ebm, guide = case.networks(seed, device)
    sampler = eg.SGLDSampler(case.shape, buffer_size=case.buffer_size, n_steps=case.steps,
                             step_size=case.step_size, noise_scale=case.noise_scale,
                             reinit_prob=case.reinit_prob, augment=case.buffer_augment,
                             device=device, generator=torch.Generator(device).manual_seed(seed),
                             **sampler_options)  # type: ignore[arg-type]
    return {"ebm": ebm, "guide": guide, "sampler": sampler, **optimizers(ebm, guide)}


def optimizers(ebm: nn.Module, guide: nn.Module) -> dict[str, torch.optim.Optimizer]:
    """The paper's optimizers without schedules (a schedule costs nothing per iteration)."""
    return {
        "ebm_optimizer": torch.optim.Adam(ebm.parameters(), lr=1e-4, betas=(0.0, 0.999)),
        "guide_optimizer": torch.optim.SGD(guide.parameters(), lr=0.03, momentum=0.9,
                                           weight_decay=5e-4),
    }
