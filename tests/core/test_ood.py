"""The OOD score and AUROC."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

import ebmguide as eg
from ebmguide import metrics, ood


def _pairwise_auroc(pos: list[float], neg: list[float]) -> float:
    """Mann–Whitney reference: P(pos > neg) + ½ P(pos = neg)."""
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_score_formula_is_exact(tiny_parts) -> None:  # type: ignore[no-untyped-def]
    ebm, guide, _ = tiny_parts
    ebm.train(), guide.train()
    x = torch.rand(7, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    scores = ood.ood_scores(ebm, guide, x, batch_size=3)
    assert ebm.training and guide.training  # modes restored
    ebm.eval(), guide.eval()
    with torch.no_grad():
        out = ebm.energy_and_direction(x)
        cos = (guide.embed(x) * out.direction).sum(1)
    torch.testing.assert_close(scores.energy, out.energy)
    torch.testing.assert_close(scores.cosine, cos)
    torch.testing.assert_close(scores.joint(0.1), -(out.energy - 0.1 * cos))
    torch.testing.assert_close(scores.joint(), scores.joint(ood.DEFAULT_OOD_BETA))
    torch.testing.assert_close(scores.energy_only(), -out.energy)
    assert ood.DEFAULT_OOD_BETA == 0.1


def test_tensor_loader_and_tuples_agree(tiny_parts) -> None:  # type: ignore[no-untyped-def]
    ebm, guide, _ = tiny_parts
    x = torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.zeros(10)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, labels), batch_size=4)
    whole = ood.ood_scores(ebm, guide, x, batch_size=10)
    for data in (loader, [x[:6], x[6:]], [(x[:5], labels[:5]), (x[5:], labels[5:])]):
        got = ood.ood_scores(ebm, guide, data)
        torch.testing.assert_close(got.energy, whole.energy)
        torch.testing.assert_close(got.cosine, whole.cosine)


@pytest.mark.parametrize(
    ("pos", "neg", "expected"),
    [([3.0, 4.0, 5.0], [1.0, 2.0], 1.0), ([1.0, 2.0], [3.0, 4.0, 5.0], 0.0),
     ([1.0, 1.0], [1.0, 1.0, 1.0], 0.5)],
)
def test_auroc_extremes(pos: list[float], neg: list[float], expected: float) -> None:
    assert metrics.auroc(torch.tensor(pos), torch.tensor(neg)) == pytest.approx(expected)


def test_auroc_matches_the_pairwise_reference() -> None:
    g = torch.Generator().manual_seed(0)
    pos = (torch.randn(40, generator=g) + 0.7).round(decimals=1)  # rounding makes ties
    neg = torch.randn(30, generator=g).round(decimals=1)
    assert metrics.auroc(pos, neg) == pytest.approx(_pairwise_auroc(pos.tolist(), neg.tolist()),
                                                abs=1e-6)


def test_auroc_rejects_nan_and_empty() -> None:
    with pytest.raises(ValueError, match="not finite"):
        metrics.auroc(torch.tensor([1.0, float("nan")]), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="non-empty"):
        metrics.auroc(torch.tensor([]), torch.tensor([0.0]))


def test_ood_auroc_separates_a_constructed_case() -> None:
    class Radial(torch.nn.Module):
        """E = ‖x‖², direction and embedding both normalize(x): cos = 1 for every input."""

        def energy(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1).square().sum(1)

        def energy_and_direction(self, x: torch.Tensor) -> eg.EnergyOutput:
            return eg.EnergyOutput(self.energy(x), F.normalize(x.flatten(1), dim=1))

        def embed(self, x: torch.Tensor) -> torch.Tensor:
            return F.normalize(x.flatten(1), dim=1)

    model = Radial()
    g = torch.Generator().manual_seed(0)
    inside = 0.1 * torch.randn(50, 4, generator=g)
    results = ood.ood_auroc(model, model, inside, {"far": 3.0 + torch.randn(50, 4, generator=g),
                                                   "same": 0.1 * torch.randn(50, 4, generator=g)})
    assert results["far"].joint == 1.0 and results["far"].energy == 1.0
    assert 0.3 < results["same"].joint < 0.7
    assert results["same"].joint == pytest.approx(results["same"].energy)


def test_bad_data_is_reported(tiny_parts) -> None:  # type: ignore[no-untyped-def]
    ebm, guide, _ = tiny_parts
    with pytest.raises(ValueError, match="no batches"):
        ood.ood_scores(ebm, guide, [])
    with pytest.raises(TypeError, match="tensor"):
        ood.ood_scores(ebm, guide, [["not a tensor"]])
