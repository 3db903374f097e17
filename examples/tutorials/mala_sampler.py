"""Tutorial: write a new sampler, MALA (Langevin with a Metropolis correction), for CLEL.

A sampler is anything with the methods of the ``eg.LangevinSampler`` protocol: ``sample``
(training), ``sample_fresh`` and ``sample_from`` (evaluation, conditional sampling),
``data_range`` and ``chains`` (the data-range check, sample grids) and
``state_dict``/``load_state_dict``; no library class is subclassed. This one:

1. proposes x* = x − η∇E(x) + √(2η)·ε (the exact discretized Langevin step, σ = √(2η));
2. accepts x* with probability min(1, exp(−E(x*) + E(x)) · q(x | x*) / q(x* | x)), where q is the
   Gaussian proposal density, so exp(−E) is exactly stationary whatever the step size;
3. keeps images in the data box [low, high] exactly, by running the chains on u = logit(x) with the
   change-of-variables energy (no clamping, which would break the correction);
4. keeps persistent chains in an ``eg.ReplayBuffer`` (optional) and adapts η between calls towards
   a target acceptance rate (optional; adaptation makes the chain approximate again, so turn it
   off for exact sampling).

The script first checks the correction on a Gaussian, where uncorrected Langevin with a large step
is visibly biased and MALA is not, then trains CLEL for a few iterations with MALA as the sampler.

    python examples/tutorials/mala_sampler.py
    python examples/tutorials/mala_sampler.py --smoke     # a few seconds (CI)
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

import ebmguide as eg
from ebmguide.data import make_shapes
from ebmguide.nets import SmallCNN
from ebmguide.sampling import uniform_states


# --8<-- [start:mala]
class MALAResult(NamedTuple):
    """Final states ``(B, *shape)``, per-chain acceptance rates, finiteness and drift ``(B,)``.

    ``drift`` is the root mean square of the gradient move η·∇E per step and element, as in
    :class:`ebmguide.LangevinResult`.
    """

    samples: Tensor
    acceptance: Tensor
    finite: Tensor
    drift: Tensor


def _energy_and_grad(energy_fn: eg.EnergyFn, x: Tensor) -> tuple[Tensor, Tensor]:
    """E(x) ``(B,)`` and ∇ₓE(x), with no gradient left on the energy's parameters."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        energy = energy_fn(x)
    (grad,) = torch.autograd.grad(energy.sum(), x)
    return energy.detach(), grad


def mala(
    energy_fn: eg.EnergyFn,
    x: Tensor,
    *,
    n_steps: int,
    step_size: float,
    generator: torch.Generator | None = None,
) -> MALAResult:
    """Run ``n_steps`` of MALA from ``x`` (not modified); exp(−E) is the stationary law."""
    state = x.detach().clone()
    energy, grad = _energy_and_grad(energy_fn, state)
    accepted = torch.zeros(x.shape[0], device=x.device)
    drift_sq = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    view = (-1,) + (1,) * (x.dim() - 1)
    for _ in range(n_steps):
        drift_sq += grad.square().flatten(1).mean(1)
        noise = torch.randn(state.shape, generator=generator, device=x.device, dtype=x.dtype)
        proposal = state - step_size * grad + math.sqrt(2 * step_size) * noise
        energy_p, grad_p = _energy_and_grad(energy_fn, proposal)
        # log q(x* | x) = −‖x* − x + η∇E(x)‖² / (4η) = −‖ε‖² / 2, and the reverse move:
        log_q_forward = -0.5 * noise.square().flatten(1).sum(1)
        back = state - proposal + step_size * grad_p
        log_q_backward = -back.square().flatten(1).sum(1) / (4 * step_size)
        log_ratio = energy - energy_p + log_q_backward - log_q_forward
        u = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        accept = torch.log(u) < log_ratio  # False for a NaN ratio: a NaN proposal is rejected
        state = torch.where(accept.view(view), proposal, state)
        energy = torch.where(accept, energy_p, energy)
        grad = torch.where(accept.view(view), grad_p, grad)
        accepted += accept
    finite = torch.isfinite(state).flatten(1).all(1) & torch.isfinite(energy)
    drift = step_size * (drift_sq / max(n_steps, 1)).sqrt()
    return MALAResult(state, accepted / max(n_steps, 1), finite, drift)
# --8<-- [end:mala]


# --8<-- [start:box]
def to_box(u: Tensor, low: float, high: float) -> Tensor:
    """x = low + (high − low)·sigmoid(u): unconstrained u to the open box (low, high)."""
    return low + (high - low) * torch.sigmoid(u)


def from_box(x: Tensor, low: float, high: float, eps: float = 1e-4) -> Tensor:
    """The inverse of :func:`to_box`, with x kept ``eps`` inside the box (logit(0) is −∞)."""
    return torch.logit(((x - low) / (high - low)).clamp(eps, 1 - eps))


def box_energy(energy_fn: eg.EnergyFn, low: float, high: float) -> eg.EnergyFn:
    """The energy of u when x = to_box(u) has density ∝ exp(−E(x)) on the box.

    Change of variables: p(u) = p(x(u)) · |dx/du|, so E_u(u) = E(x(u)) − Σ log(dx/du), with
    dx/du = (high − low)·s(1 − s) per coordinate (the constant log(high − low) is dropped).
    """
    def energy_u(u: Tensor) -> Tensor:
        log_jacobian = (F.logsigmoid(u) + F.logsigmoid(-u)).flatten(1).sum(1)
        return energy_fn(to_box(u, low, high)) - log_jacobian

    return energy_u
# --8<-- [end:box]


# --8<-- [start:sampler]
class MALASampler:
    """A ``LangevinSampler``: MALA chains, persistent in a replay buffer when ``buffer_size``.

    Args:
        shape: shape of one sample, e.g. ``(3, 16, 16)``.
        n_steps: MALA steps per call.
        step_size: η; the proposal noise is √(2η).
        bounds: the data box, or ``None`` for unbounded data. With a box the chains run on
            u = logit(x) with the change-of-variables energy (:func:`box_energy`), so samples stay
            inside and exp(−E) on the box is still exactly stationary.
        buffer_size: replay buffer capacity, or ``None`` to start every call from uniform noise.
        reinit_prob: probability that a drawn buffer chain restarts from noise.
        target_acceptance: adapt η after each call towards this rate (0.574 is optimal for MALA in
            high dimension), or ``None`` to keep η fixed (exact sampling).
        adapt_rate: how fast log η moves: log η += adapt_rate · (rate − target).
        generator: source of the buffer's initial states.
    """

    def __init__(
        self,
        shape: Sequence[int],
        *,
        n_steps: int = 20,
        step_size: float = 1e-4,
        bounds: tuple[float, float] | None = (0.0, 1.0),
        buffer_size: int | None = 1000,
        reinit_prob: float = 0.01,
        target_acceptance: float | None = 0.574,
        adapt_rate: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> None:
        if n_steps < 1 or not step_size > 0:
            raise ValueError(f"need n_steps >= 1 and step_size > 0, got {n_steps}, {step_size}.")
        self.shape = tuple(shape)
        self.n_steps = n_steps
        self.step_size = step_size
        self.bounds = bounds
        self.reinit_prob = reinit_prob
        self.target_acceptance = target_acceptance
        self.adapt_rate = adapt_rate
        low, high = bounds if bounds is not None else (0.0, 1.0)
        self.buffer = (eg.ReplayBuffer(buffer_size, self.shape, low=low, high=high,
                                       generator=generator) if buffer_size else None)
        self.last_acceptance = float("nan")

    def sample(self, energy_fn: eg.EnergyFn, batch_size: int, *,
               generator: torch.Generator | None = None) -> eg.LangevinResult:
        """Run the chains (from the buffer, or from noise): samples, flags and diagnostics.

        The drift is measured where the chains run (on logit(x) with ``bounds``); the noise of
        MALA is √(2η) per step. With ``target_acceptance`` the step size adapts after the call.
        """
        if self.buffer is None:
            return self._run(energy_fn, self._noise(batch_size, generator), self.n_steps,
                             generator, adapt=True)
        draw = self.buffer.draw(batch_size, reinit_prob=self.reinit_prob, generator=generator)
        result = self._run(energy_fn, draw.x, self.n_steps, generator, adapt=True)
        self.buffer.write(draw.indices, result.samples, keep=result.finite)
        return result

    def sample_fresh(self, energy_fn: eg.EnergyFn, batch_size: int, *,
                     n_steps: int | None = None,
                     generator: torch.Generator | None = None) -> eg.LangevinResult:
        """Chains from uniform noise on the box; buffer and step size are left alone."""
        return self.sample_from(energy_fn, self._noise(batch_size, generator), n_steps=n_steps,
                                generator=generator)

    def sample_from(self, energy_fn: eg.EnergyFn, x: Tensor, *, n_steps: int | None = None,
                    generator: torch.Generator | None = None) -> eg.LangevinResult:
        """Chains from the start states ``x``; buffer and step size are left alone."""
        steps = self.n_steps if n_steps is None else n_steps
        return self._run(energy_fn, x, steps, generator, adapt=False)

    def data_range(self) -> tuple[float, float] | None:
        """The data box (the samples never leave it), or ``None``."""
        return self.bounds

    def chains(self) -> Tensor | None:
        """The replay buffer's chains, or ``None`` without a buffer."""
        return self.buffer.states if self.buffer is not None else None

    def _noise(self, batch_size: int, generator: torch.Generator | None) -> Tensor:
        low, high = self.bounds if self.bounds is not None else (0.0, 1.0)
        return uniform_states((batch_size, *self.shape), low, high, generator=generator)

    def _run(self, energy_fn: eg.EnergyFn, x: Tensor, n_steps: int,
             generator: torch.Generator | None, *, adapt: bool) -> eg.LangevinResult:
        """MALA from ``x`` (on logit(x) with ``bounds``); adapts η after the run when ``adapt``."""
        noise = math.sqrt(2 * self.step_size)
        if self.bounds is not None:  # run the chains on the unconstrained u = logit(x)
            low, high = self.bounds
            result = mala(box_energy(energy_fn, low, high), from_box(x, low, high),
                          n_steps=n_steps, step_size=self.step_size, generator=generator)
            result = result._replace(samples=to_box(result.samples, low, high))
        else:
            result = mala(energy_fn, x, n_steps=n_steps, step_size=self.step_size,
                          generator=generator)
        if adapt:
            self.last_acceptance = float(result.acceptance.mean())
            if self.target_acceptance is not None:
                self.step_size *= math.exp(self.adapt_rate
                                           * (self.last_acceptance - self.target_acceptance))
        moved = (result.samples - x).flatten(1).square().mean(1).sqrt()
        return eg.LangevinResult(result.samples, result.finite, result.drift,
                                 result.drift / noise, moved)

    def state_dict(self) -> dict[str, Any]:
        """Step size and buffer, for checkpoints."""
        return {"step_size": self.step_size,
                "buffer": self.buffer.state_dict() if self.buffer is not None else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.step_size = float(state["step_size"])
        if self.buffer is not None and state["buffer"] is not None:
            self.buffer.load_state_dict(state["buffer"])
# --8<-- [end:sampler]


# --8<-- [start:check]
def gaussian_check(step_size: float, n_chains: int, n_steps: int, seed: int) -> dict[str, float]:
    """Variance of each sampler's chains on E(x) = ½‖x‖² (target: 1 in every coordinate)."""
    def energy(x: Tensor) -> Tensor:
        return 0.5 * x.square().sum(dim=1)

    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n_chains, 2, generator=g)  # start at the target: any bias is the sampler's
    ula = eg.langevin_dynamics(energy, x0,
                               eg.LangevinSettings(n_steps=n_steps, step_size=step_size,
                                                   noise_scale=math.sqrt(2 * step_size),
                                                   clamp=None),
                               generator=g)
    exact = mala(energy, x0, n_steps=n_steps, step_size=step_size, generator=g)
    return {"ula_variance": float(ula.samples.var()),
            "ula_variance_theory": 2 / (2 - step_size),
            "mala_variance": float(exact.samples.var()),
            "mala_acceptance": float(exact.acceptance.mean())}
# --8<-- [end:check]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="A MALA sampler for CLEL, written against the "
                                                 "LangevinSampler protocol.")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a few tiny iterations (CI)")
    return parser


def main(args: argparse.Namespace) -> dict[str, float]:
    if args.smoke:
        args.iterations, args.batch_size = 3, 8
    check = gaussian_check(step_size=0.5, n_chains=500 if args.smoke else 5000,
                           n_steps=20 if args.smoke else 100, seed=args.seed)
    print("Gaussian check, step size 0.5: " + ", ".join(f"{k} {v:.3f}" for k, v in check.items()))

    # --8<-- [start:train]
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    images = make_shapes(256 if args.smoke else 4096, size=16, generator=g).images
    ebm = eg.SphericalEBM(SmallCNN(width=16), latent_dim=32, hidden_dim=128)
    guide = eg.SimCLRGuide(SmallCNN(width=16, spectral_norm=False, norm="batch"),
                           latent_dim=32, hidden_dim=128, augment="strong")
    sampler = MALASampler(images.shape[1:], n_steps=3 if args.smoke else 20, step_size=0.1,
                          bounds=(0.0, 1.0), buffer_size=1000, generator=g)
    eg.check_components(ebm, guide, sampler)  # the protocol check: no base class needed
    opts = eg.clel_optimizers(ebm, guide, total_iterations=args.iterations,
                              warmup_iterations=min(100, args.iterations))
    for it in range(1, args.iterations + 1):
        x = images[torch.randint(0, images.shape[0], (args.batch_size,), generator=g)]
        terms = eg.clel_step(ebm, guide, sampler, x, ebm_optimizer=opts.ebm,
                             guide_optimizer=opts.guide, generator=g).terms
        opts.ebm_scheduler.step()
        opts.guide_scheduler.step()
        if it % 25 == 0 or it == args.iterations:
            print(f"it {it:4d}  cd {terms['cd'].item():+.4f}  acceptance "
                  f"{sampler.last_acceptance:.2f}  step size {sampler.step_size:.2e}")
    # --8<-- [end:train]
    return {**check, "acceptance": sampler.last_acceptance, "step_size": sampler.step_size}


if __name__ == "__main__":
    main(get_args_parser().parse_args())
