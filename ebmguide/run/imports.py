"""User code named in a run configuration: ``"package.module:Name"`` plus keyword arguments.

``model.backbone``, ``guide.encoder`` and ``data.name`` accept an import path besides the built-in
names (in the spirit of LightningCLI's ``class_path``/``init_args``)::

    [model]
    backbone = "mypkg.nets:MyNet"
    [model.backbone_args]
    width = 64

Importing runs code, so an import path is honoured only when it comes from the user: a config
file or ``--set`` on the command line, or ``Trainer(cfg)`` in Python. A checkpoint stores the
configuration as plain data, and a configuration read from a checkpoint alone (``sample``,
``evaluate``, ``compose``, ``ood``, ``train --resume``) names code that is imported only when the
user says so with ``--trust-config-imports`` (``trust_imports=True`` in Python); otherwise
:func:`check_trusted` raises a ``ValueError`` saying what to pass. Loading a checkpoint never
unpickles code either way (see :mod:`ebmguide.checkpoint`).
"""

from __future__ import annotations

import importlib
from typing import Any

from ebmguide.run.config_schema import RunConfig, is_import_path

__all__ = ["check_trusted", "import_object", "import_paths"]


def import_paths(cfg: RunConfig) -> dict[str, str]:
    """The settings of ``cfg`` that name code by import path, e.g. ``{"model.backbone": ...}``."""
    named = {"data.name": cfg.data.name, "model.backbone": cfg.model.backbone,
             "guide.encoder": cfg.guide.encoder}
    return {k: v for k, v in named.items() if is_import_path(v)}


def check_trusted(cfg: RunConfig, *, trusted: bool, source: object) -> None:
    """Refuse a configuration from a checkpoint that names code, unless the user trusts it.

    Args:
        cfg: the configuration read from ``source``.
        trusted: ``--trust-config-imports`` was given (or ``trust_imports=True``).
        source: the checkpoint, for the message.

    Raises:
        ValueError: ``cfg`` names an import path and ``trusted`` is False.
    """
    paths = import_paths(cfg)
    if paths and not trusted:
        named = ", ".join(f"{k} = {v!r}" for k, v in paths.items())
        raise ValueError(f"the configuration stored in {source} names code to import ({named}); "
                         f"code is never imported because a checkpoint names it. If you trust "
                         f"that code, pass --trust-config-imports (trust_imports=True in "
                         f"Python), with the module on PYTHONPATH.")


def import_object(path: str, *, key: str) -> Any:
    """The object ``"package.module:Name"`` names (``Name`` may be dotted: ``Outer.Inner``).

    Args:
        path: the import path.
        key: the setting that holds it, for messages.

    Raises:
        ValueError: the module does not import or has no such name.
    """
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"{key} = {path!r}: module {module_name!r} does not import ({err}); put "
                         f"it on PYTHONPATH or install its package.") from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{key} = {path!r}: {module_name!r} has no {attr!r}.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{key} = {path!r} names {type(obj).__name__}, not a class or function.")
    return obj
