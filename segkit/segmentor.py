"""The one model shape: backbone features -> decode head (+ auxiliary heads) -> logits.

Heads may work at any resolution; the segmentor upsamples every output to the input size, so the
loss and the metrics always compare logits and labels pixel for pixel. Training asks for the
head's resolution instead (``resize=False``) and leaves the upsampling to the loss terms
(segkit.engine.losses), which can score full-resolution logits without holding them. Auxiliary outputs exist
only in training mode: deep supervision is a training device, not part of the prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segkit.errors import SegkitError

StageIndex = int | Sequence[int]


class ContractError(SegkitError):
    """A plugin's component that does not do what every component of its kind must."""


class Segmentor(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        head_index: StageIndex = -1,
        aux_heads: Sequence[nn.Module] = (),
        aux_indices: Sequence[StageIndex] = (),
    ):
        super().__init__()
        if len(aux_heads) != len(aux_indices):
            raise ValueError("every auxiliary head needs its stage index")
        self.backbone = backbone
        self.head = head
        self.aux_heads = nn.ModuleList(aux_heads)
        self.head_index = head_index
        self.aux_indices = list(aux_indices)

    def forward(self, images: torch.Tensor, *, resize: bool = True) -> dict[str, torch.Tensor]:
        size = images.shape[-2:] if resize else None
        features = self.backbone(images)
        outputs = {"main": resize_logits(self.head(_select(features, self.head_index)), size)}
        if self.training:
            for number, (head, index) in enumerate(zip(self.aux_heads, self.aux_indices)):
                outputs[f"aux{number}"] = resize_logits(head(_select(features, index)), size)
        return outputs


def _select(features: Sequence[torch.Tensor], index: StageIndex):
    if isinstance(index, int):
        return features[index]
    return [features[i] for i in index]


def resize_logits(logits: torch.Tensor, size: Sequence[int] | None) -> torch.Tensor:
    """``logits`` upsampled bilinearly to ``size`` (``None``: as they are), the one resize rule
    of model outputs; losses that upsample by themselves follow it (docs/plugins.md)."""
    if size is None or tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def stage_channels(backbone: nn.Module, index: StageIndex) -> int | list[int]:
    """The ``in_channels`` a head reading stage(s) ``index`` of ``backbone`` is given."""
    channels = list(backbone.out_channels)
    if isinstance(index, int):
        return channels[index]
    return [channels[i] for i in index]


def check_backbone(backbone: Any, label: str) -> None:
    """Refuse, when the model is built, a backbone that breaks the contract the heads rely on
    (docs/plugins.md): ``out_channels`` and ``strides``, lists of positive ints of one length, and
    ``forward(x)`` returning that many 4-D features with those channels. Otherwise the break
    surfaces later as a shape error deep inside a head (a BatchNorm's, typically). ``forward`` is
    tried once in eval mode on one small image (S x S, S = 2 x the largest stride, at least 32),
    with the random state put back after."""
    if not isinstance(backbone, nn.Module):
        raise ContractError(f"{label} is a {type(backbone).__name__}, not a torch nn.Module")
    lists = {}
    for name in ("out_channels", "strides"):
        value = getattr(backbone, name, None)
        if not _positive_ints(value):
            raise ContractError(
                f"{label} has no '{name}' list of positive ints (got {value!r}); a backbone "
                "describes its stage features with out_channels and strides"
            )
        lists[name] = list(value)
    channels, strides = lists["out_channels"], lists["strides"]
    if len(channels) != len(strides):
        raise ContractError(
            f"{label} says {len(channels)} stages in out_channels {channels} but {len(strides)} "
            f"in strides {strides}"
        )
    features = _probe(backbone, max(32, 2 * max(strides)))
    if not isinstance(features, (list, tuple)):
        raise ContractError(
            f"{label}: forward(x) returned a {type(features).__name__}, not the list of stage "
            f"features (one per out_channels entry)"
        )
    found = [tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__ for f in features]
    if len(features) != len(channels) or any(
        not isinstance(f, torch.Tensor) or f.dim() != 4 or f.shape[1] != c
        for f, c in zip(features, channels)
    ):
        raise ContractError(
            f"{label}: forward(x) returned {len(features)} feature(s) {found}, but out_channels "
            f"says {len(channels)} of N x C x H x W with C = {channels}"
        )


def _positive_ints(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    )


def _probe(backbone: nn.Module, size: int) -> Any:
    """``backbone``'s output for one size x size image of the channels its first conv takes."""
    first_conv = next((m for m in backbone.modules() if isinstance(m, nn.Conv2d)), None)
    parameter = next(backbone.parameters(), None)
    image = torch.zeros(
        1,
        first_conv.in_channels if first_conv is not None else 3,
        size,
        size,
        device=parameter.device if parameter is not None else None,
        dtype=parameter.dtype if parameter is not None and parameter.is_floating_point() else None,
    )
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            return backbone(image)
    finally:
        backbone.train(was_training)
