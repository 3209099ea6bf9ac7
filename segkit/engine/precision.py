"""Which device to run on and at which precision.

``auto`` precision takes the fastest setting that trains as well as fp32: bf16 autocast where the
hardware has fast bf16 arithmetic (CUDA GPUs from Ampere on; CPUs with AMX or AVX-512-BF16, where
bf16 with channels-last trains a ResNet-50 about twice as fast as fp32), fp16 autocast with a
gradient scaler on older CUDA GPUs (fp16's narrow range needs the loss scaled), fp32 elsewhere.
Losses are always computed in fp32 from the autocast logits.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import lru_cache

import torch

from segkit.errors import ConfigError

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` is fp32, bf16 or fp16; ``reason`` says why it was chosen."""

    name: str
    device_type: str
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.name]

    @property
    def needs_grad_scaler(self) -> bool:
        return self.name == "fp16"

    def autocast(self) -> AbstractContextManager:
        """The forward-pass context: autocast to bf16/fp16, or nothing for fp32."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def describe(self) -> str:
        return f"{self.name} ({self.reason})"


def resolve_device(requested: str) -> torch.device:
    """``auto`` means CUDA if present, then MPS, then the CPU; an explicit choice is checked."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ConfigError(
            f"train.device: '{requested}' is not a device; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device: CUDA was asked for, but no CUDA GPU is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"train.device: {requested} does not exist; this machine has "
                f"{torch.cuda.device_count()} CUDA GPU(s)"
            )
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    elif device.type == "mps" and not _mps_available():
        raise ConfigError("train.device: MPS was asked for, but it is not available")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"train.device: unsupported device type '{device.type}'")
    return device


def configure_backends(device: torch.device, deterministic: bool) -> None:
    """cuDNN autotuning (fast) unless deterministic results are asked for; CPUs need nothing."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_precision(requested: str, device: torch.device) -> Precision:
    if requested != "auto":
        _check_supported(requested, device)
        return Precision(requested, device.type, "asked for in train.precision")
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported():
            return Precision("bf16", "cuda", f"{name} computes bf16 natively")
        return Precision("fp16", "cuda", f"{name} has no fast bf16; fp16 with a gradient scaler")
    if device.type == "cpu":
        if cpu_has_fast_bf16():
            return Precision("bf16", "cpu", "the CPU has AMX or AVX-512-BF16")
        return Precision("fp32", "cpu", "the CPU has no fast bf16 (AMX or AVX-512-BF16)")
    return Precision("fp32", device.type, f"autocast is not used on {device.type} by default")


def _check_supported(name: str, device: torch.device) -> None:
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"train.precision: bf16 is not supported by {torch.cuda.get_device_name(device)}; "
            "use fp16 or auto"
        )


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with bf16 matrix instructions (AMX tiles or AVX-512-BF16)."""
    probes = [
        getattr(torch.cpu, name, None)
        for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    ]
    if all(callable(probe) for probe in probes):
        try:
            return any(probe() for probe in probes)
        except RuntimeError:
            pass
    return bool({"amx_bf16", "avx512_bf16"} & _cpuinfo_flags())


def _cpuinfo_flags() -> set[str]:
    for line in _cpuinfo_lines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def device_name(device: torch.device) -> str:
    """A human-readable name of the device, for env.json and the start message."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        for line in _cpuinfo_lines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
        import platform

        return platform.processor() or "cpu"
    return device.type


def _cpuinfo_lines() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            return cpuinfo.readlines()
    except OSError:
        return []
