"""Conditional and compositional energies, latents from examples, conditional sampling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import ebmguide as eg
from ebmguide import conditional as C


class ToyModel(nn.Module):
    """E(x) = ½ a‖x‖², g(x) = x/‖x‖: the geometry of the latent terms is known exactly."""

    def __init__(self, a: float = 0.1) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def energy(self, x: Tensor) -> Tensor:
        return 0.5 * self.a * x.flatten(1).square().sum(1)

    def energy_and_direction(self, x: Tensor) -> eg.EnergyOutput:
        return eg.EnergyOutput(self.energy(x), F.normalize(x.flatten(1), dim=1))


class ToyGuide(nn.Module):
    """embed(x) = normalize(W x) with a BatchNorm whose mode must be eval while embedding."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False)
        self.seen_training: list[bool] = []

    def embed(self, x: Tensor) -> Tensor:
        self.seen_training.append(self.training)
        return F.normalize(x.flatten(1), dim=1)

    def contrastive_loss(self, x: Tensor, *, extra_negatives: Tensor | None = None,
                         generator: torch.Generator | None = None) -> eg.GuideOutput:
        raise NotImplementedError


def make_ebm() -> eg.SphericalEBM:
    torch.manual_seed(0)
    return eg.SphericalEBM(nn.Flatten(), feature_dim=6, latent_dim=4, hidden_dim=8, init_std=0.5)


def test_protocols_are_satisfied_by_the_toys() -> None:
    assert isinstance(ToyModel(), eg.EnergyModel)
    assert isinstance(ToyGuide(3), eg.ContrastiveGuide)


def test_and_energy_is_the_core_conditional_energy_and_composed_agrees() -> None:
    ebm, x, z = make_ebm(), torch.randn(5, 6), torch.randn(3, 4)
    assert C.and_energy is eg.conditional_energy
    expected = eg.conditional_energy(ebm, z, beta=1.5, weights=[1.0, 2.0, -1.0])(x)
    got = C.composed_energy(ebm, beta=1.5, and_latents=z, and_weights=[1.0, 2.0, -1.0])(x)
    torch.testing.assert_close(got, expected)


def test_or_energy_is_exact() -> None:
    ebm, x, z = make_ebm(), torch.randn(5, 6), torch.randn(3, 4)
    out = ebm.energy_and_direction(x)
    cos = out.direction @ F.normalize(z, dim=1).T
    pi = torch.tensor([1.0, 2.0, 5.0]) / 8.0
    expected = out.energy - torch.logsumexp(2.0 * cos + pi.log(), dim=1)
    torch.testing.assert_close(C.or_energy(ebm, z, beta=2.0, weights=[1, 2, 5])(x), expected)
    uniform = out.energy - torch.logsumexp(2.0 * cos - math.log(3), dim=1)
    torch.testing.assert_close(C.or_energy(ebm, z, beta=2.0)(x), uniform)


def test_or_with_one_latent_is_the_and_energy() -> None:
    ebm, x, z = make_ebm(), torch.randn(5, 6), torch.randn(4)
    torch.testing.assert_close(C.or_energy(ebm, z, beta=3.0)(x),
                               eg.conditional_energy(ebm, z, beta=3.0)(x))


@pytest.mark.parametrize("beta", [1e3, 1e5])
def test_or_reduces_to_the_max_as_beta_grows(beta: float) -> None:
    ebm, x, z = make_ebm(), torch.randn(7, 6), torch.randn(3, 4)
    out = ebm.energy_and_direction(x)
    max_cos = (out.direction @ F.normalize(z, dim=1).T).max(dim=1).values
    shift = (C.or_energy(ebm, z, beta=beta, weights=[1, 3, 6])(x) - out.energy) / beta
    # logsumexp(β c + log π)/β lies in [max c + min log π / β, max c]
    torch.testing.assert_close(shift, -max_cos, atol=math.log(10) / beta + 1e-5, rtol=0)


def test_or_gradient_is_the_responsibility_weighted_and_gradient() -> None:
    ebm, z = make_ebm(), torch.randn(3, 4)
    x = torch.randn(4, 6, requires_grad=True)
    beta = 2.5
    (g_or,) = torch.autograd.grad(C.or_energy(ebm, z, beta=beta)(x).sum(), x)
    cos = ebm.direction(x).detach() @ F.normalize(z, dim=1).T
    resp = torch.softmax(beta * cos, dim=1)  # uniform π cancels
    parts = []
    for k in range(3):
        (g_k,) = torch.autograd.grad(eg.conditional_energy(ebm, z[k], beta=beta)(x).sum(), x)
        parts.append(g_k)
    expected = sum(resp[:, k:k + 1] * parts[k] for k in range(3))
    torch.testing.assert_close(g_or, expected)


def test_composed_energy_is_the_sum_of_its_parts() -> None:
    ebm, x = make_ebm(), torch.randn(5, 6)
    a, o = torch.randn(2, 4), torch.randn(2, 4)
    got = C.composed_energy(ebm, beta=1.2, and_latents=a, and_weights=[1.0, -0.5], or_latents=o)
    base = ebm.energy(x)
    expected = (eg.conditional_energy(ebm, a, beta=1.2, weights=[1.0, -0.5])(x)
                + C.or_energy(ebm, o, beta=1.2)(x) - base)
    torch.testing.assert_close(got(x), expected)


def test_no_parameter_gradients_flow_into_the_latents() -> None:
    ebm = make_ebm()
    z = torch.randn(2, 4, requires_grad=True)
    C.or_energy(ebm, z, beta=1.0)(torch.randn(3, 6)).sum().backward()
    assert z.grad is None
    assert ebm.head[0].weight.grad is not None


def _run(energy_fn: eg.EnergyFn, x: Tensor) -> Tensor:
    return eg.langevin_dynamics(energy_fn, x,
                                eg.LangevinSettings(n_steps=50, step_size=0.05, noise_scale=0.0,
                                                    clamp=None)).samples


def test_and_pulls_towards_and_not_pushes_away() -> None:
    model, z = ToyModel(), torch.tensor([1.0, 0.0, 0.0])
    x0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    cos0 = F.normalize(x0, dim=1) @ z
    pulled = F.normalize(_run(eg.conditional_energy(model, z, beta=5.0), x0), dim=1) @ z
    pushed = F.normalize(_run(eg.conditional_energy(model, z, beta=5.0, weights=[-1.0]), x0),
                         dim=1) @ z
    assert bool((pulled >= cos0 - 1e-6).all()) and float(pulled.mean()) > float(cos0.mean()) + 0.3
    assert bool((pushed <= cos0 + 1e-6).all()) and float(pushed.mean()) < float(cos0.mean()) - 0.3


def test_or_sends_each_chain_to_its_nearest_latent() -> None:
    model = ToyModel()
    z = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    x0 = torch.rand(64, 3, generator=torch.Generator().manual_seed(1)) + 0.05
    nearest = (F.normalize(x0, dim=1) @ z.T).argmax(dim=1)
    x = _run(C.or_energy(model, z, beta=20.0), x0)
    cos = F.normalize(x, dim=1) @ z.T
    assert bool((cos.argmax(dim=1) == nearest).all())
    assert float(cos.max(dim=1).values.mean()) > 0.95


def test_latent_from_examples_is_the_normalized_mean_in_eval_mode() -> None:
    guide = ToyGuide(3).train()
    images = torch.randn(10, 3)
    expected = F.normalize(F.normalize(images, dim=1).mean(0), dim=0)
    torch.testing.assert_close(C.latent_from_examples(guide, images, batch_size=4), expected)
    assert guide.seen_training == [False, False, False] and guide.training
    torch.testing.assert_close(C.embed_images(guide, images), F.normalize(images, dim=1))


def test_latents_by_label() -> None:
    guide = ToyGuide(3)
    images = torch.randn(9, 3)
    labels = torch.tensor([2, 0, 2, 1, 0, 2, 1, 1, 0])
    out = C.latents_by_label(guide, images, labels)
    assert list(out) == [2, 0, 1]
    for key, z in out.items():
        torch.testing.assert_close(z, C.latent_from_examples(guide, images[labels == key]))
        assert abs(float(z.norm()) - 1.0) < 1e-6
    named = C.latents_by_label(guide, images[:3], ["red", "blue", "red"])
    torch.testing.assert_close(named["red"], C.latent_from_examples(guide, images[[0, 2]]))
    with pytest.raises(ValueError, match="labels"):
        C.latents_by_label(guide, images, labels[:3])


def test_sample_conditional_uses_fresh_chains_and_is_reproducible(tiny_parts) -> None:  # type: ignore[no-untyped-def]
    ebm, _, sampler = tiny_parts
    before = sampler.chains().clone()
    z = torch.randn(2, 6)
    ebm.train()

    def draw(seed: int) -> Tensor:
        return C.sample_conditional(ebm, z, beta=1.0, n=5, sampler=sampler, batch_size=2,
                                    generator=torch.Generator().manual_seed(seed))

    a, b = draw(0), draw(0)
    assert a.shape == (5, 3, 8, 8) and torch.equal(a, b) and not torch.equal(a, draw(1))
    assert torch.equal(sampler.chains(), before) and ebm.training
    c = C.sample_conditional(ebm, z, beta=1.0, combine="or", n=3, shape=(3, 8, 8),
                             settings=eg.LangevinSettings(n_steps=2, step_size=1.0,
                                                          noise_scale=0.01),
                             generator=torch.Generator().manual_seed(0))
    assert c.shape == (3, 3, 8, 8) and float(c.min()) >= 0.0 and float(c.max()) <= 1.0


def test_sample_conditional_moves_samples_towards_the_latent() -> None:
    model, z = ToyModel(), torch.tensor([0.0, 0.0, 1.0, 0.0])
    kwargs = dict(n=32, shape=(4,), settings=eg.LangevinSettings(n_steps=40, step_size=0.05,
                                                                 noise_scale=0.0, clamp=None))
    g = torch.Generator().manual_seed(0)
    with_z = C.sample_conditional(model, z, beta=5.0, generator=g, **kwargs)
    g = torch.Generator().manual_seed(0)
    without = C.sample_conditional(model, z, beta=0.0, generator=g, **kwargs)
    assert float((F.normalize(with_z, dim=1) @ z).mean()) > float(
        (F.normalize(without, dim=1) @ z).mean()) + 0.2


def test_bad_input_is_reported() -> None:
    ebm, z = make_ebm(), torch.randn(2, 4)
    settings = eg.LangevinSettings(n_steps=1, step_size=0.1)
    with pytest.raises(ValueError, match="combine"):
        C.sample_conditional(ebm, z, beta=1.0, combine="xor", shape=(6,),  # type: ignore[arg-type]
                             settings=settings)
    with pytest.raises(ValueError, match="beta"):
        C.or_energy(ebm, z, beta=-1.0)
    with pytest.raises(ValueError, match="positive"):
        C.or_energy(ebm, z, beta=1.0, weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="one entry per latent"):
        C.or_energy(ebm, z, beta=1.0, weights=[1.0])
    with pytest.raises(ValueError, match="size 5"):
        C.or_energy(ebm, torch.randn(2, 5), beta=1.0)(torch.randn(1, 6))
    with pytest.raises(ValueError, match="at least one latent"):
        C.composed_energy(ebm, beta=1.0)
    with pytest.raises(ValueError, match="shape"):
        C.sample_conditional(ebm, z, beta=1.0, n=2, settings=settings)
    with pytest.raises(ValueError, match="exactly one of sampler"):
        C.sample_conditional(ebm, z, beta=1.0, n=2, shape=(6,))
    sampler = eg.SGLDSampler((6,), buffer_size=4, n_steps=1, step_size=0.1)
    with pytest.raises(ValueError, match="exactly one of sampler"):
        C.sample_conditional(ebm, z, beta=1.0, n=2, sampler=sampler, settings=settings)
    with pytest.raises(TypeError, match="step_size"):
        C.sample_conditional(ebm, z, beta=1.0, n=2, sampler=sampler, step_size=3.0)


def test_sample_energy_from_given_start_states() -> None:
    model = ToyModel()
    init = torch.rand(10, 4, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    x = C.sample_energy(model.energy, 4, init=init, generator=g, n_steps=0, batch_size=3,
                        settings=eg.LangevinSettings(step_size=1.0, noise_scale=0.0))
    # zero steps: the samples are 4 distinct rows of init
    rows = {tuple(r.tolist()) for r in init}
    assert x.shape == (4, 4) and len({tuple(r.tolist()) for r in x} & rows) == 4
    sampler = eg.SGLDSampler((4,), buffer_size=2, n_steps=2, step_size=0.1, noise_scale=0.0,
                             clamp=None)
    y = C.sample_energy(model.energy, 3, init=init, sampler=sampler,
                        generator=torch.Generator().manual_seed(1), n_steps=1)
    picked = init[torch.randperm(10, generator=torch.Generator().manual_seed(1))[:3]]
    torch.testing.assert_close(y, picked * (1 - 0.1 * 0.1))  # one step of E = ½·0.1‖x‖²
    with pytest.raises(ValueError, match="at least n=11"):
        C.sample_energy(model.energy, 11, init=init, shape=(4,), sampler=sampler)
    with pytest.raises(TypeError, match="LangevinSampler protocol"):
        C.sample_energy(model.energy, 2, init=init, sampler=object())  # type: ignore[arg-type]
