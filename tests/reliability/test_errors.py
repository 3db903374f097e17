"""Every catalogued bad input raises the documented exception with a message naming the argument.

The table below is the source of docs/reliability/errors.md: each row is (where, condition,
exception, message excerpt, fix, call). ``test_catalog_row`` runs the call; ``test_docs_table``
checks that the page lists every row (regenerate it with
``python tests/reliability/test_errors.py > docs/reliability/errors-table.md`` and paste).
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
from torch import nn

import ebmguide as eg
from ebmguide.augment import PerSampleColorJitter, apply_augment, make_augmentation
from ebmguide.checkpoint import (
    CheckpointError,
    CheckpointManager,
    load_checkpoint,
    save_checkpoint,
)
from ebmguide.ema import ema_decay, make_ema
from ebmguide.grid import image_grid, save_panels, to_uint8
from ebmguide.losses import CLELLoss, latent_alignment, nt_xent
from ebmguide.metrics import frechet_distance
from ebmguide.optim import clel_optimizers
from ebmguide.protocols import EnergyOutput
from ebmguide.run.checkpoints import check_resume_overrides, load_state
from ebmguide.run.config import config_from_dict, config_to_dict, load_config
from ebmguide.run.folder import (
    RunFolderError,
    RunLock,
    RunLockedError,
    checked_path,
    default_run_dir,
)
from ebmguide.run.logger import RunLogger, truncate_metrics
from ebmguide.run.real_sets import plan_real_sets
from ebmguide.run.trainer import Trainer
from ebmguide.sampling import LangevinSettings, ReplayBuffer, SGLDSampler, langevin_dynamics
from ebmguide.training import check_components, clel_step

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reliability" / "errors.md"
TINY = Path(__file__).resolve().parents[1] / "tiny_run.toml"


class Row(NamedTuple):
    where: str
    condition: str
    exception: type[BaseException]
    excerpt: str
    fix: str
    call: Callable[[], Any]


def quadratic(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x.flatten(1).square().sum(dim=1)


def langevin(**kwargs: Any) -> Callable[[], Any]:
    args: dict[str, Any] = {"energy_fn": quadratic, "x": torch.rand(2, 3), "n_steps": 1,
                            "step_size": 0.1, "noise_scale": 0.01}
    args.update(kwargs)
    generator = args.pop("generator", None)
    return lambda: langevin_dynamics(args.pop("energy_fn"), args.pop("x"),
                                     LangevinSettings(**args), generator=generator)


def sampler(**kwargs: Any) -> Callable[[], Any]:
    args: dict[str, Any] = {"buffer_size": 8, "n_steps": 1, "step_size": 0.1,
                            "noise_scale": 0.01}
    args.update(kwargs)
    shape = args.pop("shape", (3, 4, 4))
    return lambda: SGLDSampler(shape, **args)


class Flat(nn.Module):
    feature_dim = 12

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(12, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


def ebm(**kwargs: Any) -> eg.SphericalEBM:
    args: dict[str, Any] = {"latent_dim": 4, "hidden_dim": 8}
    args.update(kwargs)
    return eg.SphericalEBM(args.pop("backbone", Flat()), **args)


def guide(**kwargs: Any) -> eg.SimCLRGuide:
    args: dict[str, Any] = {"latent_dim": 4, "hidden_dim": 8, "augment": "flip"}
    args.update(kwargs)
    return eg.SimCLRGuide(args.pop("encoder", Flat()), **args)


def step(x: torch.Tensor, *, model: nn.Module | None = None, buffer: int = 8) -> Callable[[], Any]:
    def run() -> Any:
        e, g = model if model is not None else ebm(), guide()
        s = SGLDSampler((3, 2, 2), buffer_size=buffer, n_steps=1, step_size=0.1,
                        noise_scale=0.01)
        opts = clel_optimizers(e, g, total_iterations=2)
        return clel_step(e, g, s, x, ebm_optimizer=opts.ebm, guide_optimizer=opts.guide,
                         generator=torch.Generator())
    return run


def checkpoint_file(content: bytes | None = None, evil: bool = False) -> Callable[[], Any]:
    def run() -> Any:
        folder = Path(tempfile.mkdtemp())
        path = folder / "ckpt.pt"
        if evil:
            torch.save({"x": _Evil()}, path)
        elif content is not None:
            path.write_bytes(content)
        return load_checkpoint(path)
    return run


class _Evil:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, ("echo pwned",)


def config(**sections: Any) -> Callable[[], Any]:
    return lambda: config_from_dict(sections)


def toml_bytes(data: bytes) -> Callable[[], Any]:
    def run() -> Any:
        path = Path(tempfile.mkdtemp()) / "bad.toml"
        path.write_bytes(data)
        return load_config(path)
    return run


def toml(text: str) -> Callable[[], Any]:
    def run() -> Any:
        path = Path(tempfile.mkdtemp()) / "bad.toml"
        path.write_text(text)
        return load_config(path)
    return run


META = torch.device("meta")
NAN, INF = float("nan"), float("inf")

CATALOG: list[Row] = [
    # -- langevin_dynamics ---------------------------------------------------------------------
    Row("langevin_dynamics", "negative n_steps", ValueError, "n_steps must be a non-negative int",
        "pass K >= 0", langevin(n_steps=-1)),
    Row("langevin_dynamics", "fractional n_steps", ValueError,
        "n_steps must be a non-negative int", "pass an int", langevin(n_steps=2.5)),
    Row("langevin_dynamics", "step_size 0", ValueError, "step_size must be > 0.0",
        "a positive η", langevin(step_size=0.0)),
    Row("langevin_dynamics", "step_size NaN", ValueError, "step_size must be a finite number",
        "a finite η", langevin(step_size=NAN)),
    Row("langevin_dynamics", "step_size inf", ValueError, "step_size must be a finite number",
        "a finite η", langevin(step_size=INF)),
    Row("langevin_dynamics", "step_size beyond the dtype's range", ValueError,
        "step_size = 1e+39 does not fit x's dtype torch.float32", "a smaller η or float64",
        langevin(step_size=1e39)),
    Row("langevin_dynamics", "step_size a string", TypeError, "step_size must be a number",
        "pass a float (config files: no quotes)", langevin(step_size="1")),
    Row("langevin_dynamics", "negative noise_scale", ValueError, "noise_scale must be >= 0.0",
        "σ >= 0", langevin(noise_scale=-1.0)),
    Row("langevin_dynamics", "grad_clip 0", ValueError,
        "grad_clip (None for no clipping) must be > 0.0", "c > 0 or None",
        langevin(grad_clip=0.0)),
    Row("langevin_dynamics", "clamp reversed", ValueError,
        "clamp (None for unbounded data) must be (low, high)", "(low, high), low < high",
        langevin(clamp=(1.0, 0.0))),
    Row("langevin_dynamics", "clamp with inf", ValueError,
        "clamp (None for unbounded data)[1] must be a finite number",
        "finite bounds, or None for unbounded data", langevin(clamp=(0.0, INF))),
    Row("langevin_dynamics", "clamp a number", ValueError, "must be (low, high) with low < high",
        "a pair", langevin(clamp=0.5)),
    Row("langevin_dynamics", "integer x", TypeError, "x must be a floating-point tensor",
        "x.float() scaled to the data range", langevin(x=torch.ones(2, 3, dtype=torch.long))),
    Row("langevin_dynamics", "x a list", TypeError, "x must be a torch.Tensor",
        "torch.as_tensor(x)", langevin(x=[[0.5, 0.5]])),
    Row("langevin_dynamics", "x without a batch dimension", ValueError,
        "x must be a batch (B, *shape) with at least 2 dimensions",
        "scalar samples as (B, 1)", langevin(x=torch.rand(3))),
    Row("langevin_dynamics", "energy of shape (B, 1)", ValueError,
        "must return one value per input", "return (B,)",
        langevin(energy_fn=lambda v: v.sum(dim=1, keepdim=True))),
    Row("langevin_dynamics", "energy_fn not callable", TypeError,
        "energy_fn must be a callable", "pass the model's energy method",
        langevin(energy_fn=3)),
    Row("langevin_dynamics", "generator on another device than x", ValueError,
        "generator is on cpu but x is on meta", "torch.Generator(device=x.device)",
        langevin(x=torch.rand(2, 3, device=META), generator=torch.Generator())),
    # -- SGLDSampler ---------------------------------------------------------------------------
    Row("SGLDSampler", "buffer_size 0", ValueError,
        "capacity (buffer_size) must be a positive int", "a positive int",
        sampler(buffer_size=0)),
    Row("SGLDSampler", "fractional buffer_size", ValueError,
        "capacity (buffer_size) must be a positive int", "an int", sampler(buffer_size=10.5)),
    Row("SGLDSampler", "reinit_prob above 1", ValueError,
        "reinit_prob (a probability) must be <= 1.0", "a probability", sampler(reinit_prob=1.5)),
    Row("SGLDSampler", "reinit_prob NaN", ValueError,
        "reinit_prob (a probability) must be a finite number", "a probability",
        sampler(reinit_prob=NAN)),
    Row("SGLDSampler", "unknown augmentation name", ValueError, "unknown augmentation 'blur'",
        "strong, weak, flip, none or a callable", sampler(augment="blur")),
    Row("SGLDSampler", "named augmentation on vectors", ValueError,
        "needs image samples (C, H, W)", "augment=None for vectors",
        sampler(shape=(2,), augment="strong")),
    Row("SGLDSampler", "augment neither name nor callable", TypeError,
        "augment must be a name, a callable or None", "a name or a callable",
        sampler(augment=3)),
    Row("SGLDSampler", "unknown device name", ValueError, "device 'gpu0' is not a torch device",
        "'cpu', 'cuda' or 'cuda:N'", sampler(device="gpu0")),
    Row("SGLDSampler", "init_range reversed (clamp None)", ValueError,
        "init_range must be (low, high) with low < high", "(low, high)",
        sampler(clamp=None, init_range=(1.0, 0.0))),
    Row("SGLDSampler", "dtype not floating", TypeError, "dtype must be a floating torch.dtype",
        "torch.float32 or torch.float64", sampler(dtype=torch.int64)),
    Row("PerSampleColorJitter", "negative strength", ValueError,
        "jitter strengths must be non-negative", "strengths >= 0, hue <= 0.5",
        lambda: PerSampleColorJitter(-0.1)),
    Row("plan_real_sets", "split too small for an FD and its floor", ValueError,
        "need at least 4. Use more data", "more real images",
        lambda: plan_real_sets("train", 10, {"train": 3, "test": 1})),
    Row("SGLDSampler.sample", "batch larger than the buffer", ValueError,
        "enlarge the buffer or lower the batch size", "buffer_size >= batch",
        lambda: sampler()().sample(quadratic, 9)),
    Row("SGLDSampler.sample", "batch_size a float", TypeError, "batch_size must be an int",
        "an int", lambda: sampler()().sample(quadratic, 2.0)),
    Row("SGLDSampler.sample", "energy_fn not callable", TypeError,
        "energy_fn must be a callable", "the model's energy", lambda: sampler()().sample(None, 2)),
    Row("SGLDSampler.sample_fresh", "batch_size 0", ValueError, "batch_size must be an int >= 1",
        "B >= 1", lambda: sampler()().sample_fresh(quadratic, 0)),
    Row("SGLDSampler.load_state_dict", "no buffer entry", ValueError,
        "sampler state has no 'buffer' entry", "pass SGLDSampler.state_dict()",
        lambda: sampler()().load_state_dict({})),
    # -- ReplayBuffer --------------------------------------------------------------------------
    Row("ReplayBuffer", "empty shape", ValueError, "shape must be a non-empty sequence",
        "e.g. (3, 32, 32)", lambda: ReplayBuffer(4, ())),
    Row("ReplayBuffer", "integer dtype", TypeError, "dtype must be a floating torch.dtype",
        "torch.float32", lambda: ReplayBuffer(4, (2,), dtype=torch.int64)),
    Row("ReplayBuffer", "low == high", ValueError, "low must be below high", "low < high",
        lambda: ReplayBuffer(4, (2,), low=1.0, high=1.0)),
    Row("ReplayBuffer.load_state_dict", "non-finite states", ValueError,
        "buffer state holds non-finite values", "load an earlier checkpoint",
        lambda: ReplayBuffer(4, (2,)).load_state_dict(
            {"states": torch.full((4, 2), NAN), "low": 0.0, "high": 1.0})),
    Row("ReplayBuffer.load_state_dict", "states of another shape", ValueError,
        "does not fit a buffer of states", "check the image size",
        lambda: ReplayBuffer(4, (2,)).load_state_dict(
            {"states": torch.zeros(4, 3), "low": 0.0, "high": 1.0})),
    Row("ReplayBuffer.load_state_dict", "missing entry", ValueError,
        "buffer state lacks ['low', 'high']", "pass ReplayBuffer.state_dict()",
        lambda: ReplayBuffer(4, (2,)).load_state_dict({"states": torch.zeros(4, 2)})),
    Row("ReplayBuffer.draw", "reinit_prob negative", ValueError,
        "reinit_prob (a probability) must be >= 0.0", "a probability",
        lambda: ReplayBuffer(4, (2,)).draw(2, reinit_prob=-0.1)),
    # -- SphericalEBM / conditional_energy -----------------------------------------------------
    Row("SphericalEBM", "backbone not a module", TypeError, "backbone must be a torch.nn.Module",
        "wrap functions in an nn.Module", lambda: ebm(backbone=lambda v: v)),
    Row("SphericalEBM", "feature size unknown", TypeError, "feature_dim was not given",
        "pass feature_dim", lambda: ebm(backbone=nn.Flatten())),
    Row("SphericalEBM", "latent_dim 0", ValueError, "latent_dim must be an int >= 1",
        "a positive int", lambda: ebm(latent_dim=0)),
    Row("SphericalEBM", "fractional hidden_dim", TypeError, "hidden_dim must be an int",
        "an int", lambda: ebm(hidden_dim=2.5)),
    Row("SphericalEBM", "init_std 0", ValueError,
        "init_std (None for torch's default init) must be > 0.0", "a positive std or None",
        lambda: ebm(init_std=0.0)),
    Row("SphericalEBM.energy", "backbone output size != feature_dim", ValueError,
        "feature_dim is 7", "pass the flattened output size",
        lambda: ebm(backbone=nn.Flatten(), feature_dim=7).energy(torch.rand(2, 12))),
    Row("conditional_energy", "latents 3-D", ValueError,
        "latents must have shape (K, d) or (d,)", "(K, d)",
        lambda: eg.conditional_energy(ebm(), torch.ones(1, 2, 4), beta=1.0)),
    Row("conditional_energy", "latents a list", TypeError, "latents must be a torch.Tensor",
        "torch.as_tensor", lambda: eg.conditional_energy(ebm(), [1.0] * 4, beta=1.0)),
    Row("conditional_energy", "negative beta", ValueError, "beta must be non-negative",
        "negative weight to negate", lambda: eg.conditional_energy(ebm(), torch.ones(4),
                                                                   beta=-1.0)),
    Row("conditional_energy", "latents not matching the projection size", ValueError,
        "latents have size 5 but the model's directions have size 4",
        "latents from the guide that trained the model",
        lambda: eg.conditional_energy(ebm(), torch.ones(5), beta=1.0)(torch.rand(2, 3, 2, 2))),
    Row("conditional_energy", "weights of another length", ValueError,
        "weights must have one entry per latent", "one weight per latent",
        lambda: eg.conditional_energy(ebm(), torch.ones(2, 4), beta=1.0, weights=[1.0])),
    # -- SimCLRGuide -----------------------------------------------------------------------------
    Row("SimCLRGuide", "encoder not a module", TypeError, "encoder must be a torch.nn.Module",
        "an nn.Module", lambda: guide(encoder=lambda v: v)),
    Row("SimCLRGuide", "temperature 0", ValueError, "temperature must be > 0.0", "τ > 0",
        lambda: guide(temperature=0.0)),
    Row("SimCLRGuide", "unknown augmentation", ValueError, "unknown augmentation 'blur'",
        "a known name or a callable", lambda: guide(augment="blur")),
    Row("SimCLRGuide", "augment neither name nor callable", TypeError,
        "augment must be a name or a callable", "a name or a callable",
        lambda: guide(augment=5)),
    Row("SimCLRGuide.contrastive_loss", "batch of 1", ValueError,
        "needs a batch (B, *shape) with B >= 2", "B >= 2",
        lambda: guide().contrastive_loss(torch.rand(1, 3, 2, 2))),
    Row("SimCLRGuide.contrastive_loss", "integer images", TypeError,
        "x must be a floating-point tensor", "x.float() / 255",
        lambda: guide().contrastive_loss(torch.ones(4, 3, 2, 2, dtype=torch.uint8))),
    Row("SimCLRGuide.contrastive_loss", "named augmentation on vectors", ValueError,
        "needs images (B, C, H, W)", "augment=a callable, or 'none'",
        lambda: guide().contrastive_loss(torch.rand(4, 12))),
    # -- losses --------------------------------------------------------------------------------
    Row("nt_xent", "views of different shapes", ValueError, "z1 and z2 must both be (B, d)",
        "same (B, d)", lambda: nt_xent(torch.rand(4, 3), torch.rand(4, 2))),
    Row("nt_xent", "negative temperature", ValueError, "temperature must be > 0.0", "τ > 0",
        lambda: nt_xent(torch.rand(4, 3), torch.rand(4, 3), temperature=-1.0)),
    Row("nt_xent", "extra negatives of another size", ValueError,
        "extra_negatives must be (M, 3)", "(M, d)",
        lambda: nt_xent(torch.rand(4, 3), torch.rand(4, 3), extra_negatives=torch.rand(2, 5))),
    Row("latent_alignment", "EBM and guide latent sizes differ", ValueError,
        "the EBM's latent size must equal the guide's", "same latent_dim",
        lambda: latent_alignment(torch.rand(4, 3), torch.rand(4, 5))),
    Row("CLELLoss", "negative alpha", ValueError, "alpha must be >= 0.0", "α >= 0",
        lambda: CLELLoss(alpha=-1.0)),
    Row("CLELLoss", "beta NaN", ValueError, "beta must be a finite number", "a finite β",
        lambda: CLELLoss(beta=NAN)),
    Row("CLELLoss.__call__", "energies of shape (B, 1)", ValueError,
        "energies must have shape (B,)", "one energy per input",
        lambda: CLELLoss()(EnergyOutput(torch.rand(4, 1), torch.rand(4, 3)), torch.rand(4),
                           torch.rand(4, 3))),
    # -- augmentations ---------------------------------------------------------------------------
    Row("make_augmentation", "unknown name", ValueError, "unknown augmentation 'blur'",
        "strong, weak, flip, none", lambda: make_augmentation("blur", 8)),
    Row("make_augmentation", "name not a string", TypeError, "name must be one of",
        "pass a callable directly instead", lambda: make_augmentation(None, 8)),  # type: ignore[arg-type]
    Row("make_augmentation", "zero size", ValueError,
        "size must be a positive int or (height, width)", "(H, W)",
        lambda: make_augmentation("weak", (0, 8))),
    Row("apply_augment", "augmentation changes the shape", ValueError,
        "changed the batch shape", "keep (B, C, H, W)",
        lambda: apply_augment(lambda v: v[:, :1], torch.rand(2, 3, 4, 4), torch.Generator())),
    # -- clel_step -------------------------------------------------------------------------------
    Row("clel_step", "real data outside the sampler's clamp range", ValueError,
        "but the sampler clamps its samples to [0, 1]", "pixels/255 or set the clamp",
        step(torch.rand(4, 3, 2, 2) * 255)),
    Row("clel_step", "real data normalized to [-1, 1]", ValueError, "x holds values in [",
        "scale into the clamp range", step(torch.rand(4, 3, 2, 2) * 2 - 1)),
    Row("clel_step", "NaN in real data", ValueError, "x holds non-finite values",
        "check the data pipeline", step(torch.full((4, 3, 2, 2), NAN))),
    Row("clel_step", "integer images", TypeError, "x must be a floating-point tensor",
        "dequantize to [0, 1]", step(torch.ones(4, 3, 2, 2, dtype=torch.uint8))),
    Row("clel_step", "batch of 1", ValueError, "B >= 2", "B >= 2", step(torch.rand(1, 3, 2, 2))),
    Row("clel_step", "x and the EBM on different devices", ValueError,
        "x is on cpu but the ebm (its parameters) is on meta", "one device for everything",
        step(torch.rand(4, 3, 2, 2), model=ebm().to(META))),
    Row("clel_step", "batch larger than the replay buffer", ValueError, "enlarge the buffer",
        "buffer_size >= batch", step(torch.rand(4, 3, 2, 2), buffer=2)),
    Row("check_components", "object not an EnergyModel", TypeError,
        "ebm (object) does not satisfy the EnergyModel protocol", "implement the protocol",
        lambda: check_components(object(), guide(), sampler()())),
    # -- EMA and optimizers ----------------------------------------------------------------------
    Row("ema_decay", "half-life 0", ValueError, "half_life_images must be > 0.0",
        "a positive half-life", lambda: ema_decay(0, 64)),
    Row("ema_decay", "batch_size 0", ValueError, "batch_size must be an int >= 1", "B >= 1",
        lambda: ema_decay(100, 0)),
    Row("make_ema", "negative copy_iterations", ValueError,
        "copy_iterations must be an int >= 0", ">= 0",
        lambda: make_ema(nn.Linear(2, 2), copy_iterations=-1)),
    Row("clel_optimizers", "total_iterations 0", ValueError,
        "total_iterations must be an int >= 1", ">= 1",
        lambda: clel_optimizers(nn.Linear(2, 2), nn.Linear(2, 2), total_iterations=0)),
    Row("clel_optimizers", "ebm_lr 0", ValueError, "ebm_lr must be > 0.0", "a positive lr",
        lambda: clel_optimizers(nn.Linear(2, 2), nn.Linear(2, 2), total_iterations=2,
                                ebm_lr=0.0)),
    Row("clel_optimizers", "guide_lr inf", ValueError, "guide_lr must be a finite number",
        "a finite lr", lambda: clel_optimizers(nn.Linear(2, 2), nn.Linear(2, 2),
                                               total_iterations=2, guide_lr=INF)),
    Row("clel_optimizers", "Adam beta >= 1", ValueError, "Invalid beta parameter at index 0",
        "betas in [0, 1)", lambda: clel_optimizers(nn.Linear(2, 2), nn.Linear(2, 2),
                                                   total_iterations=2, ebm_betas=(1.5, 0.9))),
    # -- checkpoints -----------------------------------------------------------------------------
    Row("save_checkpoint", "a torch.Generator object in the state", TypeError,
        "state['g'] is a torch.Generator", "store g.get_state()",
        lambda: save_checkpoint({"g": torch.Generator()}, Path(tempfile.mkdtemp()) / "a.pt")),
    Row("save_checkpoint", "state not a mapping", TypeError, "state must be a mapping",
        "a dict", lambda: save_checkpoint([1], Path(tempfile.mkdtemp()) / "a.pt")),  # type: ignore[arg-type]
    Row("load_checkpoint", "truncated file", CheckpointError, "is truncated or corrupt",
        "use an older checkpoint", checkpoint_file(b"PK\x03\x04" + b"\x00" * 64)),
    Row("load_checkpoint", "empty file", CheckpointError, "is empty (0 bytes)",
        "use an older checkpoint", checkpoint_file(b"")),
    Row("load_checkpoint", "not a checkpoint", CheckpointError, "is not a checkpoint written by",
        "pass an ebmguide .pt file", checkpoint_file(pickle.dumps({"a": 1}))),
    Row("load_checkpoint", "pickle that would run code", CheckpointError, "was refused",
        "never load untrusted files without weights_only", checkpoint_file(evil=True)),
    Row("load_checkpoint", "missing file", FileNotFoundError, "no checkpoint file at",
        "check the path", checkpoint_file()),
    Row("CheckpointManager", "keep 0", ValueError, "keep must be an int >= 1", "keep >= 1",
        lambda: CheckpointManager(tempfile.mkdtemp(), keep=0)),
    Row("CheckpointManager.save", "negative iteration", ValueError,
        "iteration must be an int >= 0", ">= 0",
        lambda: CheckpointManager(tempfile.mkdtemp()).save({}, -1)),
    # -- configuration files (ebmguide.run.config) -------------------------------------------------
    Row("load_config", "unknown key", ValueError, "unknown key(s) sampler.stepsize",
        "the message lists the valid keys", config(sampler={"stepsize": 1.0})),
    Row("load_config", "unknown section", ValueError, "unknown key(s) or section(s) samplr",
        "the message lists the sections", config(samplr={})),
    Row("load_config", "value of the wrong type", ValueError,
        "train.iterations must be of type int", "an int", config(train={"iterations": "10"})),
    Row("load_config", "out of range", ValueError, "sampler.step_size must be positive",
        "a positive η", config(sampler={"step_size": -1.0})),
    Row("load_config", "batch larger than the buffer", ValueError,
        "exceeds sampler.buffer_size", "enlarge the buffer",
        config(train={"batch_size": 64}, sampler={"buffer_size": 32})),
    Row("load_config", "unknown choice", ValueError, "train.on_divergence must be one of",
        "stop or rollback", config(train={"on_divergence": "ignore"})),
    Row("load_config", "seed outside [0, 2**63)", ValueError, "seed must be an int in [0, 2**63)",
        "a seed torch.Generator takes", config(seed=-1)),
    Row("load_config", "a number too large for a float", ValueError,
        "sampler.step_size must be a finite number", "a finite number",
        config(sampler={"step_size": 10**400})),
    Row("load_config", "invalid TOML", ValueError, "is not valid TOML", "fix the syntax",
        toml("[sampler\nstep_size = 1")),
]


def step_with(x: torch.Tensor, generator: Any = None) -> Callable[[], Any]:
    """clel_step with a real generator unless one is given."""
    def run() -> Any:
        e, g = ebm(), guide()
        s = SGLDSampler((3, 2, 2), buffer_size=8, n_steps=1, step_size=0.1, noise_scale=0.01)
        opts = clel_optimizers(e, g, total_iterations=2)
        return clel_step(e, g, s, x, ebm_optimizer=opts.ebm, guide_optimizer=opts.guide,
                         generator=torch.Generator() if generator is None else generator)
    return run


def buffer_load(**entries: Any) -> Callable[[], Any]:
    state: dict[str, Any] = {"states": torch.rand(4, 2), "low": 0.0, "high": 1.0}
    state.update(entries)
    return lambda: ReplayBuffer(4, (2,)).load_state_dict(state)


def saved(state: Any, name: str = "ckpt.pt") -> Path:
    path = Path(tempfile.mkdtemp()) / name
    torch.save(state, path)
    return path


def training_state(**entries: Any) -> dict[str, Any]:
    state: dict[str, Any] = {"format": "ebmguide-checkpoint", "iteration": 0, "config": {},
                             "ebm": {"w": torch.zeros(2)}, "guide": {}, "ebm_ema": {},
                             "guide_ema": {}, "optimizers": {}, "sampler": {}, "data": {},
                             "rng": {}}
    state.update(entries)
    return {k: v for k, v in state.items() if v is not None}


def deflated_checkpoint() -> Callable[[], Any]:
    def run() -> Any:
        path = saved({"w": torch.zeros(4)})
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(zipfile.ZipInfo("archive/extra"), b"\0" * (1 << 20),
                             compress_type=zipfile.ZIP_DEFLATED)
        return load_checkpoint(path)
    return run


def two_locks() -> Any:
    folder = tempfile.mkdtemp()
    first = RunLock(folder).acquire()
    try:
        RunLock(folder).acquire()
    finally:
        first.release()


def symlinked(name: str) -> Path:
    run = Path(tempfile.mkdtemp())
    (run / name).symlink_to(run / "elsewhere")
    return run


def resumed(**sets: Any) -> Callable[[], Any]:
    saved_cfg = config_to_dict(load_config(TINY))
    return lambda: check_resume_overrides(saved_cfg, load_config(TINY, [
        f"{k.replace('__', '.')}={v}" for k, v in sets.items()]))


def fd_of(fake: torch.Tensor) -> Callable[[], Any]:
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    return lambda: frechet_distance(torch.rand(8, 3, 2, 2), fake, net, features="toy")


NAN_IMAGES = torch.full((4, 3, 2, 2), NAN)

CATALOG += [
    # -- hardening, round 2: clel_step and the sampler ------------------------------------------
    Row("clel_step", "data of another size than the sampler's", ValueError,
        "x holds samples of shape (3, 4, 4) but the sampler draws (3, 2, 2)",
        "resize the data or set data.size", step_with(torch.rand(4, 3, 4, 4))),
    Row("clel_step", "float64 data", TypeError,
        "x is torch.float64 but the ebm's parameters are torch.float32", "x.to(torch.float32)",
        step_with(torch.rand(4, 3, 2, 2, dtype=torch.float64))),
    Row("clel_step", "float16 data", TypeError,
        "x is torch.float16 but the ebm's parameters are torch.float32", "x.to(torch.float32)",
        step_with(torch.rand(4, 3, 2, 2).half())),
    Row("clel_step", "generator=0", TypeError, "generator must be a torch.Generator or None",
        "torch.Generator().manual_seed(seed)", step_with(torch.rand(4, 3, 2, 2), generator=0)),
    Row("langevin_dynamics", "generator=0", TypeError,
        "generator must be a torch.Generator or None", "pass a generator, not a seed",
        langevin(generator=0)),
    Row("langevin_dynamics", "an energy without gradient", TypeError,
        "returned energies without a gradient", "differentiable ops, no .detach()",
        langevin(energy_fn=lambda v: quadratic(v).detach())),
    Row("SGLDSampler", "shape (3, 8.5, 8)", ValueError,
        "shape must be a non-empty sequence of positive ints", "integer sizes",
        sampler(shape=(3, 8.5, 8))),
    Row("SGLDSampler", "shape with a zero", ValueError,
        "shape must be a non-empty sequence of positive ints", "sizes >= 1",
        sampler(shape=(3, 0, 8))),
    Row("SGLDSampler", "generator=0", TypeError, "generator must be a torch.Generator or None",
        "torch.Generator()", sampler(generator=0)),
    Row("SGLDSampler.sample", "generator=0", TypeError,
        "generator must be a torch.Generator or None", "torch.Generator()",
        lambda: sampler()().sample(quadratic, 2, generator=0)),
    Row("SGLDSampler.load_state_dict", "states outside the clamp range", ValueError,
        "but the sampler clamps its chains to [0.0, 1.0]", "a checkpoint with the same clamp",
        lambda: sampler()().load_state_dict({"buffer": {"states": torch.full((8, 3, 4, 4), 2.0),
                                                        "low": 0.0, "high": 1.0}})),
    Row("ReplayBuffer.load_state_dict", "NaN bound", ValueError,
        "buffer state 'low' must be a finite number", "an earlier checkpoint",
        buffer_load(low=NAN)),
    Row("ReplayBuffer.load_state_dict", "low above high", ValueError,
        "buffer state bounds must satisfy low < high", "ReplayBuffer.state_dict()",
        buffer_load(low=1.0, high=0.0)),
    Row("ReplayBuffer.load_state_dict", "a bound that is a string", TypeError,
        "buffer state 'high' must be a number", "ReplayBuffer.state_dict()",
        buffer_load(high="1")),
    Row("ReplayBuffer.load_state_dict", "int64 states", TypeError,
        "buffer state holds torch.int64 states", "a float buffer's state",
        buffer_load(states=torch.zeros(4, 2, dtype=torch.int64))),
    Row("ReplayBuffer.load_state_dict", "another capacity", ValueError,
        "buffer state holds 8 chains but this buffer has 4 slots", "buffer_size as saved",
        buffer_load(states=torch.rand(8, 2))),
    Row("ReplayBuffer", "generator=0", TypeError, "generator must be a torch.Generator or None",
        "torch.Generator()", lambda: ReplayBuffer(4, (2,), generator=0)),
    Row("ReplayBuffer.draw", "generator=0", TypeError,
        "generator must be a torch.Generator or None", "torch.Generator()",
        lambda: ReplayBuffer(4, (2,)).draw(2, generator=0)),
    # -- losses and guide --------------------------------------------------------------------------
    Row("nt_xent", "a batch of 1", ValueError, "nt_xent needs B >= 2 pairs",
        "a batch of at least 2", lambda: nt_xent(torch.rand(1, 3), torch.rand(1, 3))),
    Row("SimCLRGuide.contrastive_loss", "NaN images", ValueError,
        "x holds 48 non-finite values", "check the data pipeline",
        lambda: guide().contrastive_loss(NAN_IMAGES)),
    # -- NaN never becomes a number ------------------------------------------------------------
    Row("to_uint8", "NaN images", ValueError, "are NaN or infinite",
        "an earlier checkpoint or a smaller step", lambda: to_uint8(NAN_IMAGES)),
    Row("to_uint8", "inf images", ValueError, "48 of 48 values (4 of 4 samples)",
        "an earlier checkpoint or a smaller step", lambda: to_uint8(NAN_IMAGES.abs() * INF)),
    Row("image_grid", "NaN images", ValueError, "images of a grid", "finite samples",
        lambda: image_grid(NAN_IMAGES)),
    Row("save_panels", "NaN points", ValueError, "panel 'pts' of p.png", "finite samples",
        lambda: save_panels([("pts", torch.full((3, 2), NAN))], Path(tempfile.mkdtemp()) /
                            "p.png")),
    Row("frechet_distance", "NaN samples", ValueError, "samples to score: 48 of 48 values",
        "finite samples", fd_of(NAN_IMAGES)),
    Row("frechet_distance", "one inf value", ValueError, "samples to score: 1 of 48 values",
        "finite samples", fd_of(torch.rand(4, 3, 2, 2).index_put_((torch.tensor([0]),) * 4,
                                                                 torch.tensor(INF)))),
    # -- configuration limits --------------------------------------------------------------------
    Row("load_config", "sampler.buffer_size 10^9", ValueError,
        "sampler.buffer_size = 1,000,000,000 exceeds its bound", "EBMGUIDE_LIMIT_*",
        config(sampler={"buffer_size": 10**9})),
    Row("load_config", "sampler.n_steps 10^12", ValueError,
        "sampler.n_steps = 1,000,000,000,000 exceeds its bound", "lower it or raise the bound",
        config(sampler={"n_steps": 10**12})),
    Row("load_config", "eval.fresh_steps 10^15", ValueError, "eval.fresh_steps = ",
        "lower it or raise the bound", config(eval={"fresh_steps": 10**15})),
    Row("load_config", "model.hidden_dim 10^5", ValueError, "model.hidden_dim = 100,000 exceeds",
        "lower it", config(model={"hidden_dim": 10**5})),
    Row("load_config", "data.size 10^5", ValueError, "data.size = 100,000 exceeds", "lower it",
        config(data={"size": 10**5})),
    Row("load_config", "eval.grid_size 10^6", ValueError, "eval.grid_size = 1,000,000 exceeds",
        "lower it", config(eval={"grid_size": 10**6})),
    Row("load_config", "data.n_train 10^9", ValueError, "data.n_train = 1,000,000,000 exceeds",
        "lower it", config(data={"n_train": 10**9})),
    Row("load_config", "train.iterations 10^12", ValueError, "train.iterations = ",
        "lower it", config(train={"iterations": 10**12})),
    Row("load_config", "a buffer too large for memory", ValueError, "buffer values = ",
        "a smaller buffer or images", config(sampler={"buffer_size": 900_000},
                                             data={"size": 64})),
    Row("load_config", "negative train.max_grad_norm", ValueError,
        "train.max_grad_norm must not be negative", "0 (finiteness only) or a bound",
        config(train={"max_grad_norm": -1.0})),
    Row("load_config", "train.ddp_timeout_s 0", ValueError,
        "train.ddp_timeout_s must be positive", "seconds > 0", config(train={"ddp_timeout_s": 0})),
    Row("load_config", "an empty file", ValueError, "is empty: every setting would be a default",
        "start from a recipe (--print-config)", toml("")),
    Row("load_config", "a file that is not UTF-8", ValueError, "is not UTF-8 text",
        "pass a TOML file", toml_bytes(b"name = \"\xff\xfe\"\n")),
    # -- checkpoints -----------------------------------------------------------------------------
    Row("load_checkpoint", "a stride-0 tensor", CheckpointError, "has overlapping strides",
        "a checkpoint written by ebmguide",
        lambda: load_checkpoint(saved({"b": torch.zeros(1, 1).expand(3000, 3000)}))),
    Row("load_checkpoint", "a deflated record", CheckpointError,
        "is compressed or larger than the file", "a checkpoint written by ebmguide",
        deflated_checkpoint()),
    Row("load_checkpoint", "a list instead of a dict", CheckpointError,
        "holds a list, not a checkpoint dict", "a file written by save_checkpoint",
        lambda: load_checkpoint(saved([torch.zeros(2)]))),
    Row("load_checkpoint", "a folder", CheckpointError, "is a folder, not a checkpoint file",
        "pass a .pt file", lambda: load_checkpoint(tempfile.mkdtemp())),
    Row("CheckpointManager", "a prefix with a slash", ValueError,
        "prefix must be a plain file-name prefix", "e.g. 'ckpt'",
        lambda: CheckpointManager(tempfile.mkdtemp(), prefix="../ckpt")),
    Row("load_state", "a checkpoint missing ebm_ema", ValueError,
        "lacks the entries ['ebm_ema']", "a checkpoint written by ebmguide train",
        lambda: load_state(saved(training_state(ebm_ema=None)))),
    Row("load_state", "a checkpoint holding NaN", ValueError,
        "holds non-finite values (ebm.w: 2 of 2)", "an older checkpoint of that run",
        lambda: load_state(saved(training_state(ebm={"w": torch.full((2,), NAN)})))),
    Row("load_state", "a data file that is no training checkpoint", ValueError,
        "is not an ebmguide training checkpoint", "a checkpoint of ebmguide train",
        lambda: load_state(saved({"w": torch.zeros(2)}))),
    Row("check_resume_overrides", "--resume --set model.width", ValueError,
        "model.width is fixed by the checkpoint (4); --resume cannot change it to 8",
        "a new run with --config", resumed(model__width=8)),
    Row("check_resume_overrides", "--resume --set sampler.buffer_size", ValueError,
        "sampler.buffer_size is fixed by the checkpoint (64)", "a new run with --config",
        resumed(sampler__buffer_size=128)),
    Row("check_resume_overrides", "--resume --set data.size", ValueError,
        "data.size is fixed by the checkpoint (8)", "a new run with --config",
        resumed(data__size=16)),
    # -- run folders -----------------------------------------------------------------------------
    Row("default_run_dir", "config name '../../x'", RunFolderError,
        "would place the run outside runs/", "a plain name or --out",
        lambda: default_run_dir("../../x")),
    Row("default_run_dir", "an absolute config name", RunFolderError,
        "cannot name a folder under runs/", "a plain name or --out",
        lambda: default_run_dir("/tmp/run")),
    Row("checked_path", "a symlinked entry", RunFolderError, "is a symbolic link",
        "remove the link or use another --out",
        lambda: checked_path(symlinked("config.toml"), "config.toml")),
    Row("checked_path", "a path climbing out", RunFolderError,
        "is not a path inside the run folder", "a path inside the run",
        lambda: checked_path(tempfile.mkdtemp(), "../x")),
    Row("RunLock.acquire", "a second writer", RunLockedError,
        "in use by another ebmguide process (pid ", "wait, stop it, or --out",
        two_locks),
    Row("RunLogger", "a symlinked metrics.jsonl", RunFolderError, "is a symbolic link",
        "remove the link", lambda: RunLogger(symlinked("metrics.jsonl"), tensorboard=False)),
    Row("truncate_metrics", "a symlinked metrics.jsonl", ValueError, "is a symbolic link",
        "remove the link",
        lambda: truncate_metrics(symlinked("metrics.jsonl") / "metrics.jsonl", 3)),
    Row("Trainer", "a run folder that is a file", RunFolderError,
        "the run folder", "pick a folder with --out",
        lambda: Trainer(load_config(TINY), tempfile.mkstemp()[1], progress=False)),
]


@pytest.mark.parametrize("row", CATALOG, ids=[f"{r.where}: {r.condition}" for r in CATALOG])
def test_catalog_row(row: Row) -> None:
    with pytest.raises(row.exception) as info:
        row.call()
    assert row.excerpt in str(info.value), str(info.value)
    assert type(info.value) is row.exception or row.exception is ValueError, type(info.value)


def test_user_errors_are_value_or_type_errors() -> None:
    """The CLI prints ValueError/TypeError/FileNotFoundError as a one-line error (exit 2)."""
    for row in CATALOG:
        assert issubclass(row.exception, (ValueError, TypeError, FileNotFoundError)), row
    assert len({(r.where, r.condition) for r in CATALOG}) == len(CATALOG)  # all distinct
    assert issubclass(CheckpointError, ValueError)


def markdown() -> str:
    lines = ["| where | condition | exception | message excerpt | fix |",
             "|---|---|---|---|---|"]
    for r in CATALOG:
        lines.append(f"| `{r.where}` | {r.condition} | `{r.exception.__name__}` | "
                     f"`{r.excerpt}` | {r.fix} |")
    return "\n".join(lines) + "\n"


def test_docs_table_lists_every_row() -> None:
    text = DOCS.read_text(encoding="utf-8")
    missing = [line for line in markdown().splitlines()[2:] if line not in text]
    assert not missing, "docs/reliability/errors.md is out of date:\n" + "\n".join(missing)
    rows = [line for line in text.splitlines() if re.match(r"\| `(?!ebmguide )", line)]
    assert len(rows) == len(CATALOG)


if __name__ == "__main__":
    sys.stdout.write(markdown())
