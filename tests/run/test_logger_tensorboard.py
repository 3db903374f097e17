"""TensorBoard receives the scalars, every sample grid and the resolved configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebmguide.run.config import dumps_toml, load_config
from ebmguide.run.trainer import Trainer

TINY = Path(__file__).resolve().parents[1] / "tiny_run.toml"


def test_tensorboard_gets_sample_grids_and_the_config(tmp_path: Path) -> None:
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        pytest.fail("tensorboard is missing: it is part of the dev extra (pip install -e '.[dev]')")

    cfg = load_config(str(TINY), ["train.tensorboard=true"])
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    trainer.run()
    trainer.close()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"),
                              size_guidance={"images": 0, "tensors": 0, "scalars": 0}).Reload()
    images = events.Images("samples")
    assert [e.step for e in images] == [3, 6]  # train.sample_every = 3
    grid = (tmp_path / "run" / "samples" / "iter-00000006.png")
    from PIL import Image

    with Image.open(grid) as png:
        assert (images[-1].width, images[-1].height) == png.size
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert text == "\n".join("    " + line for line in dumps_toml(cfg).splitlines())
    assert 'name = "tiny"' in text
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6]
