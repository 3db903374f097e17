"""The schema of a run configuration: one frozen dataclass per TOML section, with range checks.

:class:`RunConfig` holds the top-level settings (``name``, ``seed``, ``device``) and one section
each: :class:`DataConfig`, :class:`ModelConfig`, :class:`GuideConfig`, :class:`SamplerConfig`,
:class:`LossConfig`, :class:`OptimConfig`, :class:`EMAConfig`, :class:`TrainConfig` and
:class:`EvalConfig`. Constructing a :class:`RunConfig` checks the ranges (finite numbers,
positive sizes, probabilities in [0, 1], ordered pairs) and raises ``ValueError`` naming the key.

Every class is importable from :mod:`ebmguide.run.config`, which reads and writes these
configurations
as TOML and type-checks every value.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from ebmguide.limits import check_config_bounds

__all__ = [
    "BACKBONES",
    "DATA_NAMES",
    "ENCODERS",
    "DataConfig",
    "EMAConfig",
    "EvalConfig",
    "GuideConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "SamplerConfig",
    "TrainConfig",
    "is_import_path",
]


DATA_NAMES = ("shapes", "toy2d", "cifar10", "image_folder")
"""The built-in ``data.name`` values (any other value is an import path)."""
POOLS = ("avg", "flatten")
"""The ``model.pool`` values, those of :class:`ebmguide.nets.SmallCNN` (kept here: no torch)."""
BACKBONES = ("small_cnn", "mlp", "clel_resnet_small", "clel_resnet_base", "clel_resnet_large")
"""The built-in ``model.backbone`` networks."""
ENCODERS = ("small_cnn", "mlp", "cifar_resnet18")
"""The built-in ``guide.encoder`` networks."""


def is_import_path(name: str) -> bool:
    """Whether a ``data.name``/``model.backbone``/``guide.encoder`` is ``"package.module:Name"``."""
    return ":" in name


def _check_name(key: str, value: str, names: tuple[str, ...]) -> None:
    if is_import_path(value):
        module, _, attr = value.partition(":")
        if not module or not attr or not all(p.isidentifier() for p in (*module.split("."),
                                                                         *attr.split("."))):
            raise ValueError(f"{key} = {value!r} is not an import path; write "
                             f"\"package.module:Name\" (e.g. \"mypkg.nets:MyNet\").")
    elif value not in names:
        raise ValueError(f"{key} must be one of {list(names)} or an import path "
                         f"\"package.module:Name\", got {value!r}.")


@dataclass(frozen=True)
class DataConfig:
    """Training data: ``name`` is "shapes" (embedded), "toy2d", "cifar10" or "image_folder".

    Or the import path ``"package.module:function"`` of a function called with the
    ``[data.args]`` table that returns the training samples ``(N, *shape)`` (uint8 images or
    floats, images in [0, 1]) or a pair ``(train, test)``.
    """

    name: str = "shapes"
    args: dict[str, Any] = field(default_factory=dict)  # import path: keyword arguments
    path: str = ""  # cifar10 / image_folder: directory or .tar.gz (see ebmguide.data.load_cifar10)
    size: int = 16  # shapes: canvas side
    # cifar10: average-pool the images by this factor before training (2: 32×32 → 16×16), e.g. to
    # train at the demo's scale on a CPU
    downsample: int = 1
    # std of Gaussian noise added to every training batch (then clamped to sampler.clamp): the
    # sampler's noise_scale makes real data carry the noise of the chains (0: none)
    noise: float = 0.0
    n_train: int = 20_000  # shapes / toy2d: number of generated training samples
    toy: str = "eight_gaussians"  # toy2d: one of ebmguide.data.TOY2D_NAMES
    # image_folder (see ebmguide.run.data_sources): images held out for evaluation when the folder
    # has no test split (0: 10 %, at most 10,000); folders decoding to more than max_memory_mb are
    # streamed from disk by num_workers DataLoader workers (0 MB: always streamed)
    held_out: int = 0
    max_memory_mb: int = 2048
    num_workers: int = 2

    def __post_init__(self) -> None:
        _check_name("data.name", self.name, DATA_NAMES)


@dataclass(frozen=True)
class ModelConfig:
    """The EBM: a backbone inside :class:`~ebmguide.energy.SphericalEBM`.

    ``backbone`` is a built-in name or the import path ``"package.module:Name"`` of an
    ``nn.Module`` class (or function) called with the ``[model.backbone_args]`` table; it maps
    ``(B, *shape)`` to features with an integer ``feature_dim`` attribute.
    """

    backbone: str = "small_cnn"
    backbone_args: dict[str, Any] = field(default_factory=dict)  # import path: keyword arguments
    width: int = 32  # small_cnn: first conv's channels; mlp: hidden width
    latent_dim: int = 128  # d, shared with the guide
    hidden_dim: int = 2048  # width of the energy and projection heads
    spectral_norm: bool = True
    head_init_std: float | None = None  # N(0, std) init of both heads (paper: 0.01); None: torch's
    pool: str = "avg"  # small_cnn: "avg" (global average pooling) or "flatten" (the last map)

    def __post_init__(self) -> None:
        _check_name("model.backbone", self.backbone, BACKBONES)
        _check_name("model.pool", self.pool, POOLS)
        if self.pool != "avg" and self.backbone != "small_cnn":
            raise ValueError(f"model.pool = {self.pool!r} applies to the small_cnn backbone only; "
                             f"with model.backbone = {self.backbone!r} set model.pool = \"avg\" "
                             "(the demo config sets \"flatten\").")


@dataclass(frozen=True)
class GuideConfig:
    """The contrastive guide: an encoder inside :class:`~ebmguide.guide.SimCLRGuide`.

    ``encoder`` is a built-in name or an import path, as ``model.backbone``, called with the
    ``[guide.encoder_args]`` table.
    """

    encoder: str = "small_cnn"
    encoder_args: dict[str, Any] = field(default_factory=dict)  # import path: keyword arguments
    width: int = 32
    hidden_dim: int = 2048  # SimCLR projection head's hidden width
    augment: Literal["strong", "weak", "flip", "none", "jitter"] = "strong"
    jitter: float = 0.1  # std of the Gaussian "jitter" augmentation (vector data)
    temperature: float = 0.2
    extra_negatives: bool = True

    def __post_init__(self) -> None:
        _check_name("guide.encoder", self.encoder, ENCODERS)


@dataclass(frozen=True)
class SamplerConfig:
    """SGLD with a replay buffer (:class:`~ebmguide.sampling.SGLDSampler`)."""

    buffer_size: int = 10_000
    n_steps: int = 60
    step_size: float = 100.0
    noise_scale: float = 1e-3
    grad_clip: float | None = None
    clamp: tuple[float, float] | None = (0.0, 1.0)
    init_range: tuple[float, float] = (0.0, 1.0)
    reinit_prob: float = 1e-3
    augment: Literal["strong", "weak", "flip", "none"] = "strong"
    # SGLD gradients under autocast: "bf16" everywhere, "auto" bf16 only where the device runs it
    # natively (CUDA; CPUs with AVX512-BF16 or AMX; emulated bf16 is several times slower)
    autocast: Literal["none", "bf16", "auto"] = "none"
    # layout of the chains while they run: "channels_last" speeds up conv energies on many CPUs
    # (docs/performance.md); image data only
    memory_format: Literal["preserve", "channels_last"] = "preserve"


@dataclass(frozen=True)
class LossConfig:
    """:class:`~ebmguide.losses.CLELLoss` weights."""

    alpha: float = 1.0
    beta: float = 0.01
    # γ of the extra EBM term γ · mean ‖∇ₓE(x′)‖² at the generated samples (0: the paper's loss)
    grad_penalty: float = 0.0
    # where: "samples" (x′), "data" (x, as R1 in GANs) or "both"
    grad_penalty_at: Literal["samples", "data", "both"] = "samples"


@dataclass(frozen=True)
class OptimConfig:
    """:func:`~ebmguide.optim.clel_optimizers` settings."""

    ebm_lr: float = 1e-4
    ebm_betas: tuple[float, float] = (0.0, 0.999)
    warmup_iterations: int = 2_000
    guide_lr: float = 0.03
    guide_momentum: float = 0.9
    guide_weight_decay: float = 5e-4
    # "constant" after the warm-up (the paper); "cosine" decays the EBM's rate to 0 over the run,
    # which steadies short runs such as the demo
    ebm_schedule: Literal["constant", "cosine"] = "constant"


@dataclass(frozen=True)
class EMAConfig:
    """EMA of both networks (:func:`~ebmguide.ema.make_ema`)."""

    half_life_images: float = 20_000.0
    copy_iterations: int = 312


@dataclass(frozen=True)
class TrainConfig:
    """The training loop, logging, checkpoints and the divergence guard."""

    iterations: int = 100_000
    batch_size: int = 64
    log_every: int = 50
    sample_every: int = 5_000  # sample grid PNGs
    checkpoint_every: int = 5_000
    keep_checkpoints: int = 2
    num_threads: int = 0  # torch.set_num_threads on CPU; 0 leaves torch's default
    joint_forward: bool = True
    on_divergence: Literal["stop", "rollback"] = "stop"
    max_rollbacks: int = 3
    rollback_lr_factor: float = 0.5
    # the divergence guard stops (or rolls back) an iteration whose gradient norm, per optimizer,
    # exceeds this: far above healthy CLEL norms (1e-3 to 1e2), far below where Adam's squared
    # gradients overflow float32 (|g| ~ 1.8e19). 0 checks finiteness only.
    max_grad_norm: float = 1e8
    # torchrun: how long a collective waits for a silent rank before the run fails (seconds)
    ddp_timeout_s: float = 1800.0
    tensorboard: bool = True  # also log to TensorBoard when torch.utils.tensorboard imports


@dataclass(frozen=True)
class EvalConfig:
    """In-training evaluation (logged to metrics.jsonl) and the final one."""

    every: int = 0  # 0: only at the end (and at the start when > 0)
    n_samples: int = 500
    # "auto": shapes classifier (shapes), coordinates (vectors), Inception-v3 when
    # inception_weights is set, else the in-domain network (ebmguide.in_domain); docs/cli.md
    feature_net: Literal["auto", "shapes_classifier", "in_domain", "inception", "none"] = "auto"
    inception_weights: str = ""  # local weights-inception-2015-12-05-6726825d.pth: standard FID
    fresh_steps: int = 0  # SGLD steps of the fresh chains in grids; 0: sampler.n_steps
    grid_size: int = 64


@dataclass(frozen=True)
class RunConfig:
    """A whole run: every section of the TOML file."""

    name: str = "run"
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    guide: GuideConfig = field(default_factory=GuideConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        _check_ranges(self)


_POSITIVE = {"data.size", "data.downsample", "data.n_train", "model.width", "model.latent_dim",
             "model.hidden_dim", "guide.width", "guide.hidden_dim", "guide.temperature",
             "sampler.buffer_size",
             "sampler.step_size", "optim.ebm_lr", "optim.guide_lr", "ema.half_life_images",
             "train.iterations", "train.batch_size", "train.log_every", "train.sample_every",
             "train.checkpoint_every", "train.keep_checkpoints", "train.rollback_lr_factor",
             "train.ddp_timeout_s",
             "eval.n_samples", "eval.grid_size"}
_PROBABILITY = {"sampler.reinit_prob"}


def _check_ranges(cfg: RunConfig) -> None:
    """Raise ``ValueError`` naming the first setting of ``cfg`` out of its range."""
    if not 0 <= cfg.seed < 2**63:  # what torch.Generator.manual_seed takes without wrapping
        raise ValueError(f"seed must be an int in [0, 2**63), got {cfg.seed}.")
    flat = {f"{section}.{k}": v for section in _SECTIONS
            for k, v in dataclasses.asdict(getattr(cfg, section)).items()}
    for key, value in flat.items():
        if isinstance(value, dict):
            continue  # keyword arguments of an import path: the callee checks them
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number, got {value!r}.")
        if key in _POSITIVE and not value > 0:
            raise ValueError(f"{key} must be positive, got {value!r}.")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ValueError(f"{key} must not be negative, got {value!r}.")
        if key in _PROBABILITY and not value <= 1:
            raise ValueError(f"{key} is a probability in [0, 1], got {value!r}.")
    if cfg.model.head_init_std is not None and not cfg.model.head_init_std > 0:
        raise ValueError("model.head_init_std must be positive, or \"none\" for torch's init.")
    if cfg.sampler.grad_clip is not None and not cfg.sampler.grad_clip > 0:
        raise ValueError("sampler.grad_clip must be positive, or \"none\" for no clipping.")
    for key, pair in (("sampler.clamp", cfg.sampler.clamp),
                      ("sampler.init_range", cfg.sampler.init_range)):
        if pair is not None and not pair[0] < pair[1]:
            raise ValueError(f"{key} must be [low, high] with low < high, got {list(pair)}.")
    if cfg.data.downsample != 1 and cfg.data.name != "cifar10":
        raise ValueError(f"data.downsample applies to data.name = \"cifar10\" only, got "
                         f"data.name = {cfg.data.name!r}; set data.size for the shapes, or "
                         f"downsample the images of a folder before training.")
    if cfg.sampler.memory_format == "channels_last" and cfg.data.name == "toy2d":
        raise ValueError("sampler.memory_format = \"channels_last\" needs image data; toy2d "
                         "samples are points: set sampler.memory_format = \"preserve\".")
    if cfg.train.batch_size > cfg.sampler.buffer_size:
        raise ValueError(f"train.batch_size ({cfg.train.batch_size}) exceeds sampler.buffer_size "
                         f"({cfg.sampler.buffer_size}); enlarge the buffer.")
    if not cfg.train.rollback_lr_factor <= 1:
        raise ValueError("train.rollback_lr_factor must lie in (0, 1].")
    flat["data.name"] = cfg.data.name
    check_config_bounds(flat)  # sizes and step counts, before anything is allocated


_SECTIONS: dict[str, type[Any]] = {
    "data": DataConfig, "model": ModelConfig, "guide": GuideConfig, "sampler": SamplerConfig,
    "loss": LossConfig, "optim": OptimConfig, "ema": EMAConfig, "train": TrainConfig,
    "eval": EvalConfig,
}
