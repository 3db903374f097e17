"""One CLEL training iteration, end to end, with any conforming components."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ebmguide._validation import check_batch_fits, check_generator, check_tensor
from ebmguide.layer_checks import check_energy_layers
from ebmguide.losses import CLELLoss
from ebmguide.protocols import (
    ContrastiveGuide,
    EnergyModel,
    EnergyOutput,
    JointLoss,
    LangevinResult,
    LangevinSampler,
)
from ebmguide.torch_utils import eval_mode, module_device

__all__ = ["StepOutput", "check_components", "clel_step"]

# Where clel_step's score penalty can be taken (grad_penalty_at).
_PENALTY_PLACES = ("samples", "data", "both")


class StepOutput(NamedTuple):
    """Result of :func:`clel_step`.

    Attributes:
        terms: detached scalar terms: ``loss`` (total), ``nce`` (the guide's loss) and the
            :class:`~ebmguide.protocols.JointLoss` terms (``cd``, ``reg``, ``align``,
            ``energy_real``, ``energy_fake`` for :class:`~ebmguide.losses.CLELLoss`).
        sampling: the sampler's :class:`~ebmguide.protocols.LangevinResult` for this
            iteration: the negatives x′, their finite flags and the chains' movement diagnostics.
    """

    terms: dict[str, Tensor]
    sampling: LangevinResult

    @property
    def samples(self) -> Tensor:
        """``(B, *shape)`` the detached negatives x′ of this iteration."""
        return self.sampling.samples


def check_components(
    ebm: object, guide: object, sampler: object, loss_fn: object | None = None
) -> None:
    """Raise ``TypeError`` naming the component that does not satisfy its protocol.

    Also warns (:class:`~ebmguide.layer_checks.EnergyLayerWarning`) when the EBM holds
    normalisation or dropout layers: CLEL needs a batch-independent, deterministic energy. Call
    it once, where the components are put together (:func:`clel_step` does not check per step).
    """
    for name, obj, proto in (("ebm", ebm, EnergyModel), ("guide", guide, ContrastiveGuide),
                             ("sampler", sampler, LangevinSampler)):
        if not isinstance(obj, proto):
            missing = [m for m in sorted(getattr(proto, "__protocol_attrs__", ()))
                       if not callable(getattr(obj, m, None))]
            lacks = f" (it lacks {', '.join(missing)})" if missing else ""
            raise TypeError(
                f"{name} ({type(obj).__name__}) does not satisfy the {proto.__name__} "
                f"protocol{lacks}; see ebmguide.protocols.{proto.__name__} for the methods it "
                f"needs."
            )
    if loss_fn is not None and not isinstance(loss_fn, JointLoss):
        raise TypeError(f"loss_fn ({type(loss_fn).__name__}) does not satisfy JointLoss.")
    check_energy_layers(ebm)


def _ebm_forward(ebm: EnergyModel, x: Tensor, samples: Tensor,
                 joint: bool) -> tuple[EnergyOutput, EnergyOutput]:
    """The EBM on real and generated inputs, in one batch when ``joint``."""
    if joint:
        out = ebm.energy_and_direction(torch.cat([x, samples.to(x.dtype)]))
        b = x.shape[0]
        return (EnergyOutput(out.energy[:b], out.direction[:b]),
                EnergyOutput(out.energy[b:], out.direction[b:]))
    return ebm.energy_and_direction(x), ebm.energy_and_direction(samples)


def _check_devices(ebm: object, guide: object, sampler: LangevinSampler, x: Tensor,
                   generator: torch.Generator | None) -> None:
    """ValueError when x, the networks, the buffer or the generator are on different devices.

    Torch would fail later with a less helpful message, or deep inside the sampler.
    """
    buffer = sampler.chains()
    places = [("the ebm (its parameters)", module_device(ebm)),
              ("the guide (its parameters)", module_device(guide)),
              ("the sampler's buffer", buffer.device if isinstance(buffer, Tensor) else None),
              ("the generator", generator.device if generator is not None else None)]
    for name, device in places:
        if device is None:
            continue
        if device.type != x.device.type or (
                device.index is not None and x.device.index is not None
                and device.index != x.device.index):
            raise ValueError(f"x is on {x.device} but {name} is on {device}; put the data, both "
                             f"networks, the sampler (device=...) and the generator "
                             f"(torch.Generator(device=...)) on one device.")


def _check_data_range(x: Tensor, clamp: tuple[float, float] | None) -> None:
    """ValueError when real data is not finite or lies outside the sampler's clamp range.

    Negatives live in the clamp range; real data outside it (e.g. images in [0, 255] or
    normalized to [−1, 1] with a [0, 1] sampler) makes the contrastive divergence compare two
    different domains, and training diverges. One host sync per iteration.
    """
    low, high = torch.stack([x.detach().amin(), x.detach().amax()]).tolist()
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("x holds non-finite values (NaN/inf); check the data pipeline.")
    if clamp is not None:
        lo, hi = float(clamp[0]), float(clamp[1])
        tol = 1e-5 * (hi - lo)  # rounding of a normalization, not a different data range
        if low < lo - tol or high > hi + tol:
            raise ValueError(
                f"x holds values in [{low:.4g}, {high:.4g}] but the sampler clamps its samples to "
                f"[{lo:g}, {hi:g}]; scale the data into that range (images: pixels/255, "
                f"dequantized) or set the sampler's clamp to the data's range."
            )


def clel_step(
    ebm: EnergyModel,
    guide: ContrastiveGuide,
    sampler: LangevinSampler,
    x: Tensor,
    *,
    ebm_optimizer: torch.optim.Optimizer,
    guide_optimizer: torch.optim.Optimizer,
    loss_fn: JointLoss | None = None,
    generator: torch.Generator | None = None,
    extra_negatives: bool = True,
    joint_forward: bool = True,
    sample_in_eval_mode: bool = True,
    grad_penalty: float = 0.0,
    grad_penalty_at: str = "samples",
) -> StepOutput:
    """One CLEL iteration: sample negatives, EBM loss + NT-Xent, one update of each network.

    1. x′ = sampler.sample(E, B) with no parameter gradients (the EBM in eval mode, so
       spectral-norm power iterations run once per iteration, in step 2, not once per SGLD step).
    2. The EBM on x and x′ (one batched forward when ``joint_forward``).
    3. The guide's NT-Xent on two views of x, with sg[g(x′)] as extra negatives.
    4. ``loss_fn`` (default ``CLELLoss()``) on real outputs, fake energies and sg[z].
    5. Both optimizers step on the sum; the stop-gradients make this the same as two separate
       updates.

    Args:
        ebm: the energy model (parameters updated by ``ebm_optimizer``).
        guide: the contrastive guide (parameters updated by ``guide_optimizer``).
        sampler: the negative sampler (its state, e.g. the replay buffer, is updated).
        x: ``(B, *shape)`` real inputs (dequantized, not augmented).
        ebm_optimizer: optimizer over the EBM's parameters.
        guide_optimizer: optimizer over the guide's parameters.
        loss_fn: the EBM loss; ``CLELLoss()`` with the paper's α = 1, β = 0.01 by default.
        generator: source of all randomness of the iteration.
        extra_negatives: use the generated samples' directions as the guide's extra negatives.
        joint_forward: one EBM forward over real and generated inputs (faster). The same as two
            forwards for batch-independent networks (no BatchNorm), except that a spectral-norm
            network in training mode runs one power iteration instead of two; set False to
            reproduce two-forward code exactly.
        sample_in_eval_mode: run the sampler with an ``nn.Module`` EBM in eval mode.
        grad_penalty: γ ≥ 0 of an extra EBM loss term γ · mean_b ‖∇ₓE(x′_b)‖² (term ``gp``),
            the squared score at the generated samples, whose size sets the drift of the SGLD
            chains. 0 (the paper, the default) leaves CLEL's loss unchanged and costs nothing;
            > 0 costs one double backward through the EBM on the B samples.
        grad_penalty_at: where the penalty is taken: ``"samples"`` (x′, the default),
            ``"data"`` (x, as R1 in GANs: it makes the real images stationary points of the
            energy, so chains that reach them stay) or ``"both"`` (the sum of the two means,
            from one double backward).

    Returns:
        :class:`StepOutput` with detached terms and the sampler's record (negatives, finite
        flags, movement diagnostics).
    """
    check_tensor("x", x, floating=True)
    if x.dim() < 2 or x.shape[0] < 2:
        raise ValueError(f"x must be a batch (B, *shape) with B >= 2, got {tuple(x.shape)}.")
    check_generator("generator", generator)
    if not (isinstance(grad_penalty, (int, float)) and grad_penalty >= 0
            and math.isfinite(grad_penalty)):
        raise ValueError(f"grad_penalty must be a finite number >= 0, got {grad_penalty!r}.")
    if grad_penalty_at not in _PENALTY_PLACES:
        raise ValueError(f"grad_penalty_at must be one of {_PENALTY_PLACES}, got "
                         f"{grad_penalty_at!r}.")
    check_batch_fits(x, sampler.chains(), ebm)
    _check_devices(ebm, guide, sampler, x, generator)
    _check_data_range(x, sampler.data_range())
    loss_fn = CLELLoss() if loss_fn is None else loss_fn
    with eval_mode(ebm, enabled=sample_in_eval_mode):
        sampling = sampler.sample(ebm.energy, x.shape[0], generator=generator)
    samples = sampling.samples
    at_samples = grad_penalty > 0 and grad_penalty_at in ("samples", "both")
    at_data = grad_penalty > 0 and grad_penalty_at in ("data", "both")
    if at_samples:
        samples = samples.detach().to(x.dtype).requires_grad_(True)
    x_ebm = x.detach().requires_grad_(True) if at_data else x  # the guide keeps plain x
    real, fake = _ebm_forward(ebm, x_ebm, samples, joint_forward)
    negatives = fake.direction.detach() if extra_negatives else None
    guide_out = guide.contrastive_loss(x, extra_negatives=negatives, generator=generator)
    ebm_out = loss_fn(real, fake.energy, guide_out.target)
    total = ebm_out.loss + guide_out.loss
    extra: dict[str, Tensor] = {}
    if grad_penalty > 0:
        places = [(e, i) for e, i, on in ((fake.energy, samples, at_samples),
                                          (real.energy, x_ebm, at_data)) if on]
        penalty = _score_penalty([e for e, _ in places], [i for _, i in places])
        total = total + grad_penalty * penalty
        extra["gp"] = penalty.detach()
    ebm_optimizer.zero_grad(set_to_none=True)
    guide_optimizer.zero_grad(set_to_none=True)
    total.backward()  # type: ignore[no-untyped-call]
    ebm_optimizer.step()
    guide_optimizer.step()
    terms = {"loss": total.detach(), "nce": guide_out.loss.detach(), **ebm_out.terms, **extra}
    return StepOutput(terms, sampling)


def _score_penalty(energies: list[Tensor], inputs: list[Tensor]) -> Tensor:
    """Σ over the inputs of mean_b ‖∇ₓE(x_b)‖², differentiable in the EBM's parameters.

    One double backward for all inputs together (with a joint forward the energies of the data
    and the samples are slices of one output, so ``"both"`` costs one backward, not two).
    """
    total = torch.stack([e.sum() for e in energies]).sum()
    scores = torch.autograd.grad(total, inputs, create_graph=True)
    return torch.stack([s.flatten(1).square().sum(dim=1).mean() for s in scores]).sum()
