"""Checking an exported file against the PyTorch model it came from, on the same images.

The check runs at the export size and, for a dynamic export, at two other sizes (odd, non-square,
another batch size), since those are where a graph specialised to its example input goes wrong.
Agreement is the fraction of pixels whose arg-max class is the same; below
:data:`MIN_AGREEMENT` at any size the export is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

MIN_AGREEMENT = 0.999


@dataclass(frozen=True)
class Check:
    shape: tuple[int, int, int, int]
    max_abs_diff: float | None  # None where the file failed or answered another shape
    argmax_agreement: float
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and self.argmax_agreement >= MIN_AGREEMENT

    def describe(self) -> str:
        size = f"batch {self.shape[0]} at {self.shape[2]}x{self.shape[3]}"
        if self.error:
            return f"{size}: {self.error}"
        return (
            f"{size}: argmax agreement {self.argmax_agreement:.4%}, max difference "
            f"{self.max_abs_diff:.3g}"
        )

    def as_json(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None} | {
            "shape": list(self.shape)
        }


def check_shapes(
    batch: int, height: int, width: int, dynamic: bool, channels: int = 3
) -> list[tuple[int, ...]]:
    """The input shapes to compare at: the export's, and with ``dynamic`` two others."""
    shapes = [(batch, channels, height, width)]
    if dynamic:
        shapes.append((batch + 1, channels, height * 3 // 4 + 1, width * 5 // 4 + 3))
        shapes.append((1, channels, height * 3 // 2 + 5, width // 2 + 7))
    return shapes


def compare(
    reference: Callable[[torch.Tensor], torch.Tensor],
    exported: Callable[[torch.Tensor], torch.Tensor],
    shapes: list[tuple[int, ...]],
    seed: int = 0,
    dtype: torch.dtype = torch.uint8,
) -> list[Check]:
    """Both functions on the same random images of each shape, over the whole range of
    ``dtype`` (uint8 or uint16)."""
    generator = torch.Generator().manual_seed(seed)
    top = 65536 if dtype == torch.uint16 else 256
    checks = []
    for shape in shapes:
        images = torch.randint(0, top, shape, generator=generator).to(dtype)
        with torch.no_grad():
            expected = reference(images)
        try:
            answer = exported(images)
        except Exception as error:  # any failure of the runtime is a failed check, reported
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            checks.append(Check(shape, None, 0.0, f"the exported file failed: {first_line[:300]}"))
            continue
        if tuple(answer.shape) != tuple(expected.shape):
            error = f"answered shape {list(answer.shape)} instead of {list(expected.shape)}"
            checks.append(Check(shape, None, 0.0, error))
            continue
        agreement = (answer.argmax(dim=1) == expected.argmax(dim=1)).float().mean().item()
        difference = (answer.float() - expected).abs().max().item()
        checks.append(Check(shape, difference, agreement))
    return checks
