"""A few iterations of the paper's CLEL-Base recipe on the real CIFAR-10 copy, on CPU (slow).

The data: $EBMGUIDE_CIFAR10, or else ../shared/data/cifar10-jpeg.tar.gz next to the repository
(the development copy; users do not have it). Skipped when neither exists. Prints the measured
seconds per iteration (run with -s to see it).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from ebmguide.run.config import load_config
from ebmguide.run.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]


def cifar10_path() -> Path | None:
    env = os.environ.get("EBMGUIDE_CIFAR10")
    path = Path(env) if env else ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
    return path if path.exists() else None


@pytest.mark.slow
@pytest.mark.skipif(cifar10_path() is None,
                    reason="no CIFAR-10 copy: set EBMGUIDE_CIFAR10 to its folder or archive")
def test_clel_base_recipe_runs_on_real_cifar10(tmp_path: Path) -> None:
    iterations = 4
    cfg = load_config("cifar10_clel_base", [
        f"data.path={json.dumps(str(cifar10_path()))}", "device=cpu",
        f"train.iterations={iterations}", "train.log_every=1", "train.tensorboard=false",
        "eval.grid_size=16", "eval.fresh_steps=2", "eval.feature_net=none",
    ])
    assert (cfg.train.batch_size, cfg.sampler.n_steps, cfg.model.backbone) == (
        64, 60, "clel_resnet_base")
    starts: list[float] = []
    trainer = Trainer(cfg, tmp_path / "run", progress=False,
                      hooks=[lambda trainer, it: starts.append(time.perf_counter())])
    assert trainer.data.train.shape == (50_000, 3, 32, 32)
    trainer.run()
    seconds = (starts[-1] - starts[1]) / (len(starts) - 2)  # the first iteration warms up
    print(f"\nCLEL-Base, batch 64, K = 60, CPU ({torch.get_num_threads()} threads): "
          f"{seconds:.1f} s per iteration")
    terms = trainer.last
    assert trainer.iteration == iterations
    assert all(torch.isfinite(torch.tensor(v)) for v in terms.values())
    assert (tmp_path / "run" / "checkpoints" / f"ckpt-{iterations:08d}.pt").is_file()
