"""One conformance suite over every implementation of each protocol in the project.

Energy models and guides: the reference classes, a user's classes written against the protocols
only, and the DDP wrappers (world size 1, an in-process gloo group). Samplers: the reference SGLD
sampler, a user's sampler and the MALA sampler of the tutorial. Losses: the reference loss and a
user's. Each implementation is checked for the contract (shapes, dtypes, the returned record's
fields), determinism (same seed, bit-identical on the CPU) and, where it has state, a state round
trip that compares.
"""

from __future__ import annotations

import gc
import importlib.util
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

import ebmguide as eg
from ebmguide.distributed import DDPEnergyModel, DDPGuide, release_ddp
from ebmguide.distributed.ddp import _MethodCall

SHAPE = (3, 8, 8)
TUTORIAL = Path(__file__).resolve().parents[2] / "examples" / "tutorials" / "mala_sampler.py"


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
    """A user's guide: noise views, NT-Xent on them (no SimCLR augmentation)."""

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
    """A user's sampler: noisy gradient descent on a small store of persistent chains.

    ``sample`` runs the next ``batch_size`` chains of the store (round robin) and writes them back;
    nothing of the library is subclassed.
    """

    SETTINGS = eg.LangevinSettings(n_steps=2, step_size=0.1, noise_scale=0.01)

    def __init__(self, slots: int = 16, seed: int = 0) -> None:
        self.store = torch.rand((slots, *SHAPE), generator=torch.Generator().manual_seed(seed))
        self.calls = 0

    def sample(self, energy_fn: eg.EnergyFn, batch_size: int, *,
               generator: torch.Generator | None = None) -> eg.LangevinResult:
        slots = (torch.arange(batch_size) + self.calls * batch_size) % self.store.shape[0]
        out = self.sample_from(energy_fn, self.store[slots], generator=generator)
        self.store[slots] = torch.where(out.finite.view(-1, 1, 1, 1), out.samples,
                                        self.store[slots])
        self.calls += 1
        return out

    def sample_fresh(self, energy_fn: eg.EnergyFn, batch_size: int, *,
                     n_steps: int | None = None,
                     generator: torch.Generator | None = None) -> eg.LangevinResult:
        x = torch.rand((batch_size, *SHAPE), generator=generator)
        return self.sample_from(energy_fn, x, n_steps=n_steps, generator=generator)

    def sample_from(self, energy_fn: eg.EnergyFn, x: Tensor, *, n_steps: int | None = None,
                    generator: torch.Generator | None = None) -> eg.LangevinResult:
        return eg.langevin_dynamics(energy_fn, x, self.SETTINGS.with_steps(n_steps),
                                    generator=generator)

    def data_range(self) -> tuple[float, float] | None:
        return self.SETTINGS.clamp

    def chains(self) -> Tensor | None:
        return self.store

    def state_dict(self) -> dict[str, Any]:
        return {"store": self.store.clone(), "calls": self.calls}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.store = state["store"].clone()
        self.calls = int(state["calls"])


class UserLoss:
    """A user's joint loss: CD plus alignment, no regularizer."""

    def __call__(self, real: eg.EnergyOutput, fake_energy: Tensor,
                 target: Tensor) -> eg.LossOutput:
        cd = real.energy.mean() - fake_energy.mean()
        align = (real.direction * target).sum(1).mean()
        return eg.LossOutput(cd - 0.01 * align, {"cd": cd.detach()})


def _mala_class() -> type:
    spec = importlib.util.spec_from_file_location("tutorial_mala_sampler", TUTORIAL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.MALASampler  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def one_process_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A gloo process group of size 1 in this process, for the DDP wrappers."""
    started = not dist.is_initialized()
    if started:
        store = tmp_path_factory.mktemp("gloo") / "store"
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield
    gc.collect()
    if started:
        dist.destroy_process_group()


# -- builders of every implementation (seeded: two calls build identical objects) ---------------

def _reference_nets(tiny_conv: type[nn.Module]) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return (eg.SphericalEBM(tiny_conv(), latent_dim=6, hidden_dim=16),
            eg.SimCLRGuide(tiny_conv(), latent_dim=6, hidden_dim=16, augment="strong"))


def _user_nets(tiny_conv: type[nn.Module]) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return UserEBM(), UserGuide()


NETS: dict[str, Callable[[type[nn.Module]], tuple[nn.Module, nn.Module]]] = {
    "reference": _reference_nets, "user": _user_nets, "ddp": _reference_nets}

SAMPLERS: dict[str, Callable[[], Any]] = {
    "reference": lambda: eg.SGLDSampler(SHAPE, buffer_size=16, n_steps=2, step_size=0.5,
                                        noise_scale=0.01, augment="strong",
                                        generator=torch.Generator().manual_seed(0)),
    "user": UserSampler,
    "mala": lambda: _mala_class()(SHAPE, n_steps=2, step_size=1e-3, buffer_size=16,
                                  generator=torch.Generator().manual_seed(0)),
}

LOSSES: dict[str, Callable[[], Any]] = {"reference": eg.CLELLoss, "user": UserLoss}


@pytest.fixture(params=list(NETS))
def nets(request: pytest.FixtureRequest, tiny_conv: type[nn.Module]) -> Iterator[tuple[Any, Any]]:
    ebm, guide = NETS[request.param](tiny_conv)
    if request.param != "ddp":
        yield ebm, guide
        return
    request.getfixturevalue("one_process_group")
    # wrap_ddp is the identity on one process, so the wrappers are built as it builds them
    wrapped = (DDPEnergyModel(DistributedDataParallel(_MethodCall(ebm))),
               DDPGuide(DistributedDataParallel(_MethodCall(guide))))
    yield wrapped
    release_ddp(*wrapped)
    del wrapped
    gc.collect()


@pytest.fixture(params=list(SAMPLERS))
def make_sampler(request: pytest.FixtureRequest) -> Callable[[], Any]:
    return SAMPLERS[request.param]


def _equal(a: object, b: object) -> bool:
    """Bit-identical nested states (tensors compared with ``torch.equal``)."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and a.dtype == b.dtype \
            and torch.equal(a, b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _images(n: int, seed: int) -> Tensor:
    return torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(seed))


# -- energy models and guides --------------------------------------------------------------------

def test_networks_satisfy_their_protocols(nets: tuple[Any, Any]) -> None:
    ebm, guide = nets
    assert isinstance(ebm, eg.EnergyModel) and isinstance(guide, eg.ContrastiveGuide)
    eg.check_components(ebm, guide, UserSampler(), UserLoss())


def test_energy_model_contract_and_determinism(nets: tuple[Any, Any]) -> None:
    ebm = nets[0]
    x = _images(5, 1)
    out = ebm.energy_and_direction(x)
    assert isinstance(out, eg.EnergyOutput)
    assert out.energy.shape == (5,) and out.energy.dtype == x.dtype
    assert out.direction.shape[0] == 5 and out.direction.dim() == 2
    torch.testing.assert_close(out.direction.norm(dim=1), torch.ones(5))
    again = ebm.energy_and_direction(x)
    assert torch.equal(ebm.energy(x), out.energy) and torch.equal(again.direction, out.direction)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_energy_model_keeps_the_dtype(tiny_conv: type[nn.Module], dtype: torch.dtype) -> None:
    for build in (_reference_nets, _user_nets):
        ebm = build(tiny_conv)[0].to(dtype)
        out = ebm.energy_and_direction(_images(3, 2).to(dtype))
        assert out.energy.dtype == dtype and out.direction.dtype == dtype


def test_network_state_round_trip(nets: tuple[Any, Any], tiny_conv: type[nn.Module]) -> None:
    """Another instance loaded with the state gives bit-identical outputs."""
    ebm, guide = nets
    with torch.no_grad():
        for p in ebm.parameters():
            p.add_(0.01)  # differ from a fresh build
    fresh_ebm, fresh_guide = _reference_nets(tiny_conv) if isinstance(
        eg.distributed.unwrap(ebm), eg.SphericalEBM) else _user_nets(tiny_conv)
    fresh_ebm.load_state_dict(eg.distributed.unwrap(ebm).state_dict())
    fresh_guide.load_state_dict(eg.distributed.unwrap(guide).state_dict())
    x = _images(4, 3)
    assert torch.equal(fresh_ebm.energy(x), ebm.energy(x))
    assert torch.equal(fresh_guide.embed(x), guide.embed(x))


def test_guide_contract_and_determinism(nets: tuple[Any, Any]) -> None:
    guide = nets[1]
    x = _images(6, 4)
    z = guide.embed(x)
    assert z.shape[0] == 6 and z.dim() == 2
    torch.testing.assert_close(z.norm(dim=1), torch.ones(6))
    negatives = F.normalize(torch.randn(4, z.shape[1], generator=torch.Generator().manual_seed(0)),
                            dim=1)
    runs = [guide.contrastive_loss(x, extra_negatives=negatives,
                                   generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    out = runs[0]
    assert isinstance(out, eg.GuideOutput)
    assert out.loss.dim() == 0 and out.loss.requires_grad and torch.isfinite(out.loss)
    assert out.target.shape == z.shape and not out.target.requires_grad
    assert torch.equal(runs[0].loss, runs[1].loss) and torch.equal(runs[0].target, runs[1].target)


# -- samplers ----------------------------------------------------------------------------------

def _quadratic(x: Tensor) -> Tensor:
    return 0.5 * (x - 0.5).flatten(1).square().sum(dim=1)


def _check_record(out: eg.LangevinResult, b: int, sampler: Any) -> None:
    assert isinstance(out, eg.LangevinResult)
    assert out.samples.shape == (b, *SHAPE) and not out.samples.requires_grad
    assert out.finite.shape == (b,) and out.finite.dtype == torch.bool and bool(out.finite.all())
    for diagnostic in (out.drift, out.drift_to_noise, out.displacement):
        assert diagnostic.shape == (b,) and bool((diagnostic >= 0).all())
    bounds = sampler.data_range()
    if bounds is not None:
        assert float(out.samples.min()) >= bounds[0] and float(out.samples.max()) <= bounds[1]


def test_sampler_contract(make_sampler: Callable[[], Any], tiny_conv: type[nn.Module]) -> None:
    sampler, ebm = make_sampler(), _reference_nets(tiny_conv)[0]
    assert isinstance(sampler, eg.LangevinSampler)
    g = torch.Generator().manual_seed(1)
    _check_record(sampler.sample(ebm.energy, 4, generator=g), 4, sampler)
    assert all(p.grad is None for p in ebm.parameters())
    chains = sampler.chains()
    assert chains is None or (chains.dim() == 1 + len(SHAPE) and tuple(chains.shape[1:]) == SHAPE)
    before = sampler.state_dict()
    _check_record(sampler.sample_fresh(ebm.energy, 3, generator=g), 3, sampler)
    out = sampler.sample_from(ebm.energy, _images(2, 6), n_steps=0, generator=g)
    # zero steps leave the start states (MALA's logit/sigmoid round trip rounds at ~1e-7)
    torch.testing.assert_close(out.samples, _images(2, 6), rtol=0, atol=1e-6)
    _check_record(sampler.sample_from(ebm.energy, _images(2, 6), generator=g), 2, sampler)
    assert _equal(sampler.state_dict(), before), "sample_fresh/sample_from leave the state alone"


def _run(sampler: Any, seed: int, calls: int = 3) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [sampler.sample(_quadratic, 4, generator=g).samples for _ in range(calls)]


def test_sampler_is_deterministic(make_sampler: Callable[[], Any]) -> None:
    a, b = make_sampler(), make_sampler()
    first, second = _run(a, 7), _run(b, 7)
    assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    assert _equal(a.state_dict(), b.state_dict())
    assert not torch.equal(_run(make_sampler(), 8)[0], first[0]), "the seed must matter"


def test_sampler_state_round_trip(make_sampler: Callable[[], Any]) -> None:
    """A new sampler loaded with a used one's state continues exactly as the used one does."""
    used = make_sampler()
    _run(used, 3)
    state = used.state_dict()
    restored = make_sampler()
    assert not _equal(restored.state_dict(), state), "the used sampler's state must differ"
    restored.load_state_dict(state)
    assert _equal(restored.state_dict(), state)
    ahead, behind = _run(used, 11), _run(restored, 11)
    assert all(torch.equal(x, y) for x, y in zip(ahead, behind, strict=True))
    assert _equal(used.state_dict(), restored.state_dict())


def test_sampler_state_is_a_copy(make_sampler: Callable[[], Any]) -> None:
    sampler = make_sampler()
    state = sampler.state_dict()
    saved = {k: v.clone() if isinstance(v, Tensor) else v for k, v in state.items()}
    _run(sampler, 2)
    assert _equal(state, saved), "state_dict must not alias the live state"


# -- losses and one iteration over every combination -----------------------------------------

@pytest.mark.parametrize("make_loss", list(LOSSES.values()), ids=list(LOSSES))
def test_loss_contract_and_determinism(make_loss: Callable[[], Any]) -> None:
    g = torch.Generator().manual_seed(0)
    real = eg.EnergyOutput(torch.randn(6, generator=g, requires_grad=True),
                           F.normalize(torch.randn(6, 4, generator=g), dim=1))
    fake, target = torch.randn(6, generator=g), F.normalize(torch.randn(6, 4, generator=g), dim=1)
    loss_fn = make_loss()
    assert isinstance(loss_fn, eg.JointLoss)
    out, again = loss_fn(real, fake, target), loss_fn(real, fake, target)
    assert isinstance(out, eg.LossOutput) and out.loss.dim() == 0 and out.loss.requires_grad
    assert all(v.dim() == 0 and not v.requires_grad for v in out.terms.values())
    assert torch.equal(out.loss, again.loss)


@pytest.mark.parametrize("joint", [True, False])
def test_one_iteration_trains_every_implementation(nets: tuple[Any, Any],
                                                   make_sampler: Callable[[], Any],
                                                   joint: bool) -> None:
    ebm, guide = nets
    opt_e = torch.optim.Adam(ebm.parameters(), lr=1e-2)
    opt_g = torch.optim.SGD(guide.parameters(), lr=1e-2)
    before_e = [p.detach().clone() for p in ebm.parameters()]
    before_g = [p.detach().clone() for p in guide.parameters()]
    g = torch.Generator().manual_seed(1234)
    out = eg.clel_step(ebm, guide, make_sampler(), _images(8, 9), ebm_optimizer=opt_e,
                       guide_optimizer=opt_g, loss_fn=UserLoss(), generator=g,
                       joint_forward=joint)
    assert out.samples.shape == (8, *SHAPE)
    assert {"loss", "nce", "cd"} <= set(out.terms)
    assert all(torch.isfinite(v) and not v.requires_grad for v in out.terms.values())
    assert any(not torch.equal(a, b) for a, b in zip(before_e, ebm.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(before_g, guide.parameters(), strict=True))


def test_data_outside_a_users_range_is_refused(tiny_conv: type[nn.Module]) -> None:
    """The data-range check reads the protocol's ``data_range``, so a user's sampler gets it."""
    ebm, guide = _user_nets(tiny_conv)
    opt = torch.optim.SGD([*ebm.parameters(), *guide.parameters()], lr=0.0)
    with pytest.raises(ValueError, match="clamps its samples"):
        eg.clel_step(ebm, guide, UserSampler(), _images(4, 0) * 255, ebm_optimizer=opt,
                     guide_optimizer=opt)


def test_non_conforming_component_is_named() -> None:
    with pytest.raises(TypeError, match=r"guide .* ContrastiveGuide"):
        eg.check_components(UserEBM(), object(), UserSampler())


def test_a_sampler_without_the_new_methods_is_refused() -> None:
    class OnlySample:
        def sample(self, energy_fn: eg.EnergyFn, batch_size: int, *,
                   generator: torch.Generator | None = None) -> eg.LangevinResult:
            raise AssertionError("never called")

        def state_dict(self) -> dict[str, Any]:
            return {}

        def load_state_dict(self, state: Mapping[str, Any]) -> None:
            pass

    assert not isinstance(OnlySample(), eg.LangevinSampler)
    with pytest.raises(TypeError, match="lacks chains, data_range, sample_fresh, sample_from"):
        eg.check_components(UserEBM(), UserGuide(), OnlySample())
