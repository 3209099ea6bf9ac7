"""A timm classification weight file, checked against the model before timm loads it.

timm's own loader is lenient on purpose (a feature model drops the classifier and then loads with
``strict=False``), so a file of another architecture would leave most layers random without a
word. Here the file is compared key by key with the classification model it claims to be, and a
mismatch stops the run naming the file. Files are read without running code: ``.safetensors``
with safetensors, anything else with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from segkit.errors import CheckpointError
from segkit.weights import adapt_input_conv, fit_problems, read_checkpoint, state_dict_of

RGB = 3


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The state dict in a ``.pth``/``.bin``/``.safetensors`` file, unwrapped from a ``model`` or
    ``state_dict`` entry and from the ``module.`` prefix of a data-parallel model."""
    if Path(path).suffix != ".safetensors":
        return state_dict_of(read_checkpoint(path), path)
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: weight file not found (weights are read from local files)")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return state_dict_of(load_file(path, device="cpu"), path)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file: {error}") from None


def without(state: dict[str, torch.Tensor], modules: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """``state`` without the weights of ``modules`` (the classifier of a feature backbone)."""
    return {k: v for k, v in state.items() if k.rpartition(".")[0] not in modules}


def adapt_first_convs(
    state: dict[str, torch.Tensor], convs: tuple[str, ...], channels: int, path: str
) -> None:
    """RGB weights of the input convolutions shared out over ``channels`` inputs by segkit's
    rule (docs/weights.md), the same for every backbone, instead of timm's own."""
    if channels == RGB:
        return
    for conv in convs:
        weight = state.get(f"{conv}.weight")
        if weight is not None and weight.ndim == 4 and weight.shape[1] == RGB:
            state[f"{conv}.weight"] = adapt_input_conv(weight, channels).to(weight.dtype)
            print(
                f"segkit: note: {path}: {conv}.weight holds RGB weights and the model takes "
                f"{channels} channels: adapted (docs/weights.md)",
                file=sys.stderr,
            )


def check_fits(
    reference: nn.Module, name: str, state: dict[str, torch.Tensor], path: str, strict: bool
) -> None:
    """Refuse ``state`` unless it has ``reference``'s keys and shapes (shapes always; keys
    unless ``strict`` is false), listing what differs."""
    problems = fit_problems(reference.state_dict(), state, strict)
    if problems:
        hint = "the file must be a state dict of this timm model as timm saves it"
        raise CheckpointError(
            "; ".join([f"{path}: the weights do not fit timm's '{name}'", *problems, hint])
        )
