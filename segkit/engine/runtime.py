"""Where and how a model runs: device, precision, memory format and backend settings.

Training, ``segkit eval``, ``segkit predict`` and a model loaded from Python resolve these from the
same ``train`` keys through :meth:`Runtime.resolve`, so that a model is evaluated exactly as it was
validated during training and no command settles them its own way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from segkit.engine.inference import InputNormalizer
from segkit.engine.precision import (
    Precision,
    configure_backends,
    device_name,
    resolve_device,
    resolve_precision,
)


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: Precision
    channels_last: bool

    @classmethod
    def resolve(
        cls,
        train: dict[str, Any],
        *,
        device: str | torch.device | None = None,
        precision: str | None = None,
    ) -> Runtime:
        """The runtime the ``train`` section asks for; ``device`` (a name or an already resolved
        device, as a distributed process has) and ``precision`` replace the section's values."""
        if not isinstance(device, torch.device):
            device = resolve_device(device or train["device"])
        configure_backends(device, train["deterministic"])
        return cls(
            device=device,
            precision=resolve_precision(precision or train["precision"], device),
            # MPS kernels gain nothing from channels-last and some refuse it.
            channels_last=bool(train["channels_last"]) and device.type != "mps",
        )

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def place(self, model: nn.Module) -> nn.Module:
        """The model on this runtime's device, in its memory format."""
        return model.to(self.device).to(memory_format=self.memory_format)

    def normalizer(self, mean: Sequence[float], std: Sequence[float]) -> InputNormalizer:
        return InputNormalizer(mean, std, self.device, self.channels_last)

    def describe(self) -> str:
        """One line for banners: the device, its name, the precision and why."""
        layout = ", channels-last" if self.channels_last else ""
        return (
            f"device {self.device} ({device_name(self.device)}), precision "
            f"{self.precision.describe()}{layout}"
        )
