"""sampler.autocast: "auto" is bfloat16 only where the device runs it natively."""

from __future__ import annotations

import warnings

import pytest
import torch

from ebmguide import torch_utils
from ebmguide.run.components import langevin_settings, sampler_autocast
from ebmguide.run.config import load_config
from ebmguide.sampling import SamplerWarning


def fake_cpu(monkeypatch: pytest.MonkeyPatch, **flags: bool) -> None:
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True, **flags})


@pytest.mark.parametrize(("flags", "native"), [({}, False), ({"avx512_bf16": True}, True),
                                               ({"amx_bf16": True}, True),
                                               ({"avx512_bf16": False, "amx_bf16": False}, False)])
def test_native_bf16_reads_the_cpu_flags(monkeypatch: pytest.MonkeyPatch,
                                         flags: dict[str, bool], native: bool) -> None:
    fake_cpu(monkeypatch, **flags)
    assert torch_utils.native_bf16("cpu") is native


def test_a_torch_that_cannot_tell_gets_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(torch.cpu, "get_capabilities")
    assert torch_utils.native_bf16("cpu") is False
    assert torch_utils.native_bf16("meta") is False


def test_auto_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config("demo")
    assert cfg.sampler.autocast == "auto"
    fake_cpu(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "auto" never warns
        assert sampler_autocast(cfg) is None
        assert langevin_settings(cfg).autocast_dtype is None
    fake_cpu(monkeypatch, amx_bf16=True)
    assert sampler_autocast(cfg, "cpu") == torch.bfloat16
    assert langevin_settings(cfg, torch.device("cpu")).autocast_dtype == torch.bfloat16


def test_explicit_bf16_is_kept_and_warns_where_it_is_emulated(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config("demo", ['sampler.autocast="bf16"'])
    fake_cpu(monkeypatch)
    with pytest.warns(SamplerWarning, match=r"no native bfloat16.*sampler\.autocast = \"auto\""):
        assert sampler_autocast(cfg) == torch.bfloat16
    fake_cpu(monkeypatch, avx512_bf16=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sampler_autocast(cfg) == torch.bfloat16


def test_none_is_float32_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, amx_bf16=True)
    assert sampler_autocast(load_config("demo", ['sampler.autocast="none"'])) is None


def test_unknown_choices_are_refused() -> None:
    with pytest.raises(ValueError, match=r"sampler\.autocast"):
        load_config("demo", ['sampler.autocast="fp8"'])
