"""``segkit model-info CONFIG [overrides] [--size HxW] [--json]``: a model's size and cost.

Parameters are counted per part of the segmentor (backbone, head, each auxiliary head). FLOPs are
counted by ``torch.utils.flop_counter.FlopCounterMode`` over one evaluation-mode forward pass of
a single image (so auxiliary heads, which only run in training, cost nothing): it counts
convolutions and matrix products, a multiply-add as 2 FLOPs, and ignores normalisation,
activations, pooling and interpolation. Many papers and MMSegmentation's tables quote
multiply-adds (GMACs) as "GFLOPs"; both are printed.

The model is built on the ``meta`` device, which has shapes but no data: counting a ResNet-101 at
512x512 takes a second, not a minute. A component whose forward needs real values (it reads a
tensor's contents) is measured on the CPU instead.
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from typing import Any


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser(
        "model-info",
        help="parameters and FLOPs of a config's model",
        description="Count a model's parameters (total and per part) and the FLOPs of one "
        "forward pass at a given input size.",
    )
    parser.add_argument("config", help="path to a YAML config")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE or +KEY=VALUE overrides")
    parser.add_argument(
        "--size",
        type=parse_size,
        default=(512, 512),
        metavar="HxW",
        help="input height x width, e.g. 512x1024 (default 512x512); one number for a square",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=run_model_info)


def parse_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if not match or int(match[1]) < 1 or int(match[2] or match[1]) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW such as 512x512, got {text!r}")
    return int(match[1]), int(match[2] or match[1])


def run_model_info(args) -> int:
    from segkit.validation import load_config

    config = load_config(args.config, args.overrides)
    info = model_info(config, args.size)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(format_info(args.config, info))
    return 0


def model_info(config: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """Parameter counts and forward FLOPs of ``config``'s model for one C x H x W image (C its
    input channels, 3 for RGB)."""
    import torch

    from segkit.builder import build_model
    from segkit.inputs import InputSpec

    channels = InputSpec.of(config).channels

    try:
        with torch.device("meta"), warnings.catch_warnings():
            # pretrained files are still read and checked against the model; copying their
            # values into shape-only tensors is skipped, and torch says so for every tensor
            warnings.filterwarnings("ignore", message=".*non-meta parameter.*")
            model = build_model(config)
        flops = forward_flops(model, torch.zeros(1, channels, *size, device="meta"))
    except (NotImplementedError, RuntimeError):  # no meta kernel, or code that reads values
        model = build_model(config)
        flops = forward_flops(model, torch.zeros(1, channels, *size))
    return {
        "input": [1, channels, *size],
        "params": parameter_counts(model),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "flops": flops,
        "gflops": flops / 1e9,
        "gmacs": flops / 2e9,
    }


def parameter_counts(model) -> dict[str, int]:
    """Parameters per part: each child of the segmentor, each auxiliary head on its own."""
    from torch import nn

    counts: dict[str, int] = {}
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleList):
            for index, item in enumerate(child):
                counts[f"{name}.{index}"] = _count(item)
        else:
            counts[name] = _count(child)
    counts["total"] = _count(model)
    return counts


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def forward_flops(model, images) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(images)
    return counter.get_total_flops()


def format_info(config_path: str, info: dict[str, Any]) -> str:
    from segkit.commands.table import format_table

    total = info["params"]["total"]
    rows = [
        (part, f"{count:,}", f"{100 * count / max(total, 1):.1f}%")
        for part, count in info["params"].items()
    ]
    height, width = info["input"][2:]
    lines = [
        f"{config_path}",
        format_table(("PART", "PARAMS", "SHARE"), rows),
        f"trainable parameters: {info['trainable_params']:,}",
        f"forward pass at 1x3x{height}x{width} (eval mode): {info['gflops']:.2f} GFLOPs "
        f"= {info['gmacs']:.2f} GMACs",
        "(convolutions and matrix products; a multiply-add counts as 2 FLOPs)",
    ]
    return "\n".join(lines)
