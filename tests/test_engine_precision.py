import pytest
import torch

from segkit.engine import precision
from segkit.errors import ConfigError


@pytest.fixture
def cpu_bf16(monkeypatch):
    def set_fast(value):
        monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: value)

    return set_fast


def test_auto_picks_bf16_on_cpus_with_bf16_instructions(cpu_bf16):
    cpu_bf16(True)
    chosen = precision.resolve_precision("auto", torch.device("cpu"))
    assert chosen.name == "bf16" and chosen.dtype == torch.bfloat16 and not chosen.needs_grad_scaler
    assert "AVX-512-BF16" in chosen.reason


def test_auto_falls_back_to_fp32_on_other_cpus(cpu_bf16):
    cpu_bf16(False)
    assert precision.resolve_precision("auto", torch.device("cpu")).name == "fp32"


def test_auto_on_cuda_chooses_bf16_or_fp16_with_a_scaler(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.resolve_precision("auto", torch.device("cuda", 0)).name == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    older = precision.resolve_precision("auto", torch.device("cuda", 0))
    assert older.name == "fp16" and older.needs_grad_scaler


def test_explicit_precision_is_kept_and_autocast_computes_in_it():
    chosen = precision.resolve_precision("bf16", torch.device("cpu"))
    layer = torch.nn.Linear(4, 4)
    with chosen.autocast():
        assert layer(torch.randn(2, 4)).dtype == torch.bfloat16
    with precision.resolve_precision("fp32", torch.device("cpu")).autocast():
        assert layer(torch.randn(2, 4)).dtype == torch.float32


def test_cpu_detection_reads_the_cpu_flags(monkeypatch):
    precision.cpu_has_fast_bf16.cache_clear()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", None, raising=False)
    monkeypatch.setattr(
        precision, "_cpuinfo_lines", lambda: ["flags\t: fpu avx512f amx_bf16 amx_tile\n"]
    )
    try:
        assert precision.cpu_has_fast_bf16()
        precision.cpu_has_fast_bf16.cache_clear()
        monkeypatch.setattr(precision, "_cpuinfo_lines", lambda: ["flags\t: fpu avx2\n"])
        assert not precision.cpu_has_fast_bf16()
    finally:
        precision.cpu_has_fast_bf16.cache_clear()


def test_devices_that_do_not_exist_are_config_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU is available"):
        precision.resolve_device("cuda")
    with pytest.raises(ConfigError, match="not a device"):
        precision.resolve_device("gpu0")
    assert precision.resolve_device("cpu") == torch.device("cpu")
