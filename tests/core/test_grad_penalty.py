"""The optional score penalty of ``clel_step`` (``grad_penalty``, ``loss.grad_penalty``)."""

from __future__ import annotations

import copy

import pytest
import torch

import ebmguide as eg
from ebmguide.run.config import load_config


def _mean_squared_score(ebm: eg.SphericalEBM, x: torch.Tensor) -> torch.Tensor:
    """mean_b ‖∇ₓE(x_b)‖² of ``ebm`` (training mode), recomputed here independently."""
    x = x.clone().requires_grad_(True)
    ebm.train()
    (score,) = torch.autograd.grad(ebm.energy(x).sum(), x)
    return score.flatten(1).square().sum(dim=1).mean()


def _step(parts: tuple[eg.SphericalEBM, eg.SimCLRGuide, eg.SGLDSampler], gamma: float,
          at: str = "samples") -> tuple[eg.StepOutput, eg.SphericalEBM, eg.SphericalEBM]:
    """One clel_step (plain SGD, fixed seeds) on copies; returns it, the EBM before and after."""
    ebm, guide, sampler = (copy.deepcopy(p) for p in parts)
    before = copy.deepcopy(ebm)
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    out = eg.clel_step(ebm, guide, sampler, x,
                       ebm_optimizer=torch.optim.SGD(ebm.parameters(), lr=0.1),
                       guide_optimizer=torch.optim.SGD(guide.parameters(), lr=0.1),
                       generator=torch.Generator().manual_seed(3), grad_penalty=gamma,
                       grad_penalty_at=at)
    return out, before, ebm


def test_no_penalty_is_the_paper_step(
        tiny_parts: tuple[eg.SphericalEBM, eg.SimCLRGuide, eg.SGLDSampler]) -> None:
    out, _, after = _step(tiny_parts, 0.0)
    assert "gp" not in out.terms
    ebm, guide, sampler = (copy.deepcopy(p) for p in tiny_parts)
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    plain = eg.clel_step(ebm, guide, sampler, x,
                         ebm_optimizer=torch.optim.SGD(ebm.parameters(), lr=0.1),
                         guide_optimizer=torch.optim.SGD(guide.parameters(), lr=0.1),
                         generator=torch.Generator().manual_seed(3))
    for a, b in zip(after.parameters(), ebm.parameters(), strict=True):
        assert torch.equal(a, b)
    assert plain.terms.keys() == out.terms.keys()


def test_the_penalty_is_the_mean_squared_score_at_the_samples(
        tiny_parts: tuple[eg.SphericalEBM, eg.SimCLRGuide, eg.SGLDSampler]) -> None:
    out, before, _ = _step(tiny_parts, 5.0)
    expected = _mean_squared_score(before, out.samples)
    torch.testing.assert_close(out.terms["gp"], expected, rtol=1e-5, atol=0)
    assert float(expected) > 0


def test_the_penalty_adds_gamma_times_its_gradient_to_the_update(
        tiny_parts: tuple[eg.SphericalEBM, eg.SimCLRGuide, eg.SGLDSampler]) -> None:
    gamma, lr = 50.0, 0.1
    plain, before, after_plain = _step(tiny_parts, 0.0)
    _, _, after_gp = _step(tiny_parts, gamma)
    samples = plain.samples.clone().requires_grad_(True)
    before.train()
    (score,) = torch.autograd.grad(before.energy(samples).sum(), samples, create_graph=True)
    penalty = score.flatten(1).square().sum(dim=1).mean()
    params = [p for p in before.parameters() if p.requires_grad]
    grads = torch.autograd.grad(penalty, params, allow_unused=True)
    largest = 0.0
    for p_gp, p_plain, g in zip(after_gp.parameters(), after_plain.parameters(), grads,
                                strict=True):
        expected = torch.zeros_like(p_gp) if g is None else -lr * gamma * g
        # float32 parameters of size ~0.1: their difference is exact to a few ulps (~1e-8)
        torch.testing.assert_close(p_gp - p_plain, expected, rtol=1e-3, atol=5e-8)
        largest = max(largest, float(expected.abs().max()))
    assert largest > 1e-5  # the penalty moved the parameters far beyond the tolerance


def test_the_penalty_at_the_data_and_at_both(
        tiny_parts: tuple[eg.SphericalEBM, eg.SimCLRGuide, eg.SGLDSampler]) -> None:
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(2))  # _step's batch
    at_data, before, after_data = _step(tiny_parts, 5.0, "data")
    on_data = _mean_squared_score(before, x)
    torch.testing.assert_close(at_data.terms["gp"], on_data, rtol=1e-5, atol=0)
    at_both, _, after_both = _step(tiny_parts, 5.0, "both")
    on_samples = _mean_squared_score(before, at_both.samples)
    torch.testing.assert_close(at_both.terms["gp"], on_data + on_samples, rtol=1e-5, atol=0)
    at_samples, _, after_samples = _step(tiny_parts, 5.0, "samples")
    torch.testing.assert_close(at_samples.terms["gp"], on_samples, rtol=1e-5, atol=0)
    assert float(on_data) > 0 and not torch.allclose(on_data, on_samples)
    # the three placements train different networks
    deltas = [sum(float((a - b).abs().sum()) for a, b in
                  zip(after_data.parameters(), other.parameters(), strict=True))
              for other in (after_both, after_samples)]
    assert min(deltas) > 0


def test_an_unknown_penalty_place_is_refused(
        tiny_parts: tuple[eg.SphericalEBM, eg.SimCLRGuide, eg.SGLDSampler]) -> None:
    with pytest.raises(ValueError, match="grad_penalty_at must be one of"):
        _step(tiny_parts, 1.0, "real")


@pytest.mark.parametrize("gamma", [-1.0, float("nan"), float("inf")])
def test_a_bad_penalty_is_refused(
        tiny_parts: tuple[eg.SphericalEBM, eg.SimCLRGuide, eg.SGLDSampler], gamma: float) -> None:
    with pytest.raises(ValueError, match="grad_penalty must be a finite number >= 0"):
        _step(tiny_parts, gamma)


def test_the_trainer_passes_loss_grad_penalty_and_logs_it(tmp_path: object) -> None:
    from pathlib import Path

    from ebmguide.run.logger import read_metrics
    from ebmguide.run.trainer import Trainer

    tiny = Path(__file__).resolve().parents[1] / "tiny_run.toml"
    cfg = load_config(str(tiny), ["loss.grad_penalty=10", "train.iterations=2",
                                  "train.log_every=1"])
    run = Path(str(tmp_path)) / "run"
    Trainer(cfg, run, progress=False).run()
    logged = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]
    assert logged and all(r["gp"] > 0 for r in logged)
    with pytest.raises(ValueError, match=r"loss\.grad_penalty must not be negative"):
        load_config(str(tiny), ["loss.grad_penalty=-1"])
    with pytest.raises(ValueError, match=r"loss\.grad_penalty_at must be one of"):
        load_config(str(tiny), ["loss.grad_penalty_at=real"])
    assert load_config(str(tiny), ["loss.grad_penalty_at=data"]).loss.grad_penalty_at == "data"
