"""The four protocols of ebmguide and the small records they exchange.

Every component of a CLEL training iteration is reached through one of these protocols, so a user
can replace any of them (a new backbone, encoder, sampler or loss) by writing a class with the right
methods; no library class needs to be subclassed. The reference implementations are
:class:`~ebmguide.energy.SphericalEBM`, :class:`~ebmguide.guide.SimCLRGuide`,
:class:`~ebmguide.sampling.SGLDSampler` and :class:`~ebmguide.losses.CLELLoss`.

Protocols hold methods only: ``nn.Module`` attributes are invisible to ``isinstance`` checks on a
``runtime_checkable`` protocol, so data members would make the checks lie. The library checks
``isinstance`` once, where a component is handed to it, never per step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor
from typing_extensions import Protocol, runtime_checkable

__all__ = [
    "ContrastiveGuide",
    "EnergyFn",
    "EnergyModel",
    "EnergyOutput",
    "GuideOutput",
    "JointLoss",
    "LangevinResult",
    "LangevinSampler",
    "LossOutput",
]

EnergyFn = Callable[[Tensor], Tensor]
"""An energy callable: images or points ``(B, *shape)`` to energies ``(B,)``."""


class EnergyOutput(NamedTuple):
    """What one forward pass of an :class:`EnergyModel` gives.

    Attributes:
        energy: ``(B,)`` energies E(x) (lower is more likely).
        direction: ``(B, d)`` unit latent directions g(x) on the sphere S^{d-1}.
    """

    energy: Tensor
    direction: Tensor


class GuideOutput(NamedTuple):
    """What one contrastive step of a :class:`ContrastiveGuide` gives.

    Attributes:
        loss: scalar contrastive loss (NT-Xent for the reference guide), differentiable in the
            guide's parameters only.
        target: ``(B, d)`` detached unit latents z of one augmented view of each real image; the
            EBM's alignment term pulls g(x) towards these.
    """

    loss: Tensor
    target: Tensor


class LossOutput(NamedTuple):
    """The value of a :class:`JointLoss`.

    Attributes:
        loss: scalar total, differentiable in the EBM's parameters.
        terms: named, detached scalar terms (plain names, no logging prefixes).
    """

    loss: Tensor
    terms: dict[str, Tensor]


@runtime_checkable
class EnergyModel(Protocol):
    """A latent-variable EBM: an energy E(x) and a unit latent direction g(x).

    The joint density is p(x, z) ∝ exp(−E(x) + β g(x)ᵀz) for z on the unit sphere, so E alone
    drives unconditional sampling and g(x) is the mean direction of p(z|x).
    Implementations are usually ``nn.Module`` subclasses; nothing is mutated by these methods
    except what the module's own forward mutates (e.g. spectral-norm power iterations in training
    mode).
    """

    def energy(self, x: Tensor) -> Tensor:
        """Energies of a batch.

        Args:
            x: ``(B, *shape)`` inputs.

        Returns:
            ``(B,)`` energies, differentiable in ``x`` and in the parameters.
        """
        ...

    def energy_and_direction(self, x: Tensor) -> EnergyOutput:
        """Energies and latent directions from one forward pass.

        Args:
            x: ``(B, *shape)`` inputs.

        Returns:
            ``EnergyOutput(energy (B,), direction (B, d))`` with unit-norm directions.
        """
        ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]:
        """The trainable parameters (``nn.Module.parameters`` satisfies this)."""
        ...


@runtime_checkable
class ContrastiveGuide(Protocol):
    """A contrastive encoder h whose normalized embeddings serve as the EBM's latent variable."""

    def embed(self, x: Tensor) -> Tensor:
        """Unit-norm latents of un-augmented inputs.

        Args:
            x: ``(B, *shape)`` inputs.

        Returns:
            ``(B, d)`` unit vectors z = h(x)/‖h(x)‖; differentiable in the guide's parameters
            (wrap in ``torch.no_grad()`` when only the value is needed).
        """
        ...

    def contrastive_loss(
        self,
        x: Tensor,
        *,
        extra_negatives: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> GuideOutput:
        """Contrastive loss on two random views of ``x`` and the EBM's latent target.

        Args:
            x: ``(B, *shape)`` real inputs (not augmented yet).
            extra_negatives: optional ``(M, d)`` detached unit vectors used as additional
                negatives for every anchor (CLEL uses the EBM's directions g(x′) of generated
                samples).
            generator: source of all augmentation randomness.

        Returns:
            ``GuideOutput(loss, target)``: ``target`` is ``(B, d)``, detached.
        """
        ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]:
        """The trainable parameters (``nn.Module.parameters`` satisfies this)."""
        ...


class LangevinResult(NamedTuple):
    """What a run of Langevin chains gives: the samples, a finiteness flag and how the chains moved.

    The diagnostics are per chain and stay on the samples' device (computed without a host sync per
    step): the caller decides when to look. ``drift`` is what the energy moved a chain per step,
    ``drift_to_noise`` compares it with the injected noise; a chain whose drift is tiny against the
    data range, or against the noise, is not being steered by the energy (see
    :func:`~ebmguide.sampling.diagnostics.movement_warning`).

    Attributes:
        samples: ``(B, *shape)`` detached final states.
        finite: ``(B,)`` bool: the chain's every energy and gradient and its final state were
            finite.
        drift: ``(B,)`` root mean square, over the chain's steps and elements, of the gradient move
            ``η·clip(∇E)`` of one step (0 for zero steps).
        drift_to_noise: ``(B,)`` ``drift / σ``, the ratio of the energy's pull to the noise per
            step (``inf`` when σ = 0 and the chain moved).
        displacement: ``(B,)`` root mean square per element of ``final − start``: how far the chain
            went in the whole run, noise and clamping included.
    """

    samples: Tensor
    finite: Tensor
    drift: Tensor
    drift_to_noise: Tensor
    displacement: Tensor


@runtime_checkable
class LangevinSampler(Protocol):
    """Draws negatives x′ for contrastive divergence from an energy function.

    A sampler may keep state (a replay buffer); it must never leave gradients on the energy's
    parameters and must return detached samples. These methods are everything the library asks
    of a sampler: training, evaluation, sample grids, conditional and compositional sampling
    and the checkpoints all go through them, so a user's sampler gets every feature.
    """

    def sample(
        self, energy_fn: EnergyFn, batch_size: int, *, generator: torch.Generator | None = None
    ) -> LangevinResult:
        """Run the chains of one training iteration and return samples with their diagnostics.

        Args:
            energy_fn: ``(B, *shape) -> (B,)`` energy callable.
            batch_size: number of chains B.
            generator: source of all sampling randomness.

        Returns:
            :class:`LangevinResult`: ``(B, *shape)`` detached samples, ``(B,)`` finite flags and
            the ``(B,)`` movement diagnostics. May update the sampler's state (its buffer); a
            non-finite chain must not be stored.
        """
        ...

    def sample_fresh(
        self, energy_fn: EnergyFn, batch_size: int, *, n_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> LangevinResult:
        """Run chains from the sampler's initial distribution (e.g. uniform noise).

        The sampler's state is neither read nor written (evaluation and conditional sampling).

        Args:
            energy_fn: ``(B, *shape) -> (B,)`` energy callable.
            batch_size: number of chains B.
            n_steps: steps to run (``None``: the sampler's own number).
            generator: source of the start states and of the chains' randomness.

        Returns:
            :class:`LangevinResult` of ``B`` chains.
        """
        ...

    def sample_from(
        self, energy_fn: EnergyFn, x: Tensor, *, n_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> LangevinResult:
        """Run chains from the given start states; the sampler's state is left alone.

        Args:
            energy_fn: ``(B, *shape) -> (B,)`` energy callable.
            x: ``(B, *shape)`` start states (e.g. replay-buffer states for conditional chains).
            n_steps: steps to run (``None``: the sampler's own number).
            generator: source of the chains' randomness.

        Returns:
            :class:`LangevinResult` of ``B`` chains.
        """
        ...

    def data_range(self) -> tuple[float, float] | None:
        """``(low, high)``, the range the samples live in, or ``None`` for unbounded samples.

        Real data must lie in this range (the library checks it before every training step:
        negatives and data in different ranges make training diverge).
        """
        ...

    def chains(self) -> Tensor | None:
        """The persistent chains ``(N, *shape)`` (the replay buffer), or ``None`` without any.

        Read only: the library scores, plots and checks them for NaN/inf, never writes them.
        """
        ...

    def state_dict(self) -> dict[str, Any]:
        """The sampler's state (e.g. its replay buffer) for checkpoints."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        ...


@runtime_checkable
class JointLoss(Protocol):
    """The EBM's part of the CLEL objective, given real and generated energies."""

    def __call__(self, real: EnergyOutput, fake_energy: Tensor, target: Tensor) -> LossOutput:
        """Compute the loss.

        Args:
            real: the EBM's output on the ``B`` real inputs.
            fake_energy: ``(B′,)`` energies of the (detached) generated samples.
            target: ``(B, d)`` detached unit latents of the real inputs from the guide.

        Returns:
            ``LossOutput`` with the differentiable total and detached named terms.
        """
        ...
