"""A user's four components, written against the protocols only, through every library feature.

The library reads nothing from a component that its protocol does not declare, so a user's EBM,
guide, sampler and loss (tests/core/test_conformance.py, no library base class, no extra
attributes) run one CLEL iteration, evaluation (samples drawn through the sampler and scored),
conditional and compositional sampling, and OOD detection.

The Trainer with these parts: tests/run/test_user_protocols_trainer.py.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import ebmguide as eg
from ebmguide.conditional import composed_energy, embed_images, sample_conditional, sample_energy
from ebmguide.metrics import FrechetScorer
from ebmguide.ood import ood_auroc
from tests.core.test_conformance import SHAPE, UserEBM, UserGuide, UserLoss, UserSampler


def _data(n: int, seed: int) -> Tensor:
    """Images in [0, 1]: smooth blobs, so the real set is not plain noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 2, 2, generator=g)
    return nn.functional.interpolate(base, size=SHAPE[1:], mode="bilinear", align_corners=False)


Parts = tuple[UserEBM, UserGuide, UserSampler]


@pytest.fixture(scope="module")
def trained() -> Parts:
    """A few CLEL iterations of the user's parts (no test below changes their state)."""
    torch.manual_seed(0)
    ebm, guide, sampler = UserEBM(), UserGuide(), UserSampler(slots=32)
    eg.check_components(ebm, guide, sampler, UserLoss())
    opt_e = torch.optim.Adam(ebm.parameters(), lr=1e-3)
    opt_g = torch.optim.SGD(guide.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    data = _data(64, 2)
    for i in range(4):
        out = eg.clel_step(ebm, guide, sampler, data[i * 16:(i + 1) * 16], ebm_optimizer=opt_e,
                           guide_optimizer=opt_g, loss_fn=UserLoss(), generator=g)
        assert torch.isfinite(out.terms["loss"]) and bool(out.sampling.finite.all())
    return ebm, guide, sampler


def test_evaluation_through_a_users_sampler(trained: Parts) -> None:
    ebm, _, sampler = trained
    before = sampler.state_dict()
    fresh = sample_energy(ebm.energy, 40, sampler=sampler, batch_size=16,
                          generator=torch.Generator().manual_seed(3))
    assert fresh.shape == (40, *SHAPE)
    chains = sampler.chains()
    assert chains is not None
    scorer = FrechetScorer(_data(80, 4), nn.Flatten(), features="pixels")
    scores = [scorer(fresh), scorer(chains)]
    assert all(s >= 0 and torch.isfinite(torch.tensor(s)) for s in scores)
    assert torch.equal(sampler.state_dict()["store"], before["store"]), "fresh chains only"


def test_conditional_and_compositional_sampling_with_a_users_parts(trained: Parts) -> None:
    ebm, guide, sampler = trained
    latents = embed_images(guide, _data(4, 5))
    assert latents.shape == (4, 6)
    fresh = sample_conditional(ebm, latents[:2], beta=5.0, n=6, sampler=sampler,
                                  generator=torch.Generator().manual_seed(6))
    chains = sampler.chains()
    assert chains is not None
    from_buffer = sample_conditional(ebm, latents[0], beta=5.0, n=6, sampler=sampler,
                                     init=chains, generator=torch.Generator().manual_seed(7))
    energy = composed_energy(ebm, beta=5.0, and_latents=latents[:1], or_latents=latents[1:3])
    composed = sample_energy(energy, 5, sampler=sampler, n_steps=3,
                             generator=torch.Generator().manual_seed(8))
    for x, n in ((fresh, 6), (from_buffer, 6), (composed, 5)):
        assert x.shape == (n, *SHAPE) and bool(torch.isfinite(x).all())
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0  # the sampler's data_range


def test_ood_detection_with_a_users_parts(trained: Parts) -> None:
    ebm, guide, _ = trained
    noise = torch.rand((32, *SHAPE), generator=torch.Generator().manual_seed(9))
    results = ood_auroc(ebm, guide, _data(32, 10), {"noise": noise}, beta=1.0)
    assert set(results) == {"noise"}
    assert 0.0 <= results["noise"].joint <= 1.0 and 0.0 <= results["noise"].energy <= 1.0
