"""Cross-entropy of bilinearly upsampled logits, without the upsampled logits.

At 512x512 with 150 classes the full-resolution fp32 logits of a batch of two are 315 MB, and the
plain path keeps several tensors of that size per output (the upsampled logits, their fp32 copy,
the log-softmax saved for the backward pass, their gradients). Here the upsampled logits exist
one band of rows at a time: the forward pass sums the loss band by band, and the backward pass
recomputes each band and sends its gradient back through the upsampling into the low-resolution
logits. The loss is what ``F.cross_entropy(F.interpolate(logits, ...), ..., reduction="sum")``
gives, to float rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Upsampled logits per band: 4 Mi floats (16 MB in fp32), whatever the batch and class count.
BAND_ELEMENTS = 4 * 2**20


@dataclass(frozen=True)
class _Plan:
    """How the output rows are made from the logits' rows: ``below``/``above`` are the two source
    rows of each output row and ``lam`` the weight of ``above``, computed as ATen's bilinear
    kernel computes them."""

    below: torch.Tensor
    above: torch.Tensor
    lam: torch.Tensor
    bands: tuple[range, ...]
    dtype: torch.dtype
    weight: torch.Tensor | None
    ignore_index: int
    label_smoothing: float
    align_corners: bool


def upsampled_cross_entropy_sum(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    weight: torch.Tensor | None,
    ignore_index: int,
    label_smoothing: float,
    align_corners: bool,
    band_elements: int = BAND_ELEMENTS,
) -> torch.Tensor:
    """The summed cross-entropy of ``logits`` (N x C x h x w) upsampled bilinearly to the size of
    ``target`` (N x H x W). Logits in a lower precision are upsampled in it, as ``F.interpolate``
    does under autocast, so that bf16 training scores what it scored before; the loss is fp32."""
    batch, classes, low_height, _ = logits.shape
    height, width = target.shape[-2:]
    below, above, lam = _row_weights(low_height, height, align_corners, logits.device)
    step = max(1, band_elements // max(1, batch * classes * width))
    plan = _Plan(
        below,
        above,
        lam,
        tuple(range(start, min(height, start + step)) for start in range(0, height, step)),
        logits.dtype,
        weight,
        ignore_index,
        label_smoothing,
        align_corners,
    )
    return _UpsampledCrossEntropy.apply(logits, target, plan)


class _UpsampledCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, plan: _Plan) -> torch.Tensor:
        ctx.save_for_backward(logits, target)
        ctx.plan = plan
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        for rows, first, last in _sources(plan):
            band = logits[:, :, first : last + 1].float()
            total += _band_loss(band, first, target, rows, plan)
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor):
        logits, target = ctx.saved_tensors
        plan = ctx.plan
        grad = torch.zeros(logits.shape, dtype=torch.float32, device=logits.device)
        for rows, first, last in _sources(plan):
            with torch.enable_grad():
                band = logits[:, :, first : last + 1].detach().float().requires_grad_()
                (band_grad,) = torch.autograd.grad(
                    _band_loss(band, first, target, rows, plan), band
                )
            grad[:, :, first : last + 1] += band_grad
        return (grad * grad_total).to(logits.dtype), None, None


def _sources(plan: _Plan) -> Iterator[tuple[range, int, int]]:
    """Each band of output rows with the first and last logits row it reads."""
    for rows in plan.bands:
        yield rows, int(plan.below[rows.start]), int(plan.above[rows.stop - 1])


def _band_loss(
    band: torch.Tensor, first: int, target: torch.Tensor, rows: range, plan: _Plan
) -> torch.Tensor:
    """The summed loss of output ``rows``; ``band`` (fp32) holds the logits' rows from ``first``."""
    # Along the width F.interpolate does what it does on the whole map; the height stays as is.
    wide = F.interpolate(
        band,
        size=(band.shape[-2], target.shape[-1]),
        mode="bilinear",
        align_corners=plan.align_corners,
    )
    lam = plan.lam[rows.start : rows.stop].view(-1, 1)
    upsampled = (
        wide[:, :, plan.below[rows.start : rows.stop] - first] * (1 - lam)
        + wide[:, :, plan.above[rows.start : rows.stop] - first] * lam
    )
    if plan.dtype != torch.float32:
        upsampled = upsampled.to(plan.dtype).float()
    return F.cross_entropy(
        upsampled,
        target[:, rows.start : rows.stop],
        weight=plan.weight,
        ignore_index=plan.ignore_index,
        reduction="sum",
        label_smoothing=plan.label_smoothing,
    )


def _row_weights(
    size_in: int, size_out: int, align_corners: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ATen's source coordinates for bilinear resizing (``area_pixel_compute_source_index``)."""
    out = torch.arange(size_out, dtype=torch.float32, device=device)
    if align_corners:
        scale = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        source = out * torch.tensor(scale, dtype=torch.float32)
    else:
        scale = torch.tensor(size_in, dtype=torch.float32) / size_out
        source = ((out + 0.5) * scale.to(device) - 0.5).clamp(min=0)
    below = source.long()
    above = (below + 1).clamp(max=size_in - 1)
    return below, above, source - below
