"""The Mix Transformer (MiT), SegFormer's hierarchical encoder (Xie et al., NeurIPS 2021).

Four stages at strides 4, 8, 16, 32. Each stage starts with an *overlapping* patch embedding (a
strided conv whose kernel is larger than its stride: 7x7 stride 4 first, then 3x3 stride 2) and
stacks transformer blocks of *efficient* self-attention (keys and values come from the tokens
shrunk by a strided conv of the stage's reduction ratio, 8, 4, 2, 1) and *Mix-FFN* (an MLP with a
3x3 depthwise conv between its two layers, which gives the positional information, so there is
no positional encoding and any input size of at least 29 x 29 works). Stochastic depth grows
linearly over all blocks.

Parameter names read as the architecture does (``stages.<i>.patch_embed``, ``stages.<i>.blocks``,
``.attn.sr``, ``.ffn.dwconv``); the official NVlabs files, and MMSegmentation's conversion of
them, are renamed on loading (:mod:`segkit_plugins.segformer.official`, docs/weights.md).
LayerNorm epsilons are the official code's: 1e-6 in the blocks and after each stage, PyTorch's
1e-5 in the patch embedding and after the key/value reduction, so the official weights give the
official activations.
"""

from __future__ import annotations

import inspect
import math
import typing
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from segkit.constraints import AtLeast, Between
from segkit.layers import check_in_channels
from segkit.weights import load_into, read_checkpoint, state_dict_of
from segkit_plugins.segformer import variant_help
from segkit_plugins.segformer.official import to_segkit_layout

BLOCK_EPS = 1e-6

# variant -> (widths, depths); heads (1, 2, 5, 8), reductions (8, 4, 2, 1) and MLP ratio 4 are
# common to all (paper, Table 6)
SIZES = {
    "b0": ((32, 64, 160, 256), (2, 2, 2, 2)),
    "b1": ((64, 128, 320, 512), (2, 2, 2, 2)),
    "b2": ((64, 128, 320, 512), (3, 4, 6, 3)),
    "b3": ((64, 128, 320, 512), (3, 4, 18, 3)),
    "b4": ((64, 128, 320, 512), (3, 8, 27, 3)),
    "b5": ((64, 128, 320, 512), (3, 6, 40, 3)),
}

Positive = Annotated[int, AtLeast(1)]
Rate = Annotated[float, Between(0, 1)]


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, H*W, C]."""
    return x.flatten(2).transpose(1, 2)


def to_grid(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, H*W, C] -> [B, C, H, W]."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)


class OverlapPatchEmbed(nn.Module):
    """A strided conv with a kernel wider than its stride, so neighbouring patches share pixels
    (ViT's non-overlapping patches lose the local continuity around patch borders)."""

    def __init__(self, in_channels: int, width: int, kernel: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, width, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[-2:]
        return self.norm(to_tokens(x)), height, width


class EfficientSelfAttention(nn.Module):
    """Multi-head attention whose keys and values come from the tokens shrunk ``reduction``
    times in each direction: the cost falls from N^2 to N^2 / reduction^2."""

    def __init__(self, width: int, heads: int, reduction: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)
        if reduction > 1:
            self.sr = nn.Conv2d(width, width, reduction, stride=reduction)
            self.sr_norm = nn.LayerNorm(width)
        else:
            self.sr = self.sr_norm = None

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, count, channels = x.shape
        per_head = channels // self.heads
        q = self.q(x).reshape(batch, count, self.heads, per_head).transpose(1, 2)
        source = x
        if self.sr is not None:
            source = self.sr_norm(to_tokens(self.sr(to_grid(x, height, width))))
        kv = self.kv(source).reshape(batch, -1, 2, self.heads, per_head).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, kv[0], kv[1])
        return self.proj(attended.transpose(1, 2).reshape(batch, count, channels))


class MixFFN(nn.Module):
    """Linear, 3x3 depthwise conv, GELU, linear: the conv leaks position into the tokens."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = to_tokens(self.dwconv(to_grid(self.fc1(x), height, width)))
        return self.fc2(self.act(x))


class DropPath(nn.Module):
    """Stochastic depth: in training, a residual branch is dropped for a whole sample with
    probability ``rate`` and the kept ones are scaled by 1 / (1 - rate)."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate:g}"


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + ffn(norm(x))."""

    def __init__(self, width: int, heads: int, reduction: int, mlp_ratio: int, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=BLOCK_EPS)
        self.attn = EfficientSelfAttention(width, heads, reduction)
        self.norm2 = nn.LayerNorm(width, eps=BLOCK_EPS)
        self.ffn = MixFFN(width, width * mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), height, width))
        return x + self.drop_path(self.ffn(self.norm2(x), height, width))


class Stage(nn.Module):
    """Patch embedding, blocks, LayerNorm; returns the stage's feature map [B, C, H, W]."""

    def __init__(
        self,
        in_channels: int,
        width: int,
        kernel: int,
        stride: int,
        blocks: list[Block],
    ):
        super().__init__()
        self.patch_embed = OverlapPatchEmbed(in_channels, width, kernel, stride)
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(width, eps=BLOCK_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, height, width = self.patch_embed(x)
        for block in self.blocks:
            x = block(x, height, width)
        return to_grid(self.norm(x), height, width)


class MixTransformer(nn.Module):
    """MiT backbone: the four stage features (strides 4-32), or ImageNet logits with num_classes.

    ``widths``, ``depths``, ``heads`` and ``reductions`` (the sequence-reduction ratios) give
    one value per stage; the defaults are MiT-B0. ``pretrained``: a local weight file, the
    official NVlabs ``mit_b*.pth``, MMSegmentation's or segkit's layout; a feature backbone
    drops its classifier.
    ``in_channels``: the input's channels (RGB weights are adapted, docs/weights.md).
    """

    def __init__(
        self,
        widths: list[Positive] = SIZES["b0"][0],
        depths: list[Positive] = SIZES["b0"][1],
        heads: list[Positive] = (1, 2, 5, 8),
        reductions: list[Positive] = (8, 4, 2, 1),
        mlp_ratio: Positive = 4,
        drop_path_rate: Rate = 0.1,
        num_classes: int | None = None,
        pretrained: str | None = None,
        pretrained_strict: bool = True,
        in_channels: int = 3,
    ):
        super().__init__()
        widths, depths, heads, reductions = map(list, (widths, depths, heads, reductions))
        _check_sizes(widths, depths, heads, reductions, drop_path_rate)
        check_in_channels(in_channels)
        self.in_channels = in_channels
        total = sum(depths)
        rates = [drop_path_rate * k / max(total - 1, 1) for k in range(total)]
        stages, previous = [], in_channels
        for i, (width, depth, head_count, reduction) in enumerate(
            zip(widths, depths, heads, reductions)
        ):
            kernel, stride = (7, 4) if i == 0 else (3, 2)
            first = sum(depths[:i])
            blocks = [
                Block(width, head_count, reduction, mlp_ratio, rates[first + j])
                for j in range(depth)
            ]
            stages.append(Stage(previous, width, kernel, stride, blocks))
            previous = width
        self.stages = nn.ModuleList(stages)
        self.out_channels = widths
        self.strides = [4 * 2**i for i in range(len(widths))]
        self.classifier = None if num_classes is None else nn.Linear(widths[-1], num_classes)
        self.apply(_initialise)
        if pretrained:
            load_pretrained(self, pretrained, pretrained_strict)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        if self.classifier is None:
            return features
        return self.classifier(x.mean(dim=(2, 3)))


def _check_sizes(
    widths: list[int],
    depths: list[int],
    heads: list[int],
    reductions: list[int],
    drop_path_rate: float,
) -> None:
    lengths = {len(widths), len(depths), len(heads), len(reductions)}
    if len(lengths) != 1 or not widths:
        raise ValueError(
            "widths, depths, heads and reductions need one value per stage each; got "
            f"{len(widths)}, {len(depths)}, {len(heads)} and {len(reductions)} values"
        )
    for name, values in (
        ("widths", widths),
        ("depths", depths),
        ("heads", heads),
        ("reductions", reductions),
    ):
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"{name} must be positive integers; got {values}")
    for width, head_count in zip(widths, heads):
        if width % head_count:
            raise ValueError(
                f"heads: a stage of width {width} cannot be split into {head_count} heads; "
                f"give each stage a number of heads that divides its width ({widths})"
            )
    if not 0 <= drop_path_rate < 1:
        raise ValueError(f"drop_path_rate must be in [0, 1); got {drop_path_rate}")


def _initialise(module: nn.Module) -> None:
    """The official initialisation: truncated normal (std 0.02) linears, He-normal convs by fan
    out (groups counted), LayerNorm 1 and 0, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = math.prod(module.kernel_size) * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        nn.init.zeros_(module.bias)


def load_pretrained(model: MixTransformer, path: str, strict: bool = True) -> None:
    """Load a local weight file in the official, MMSegmentation's or segkit's layout; a feature
    backbone ignores the file's ImageNet classifier."""
    state = to_segkit_layout(state_dict_of(read_checkpoint(path), path))
    if model.classifier is None:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    load_into(model, state, path, strict, in_channels=model.in_channels)


def _variant(variant: str):
    """A factory identical to ``MixTransformer`` but for the default sizes, so that
    ``type: mit_b2`` alone is MiT-B2 and ``segkit show`` and validation see its sizes."""
    widths, depths = SIZES[variant]

    def factory(**options) -> MixTransformer:
        return MixTransformer(**{"widths": widths, "depths": depths, **options})

    defaults = {"widths": widths, "depths": depths}
    signature = inspect.signature(MixTransformer)
    factory.__signature__ = signature.replace(
        parameters=[
            p.replace(default=defaults[p.name]) if p.name in defaults else p
            for p in signature.parameters.values()
        ]
    )
    factory.__annotations__ = typing.get_type_hints(MixTransformer.__init__, include_extras=True)
    factory.__name__ = factory.__qualname__ = f"mit_{variant}"
    factory.__doc__ = variant_help(variant)
    return factory


mit_b0 = _variant("b0")
mit_b1 = _variant("b1")
mit_b2 = _variant("b2")
mit_b3 = _variant("b3")
mit_b4 = _variant("b4")
mit_b5 = _variant("b5")
