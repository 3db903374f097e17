"""float64 end to end: sampler and buffer, a whole CLEL iteration, conditional latents, OOD."""

from __future__ import annotations

import torch

import ebmguide as eg
from ebmguide.conditional import embed_images, latent_from_examples, or_energy
from ebmguide.energy import conditional_energy
from ebmguide.ood import ood_scores


def _nets(tiny_conv: type) -> tuple[eg.SphericalEBM, eg.SimCLRGuide]:
    torch.manual_seed(0)
    ebm = eg.SphericalEBM(tiny_conv(), latent_dim=6, hidden_dim=16).double()
    guide = eg.SimCLRGuide(tiny_conv(), latent_dim=6, hidden_dim=16, augment="strong").double()
    return ebm, guide


def _parts(tiny_conv: type) -> tuple[eg.SphericalEBM, eg.SimCLRGuide, eg.SGLDSampler]:
    ebm, guide = _nets(tiny_conv)
    sampler = eg.SGLDSampler((3, 8, 8), buffer_size=32, n_steps=3, step_size=1.0,
                             noise_scale=0.01, augment="strong", dtype=torch.float64,
                             generator=torch.Generator().manual_seed(0))
    return ebm, guide, sampler


def test_sampler_and_buffer_run_in_float64(tiny_conv: type) -> None:
    ebm, _, sampler = _parts(tiny_conv)
    assert sampler.buffer.states.dtype == torch.float64
    g = torch.Generator().manual_seed(1)
    x = sampler.sample(ebm.energy, 8, generator=g).samples
    assert x.dtype == torch.float64 and sampler.buffer.states.dtype == torch.float64
    assert sampler.sample_fresh(ebm.energy, 4, generator=g).samples.dtype == torch.float64
    default = eg.SGLDSampler((3, 8, 8), buffer_size=4, generator=torch.Generator())
    assert default.buffer.states.dtype == torch.float32  # the default is unchanged


def test_a_whole_clel_iteration_in_float64(tiny_conv: type) -> None:
    ebm, guide, sampler = _parts(tiny_conv)
    optimizers = eg.clel_optimizers(ebm, guide, total_iterations=10, warmup_iterations=2)
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = eg.clel_step(ebm, guide, sampler, x, ebm_optimizer=optimizers.ebm,
                       guide_optimizer=optimizers.guide, generator=torch.Generator().manual_seed(3))
    assert out.samples.dtype == torch.float64
    assert all(t.dtype == torch.float64 for t in out.terms.values())
    assert all(p.dtype == torch.float64 for p in [*ebm.parameters(), *guide.parameters()])


def test_conditional_latents_keep_float64(tiny_conv: type) -> None:
    ebm, guide = _nets(tiny_conv)
    images = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(4),
                        dtype=torch.float64)
    z = embed_images(guide, images)
    assert z.dtype == torch.float64
    assert latent_from_examples(guide, images).dtype == torch.float64
    # the conditional energy equals its float64 formula to double precision (a cast of the
    # latents to float32 would leave errors of about 1e-8)
    latents = torch.randn(2, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    latents = latents + 1e-9  # digits below float32's resolution
    x = images[:3]
    with torch.no_grad():
        got = conditional_energy(ebm, latents, beta=3.0)(x)
        out = ebm.energy_and_direction(x)
        target = torch.nn.functional.normalize(latents, dim=1).sum(0)
        want = out.energy - 3.0 * out.direction @ target
        assert got.dtype == torch.float64
        assert torch.allclose(got, want, rtol=0, atol=1e-13)
        assert or_energy(ebm, latents, beta=3.0)(x).dtype == torch.float64


def test_ood_scores_on_a_float64_model(tiny_conv: type) -> None:
    ebm, guide = _nets(tiny_conv)
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(6))  # float32 inputs
    scores = ood_scores(ebm, guide, x, batch_size=4)
    assert scores.energy.dtype == torch.float64 and scores.cosine.dtype == torch.float64
    with torch.no_grad():
        want = ebm.energy(x.double())
    assert torch.allclose(scores.energy, want, rtol=0, atol=1e-15)
