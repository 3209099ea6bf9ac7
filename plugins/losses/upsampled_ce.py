"""Cross-entropy of bilinearly upsampled logits, without the upsampled logits.

At 512x512 with 150 classes the full-resolution fp32 logits of a batch of two are 315 MB, and the
plain path keeps several tensors of that size per output (the upsampled logits, their fp32 copy,
the log-softmax saved for the backward pass, their gradients). Here the upsampled logits exist
one band of rows at a time: the forward pass sums the loss band by band and, while each band
exists, sends its gradient back through the upsampling into the low-resolution logits; the
backward pass only scales that gradient. The loss is what ``F.cross_entropy(F.interpolate(logits, ...), ..., reduction="sum")``
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
    low_height: int
    ratio: int | None
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
    ratio = _whole_ratio(low_height, height, align_corners)
    step = max(1, band_elements // max(1, batch * classes * width))
    if ratio is not None:  # bands start on a logits row, so that F.interpolate can make them
        step = -(-step // ratio) * ratio
    plan = _Plan(
        below,
        above,
        lam,
        tuple(range(start, min(height, start + step)) for start in range(0, height, step)),
        low_height,
        ratio,
        logits.dtype,
        weight,
        ignore_index,
        label_smoothing,
        align_corners,
    )
    return _UpsampledCrossEntropy.apply(logits, target, plan)


class _UpsampledCrossEntropy(torch.autograd.Function):
    """The gradient of each band is taken while the band exists, in the forward pass: the
    low-resolution gradient it adds up to is small (N x C x h x w), and no band is made twice."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, plan: _Plan) -> torch.Tensor:
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        if not ctx.needs_input_grad[0]:
            for rows, first, last in _sources(plan):
                total += _band_loss(_fp32_rows(logits, first, last), first, target, rows, plan)
            return total
        grad = torch.zeros(logits.shape, dtype=torch.float32, device=logits.device)
        for rows, first, last in _sources(plan):
            with torch.enable_grad():
                band = _fp32_rows(logits.detach(), first, last).requires_grad_()
                loss = _band_loss(band, first, target, rows, plan)
                (band_grad,) = torch.autograd.grad(loss, band)
            total += loss.detach()
            grad[:, :, first : last + 1] += band_grad
        ctx.save_for_backward(grad)
        ctx.dtype = logits.dtype
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return (grad * grad_total).to(ctx.dtype), None, None


def _fp32_rows(logits: torch.Tensor, first: int, last: int) -> torch.Tensor:
    """Rows ``first``..``last`` in fp32, in the heads' layout: bilinear resizing is faster on
    channels-last; the resized band is made NCHW before the log-softmax (see _band_loss)."""
    return logits[:, :, first : last + 1].float()


def _sources(plan: _Plan) -> Iterator[tuple[range, int, int]]:
    """Each band of output rows with the first and last logits row it reads, and one more row
    either side (within the map), so that resizing the rows alone clamps nothing it keeps."""
    for rows in plan.bands:
        first = max(int(plan.below[rows.start]) - 1, 0)
        yield rows, first, min(int(plan.above[rows.stop - 1]) + 1, plan.low_height - 1)


def _band_loss(
    band: torch.Tensor, first: int, target: torch.Tensor, rows: range, plan: _Plan
) -> torch.Tensor:
    """The summed loss of output ``rows``; ``band`` (fp32) holds the logits' rows from ``first``."""
    if plan.ratio is not None:
        upsampled = _resized_rows(band, first, rows, target.shape[-1], plan)
    else:
        upsampled = _interpolated_rows(band, first, rows, target.shape[-1], plan)
    if plan.dtype != torch.float32:
        upsampled = upsampled.to(plan.dtype)
    # A log-softmax over the classes of channels-last logits strides across memory: several
    # times slower than on NCHW, so the band changes layout here (with the bf16 rounding).
    upsampled = upsampled.to(torch.float32, memory_format=torch.contiguous_format)
    return F.cross_entropy(
        upsampled,
        target[:, rows.start : rows.stop],
        weight=plan.weight,
        ignore_index=plan.ignore_index,
        reduction="sum",
        label_smoothing=plan.label_smoothing,
    )


def _resized_rows(
    band: torch.Tensor, first: int, rows: range, width: int, plan: _Plan
) -> torch.Tensor:
    """Output ``rows`` by F.interpolate on the band alone: with a whole number of output rows per
    logits row the band's rows map to the output's exactly as the whole map's do."""
    if plan.align_corners:
        height = (band.shape[-2] - 1) * plan.ratio + 1
    else:
        height = band.shape[-2] * plan.ratio
    resized = F.interpolate(
        band, size=(height, width), mode="bilinear", align_corners=plan.align_corners
    )
    offset = rows.start - first * plan.ratio
    return resized[:, :, offset : offset + len(rows)]


def _interpolated_rows(
    band: torch.Tensor, first: int, rows: range, width: int, plan: _Plan
) -> torch.Tensor:
    """Output ``rows`` for any ratio of sizes: F.interpolate along the width only (where the band
    is the whole map), then ATen's two-row blend along the height."""
    wide = F.interpolate(
        band, size=(band.shape[-2], width), mode="bilinear", align_corners=plan.align_corners
    )
    lam = plan.lam[rows.start : rows.stop].view(-1, 1)
    return (
        wide[:, :, plan.below[rows.start : rows.stop] - first] * (1 - lam)
        + wide[:, :, plan.above[rows.start : rows.stop] - first] * lam
    )


def _whole_ratio(size_in: int, size_out: int, align_corners: bool) -> int | None:
    """Output rows per logits row when it is a whole number (x8 for PSPNet), else None."""
    if align_corners:
        if size_in > 1 and (size_out - 1) % (size_in - 1) == 0:
            return (size_out - 1) // (size_in - 1)
        return None
    return size_out // size_in if size_out % size_in == 0 else None


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
