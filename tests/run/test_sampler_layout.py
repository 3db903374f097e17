"""sampler.memory_format: the layout of the chains while they run, from a run configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ebmguide.run.components import langevin_settings
from ebmguide.run.config import load_config
from ebmguide.run.trainer import Trainer

TINY = Path(__file__).resolve().parents[1] / "tiny_run.toml"


def test_the_setting_reaches_the_langevin_settings() -> None:
    assert langevin_settings(load_config(TINY)).memory_format == torch.preserve_format
    cfg = load_config(TINY, ['sampler.memory_format="channels_last"'])
    assert langevin_settings(cfg).memory_format == torch.channels_last


def test_channels_last_chains_train_as_the_standard_layout(tmp_path: Path) -> None:
    """A run's samples and weights agree with the standard layout's to rounding, not exactly."""
    runs = {}
    for layout in ("preserve", "channels_last"):
        cfg = load_config(TINY, [f'sampler.memory_format="{layout}"', "train.iterations=3"])
        trainer = Trainer(cfg, tmp_path / layout, progress=False)
        trainer.run()
        runs[layout] = trainer
    a, b = (r.parts for r in runs.values())
    assert b.sampler.settings.memory_format == torch.channels_last
    torch.testing.assert_close(b.sampler.buffer.states, a.sampler.buffer.states,
                               atol=1e-4, rtol=0)
    for (name, p), q in zip(a.ebm.named_parameters(), b.ebm.parameters(), strict=True):
        torch.testing.assert_close(q, p, atol=1e-4, rtol=1e-3, msg=name)


def test_unknown_layouts_and_point_data_are_refused() -> None:
    with pytest.raises(ValueError, match=r"sampler\.memory_format must be one of"):
        load_config(TINY, ['sampler.memory_format="channels_first"'])
    with pytest.raises(ValueError, match=r"needs image data"):
        load_config("toy2d", ['sampler.memory_format="channels_last"'])
