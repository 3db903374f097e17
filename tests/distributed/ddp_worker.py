"""Worker programs for the distributed tests, launched with ``torchrun`` (2 gloo ranks on CPU).

``torchrun ... ddp_worker.py <scenario> <out_dir>``: each rank writes ``<out_dir>/rank<r>.pt``;
the tests compare those files with single-process references built by the same functions here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

import ebmguide as eg
from ebmguide import distributed as D
from ebmguide.sampling import LangevinResult, LangevinSettings, langevin_dynamics

B, D_IN, LATENT = 4, 6, 5  # per-rank batch, input size, latent size


def global_inputs(world: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(123)
    n = B * world
    return {"x1": torch.randn(n, D_IN, generator=g), "x2": torch.randn(n, D_IN, generator=g),
            "neg": torch.randn(n, LATENT, generator=g),
            "images": torch.rand(n, 1, 4, 4, generator=g),
            "starts": torch.rand(n, 1, 4, 4, generator=g)}


def projector() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D_IN, 8), nn.Tanh(), nn.Linear(8, LATENT))


def pair_loss(model: nn.Module, x1: Tensor, x2: Tensor, neg: Tensor | None,
              gathered: bool) -> Tensor:
    fn = D.gathered_nt_xent if gathered else eg.nt_xent
    return fn(model(x1), model(x2), temperature=0.3, extra_negatives=neg)


def grads(model: nn.Module) -> list[Tensor]:
    return [p.grad.detach().clone() for p in model.parameters()]


class Flip:
    """Deterministic 'augmentation': mirror the second half of the batch (the second views)."""

    def __call__(self, x: Tensor) -> Tensor:
        half = x.shape[0] // 2
        return torch.cat([x[:half], x[half:].flip(-1)])


class FixedStartSampler:
    """Two noiseless SGLD steps from given start states: deterministic, batch-independent."""

    def __init__(self, starts: Tensor) -> None:
        self.starts = starts

    SETTINGS = LangevinSettings(n_steps=2, step_size=0.1, noise_scale=0.0)

    def sample(self, energy_fn: Any, batch_size: int, *,
               generator: Any = None) -> LangevinResult:
        return self.sample_from(energy_fn, self.starts[:batch_size])

    def sample_fresh(self, energy_fn: Any, batch_size: int, *, n_steps: int | None = None,
                     generator: Any = None) -> LangevinResult:
        return self.sample_from(energy_fn, self.starts[:batch_size], n_steps=n_steps)

    def sample_from(self, energy_fn: Any, x: Tensor, *, n_steps: int | None = None,
                    generator: Any = None) -> LangevinResult:
        return langevin_dynamics(energy_fn, x, self.SETTINGS.with_steps(n_steps))

    def data_range(self) -> tuple[float, float] | None:
        return self.SETTINGS.clamp

    def chains(self) -> Tensor | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Any) -> None:
        pass


def clel_parts() -> tuple[eg.SphericalEBM, eg.SimCLRGuide]:
    torch.manual_seed(1)
    ebm = eg.SphericalEBM(nn.Flatten(), feature_dim=16, latent_dim=LATENT, hidden_dim=12)
    guide = eg.SimCLRGuide(nn.Flatten(), head=nn.Sequential(nn.Linear(16, 12), nn.ReLU(),
                                                           nn.Linear(12, LATENT)),
                           augment=Flip(), temperature=0.2)
    return ebm, guide


def clel_one_step(ebm: nn.Module, guide: nn.Module, images: Tensor,
                  starts: Tensor) -> dict[str, Tensor]:
    opt_e = torch.optim.SGD(ebm.parameters(), lr=0.5)
    opt_g = torch.optim.SGD(guide.parameters(), lr=0.5)
    out = eg.clel_step(ebm, guide, FixedStartSampler(starts), images, ebm_optimizer=opt_e,
                       guide_optimizer=opt_g)
    return out.terms


def scenario_gather(ctx: D.DistributedContext, out: Path) -> None:
    data, r = global_inputs(ctx.world_size), slice(ctx.rank * B, (ctx.rank + 1) * B)
    result: dict[str, Any] = {}
    # all_gather_with_grad: values in rank order, gradient of each row back to its owner.
    t = torch.full((2, 3), float(ctx.rank + 1), requires_grad=True)
    gathered = D.all_gather_with_grad(t)
    (gathered * torch.arange(gathered.shape[0]).float()[:, None]).sum().backward()
    result["gathered"], result["gather_grad"] = gathered.detach(), t.grad
    # The gathered NT-Xent through DDP, with and without extra negatives.
    for name, neg in (("plain", None), ("extra", data["neg"][r])):
        model = DistributedDataParallel(projector())
        loss = pair_loss(model, data["x1"][r], data["x2"][r], neg, gathered=True)
        loss.backward()
        result[f"{name}_loss"], result[f"{name}_grads"] = loss.detach(), grads(model.module)
        del model
    # One whole clel_step through wrap_ddp: parameters after one SGD step.
    ebm, guide = clel_parts()
    guide.gather_distributed = True  # the global-batch NT-Xent (as the Trainer sets it)
    debm, dguide = D.wrap_ddp(ebm, guide, ctx)
    terms = clel_one_step(debm, dguide, data["images"][r], data["starts"][r])
    result["terms"] = D.reduce_mean(terms)
    result["ebm"] = [p.detach().clone() for p in ebm.parameters()]
    result["guide"] = [p.detach().clone() for p in guide.parameters()]
    torch.save(result, out / f"rank{ctx.rank}.pt")
    D.release_ddp(debm, dguide)


TINY = ["data.n_train=256", "train.batch_size=8", "sampler.buffer_size=64", "sampler.n_steps=3",
        "model.width=8", "model.hidden_dim=32", "model.latent_dim=16", "guide.width=8",
        "guide.hidden_dim=32", "train.iterations=6", "train.log_every=2",
        "train.checkpoint_every=3", "train.sample_every=1000", "train.num_threads=1",
        "train.tensorboard=false", "eval.every=0", "eval.feature_net=none", "eval.fresh_steps=1",
        "eval.grid_size=4", "optim.warmup_iterations=2"]
"""Overrides of the demo config that make a run take about a second per iteration or less."""


def trainer_state(trainer: Any) -> dict[str, Tensor]:
    """Flat parameter vectors of the networks and EMA copies, the EBM's buffers, the buffer."""
    p = trainer.parts

    def flat(tensors: Any) -> Tensor:
        return torch.cat([t.detach().flatten().float() for t in tensors])

    return {"ebm": flat(p.ebm.parameters()), "guide": flat(p.guide.parameters()),
            "ebm_ema": flat(p.ebm_ema.module.parameters()),
            "guide_ema": flat(p.guide_ema.module.parameters()),
            "ebm_buffers": flat(p.ebm.buffers()), "replay": p.sampler.buffer.states.clone()}


def scenario_trainer(ctx: D.DistributedContext, out: Path) -> None:
    """6 iterations straight, 3 + resume + 3, and a rollback, through the Trainer under DDP."""
    from ebmguide.run.config import load_config
    from ebmguide.run.trainer import Trainer

    cfg = load_config("demo", TINY)
    result: dict[str, Any] = {}
    for name, stops in (("straight", [None]), ("resumed", [3, None])):
        for index, until in enumerate(stops):
            trainer = Trainer(cfg, out / name, resume=out / name if index else None,
                              progress=False, dist=ctx)
            trainer.run(until=until)
            trainer.close()
        state = trainer_state(trainer)
        result[name] = state
        result[f"{name}_all"] = {k: D.gather_tensor(v[None]) for k, v in state.items()}
        del trainer
    result["rollback"] = rollback(ctx, out / "rollback")
    torch.save(result, out / f"rank{ctx.rank}.pt")


def rollback(ctx: D.DistributedContext, out: Path) -> dict[str, Any]:
    """Rank 1 alone produces non-finite samples once: every rank rolls back together."""
    from ebmguide.run.config import load_config
    from ebmguide.run.trainer import Trainer

    cfg = load_config("demo", [*TINY, "train.on_divergence=rollback", "train.checkpoint_every=2",
                               "train.iterations=5"])
    poisoned: list[int] = []

    def poison(trainer: Any, iteration: int) -> None:
        if iteration == 3 and ctx.rank == 1 and not poisoned:
            poisoned.append(iteration)
            trainer.parts.sampler.buffer.states.fill_(float("nan"))

    trainer = Trainer(cfg, out, progress=False, dist=ctx, hooks=[poison])
    trainer.run()
    trainer.close()
    state = trainer_state(trainer)
    return {"rollbacks": trainer.rollbacks, "iteration": trainer.iteration,
            "all": {k: D.gather_tensor(v[None]) for k, v in state.items()}}


def main(argv: list[str]) -> None:
    scenario, out = argv[0], Path(argv[1])
    ctx = D.init_distributed("cpu")
    torch.set_num_threads(1)
    try:
        {"gather": scenario_gather, "trainer": scenario_trainer}[scenario](ctx, out)
    finally:
        D.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
