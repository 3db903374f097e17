"""Speed options keep results within stated tolerances (docs/performance.md).

No timings here: the benchmark suite measures speed; these tests pin down that each option computes
the same thing as the default, to the tolerance the docs state:

- channels_last chains: the same chain up to float rounding (atol 1e-5 on [0, 1] images);
- channels_last networks in ``clel_step``: the same losses and updates (rtol 1e-4);
- one joint forward for real and generated images: the same as two forwards (rtol 1e-5) for
  batch-independent networks;
- bf16 autocast of the energy gradient: input gradients within 10 % (relative norm of the
  difference; cosine similarity > 0.99) of fp32's, the state, update and noise kept in fp32, a
  short chain within 1e-2 of the fp32 chain;
- sampling computes no weight gradients (checked op by op) and freezes the energy's parameters
  only while it runs.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import ebmguide as eg
from ebmguide.nets import SmallCNN

CL = torch.channels_last


def conv_ebm(seed: int = 0, width: int = 8) -> eg.SphericalEBM:
    torch.manual_seed(seed)
    return eg.SphericalEBM(SmallCNN(3, width), latent_dim=width, hidden_dim=2 * width).eval()


def images(b: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


SGLD: dict[str, Any] = {"n_steps": 4, "step_size": 50.0, "noise_scale": 0.01, "grad_clip": 0.01}


def test_channels_last_chain_matches_default() -> None:
    ebm, x = conv_ebm(), images()
    ref = eg.langevin_dynamics(ebm.energy, x, eg.LangevinSettings(**SGLD),
                               generator=torch.Generator().manual_seed(3))
    out = eg.langevin_dynamics(ebm.energy, x, eg.LangevinSettings(memory_format=CL, **SGLD),
                               generator=torch.Generator().manual_seed(3))
    assert out.samples.is_contiguous(memory_format=CL)
    assert x.is_contiguous(), "the input must be left as it was"
    torch.testing.assert_close(out.samples, ref.samples, rtol=0, atol=1e-5)
    assert torch.equal(out.finite, ref.finite)


def test_channels_last_sampler_matches_default() -> None:
    ebm = conv_ebm()

    def make(**kw: Any) -> eg.SGLDSampler:
        return eg.SGLDSampler((3, 8, 8), buffer_size=20, augment="flip",
                              generator=torch.Generator().manual_seed(0), **SGLD | kw)

    a, b = make(), make(memory_format=CL)
    for _ in range(2):
        sa = a.sample(ebm.energy, 5, generator=torch.Generator().manual_seed(4)).samples
        sb = b.sample(ebm.energy, 5, generator=torch.Generator().manual_seed(4)).samples
        torch.testing.assert_close(sb, sa, rtol=0, atol=1e-5)
    torch.testing.assert_close(b.buffer.states, a.buffer.states, rtol=0, atol=1e-5)
    assert b.buffer.states.is_contiguous()


def test_channels_last_needs_image_shaped_samples() -> None:
    with pytest.raises(ValueError, match="channels_last"):
        eg.SGLDSampler((2,), memory_format=CL)
    with pytest.raises(ValueError, match="memory_format"):
        eg.langevin_dynamics(lambda v: v.square().sum(1), torch.rand(4, 2),
                             eg.LangevinSettings(n_steps=1, step_size=0.1, noise_scale=0.0,
                                                 memory_format=CL))


def run_clel(ebm: nn.Module, guide: nn.Module, n: int = 2,
             **kwargs: Any) -> tuple[list[torch.Tensor], list[dict[str, float]]]:
    ebm, guide = copy.deepcopy(ebm), copy.deepcopy(guide)
    sampler = eg.SGLDSampler((3, 8, 8), buffer_size=32, n_steps=3, step_size=1.0,
                             noise_scale=0.01, augment="flip",
                             generator=torch.Generator().manual_seed(0))
    opts = eg.clel_optimizers(ebm, guide, total_iterations=10, warmup_iterations=2)
    g = torch.Generator().manual_seed(5)
    logs = []
    for i in range(n):
        out = eg.clel_step(ebm, guide, sampler, images(8, seed=10 + i),  # type: ignore[arg-type]
                           ebm_optimizer=opts.ebm, guide_optimizer=opts.guide, generator=g,
                           **kwargs)
        logs.append({k: float(v) for k, v in out.terms.items()})
    params = [p.detach().clone() for m in (ebm, guide) for p in m.parameters()]
    return params, logs


def guide_net(seed: int = 0) -> eg.SimCLRGuide:
    torch.manual_seed(seed)
    enc = SmallCNN(3, 8, spectral_norm=False, norm="batch", activation=nn.ReLU())
    return eg.SimCLRGuide(enc, latent_dim=8, hidden_dim=16, augment="flip")


def test_channels_last_networks_in_clel_step() -> None:
    ebm, guide = conv_ebm().train(), guide_net()
    ref_params, ref_logs = run_clel(ebm, guide)
    params, logs = run_clel(copy.deepcopy(ebm).to(memory_format=CL),
                            copy.deepcopy(guide).to(memory_format=CL))
    for a, b in zip(logs, ref_logs, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), k
    for p, q in zip(params, ref_params, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


def test_joint_forward_matches_two_forwards() -> None:
    # Without spectral norm the EBM is batch-independent, so one forward over both batches is the
    # same computation as two (with spectral norm in training mode, the joint forward runs one
    # power iteration instead of two).
    torch.manual_seed(0)
    ebm = eg.SphericalEBM(SmallCNN(3, 8, spectral_norm=False), latent_dim=8, hidden_dim=16)
    guide = guide_net()
    joint_params, joint_logs = run_clel(ebm, guide, joint_forward=True)
    sep_params, sep_logs = run_clel(ebm, guide, joint_forward=False)
    for a, b in zip(joint_logs, sep_logs, strict=True):
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), k
    for p, q in zip(joint_params, sep_params, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


def test_bf16_autocast_gradient_and_chain_within_tolerance() -> None:
    ebm, x = conv_ebm(width=32), images(8)  # a width-8 net is too small to be typical
    grads = []
    for dtype in (None, torch.bfloat16):
        seen: list[torch.Tensor] = []
        out = eg.langevin_dynamics(ebm.energy, x, eg.LangevinSettings(autocast_dtype=dtype, **SGLD),
                                   generator=torch.Generator().manual_seed(2),
                                   callback=lambda s, seen=seen: seen.append(s.grad))
        assert out.samples.dtype == torch.float32
        grads.append((seen[0], out.samples))
    (g32, s32), (g16, s16) = grads
    assert g16.dtype == torch.float32, "the update is applied in fp32"
    cos = F.cosine_similarity(g16.flatten(1), g32.flatten(1), dim=1)
    assert float(cos.min()) > 0.99
    assert float((g16 - g32).norm() / g32.norm()) < 0.1
    torch.testing.assert_close(s16, s32, rtol=0, atol=1e-2)


class OpLog(TorchDispatchMode):
    """Records the aten ops that run (and convolution_backward's output masks)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []
        self.conv_masks: list[list[bool]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = func.overloadpacket.__name__
        self.ops.append(name)
        if name == "convolution_backward":
            self.conv_masks.append(list(args[-1]))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("frozen", [True, False])
def test_no_weight_gradient_kernels_during_sampling(frozen: bool) -> None:
    torch.manual_seed(0)
    ebm = eg.SphericalEBM(SmallCNN(3, 8, spectral_norm=False), latent_dim=8,
                          hidden_dim=16).eval()
    n_linear = sum(isinstance(m, nn.Linear) for m in ebm.head.modules())  # E uses u(x) only
    n_conv = sum(isinstance(m, nn.Conv2d) for m in ebm.modules())
    # A bound method lets the sampler freeze the parameters; a plain function does not.
    energy = ebm.energy if frozen else (lambda v: ebm.energy(v))
    log = OpLog()
    with log:
        eg.langevin_dynamics(energy, images(4),
                             eg.LangevinSettings(n_steps=1, step_size=1.0, noise_scale=0.0))
    # Every convolution's backward asks for the input gradient only (no weight, no bias) ...
    assert len(log.conv_masks) == n_conv
    assert all(mask == [True, False, False] for mask in log.conv_masks), log.conv_masks
    # ... and each Linear layer's backward is one matrix product (its input gradient).
    assert log.ops.count("mm") == n_linear
    assert all(p.grad is None for p in ebm.parameters())


def test_parameters_frozen_only_while_sampling() -> None:
    ebm = conv_ebm()
    fixed = next(ebm.parameters())
    fixed.requires_grad_(False)  # a user's own frozen parameter stays frozen
    during: list[bool] = []
    eg.langevin_dynamics(ebm.energy, images(2),
                         eg.LangevinSettings(n_steps=2, step_size=1.0, noise_scale=0.0),
                         callback=lambda s: during.extend(p.requires_grad
                                                          for p in ebm.parameters()))
    assert during and not any(during)
    flags = [p.requires_grad for p in ebm.parameters()]
    assert flags[0] is False and all(flags[1:])


def test_parameters_restored_when_the_energy_raises() -> None:
    ebm = conv_ebm()

    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = ebm

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        eg.langevin_dynamics(Broken(), images(2),
                             eg.LangevinSettings(n_steps=1, step_size=1.0, noise_scale=0.0))
    assert all(p.requires_grad for p in ebm.parameters())


def test_infinite_gradient_flagged_even_when_clipped_and_clamped() -> None:
    def energy(v: torch.Tensor) -> torch.Tensor:  # finite energy, infinite slope at v[:, 0] = 0
        return v.sum(1) + v[:, 0].sqrt()

    x = 0.5 + 0.5 * torch.rand(3, 4, generator=torch.Generator().manual_seed(0))
    x[1, 0] = 0.0
    out = eg.langevin_dynamics(energy, x,
                               eg.LangevinSettings(n_steps=2, step_size=0.1, noise_scale=0.0,
                                                   grad_clip=0.5, clamp=(0.0, 1.0)))
    assert bool(torch.isfinite(out.samples).all()), "clip and clamp hide the inf in the state"
    assert out.finite.tolist() == [True, False, True]
