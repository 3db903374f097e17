"""One conformance suite over every protocol implementation, ours and a user's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import ebmguide as eg


class UserEBM(nn.Module):
    """A user's energy model written against the protocol only (no library base class)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.SiLU(),
                                 nn.Linear(32, 7))

    def energy(self, x: Tensor) -> Tensor:
        return self.energy_and_direction(x).energy

    def energy_and_direction(self, x: Tensor) -> eg.EnergyOutput:
        out = self.net(x)
        return eg.EnergyOutput(F.softplus(out[:, 0]), F.normalize(out[:, 1:], dim=1))


class UserGuide(nn.Module):
    """A user's guide: noise views, cosine loss (not SimCLR)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 6))

    def embed(self, x: Tensor) -> Tensor:
        return F.normalize(self.net(x), dim=1)

    def contrastive_loss(self, x: Tensor, *, extra_negatives: Tensor | None = None,
                         generator: torch.Generator | None = None) -> eg.GuideOutput:
        noise = torch.randn(x.shape, generator=generator)
        z1, z2 = self.embed(x + 0.05 * noise), self.embed(x - 0.05 * noise)
        return eg.GuideOutput(eg.nt_xent(z1, z2, extra_negatives=extra_negatives), z1.detach())


class UserSampler:
    """A user's sampler: plain noisy gradient descent from noise, no buffer."""

    def __init__(self) -> None:
        self.calls = 0

    def sample(self, energy_fn: eg.EnergyFn, batch_size: int, *,
               generator: torch.Generator | None = None) -> eg.LangevinResult:
        self.calls += 1
        x = torch.rand((batch_size, 3, 8, 8), generator=generator)
        return eg.langevin_dynamics(energy_fn, x, n_steps=2, step_size=0.1, noise_scale=0.01,
                                    generator=generator)

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.calls = int(state["calls"])


class UserLoss:
    """A user's joint loss: CD plus alignment, no regularizer."""

    def __call__(self, real: eg.EnergyOutput, fake_energy: Tensor,
                 target: Tensor) -> eg.LossOutput:
        cd = real.energy.mean() - fake_energy.mean()
        align = (real.direction * target).sum(1).mean()
        return eg.LossOutput(cd - 0.01 * align, {"cd": cd.detach()})


def ours(tiny_conv: type[nn.Module]) -> dict[str, Any]:
    torch.manual_seed(0)
    return {
        "ebm": eg.SphericalEBM(tiny_conv(), latent_dim=6, hidden_dim=16),
        "guide": eg.SimCLRGuide(tiny_conv(), latent_dim=6, hidden_dim=16),
        "sampler": eg.SGLDSampler((3, 8, 8), buffer_size=16, n_steps=2, step_size=0.5,
                                  noise_scale=0.01, augment="strong"),
        "loss": eg.CLELLoss(),
    }


def users(tiny_conv: type[nn.Module]) -> dict[str, Any]:
    torch.manual_seed(0)
    return {"ebm": UserEBM(), "guide": UserGuide(), "sampler": UserSampler(), "loss": UserLoss()}


IMPLEMENTATIONS = {"reference": ours, "user": users}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def parts(request: pytest.FixtureRequest, tiny_conv: type[nn.Module]) -> dict[str, Any]:
    return IMPLEMENTATIONS[request.param](tiny_conv)


def test_protocols_are_satisfied(parts: dict[str, Any]) -> None:
    assert isinstance(parts["ebm"], eg.EnergyModel)
    assert isinstance(parts["guide"], eg.ContrastiveGuide)
    assert isinstance(parts["sampler"], eg.LangevinSampler)
    assert isinstance(parts["loss"], eg.JointLoss)
    eg.check_components(parts["ebm"], parts["guide"], parts["sampler"], parts["loss"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_energy_model_contract(parts: dict[str, Any], dtype: torch.dtype) -> None:
    ebm = parts["ebm"].to(dtype)
    x = torch.rand(5, 3, 8, 8, dtype=dtype)
    out = ebm.energy_and_direction(x)
    assert out.energy.shape == (5,) and out.energy.dtype == dtype
    assert out.direction.shape[0] == 5 and out.direction.dtype == dtype
    torch.testing.assert_close(out.direction.norm(dim=1), torch.ones(5, dtype=dtype))
    torch.testing.assert_close(ebm.energy(x), out.energy)


def test_guide_contract(parts: dict[str, Any], generator: torch.Generator) -> None:
    guide = parts["guide"]
    x = torch.rand(6, 3, 8, 8)
    z = guide.embed(x)
    assert z.shape[0] == 6
    torch.testing.assert_close(z.norm(dim=1), torch.ones(6))
    out = guide.contrastive_loss(x, extra_negatives=F.normalize(torch.randn(4, z.shape[1]), dim=1),
                                 generator=generator)
    assert out.loss.dim() == 0 and out.loss.requires_grad
    assert out.target.shape == z.shape and not out.target.requires_grad


def test_sampler_contract(parts: dict[str, Any], generator: torch.Generator) -> None:
    sampler, ebm = parts["sampler"], parts["ebm"]
    out = sampler.sample(ebm.energy, 4, generator=generator)
    assert isinstance(out, eg.LangevinResult)
    x = out.samples
    assert x.shape == (4, 3, 8, 8) and not x.requires_grad
    assert out.finite.dtype == torch.bool and bool(out.finite.all())
    for diagnostic in (out.drift, out.drift_to_noise, out.displacement):
        assert diagnostic.shape == (4,) and bool((diagnostic >= 0).all())
    assert all(p.grad is None for p in ebm.parameters())
    sampler.load_state_dict(sampler.state_dict())


@pytest.mark.parametrize("joint", [True, False])
def test_one_iteration_helper_trains_every_implementation(parts: dict[str, Any], joint: bool,
                                                          generator: torch.Generator) -> None:
    ebm, guide = parts["ebm"], parts["guide"]
    opt_e = torch.optim.Adam(ebm.parameters(), lr=1e-2)
    opt_g = torch.optim.SGD(guide.parameters(), lr=1e-2)
    before_e = [p.detach().clone() for p in ebm.parameters()]
    before_g = [p.detach().clone() for p in guide.parameters()]
    out = eg.clel_step(ebm, guide, parts["sampler"], torch.rand(8, 3, 8, 8, generator=generator),
                       ebm_optimizer=opt_e, guide_optimizer=opt_g, loss_fn=parts["loss"],
                       generator=generator, joint_forward=joint)
    assert out.samples.shape == (8, 3, 8, 8)
    assert {"loss", "nce", "cd"} <= set(out.terms)
    assert all(torch.isfinite(v) and not v.requires_grad for v in out.terms.values())
    assert any(not torch.equal(a, b) for a, b in zip(before_e, ebm.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(before_g, guide.parameters(), strict=True))


def test_non_conforming_component_is_named() -> None:
    with pytest.raises(TypeError, match=r"guide .* ContrastiveGuide"):
        eg.check_components(UserEBM(), object(), UserSampler())
