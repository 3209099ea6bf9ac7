"""The module that is exported: images of the model's pixel type (uint8 or uint16) in, logits
or probabilities at input size out.

Adaptive pooling (PSPNet's pyramid, UPerNet's PPM, ASPP's image pooling) is replaced, in a copy
of the model, by :class:`WindowPool`, which computes the same windows from the input's symbolic
size. torch's ONNX exporter otherwise lowers adaptive pooling to a fixed-kernel pooling derived
from the example input, which is silently wrong at every other size.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Output = Literal["logits", "probs"]


class ExportGraph(nn.Module):
    """A segmentor behind the input normalisation, answering its main logits (or their softmax
    over the classes) at the input size."""

    def __init__(
        self,
        segmentor: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        output: Output = "logits",
    ):
        super().__init__()
        self.segmentor = segmentor
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer(
            "inverse_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.output = output

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        normalised = (images.float() - self.mean) * self.inverse_std
        logits = self.segmentor(normalised)["main"]
        # Resizing to the size the logits already have is an exact copy. Doing it always keeps
        # a traced graph right at sizes where the segmentor's own "already this size?" check
        # would have decided otherwise than at the example size.
        logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return logits.softmax(dim=1) if self.output == "probs" else logits


class WindowPool(nn.Module):
    """Adaptive average or max pooling to ``bins`` (rows, columns), written with ops whose
    shapes follow the input's: window ``i`` of ``b`` over a length ``n`` is
    ``[floor(i*n/b), ceil((i+1)*n/b))``, exactly as ``nn.AdaptiveAvgPool2d`` cuts it."""

    def __init__(self, bins: tuple[int, int], mode: Literal["avg", "max"]):
        super().__init__()
        self.bins = bins
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = _windows(x.shape[-2], self.bins[0], x.device)  # bins x H
        columns = _windows(x.shape[-1], self.bins[1], x.device)  # bins x W
        if self.mode == "avg":
            rows = rows.to(x.dtype) / rows.sum(dim=1, keepdim=True)
            columns = columns.to(x.dtype) / columns.sum(dim=1, keepdim=True)
            return rows @ x @ columns.transpose(0, 1)
        lowest = torch.finfo(x.dtype).min
        # N x C x 1 x H x W against bins x H x 1: the maximum over each row window ...
        by_rows = x.unsqueeze(-3).masked_fill(~rows.unsqueeze(-1), lowest).amax(dim=-2)
        # ... then N x C x bins x 1 x W against bins x W over each column window
        return by_rows.unsqueeze(-2).masked_fill(~columns, lowest).amax(dim=-1)


def _windows(length: int | torch.SymInt, bins: int, device: torch.device) -> torch.Tensor:
    """bins x length booleans: which positions each adaptive-pooling window covers."""
    positions = torch.arange(length, device=device)
    index = torch.arange(bins, device=device)
    start = torch.div(index * length, bins, rounding_mode="floor")
    end = torch.div((index + 1) * length + bins - 1, bins, rounding_mode="floor")
    return (positions >= start.unsqueeze(1)) & (positions < end.unsqueeze(1))


def with_window_pools(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in which every 2-D adaptive average or max pooling is a
    :class:`WindowPool`; the original is left as it is (it is the reference the export is
    checked against)."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.AdaptiveAvgPool2d):
            mode = "avg"
        elif isinstance(module, nn.AdaptiveMaxPool2d) and not module.return_indices:
            mode = "max"
        else:
            continue
        size = module.output_size
        bins = (size, size) if isinstance(size, int) else tuple(size)
        if any(not isinstance(b, int) for b in bins):  # None keeps that dimension: left alone
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, WindowPool(bins, mode))
    return model
