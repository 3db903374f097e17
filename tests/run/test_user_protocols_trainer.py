"""The Trainer runs, checkpoints, resumes and evaluates a user's own protocol implementations.

The EBM, guide and sampler here (from tests/core/test_conformance.py) are written against the
protocols only: no library base class, no attribute the protocols do not declare. With them the
Trainer must do everything it does with the reference parts: train, write checkpoints, resume
bit-identically, and report how far the sampler's chains move.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ebmguide.run.config import load_config
from ebmguide.run.trainer import Trainer
from ebmguide.run.training_data import TrainingData
from ebmguide.sampling.diagnostics import SamplerWarning
from tests.core.test_conformance import SHAPE, UserEBM, UserGuide, UserSampler

TINY = Path(__file__).resolve().parents[1] / "tiny_run.toml"
# UserEBM's directions and UserGuide's embeddings have 6 dimensions; 8x8 images as SHAPE.
OVERRIDES = ["model.latent_dim=6", "data.size=8", "sampler.buffer_size=16", "eval.every=3",
             'eval.feature_net="none"']


def _parts(cfg_seed: int = 0) -> dict[str, object]:
    torch.manual_seed(cfg_seed)
    g = torch.Generator().manual_seed(11)
    train = torch.rand((48, *SHAPE), generator=g)
    test = torch.rand((16, *SHAPE), generator=g)
    cfg = load_config(TINY, OVERRIDES)
    return {"ebm": UserEBM(), "guide": UserGuide(), "sampler": UserSampler(slots=16),
            "data": TrainingData.from_tensors(train, cfg, test=test)}


@pytest.mark.filterwarnings("ignore::ebmguide.sampling.diagnostics.SamplerWarning")
def test_trainer_with_user_protocol_implementations(tmp_path: Path) -> None:
    cfg = load_config(TINY, OVERRIDES)
    straight = Trainer(cfg, tmp_path / "a", progress=False, **_parts())
    # the user's sampler gets the movement diagnostics too: its small steps barely move
    with pytest.warns(SamplerWarning, match="barely move"):
        straight.run()
    assert straight.iteration == cfg.train.iterations
    assert all(math.isfinite(v) for v in straight.last.values()), straight.last
    assert list((tmp_path / "a" / "checkpoints").glob("*.pt"))
    sampler = straight.parts.sampler
    assert isinstance(sampler, UserSampler) and sampler.calls == cfg.train.iterations

    half = Trainer(cfg, tmp_path / "b", progress=False, **_parts())
    half.run(until=3)
    resumed = Trainer(cfg, tmp_path / "b", progress=False, resume=tmp_path / "b", **_parts())
    assert resumed.iteration == 3
    resumed.run()
    for key, value in straight.parts.ebm.state_dict().items():
        assert torch.equal(value, resumed.parts.ebm.state_dict()[key]), key
    chains_a, chains_b = straight.parts.sampler.chains(), resumed.parts.sampler.chains()
    assert chains_a is not None and chains_b is not None
    assert torch.equal(chains_a, chains_b)
