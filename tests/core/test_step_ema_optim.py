"""The one-iteration helper, EMA and optimizers."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import ebmguide as eg


def run_steps(parts: tuple[eg.SphericalEBM, eg.SimCLRGuide, eg.SGLDSampler], seed: int,
              n: int = 3, **kwargs: object) -> tuple[list[torch.Tensor], list[dict[str, float]]]:
    ebm, guide, sampler = (copy.deepcopy(p) for p in parts)
    opts = eg.clel_optimizers(ebm, guide, total_iterations=10, warmup_iterations=2)
    g = torch.Generator().manual_seed(seed)
    data = torch.rand(n, 8, 3, 8, 8, generator=torch.Generator().manual_seed(99))
    logs = []
    for i in range(n):
        out = eg.clel_step(ebm, guide, sampler, data[i], ebm_optimizer=opts.ebm,
                           guide_optimizer=opts.guide, generator=g, **kwargs)  # type: ignore[arg-type]
        opts.ebm_scheduler.step()
        opts.guide_scheduler.step()
        logs.append({k: float(v) for k, v in out.terms.items()})
    return [p.detach().clone() for p in ebm.parameters()], logs


def test_same_seed_bit_identical_different_seed_differs(tiny_parts) -> None:  # type: ignore[no-untyped-def]
    a, la = run_steps(tiny_parts, 1)
    b, lb = run_steps(tiny_parts, 1)
    c, _ = run_steps(tiny_parts, 2)
    assert la == lb and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert any(not torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_joint_forward_equals_separate_for_batch_independent_nets(tiny_parts) -> None:  # type: ignore[no-untyped-def]
    a, la = run_steps(tiny_parts, 3, joint_forward=True)
    b, lb = run_steps(tiny_parts, 3, joint_forward=False)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)
    for s, t in zip(la, lb, strict=True):
        assert s.keys() == t.keys()
        for k in s:
            assert math.isclose(s[k], t[k], rel_tol=1e-4, abs_tol=1e-6), k


def test_extra_negatives_switch_changes_the_guide_loss(tiny_parts) -> None:  # type: ignore[no-untyped-def]
    _, on = run_steps(tiny_parts, 4, n=1, extra_negatives=True)
    _, off = run_steps(tiny_parts, 4, n=1, extra_negatives=False)
    assert on[0]["nce"] > off[0]["nce"]
    assert on[0]["cd"] == off[0]["cd"]


def test_sampling_restores_training_mode(tiny_parts, generator) -> None:  # type: ignore[no-untyped-def]
    ebm, guide, sampler = tiny_parts
    seen: list[bool] = []
    original = ebm.energy

    def spy(x: torch.Tensor) -> torch.Tensor:
        seen.append(ebm.training)
        return original(x)

    ebm.energy = spy  # type: ignore[method-assign]
    opt_e = torch.optim.SGD(ebm.parameters(), lr=0.0)
    opt_g = torch.optim.SGD(guide.parameters(), lr=0.0)
    eg.clel_step(ebm, guide, sampler, torch.rand(4, 3, 8, 8), ebm_optimizer=opt_e,
                 guide_optimizer=opt_g, generator=generator)
    assert seen and not any(seen)
    assert ebm.training


def test_step_rejects_a_single_example(tiny_parts) -> None:  # type: ignore[no-untyped-def]
    ebm, guide, sampler = tiny_parts
    opt = torch.optim.SGD(ebm.parameters(), lr=0.0)
    with pytest.raises(ValueError, match="B >= 2"):
        eg.clel_step(ebm, guide, sampler, torch.rand(1, 3, 8, 8), ebm_optimizer=opt,
                     guide_optimizer=opt)


def test_ema_decay_matches_paper() -> None:
    assert math.isclose(eg.ema_decay(20_000, 64), 0.5 ** (64 / 20_000))
    assert abs(eg.ema_decay(20_000, 64) - 0.99778) < 1e-5
    with pytest.raises(ValueError, match="half_life_images"):
        eg.ema_decay(0, 64)


def test_ema_copies_then_averages_and_copies_buffers() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = eg.make_ema(model, half_life_images=64, batch_size=64, copy_iterations=2)
    for i in range(2):
        with torch.no_grad():
            model[0].weight.fill_(float(i + 1))
        model(torch.randn(4, 2))  # moves the BatchNorm statistics
        eg.update_ema(ema, model)
        assert torch.equal(ema.module[0].weight, model[0].weight)
        assert torch.equal(ema.module[1].running_mean, model[1].running_mean)
    with torch.no_grad():
        model[0].weight.fill_(4.0)
    eg.update_ema(ema, model)
    torch.testing.assert_close(ema.module[0].weight, torch.full((2, 2), 0.5 * 2.0 + 0.5 * 4.0))


def test_ema_of_spectral_norm_model_keeps_unit_vectors() -> None:
    model = nn.utils.parametrizations.spectral_norm(nn.Linear(4, 4))
    ema = eg.make_ema(model, copy_iterations=0)
    for _ in range(3):
        model(torch.randn(2, 4))
        eg.update_ema(ema, model)
    u = ema.module.parametrizations.weight[0]._u
    torch.testing.assert_close(u.norm(), torch.tensor(1.0))


def test_optimizers_follow_the_paper() -> None:
    ebm, guide = nn.Linear(2, 2), nn.Linear(2, 2)
    opts = eg.clel_optimizers(ebm, guide, total_iterations=100, warmup_iterations=10)
    assert isinstance(opts.ebm, torch.optim.Adam) and opts.ebm.defaults["betas"] == (0.0, 0.999)
    assert isinstance(opts.guide, torch.optim.SGD)
    assert opts.guide.defaults["weight_decay"] == 5e-4 and opts.guide.defaults["momentum"] == 0.9
    lrs_e, lrs_g = [], []
    for _ in range(100):
        lrs_e.append(opts.ebm.param_groups[0]["lr"])
        lrs_g.append(opts.guide.param_groups[0]["lr"])
        opts.ebm.step()
        opts.guide.step()
        opts.ebm_scheduler.step()
        opts.guide_scheduler.step()
    assert math.isclose(lrs_e[0], 1e-5) and math.isclose(lrs_e[9], 1e-4)
    assert math.isclose(lrs_e[50], 1e-4)
    assert math.isclose(lrs_g[0], 0.03) and math.isclose(lrs_g[50], 0.015, rel_tol=1e-6)
    assert lrs_g[99] < 1e-4
