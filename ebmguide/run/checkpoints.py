"""The checkpoint of a training run: the state of its components, and finding and loading one.

A checkpoint of :class:`~ebmguide.run.trainer.Trainer` is a plain dict marked
``"format": "ebmguide-checkpoint"`` that holds the iteration, the resolved configuration, the state
of every component (:func:`components_state`: both networks, their EMAs, both optimizers and
schedulers, the sampler with its replay buffer), the data position, the generators' states, the
last logged metrics and the divergence guard's counters. :func:`find_checkpoint`,
:func:`load_state` and :func:`load_run` find and load one from a file or a run folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ebmguide.checkpoint import CheckpointManager, load_checkpoint
from ebmguide.run.components import Components
from ebmguide.run.config import RunConfig, apply_overrides, config_from_dict, config_to_dict
from ebmguide.run.divergence import nonfinite_entries
from ebmguide.run.imports import check_trusted

__all__ = ["STRUCTURAL", "check_resume_overrides", "check_training_checkpoint",
           "components_state", "find_checkpoint", "load_components_state", "load_run",
           "load_state"]

_OPTIMIZERS = ("ebm", "guide", "ebm_scheduler", "guide_scheduler")
_ENTRIES = ("iteration", "config", "ebm", "guide", "ebm_ema", "guide_ema", "optimizers",
            "sampler", "data", "rng")

STRUCTURAL = ("data.name", "data.size", "data.n_train", "data.toy", "model.backbone",
              "model.width", "model.latent_dim", "model.hidden_dim", "model.spectral_norm",
              "model.pool",
              "model.backbone_args", "guide.encoder", "guide.encoder_args", "data.args",
              "guide.width", "guide.hidden_dim", "sampler.buffer_size",
              "train.batch_size")
"""Settings a checkpoint fixes (network shapes, data, buffer size): ``--resume`` keeps them."""


def check_resume_overrides(saved: Mapping[str, Any], cfg: RunConfig) -> None:
    """Refuse a resumed configuration that changes a :data:`STRUCTURAL` setting.

    Args:
        saved: the checkpoint's ``"config"`` entry.
        cfg: the configuration with the ``--set`` overrides applied.

    Raises:
        ValueError: naming the first changed setting, its saved and its new value.
    """
    new = config_to_dict(cfg)
    for key in STRUCTURAL:
        section, name = key.split(".")
        before, after = saved.get(section, {}).get(name), new[section][name]
        if before is not None and before != after:
            raise ValueError(f"{key} is fixed by the checkpoint ({before!r}); --resume cannot "
                             f"change it to {after!r}. Drop --set {key}=..., or start a new run "
                             f"with --config and --out.")


def check_training_checkpoint(state: Mapping[str, Any], source: object) -> None:
    """Refuse a checkpoint that lacks entries or holds NaN/inf (raises ``ValueError``)."""
    if state.get("format") != "ebmguide-checkpoint":
        raise ValueError(f"{source} is not an ebmguide training checkpoint.")
    missing = [k for k in _ENTRIES if k not in state]
    if missing:
        raise ValueError(f"checkpoint {source} lacks the entries {missing}: it is not a complete "
                         f"ebmguide training checkpoint. Use a checkpoint written by ebmguide "
                         f"train.")
    bad = nonfinite_entries(state)
    if bad:
        raise ValueError(f"checkpoint {source} holds non-finite values ({'; '.join(bad[:4])}"
                         f"{' ...' if len(bad) > 4 else ''}): it was written by a run that "
                         f"diverged. Use an older checkpoint of that run.")


def components_state(parts: Components) -> dict[str, Any]:
    """The checkpoint entries of a run's components, in the order a checkpoint holds them.

    Args:
        parts: the run's components.

    Returns:
        ``"ebm"``, ``"guide"``, ``"ebm_ema"``, ``"guide_ema"``: the networks' state dicts;
        ``"optimizers"``: ``{"ebm", "guide", "ebm_scheduler", "guide_scheduler"}`` state dicts;
        ``"sampler"``: the sampler's state (its replay buffer included).
    """
    o = parts.optimizers
    return {
        "ebm": parts.ebm.state_dict(), "guide": parts.guide.state_dict(),
        "ebm_ema": parts.ebm_ema.state_dict(), "guide_ema": parts.guide_ema.state_dict(),
        "optimizers": {"ebm": o.ebm.state_dict(), "guide": o.guide.state_dict(),
                       "ebm_scheduler": o.ebm_scheduler.state_dict(),
                       "guide_scheduler": o.guide_scheduler.state_dict()},
        "sampler": parts.sampler.state_dict(),
    }


def load_components_state(parts: Components, state: Mapping[str, Any]) -> None:
    """Restore the entries of :func:`components_state` into ``parts``, in place.

    Args:
        parts: the run's components, built from the checkpoint's configuration.
        state: a checkpoint (this process's view of it under torchrun).
    """
    parts.ebm.load_state_dict(state["ebm"])
    parts.guide.load_state_dict(state["guide"])
    parts.ebm_ema.load_state_dict(state["ebm_ema"])
    parts.guide_ema.load_state_dict(state["guide_ema"])
    for name in _OPTIMIZERS:
        getattr(parts.optimizers, name).load_state_dict(state["optimizers"][name])
    parts.sampler.load_state_dict(state["sampler"])


def _checkpoint_folder(run: Path) -> Path:
    """Where a run folder keeps its checkpoints (``<run>/checkpoints``, or the folder itself)."""
    return run / "checkpoints" if (run / "checkpoints").is_dir() else run


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the newest one of a run folder (``<run>/checkpoints``)."""
    p = Path(path)
    if p.is_file():
        return p
    folder = _checkpoint_folder(p)
    found = CheckpointManager(folder).checkpoints() if folder.is_dir() else []
    if not found:
        raise FileNotFoundError(f"no checkpoint at {p}: pass a checkpoint file or a run folder "
                                f"holding checkpoints/ckpt-*.pt.")
    return found[-1]


def load_state(path: str | Path) -> tuple[dict[str, Any], Path]:
    """A checkpoint's state and path: a file, or a run folder's newest checkpoint that loads.

    A damaged newest checkpoint of a folder is skipped with a warning.
    """
    p = Path(path)
    if p.is_dir():
        loaded = CheckpointManager(_checkpoint_folder(p)).load_latest()
        if loaded is None:
            raise FileNotFoundError(f"no checkpoint at {p}: pass a checkpoint file or a run "
                                    f"folder holding checkpoints/ckpt-*.pt (a hidden .tmp file "
                                    f"left by a killed first save is not one).")
        check_training_checkpoint(*loaded)
        return loaded
    state = load_checkpoint(p)
    check_training_checkpoint(state, p)
    return state, p


def load_run(path: str | Path, overrides: Sequence[str] = (), *, trust_imports: bool = False
             ) -> tuple[dict[str, Any], RunConfig]:
    """Load a checkpoint (file or run folder) and its configuration, with overrides applied.

    Args:
        path: a checkpoint file or a run folder (its newest checkpoint that loads).
        overrides: ``"section.key=value"`` settings applied to the stored configuration.
        trust_imports: allow a stored configuration that names code by import path
            (``--trust-config-imports``); see :mod:`ebmguide.run.imports`.

    Raises:
        ValueError: the configuration names code and ``trust_imports`` is False.
    """
    state, source = load_state(path)
    cfg = config_from_dict(apply_overrides(state["config"], overrides))
    check_trusted(cfg, trusted=trust_imports, source=source)
    return state, cfg
