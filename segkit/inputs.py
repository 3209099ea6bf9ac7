"""What a model takes as input: how many channels and which pixel type, read from a config.

The channel count is the backbone's ``in_channels`` argument (a backbone without one takes 3,
RGB); the pixel type is ``data.image_dtype``. The data pipeline fits and checks images by it,
``segkit.load`` does the same to what it is given, and an export takes that type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RGB = 3


@dataclass(frozen=True)
class InputSpec:
    channels: int
    dtype: str  # "uint8" or "uint16"

    @classmethod
    def of(cls, config: dict[str, Any]) -> InputSpec:
        """The input of a config's model (a resolved config writes every default out; a
        partial one, as built by hand, gets them here)."""
        dtype = config.get("data", {}).get("image_dtype", "uint8")
        return cls(backbone_channels(config["model"]["backbone"]), dtype)


def backbone_channels(spec: Any) -> int:
    """The input channels of a backbone spec: its ``in_channels`` (resolved configs write the
    default out), else 3."""
    value = spec.get("in_channels", RGB) if isinstance(spec, dict) else RGB
    return value if isinstance(value, int) and not isinstance(value, bool) else RGB
