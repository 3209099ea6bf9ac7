"""A trained model ready for inference: the config's segmentor with a checkpoint's weights, on
the config's runtime (the device and precision validation during training used, so that
``segkit eval`` reproduces its numbers), with the class names and palette it was trained with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from segkit.builder import build_model
from segkit.engine.inference import InputNormalizer
from segkit.engine.precision import Precision
from segkit.engine.runtime import Runtime
from segkit.engine.visualize import default_palette
from segkit.weights import load_into, read_checkpoint, segmentor_state_dict


@dataclass
class TrainedModel:
    model: nn.Module
    device: torch.device
    precision: Precision
    normalizer: InputNormalizer
    classes: list[str] | None
    palette: list[tuple[int, int, int]] | None
    step: int | None
    path: Path
    non_finite: list[str]  # names of the weights holding NaN or inf

    def class_names(self, count: int) -> list[str]:
        return list(self.classes) if self.classes else [f"class_{i}" for i in range(count)]

    def colours(self, count: int) -> list[tuple[int, int, int]]:
        return list(self.palette) if self.palette else default_palette(count)


def load_trained(config: dict[str, Any], path: str | Path, device: str | None = None) -> TrainedModel:
    """The model of ``config`` with the weights of ``path`` (a segkit checkpoint or a state dict)."""
    path = Path(path)
    checkpoint = read_checkpoint(path)
    state = segmentor_state_dict(checkpoint, path)
    runtime = Runtime.resolve(config["train"], device=device)
    # The checkpoint replaces every weight; initial weights need not be read.
    model = build_model({**config, "model": {**config["model"], "pretrained": None}})
    load_into(model, state, path)
    model = runtime.place(model).eval()
    meta: Mapping[str, Any] = checkpoint if isinstance(checkpoint, Mapping) else {}
    palette = meta.get("palette")
    return TrainedModel(
        model=model,
        device=runtime.device,
        precision=runtime.precision,
        normalizer=runtime.normalizer(config["data"]["mean"], config["data"]["std"]),
        classes=list(meta["classes"]) if meta.get("classes") else None,
        palette=[tuple(c) for c in palette] if palette else None,
        step=meta.get("step") if isinstance(meta.get("step"), int) else None,
        path=path,
        non_finite=non_finite_weights(state),
    )


def non_finite_weights(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The floating-point tensors of a state dict that hold NaN or inf. segkit never saves such
    weights, but a diverged run elsewhere does, and such a model still yields a score."""
    return [
        name for name, tensor in state.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
