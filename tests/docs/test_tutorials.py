"""The tutorial scripts under examples/tutorials/ run with --smoke, and what they teach is true.

Every script is run as a user would run it (a subprocess with ``--smoke``). Beyond that: the MALA
sampler of the sampler tutorial is a correct Metropolis-adjusted Langevin sampler that satisfies the
``LangevinSampler`` protocol and trains with ``clel_step``, and the hand-written iteration of the
training-loop tutorial is exactly ``clel_step``.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import Tensor, nn

import ebmguide as eg

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "examples" / "tutorials"
SCRIPTS = sorted(path for path in TUTORIALS.glob("*.py") if not path.name.startswith("_"))


def load(name: str) -> ModuleType:
    """Import a tutorial script as a module (it runs nothing at import)."""
    spec = importlib.util.spec_from_file_location(f"tutorial_{name}", TUTORIALS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_tutorials_are_there() -> None:
    names = {path.stem for path in SCRIPTS}
    assert {"own_training_loop", "custom_encoder", "mala_sampler", "conditional_sampling",
            "ood_detection"} <= names


# ood_detection runs with --smoke in a fresh folder, and more, in the train-once test below.
@pytest.mark.parametrize("script", [p for p in SCRIPTS if p.stem != "ood_detection"],
                         ids=lambda path: path.stem)
def test_tutorial_runs_with_smoke(script: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(script), "--smoke"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=1200, check=False)
    assert result.returncode == 0, f"{script.name} --smoke failed:\n{result.stdout}{result.stderr}"


# The MALA sampler of examples/tutorials/mala_sampler.py.

def quadratic(x: Tensor) -> Tensor:
    return 0.5 * x.square().sum(dim=1)


def test_mala_satisfies_the_protocol() -> None:
    tutorial = load("mala_sampler")
    sampler = tutorial.MALASampler((3, 8, 8), buffer_size=16)
    assert isinstance(sampler, eg.LangevinSampler)
    eg.check_components(eg.SphericalEBM(nn.Flatten(), feature_dim=192, latent_dim=4,
                                        hidden_dim=8),
                        eg.SimCLRGuide(nn.Flatten(), feature_dim=192, latent_dim=4, hidden_dim=8),
                        sampler)


def test_mala_targets_the_gaussian_where_uncorrected_langevin_is_biased() -> None:
    tutorial = load("mala_sampler")
    check = tutorial.gaussian_check(step_size=0.5, n_chains=4000, n_steps=50, seed=0)
    assert 0.0 < check["mala_acceptance"] < 1.0
    assert abs(check["mala_variance"] - 1.0) < 0.08  # exact: N(0, I) is stationary
    assert check["ula_variance"] > 1.2  # theory 2 / (2 - 0.5) = 1.33: the test can see bias


def test_mala_acceptance_falls_with_the_step_size() -> None:
    tutorial = load("mala_sampler")
    x0 = torch.randn(2000, 8, generator=torch.Generator().manual_seed(0))
    rates = [float(tutorial.mala(quadratic, x0, n_steps=10, step_size=step,
                                 generator=torch.Generator().manual_seed(1)).acceptance.mean())
             for step in (0.01, 0.5, 2.5)]
    assert 1.0 > rates[0] > rates[1] > rates[2] > 0.0


def test_mala_on_a_box_stays_inside_and_is_uniform_for_a_flat_energy() -> None:
    tutorial = load("mala_sampler")
    sampler = tutorial.MALASampler((2,), n_steps=30, step_size=1.0, bounds=(0.0, 1.0),
                                   buffer_size=None, target_acceptance=None)
    samples = sampler.sample(lambda x: torch.zeros(x.shape[0]), 4000,
                             generator=torch.Generator().manual_seed(0)).samples
    assert samples.min() > 0.0 and samples.max() < 1.0
    assert 0.0 < sampler.last_acceptance < 1.0
    assert abs(float(samples.mean()) - 0.5) < 0.02
    assert abs(float(samples.var()) - 1 / 12) < 0.01
    x = torch.rand(5, 2)
    torch.testing.assert_close(tutorial.to_box(tutorial.from_box(x, 0.0, 1.0), 0.0, 1.0), x)


def test_mala_trains_with_clel_step_and_round_trips_its_state(
    tiny_conv: type[nn.Module], generator: torch.Generator
) -> None:
    tutorial = load("mala_sampler")
    torch.manual_seed(0)
    ebm = eg.SphericalEBM(tiny_conv(), latent_dim=6, hidden_dim=16)
    guide = eg.SimCLRGuide(tiny_conv(), latent_dim=6, hidden_dim=16, augment="flip")
    sampler = tutorial.MALASampler((3, 8, 8), n_steps=3, step_size=0.1, buffer_size=32,
                                   generator=torch.Generator().manual_seed(0))
    before = sampler.buffer.states.clone()
    opts = eg.clel_optimizers(ebm, guide, total_iterations=2, warmup_iterations=1)
    for _ in range(2):
        out = eg.clel_step(ebm, guide, sampler, torch.rand(8, 3, 8, 8, generator=generator),
                           ebm_optimizer=opts.ebm, guide_optimizer=opts.guide,
                           generator=generator)
    assert all(torch.isfinite(v) for v in out.terms.values())
    assert out.samples.shape == (8, 3, 8, 8) and not out.samples.requires_grad
    assert 0.0 <= sampler.last_acceptance <= 1.0 and math.isfinite(sampler.step_size)
    assert not torch.equal(before, sampler.buffer.states)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in ebm.parameters())
    restored = tutorial.MALASampler((3, 8, 8), buffer_size=32)
    restored.load_state_dict(sampler.state_dict())
    assert restored.step_size == sampler.step_size
    torch.testing.assert_close(restored.buffer.states, sampler.buffer.states)


# The hand-written iteration of examples/tutorials/own_training_loop.py.

def test_manual_step_is_clel_step(
        tiny_parts: tuple[eg.SphericalEBM, eg.SimCLRGuide, eg.SGLDSampler]) -> None:
    tutorial = load("own_training_loop")
    ebm, guide, sampler = tiny_parts
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    results = []
    for manual in (False, True):
        e, g, s = copy.deepcopy(ebm), copy.deepcopy(guide), copy.deepcopy(sampler)
        opt_e, opt_g = torch.optim.Adam(e.parameters(), lr=1e-2), torch.optim.SGD(
            g.parameters(), lr=1e-2)
        kwargs = {"ebm_optimizer": opt_e, "guide_optimizer": opt_g, "loss_fn": eg.CLELLoss(),
                  "generator": torch.Generator().manual_seed(3)}
        terms = (tutorial.manual_step(e, g, s, x, **kwargs) if manual
                 else eg.clel_step(e, g, s, x, **kwargs).terms)
        results.append((terms, list(e.parameters()), list(g.parameters()), s.buffer.states))
    (terms_a, e_a, g_a, buf_a), (terms_b, e_b, g_b, buf_b) = results
    assert terms_a.keys() == terms_b.keys()
    for key in terms_a:
        torch.testing.assert_close(terms_a[key], terms_b[key], rtol=0, atol=0)
    for a, b in zip([*e_a, *g_a, buf_a], [*e_b, *g_b, buf_b], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# The model that the conditional-sampling and OOD tutorials share (tutorials/_shapes_model.py).

def run_tutorial(name: str, cwd: Path, *extra: str) -> str:
    result = subprocess.run([sys.executable, str(TUTORIALS / f"{name}.py"), "--smoke", *extra],
                            cwd=cwd, capture_output=True, text=True, timeout=1200, check=False)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def test_the_shapes_tutorials_train_once_then_reuse_the_run(tmp_path: Path) -> None:
    first = run_tutorial("ood_detection", tmp_path)
    assert "training the demo recipe in runs/tutorial-smoke" in first
    second = run_tutorial("ood_detection", tmp_path)
    assert "training the demo recipe" not in second
    assert "ckpt-00000003.pt (iteration 3)" in second
    auroc = [line for line in first.splitlines() if line.startswith("noise")]
    assert auroc and auroc == [line for line in second.splitlines() if line.startswith("noise")]


def test_the_shapes_tutorials_finish_an_interrupted_run(tmp_path: Path) -> None:
    from ebmguide.cli import main

    smoke = load("_shapes_model").SMOKE
    run = tmp_path / "partial"
    args = ["train", "--config", "demo", "--out", str(run), "--until", "1", "--no-progress"]
    assert main(args + [a for s in smoke for a in ("--set", s)]) == 0
    out = run_tutorial("ood_detection", tmp_path, "--run", str(run))
    assert "training the demo recipe" not in out
    assert "ckpt-00000003.pt (iteration 3)" in out
