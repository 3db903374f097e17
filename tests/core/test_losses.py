"""NT-Xent against a naive reference, closed forms, CLELLoss terms, gradient isolation."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

import ebmguide as eg
from ebmguide.protocols import EnergyOutput


def naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float,
                  extra: torch.Tensor | None = None) -> torch.Tensor:
    a = [F.normalize(v, dim=0) for v in torch.cat([z1, z2])]
    keys = [] if extra is None else [F.normalize(k, dim=0) for k in extra]
    n, b = len(a), z1.shape[0]
    total = torch.zeros((), dtype=z1.dtype)
    for m in range(n):
        pos = (m + b) % n
        denom = sum(torch.exp(a[m] @ a[k] / tau) for k in range(n) if k != m)
        denom = denom + sum((torch.exp(a[m] @ k / tau) for k in keys), torch.zeros(()))
        total = total - torch.log(torch.exp(a[m] @ a[pos] / tau) / denom)
    return total / n


@settings(max_examples=15, deadline=None)
@given(b=st.integers(2, 6), d=st.integers(2, 5), m=st.integers(0, 4),
       tau=st.floats(0.1, 1.0), seed=st.integers(0, 1000))
def test_nt_xent_matches_double_loop(b: int, d: int, m: int, tau: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(b, d, generator=g, dtype=torch.float64), torch.randn(
        b, d, generator=g, dtype=torch.float64)
    extra = torch.randn(m, d, generator=g, dtype=torch.float64) if m else None
    got = eg.nt_xent(z1, z2, temperature=tau, extra_negatives=extra)
    torch.testing.assert_close(got, naive_nt_xent(z1, z2, tau, extra))


@pytest.mark.parametrize("b", [2, 5, 16])
def test_closed_form_for_identical_embeddings(b: int) -> None:
    z = torch.ones(b, 4)
    assert math.isclose(float(eg.nt_xent(z, z, temperature=0.3)), math.log(2 * b - 1),
                        rel_tol=1e-5)


def test_symmetric_under_swapping_views() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2, k = (torch.randn(7, 3, generator=g) for _ in range(3))
    torch.testing.assert_close(eg.nt_xent(z1, z2, extra_negatives=k),
                               eg.nt_xent(z2, z1, extra_negatives=k))


def test_extra_negatives_raise_the_loss() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    assert eg.nt_xent(z1, z2, extra_negatives=torch.randn(8, 4, generator=g)) > eg.nt_xent(z1, z2)


def test_nt_xent_bad_inputs() -> None:
    with pytest.raises(ValueError, match="temperature"):
        eg.nt_xent(torch.ones(2, 3), torch.ones(2, 3), temperature=0.0)
    with pytest.raises(ValueError, match="z1 and z2"):
        eg.nt_xent(torch.ones(2, 3), torch.ones(3, 3))
    with pytest.raises(ValueError, match="extra_negatives"):
        eg.nt_xent(torch.ones(2, 3), torch.ones(2, 3), extra_negatives=torch.ones(2, 4))


def test_clel_loss_terms_match_direct_formulas() -> None:
    g = torch.Generator().manual_seed(0)
    e_real, e_fake = torch.rand(6, generator=g), torch.rand(6, generator=g) + 1
    direction = F.normalize(torch.randn(6, 4, generator=g), dim=1)
    target = F.normalize(torch.randn(6, 4, generator=g), dim=1)
    loss = eg.CLELLoss(alpha=0.5, beta=0.1)
    out = loss(EnergyOutput(e_real, direction), e_fake, target)
    cd = e_real.mean() - e_fake.mean()
    reg = (e_real**2).mean() + (e_fake**2).mean()
    align = (direction * target).sum(1).mean()
    torch.testing.assert_close(out.terms["cd"], cd)
    torch.testing.assert_close(out.terms["reg"], reg)
    torch.testing.assert_close(out.terms["align"], align)
    torch.testing.assert_close(out.loss, cd + 0.5 * reg - 0.1 * align)
    assert all(not t.requires_grad for t in out.terms.values())


def test_alignment_target_is_stop_gradient() -> None:
    d = torch.randn(4, 3, requires_grad=True)
    z = torch.randn(4, 3, requires_grad=True)
    eg.latent_alignment(d, z).backward()
    assert d.grad is not None and z.grad is None


def test_gradient_isolation_in_a_full_step(tiny_parts, generator) -> None:  # type: ignore[no-untyped-def]
    """The encoder gets no gradient from L_EBM; the EBM none from the NT-Xent term."""
    ebm, guide, sampler = tiny_parts
    x = torch.rand(8, 3, 8, 8, generator=generator)
    samples = sampler.sample(ebm.energy, 8, generator=generator).samples
    real = ebm.energy_and_direction(x)
    fake = ebm.energy_and_direction(samples)
    g_out = guide.contrastive_loss(x, extra_negatives=fake.direction.detach(), generator=generator)
    ebm_loss = eg.CLELLoss()(real, fake.energy, g_out.target).loss
    ebm_loss.backward(retain_graph=True)
    assert all(p.grad is None for p in guide.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in ebm.parameters())
    ebm.zero_grad(set_to_none=True)
    g_out.loss.backward()
    assert all(p.grad is None for p in ebm.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in guide.parameters())
