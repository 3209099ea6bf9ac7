"""A trained model ready for inference: the config's segmentor with a checkpoint's weights, on
the config's runtime (the device and precision validation during training used, so that
``segkit eval`` reproduces its numbers), with the class names and palette it was trained with."""

from __future__ import annotations

import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segkit.builder import build_model
from segkit.engine.inference import InputNormalizer
from segkit.engine.precision import Precision
from segkit.engine.runtime import Runtime
from segkit.engine.visualize import default_palette
from segkit.errors import CheckpointError, SegkitError
from segkit.weights import load_into, read_checkpoint, segmentor_state_dict


@dataclass
class TrainedModel:
    model: nn.Module
    device: torch.device
    precision: Precision
    normalizer: InputNormalizer
    classes: Any  # as stored in the checkpoint, checked by labels()
    palette: Any
    step: int | None
    path: Path
    non_finite: list[str]  # names of the weights holding NaN or inf

    def labels(self, count: int) -> tuple[list[str], list[tuple[int, int, int]], str | None]:
        """The class names and colours of a model of ``count`` classes, and a note when a stored
        list does not fit that model (edited, or written by another tool) and the defaults
        (``class_i``, generated colours) replace it: a bad palette should not stop a prediction."""
        names, names_problem = _stored_names(self.classes, count)
        colours, colours_problem = _stored_colours(self.palette, count)
        problems = {"class names": names_problem, "colours": colours_problem}
        replaced = {what: problem for what, problem in problems.items() if problem}
        note = None
        if replaced:
            note = f"{self.path}: {'; '.join(replaced.values())}; using the default {' and '.join(replaced)}"
        return (
            names or [f"class_{i}" for i in range(count)],
            colours or default_palette(count),
            note,
        )


def load_trained(
    config: dict[str, Any],
    path: str | Path,
    device: str | torch.device | None = None,
    precision: str | None = None,
    *,
    checkpoint: Any = None,
) -> TrainedModel:
    """The model of ``config`` with the weights of ``path`` (a segkit checkpoint or a state dict).
    ``checkpoint``: the file's contents where the caller has read them already (for its config)."""
    path = Path(path)
    if checkpoint is None:
        checkpoint = read_checkpoint(path)
    state = segmentor_state_dict(checkpoint, path)
    runtime = Runtime.resolve(config["train"], device=device, precision=precision)
    # The checkpoint replaces every weight; initial weights need not be read.
    model = build_model({**config, "model": {**config["model"], "pretrained": None}})
    load_into(model, state, path)
    model = runtime.place(model).eval()
    meta: Mapping[str, Any] = checkpoint if isinstance(checkpoint, Mapping) else {}
    return TrainedModel(
        model=model,
        device=runtime.device,
        precision=runtime.precision,
        normalizer=runtime.normalizer(config["data"]["mean"], config["data"]["std"]),
        classes=meta.get("classes"),
        palette=meta.get("palette"),
        step=meta.get("step") if isinstance(meta.get("step"), int) else None,
        path=path,
        non_finite=non_finite_weights(state),
    )


def inference_config(
    config: str | Path | dict[str, Any] | None,
    path: Path,
    checkpoint: Any,
    overrides: Sequence[str] = (),
    *,
    check_val_classes: bool = True,
) -> dict[str, Any]:
    """The resolved config to run the checkpoint at ``path`` with: ``config`` (a YAML file, or
    a resolved dict used as it is), else the one the checkpoint stores, as training and
    ``segkit convert`` write it. A state dict stores none, hence the message saying what to do."""
    from segkit.validation import load_config, load_stored_config

    if isinstance(config, dict):
        if overrides:
            raise SegkitError("overrides go with a config file; change the dict itself instead")
        return config
    if config is not None:
        return load_config(config, overrides, check_val_classes=check_val_classes)
    stored = checkpoint.get("config") if isinstance(checkpoint, Mapping) else None
    if not isinstance(stored, dict):
        raise CheckpointError(
            f"{path} stores no config (a bare state dict, or a file from another tool); give the "
            "model's config too: CONFIG on the command line (segkit predict/eval/export CONFIG "
            "--checkpoint ...), or segkit.load(checkpoint, config)"
        )
    return load_stored_config(
        stored, f"{path} (its stored config)", overrides, check_val_classes=check_val_classes
    )


def non_finite_weights(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The floating-point tensors of a state dict that hold NaN or inf. segkit never saves such
    weights, but a diverged run elsewhere does, and such a model still yields a score."""
    return [
        name
        for name, tensor in state.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]


def _stored_names(stored: Any, count: int) -> tuple[list[str] | None, str | None]:
    """The stored class names if they fit ``count`` classes, else what is wrong with them."""
    if stored is None:
        return None, None
    if not isinstance(stored, (list, tuple)) or not all(isinstance(name, str) for name in stored):
        return None, f"the stored class list is not a list of names ({reprlib.repr(stored)})"
    if len(stored) != count:
        return (
            None,
            f"the stored class list has {len(stored)} names for the model's {count} classes",
        )
    return list(stored), None


def _stored_colours(
    stored: Any, count: int
) -> tuple[list[tuple[int, int, int]] | None, str | None]:
    """The stored palette if it has one RGB colour per class, else what is wrong with it."""
    if stored is None:
        return None, None
    if not isinstance(stored, (list, tuple)):
        return None, f"the stored palette is not a list of colours ({reprlib.repr(stored)})"
    if len(stored) != count:
        return None, f"the stored palette has {len(stored)} colours for the model's {count} classes"
    for index, colour in enumerate(stored):
        if not _is_rgb(colour):
            return (
                None,
                f"the stored palette's entry {index} is {reprlib.repr(colour)}, not [r, g, b] in 0..255",
            )
    return [tuple(colour) for colour in stored], None


def _is_rgb(colour: Any) -> bool:
    return (
        isinstance(colour, (list, tuple))
        and len(colour) == 3
        and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in colour)
    )
