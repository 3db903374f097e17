"""The global-batch NT-Xent and a whole clel_step under DDP equal one process on the whole batch.

Two gloo ranks on CPU (forked, with torchrun's environment variables) run ``ddp_worker.main
gather``; the references here run the same functions on the concatenated batch in this process.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import ebmguide as eg
from ebmguide import distributed as D

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("ddp_worker", HERE / "ddp_worker.py")
assert _spec is not None and _spec.loader is not None
worker = importlib.util.module_from_spec(_spec)
sys.modules["ddp_worker"] = worker
_spec.loader.exec_module(worker)
_lspec = importlib.util.spec_from_file_location("ddp_launch", HERE / "launch.py")
assert _lspec is not None and _lspec.loader is not None
launch = importlib.util.module_from_spec(_lspec)
_lspec.loader.exec_module(launch)

WORLD = 2
TOL = {"rtol": 1e-5, "atol": 1e-6}


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("gather")
    launch.run_forked(worker.main, ["gather", str(out)], world=WORLD)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_all_gather_with_grad_values_and_gradients(ranks: list[dict[str, Any]]) -> None:
    rows = torch.arange(2 * WORLD).float()
    for r, res in enumerate(ranks):
        expected = torch.cat([torch.full((2, 3), float(k + 1)) for k in range(WORLD)])
        torch.testing.assert_close(res["gathered"], expected)
        # Every rank's loss puts weight `row index` on each gathered row; the owner gets the sum.
        torch.testing.assert_close(res["gather_grad"],
                                   WORLD * rows[2 * r:2 * r + 2, None].expand(2, 3))


@pytest.mark.parametrize("name", ["plain", "extra"])
def test_gathered_nt_xent_matches_one_process(ranks: list[dict[str, Any]], name: str) -> None:
    data = worker.global_inputs(WORLD)
    model = worker.projector()
    neg = data["neg"] if name == "extra" else None
    loss = worker.pair_loss(model, data["x1"], data["x2"], neg, gathered=False)
    loss.backward()
    reference = worker.grads(model)
    mean_loss = torch.stack([res[f"{name}_loss"] for res in ranks]).mean()
    torch.testing.assert_close(mean_loss, loss.detach(), **TOL)
    for res in ranks:  # after DDP's averaging: the single-process gradient, not 1/W of it
        for got, want in zip(res[f"{name}_grads"], reference, strict=True):
            torch.testing.assert_close(got, want, **TOL)


def test_clel_step_under_ddp_matches_one_process(ranks: list[dict[str, Any]]) -> None:
    data = worker.global_inputs(WORLD)
    ebm, guide = worker.clel_parts()
    terms = worker.clel_one_step(ebm, guide, data["images"], data["starts"])
    for key in ("loss", "nce", "cd", "reg", "align"):
        torch.testing.assert_close(ranks[0]["terms"][key], terms[key], **TOL)
    for res in ranks:
        for got, want in zip(res["ebm"], ebm.parameters(), strict=True):
            torch.testing.assert_close(got, want.detach(), **TOL)
        for got, want in zip(res["guide"], guide.parameters(), strict=True):
            torch.testing.assert_close(got, want.detach(), **TOL)


def test_single_process_fallbacks() -> None:
    ctx = D.init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.enabled) == (0, 1, True, False)
    z1, z2 = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(D.gathered_nt_xent(z1, z2), eg.nt_xent(z1, z2))
    assert D.all_gather_with_grad(z1) is z1
    assert D.gather_objects({"a": 1}) == [{"a": 1}]
    assert D.broadcast_object(5) == 5 and D.any_rank(True) and not D.any_rank(False)
    ebm, guide = worker.clel_parts()
    assert D.wrap_ddp(ebm, guide, ctx) == (ebm, guide)


def test_rank_generators_differ_and_rank0_keeps_the_seed() -> None:
    draws = [torch.rand(3, generator=D.rank_generator(7, r)) for r in range(3)]
    torch.testing.assert_close(draws[0], torch.rand(3, generator=torch.Generator().manual_seed(7)))
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])
    assert not torch.equal(torch.rand(3, generator=D.rank_generator(8, 0)), draws[1])


def test_world_size_mismatch_message() -> None:
    ctx = D.DistributedContext(rank=0, world_size=3)
    with pytest.raises(ValueError, match=r"written by a run of 2 process.*this run has 3"):
        D.check_world_size(2, ctx)
    D.check_world_size(3, ctx)


def test_rank_config_splits_the_buffer_and_counts_ema_in_global_images() -> None:
    from ebmguide.ema import ema_decay
    from ebmguide.run.config import load_config
    from ebmguide.run.rank_hooks import rank_config

    cfg = load_config("demo")
    assert rank_config(cfg, D.DistributedContext()) is cfg
    four = rank_config(cfg, D.DistributedContext(rank=1, world_size=4))
    assert four.sampler.buffer_size == cfg.sampler.buffer_size // 4
    b, h = cfg.train.batch_size, cfg.ema.half_life_images
    assert ema_decay(four.ema.half_life_images, b) == pytest.approx(ema_decay(h, 4 * b))
    with pytest.raises(ValueError, match=r"raise sampler.buffer_size to at least"):
        rank_config(cfg, D.DistributedContext(world_size=cfg.sampler.buffer_size))
