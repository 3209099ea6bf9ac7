"""Reading weight files safely and loading them into modules with a useful error.

Every file is read with ``torch.load(weights_only=True)``: a checkpoint is data, and a file that
would need to run pickled code to load is refused before any of that code can run.

What other projects' training code adds around the weights is taken off on reading: the
``module.`` prefix of ``DataParallel``/``DistributedDataParallel`` and the bookkeeping buffers of
the synchronized batch norm in the CSAIL semantic-segmentation code (``_tmp_running_mean``,
``_tmp_running_var``, ``_running_iter``), which are not weights of any network. Renaming one
project's layers into another's is not done here; that is ``segkit convert`` (docs/weights.md).

RGB weights for a model of another number of input channels C (a 4-band or grey image) are
adapted instead of refused (:func:`adapt_input_conv`). With C > 3, input channel c of the first
convolution takes the weight of RGB channel ``c mod 3``, divided by the number of input channels
that take that same RGB channel (so by C/3 when C is a multiple of 3: 3/C on every weight); with
C < 3, channel c takes the sum of the RGB channels r with ``r mod C == c`` (grey: R + G + B).
Either way each RGB weight is shared out, never copied, so every filter keeps its sum over the
inputs and an input whose channels are alike gives exactly the activations of the RGB network.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segkit.errors import CheckpointError

WRAPPER_PREFIX = "module."
FOREIGN_BUFFERS = ("_tmp_running_mean", "_tmp_running_var", "_running_iter")


def read_checkpoint(path: str | os.PathLike) -> Any:
    """The object stored in a weight file, loaded on the CPU without executing any code."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"{path}: is a folder; give the weight file in it (e.g. {path}/best.pt)"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: weight file not found (weights are read from local files)")
    if not _is_pickle(path):
        raise CheckpointError(
            f"{path}: not a PyTorch weight file: torch.save writes a zip archive (or, before "
            "PyTorch 1.6, a pickle), and this file is neither"
        )
    try:
        with warnings.catch_warnings():  # torch's note on the pickle protocol of old files
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused: loading it would run code or build objects that are not plain "
            f"weights ({_refusal_reason(error)}), and segkit never runs code from weight files. "
            "If you trust the file, load it yourself and re-save the state dict: "
            "torch.save(model.state_dict(), ...)."
        ) from None
    # a damaged archive or pickle trips the reader in many ways
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise CheckpointError(
            f"{path}: not a readable PyTorch weight file (truncated or corrupt?): {_first_line(error)}"
        ) from None


def state_dict_of(checkpoint: Any, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model state dict inside a checkpoint: a bare state dict or a dict with a ``model``,
    ``state_dict`` or ``model_state_dict`` entry (segkit, most trainers, Lightning-like), without
    the ``module.`` prefix of a wrapped model and without foreign bookkeeping buffers."""
    if isinstance(checkpoint, Mapping):
        for key in ("model", "state_dict", "model_state_dict"):
            inner = checkpoint.get(key)
            if isinstance(inner, Mapping) and _is_state_dict(inner):
                return _unwrapped(inner)
        if _is_state_dict(checkpoint):
            return _unwrapped(checkpoint)
    raise CheckpointError(f"{path}: holds no state dict (a mapping of names to tensors)")


def segmentor_state_dict(checkpoint: Any, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The weights of a whole segkit segmentor (``backbone.*``, ``head.*``, ...), or an error
    that says what the file is instead and what to do with it."""
    state = state_dict_of(checkpoint, path)
    if any(key.startswith("backbone.") for key in state):
        return state
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("backbone"), Mapping):
        advice = "it is a backbone weight file: set model.backbone.pretrained to it"
    else:
        advice = original_layout(state) or (
            "a backbone's weights go in model.backbone.pretrained, and other projects' "
            "checkpoints need `segkit convert` first (docs/weights.md)"
        )
    raise CheckpointError(f"{path}: holds no segkit model (no 'backbone.*' weights); {advice}")


def original_layout(state: Mapping[str, Any]) -> str | None:
    """What a state dict in another project's layout is and how to use it, for error messages."""
    if any(k.startswith("base.") for k in state) and "seg.weight" in state:
        return (
            "it looks like an official DRN segmentation (DRNSeg) checkpoint: convert it with "
            "`segkit convert --from drn FILE --config CONFIG --out OUT.pt`"
        )
    if any(k.startswith(("conv_last.", "ppm.")) for k in state):
        return (
            "it looks like a CSAIL decoder: convert it with its encoder, `segkit convert --from "
            "csail ENCODER DECODER --config CONFIG --out OUT.pt`"
        )
    if any(k.startswith("backbone.") for k in state) and any(k.startswith("head.") for k in state):
        return "it is a whole segkit model: give it to model.pretrained, not to a backbone"
    if "conv1.weight" in state or "layer0.0.weight" in state:
        return (
            "it looks like backbone weights (torchvision, DRN or CSAIL-encoder layout): "
            "use it as model.backbone.pretrained"
        )
    return None


def _unwrapped(mapping: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = dict(mapping)
    if all(key.startswith(WRAPPER_PREFIX) for key in state):
        state = {key[len(WRAPPER_PREFIX) :]: value for key, value in state.items()}
    return {k: v for k, v in state.items() if k.rpartition(".")[2] not in FOREIGN_BUFFERS}


def _is_state_dict(mapping: Mapping) -> bool:
    return bool(mapping) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in mapping.items()
    )


RGB = 3


def adapt_input_conv(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """RGB convolution weights [out, 3, kh, kw] for ``channels`` input channels (see the
    module): each filter's sum over its input channels stays that of the RGB filter."""
    if weight.ndim != 4 or weight.shape[1] != RGB:
        raise ValueError(
            f"expected RGB convolution weights [out, 3, kh, kw], got {tuple(weight.shape)}"
        )
    if channels >= RGB:
        taken = [c % RGB for c in range(channels)]
        sharing = torch.tensor([taken.count(r) for r in taken], dtype=weight.dtype)
        return weight[:, taken] / sharing.view(1, -1, 1, 1)
    # fewer channels: channel c sums the RGB channels r with r mod channels == c
    return torch.stack([weight[:, c::channels].sum(dim=1) for c in range(channels)], dim=1)


def load_into(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str | os.PathLike,
    strict: bool = True,
    *,
    in_channels: int | None = None,
) -> None:
    """Load weights; on any mismatch name the missing, unexpected and wrongly shaped keys.

    A file written before PyTorch 0.4.1 has no ``num_batches_tracked`` in its batch norms; as
    PyTorch itself does for such files, those counters start at 0 instead of being missing.
    With ``in_channels`` (a model of that many input channels), RGB weights of its first
    convolution are adapted (:func:`adapt_input_conv`) with a note."""
    own = module.state_dict()
    foreign = not set(state_dict) & set(own)
    state_dict = dict(state_dict)
    if in_channels is not None and in_channels != RGB:
        adapt_input_convs(state_dict, own, in_channels, source)
    for key, value in own.items():
        norm, _, name = key.rpartition(".")
        if (
            name == "num_batches_tracked"
            and key not in state_dict
            and f"{norm}.running_mean" in state_dict
        ):
            state_dict[key] = torch.zeros_like(value)
    problems = fit_problems(own, state_dict, strict)
    if problems:
        layout = original_layout(state_dict) if foreign else None
        hint = [layout] if layout else []
        raise CheckpointError(
            "; ".join([f"{source}: the weights do not fit the model", *problems, *hint])
        )
    module.load_state_dict(state_dict, strict=strict)


def fit_problems(
    own: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor], strict: bool
) -> list[str]:
    """What keeps ``state_dict`` from loading into a model whose state is ``own``: the missing,
    unexpected (both only when ``strict``) and wrongly shaped keys, one line each; empty when it
    fits. Plugins with their own weight layouts report mismatches in these same words."""
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong_shape = [
        f"{k} (file {tuple(v.shape)}, model {tuple(own[k].shape)})"
        for k, v in state_dict.items()
        if k in own and v.shape != own[k].shape
    ]
    if not wrong_shape and not (strict and (missing or unexpected)):
        return []
    listed = (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
    return [f"{label} ({len(keys)}): {_shorten(keys)}" for label, keys in listed if keys]


def adapt_input_convs(
    state_dict: dict[str, torch.Tensor],
    own: Mapping[str, torch.Tensor],
    channels: int,
    source: str | os.PathLike,
) -> None:
    """Adapt, in ``state_dict``, every convolution whose file weights take RGB where the
    model's take ``channels``, all else equal: the input convolutions (no inner layer of a
    network takes exactly three channels)."""
    for key, value in list(state_dict.items()):
        mine = own.get(key)
        if (
            mine is not None
            and value.ndim == 4
            and value.shape[1] == RGB
            and mine.shape[1] == channels
            and value.shape[0] == mine.shape[0]
            and value.shape[2:] == mine.shape[2:]
        ):
            state_dict[key] = adapt_input_conv(value, channels).to(value.dtype)
            print(
                f"segkit: note: {source}: {key} holds RGB weights and the model takes "
                f"{channels} channels: adapted ({_rule(channels)}; docs/weights.md)",
                file=sys.stderr,
            )


def _rule(channels: int) -> str:
    if channels > RGB:
        return "channel c takes RGB channel c mod 3, divided by how many channels take that one"
    return f"channel c sums the RGB channels r with r mod {channels} == c"


def _shorten(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _is_pickle(path: Path) -> bool:
    """Whether the file is a zip archive (which holds a pickle) or a pickle of protocol 2 or
    later (the legacy torch format, starting with the PROTO opcode)."""
    with open(path, "rb") as file:
        start = file.read(4)
    return start[:1] == b"\x80" or start == b"PK\x03\x04"


# Sentences of torch's refusal that are advice, not the reason: load with the protection off or
# allow-list what the file asks for (either runs the file's code), read the docs, file an issue.
_TORCH_ADVICE = re.compile(
    r"weights.only|safe_globals|arbitrary code|trusted source|documentation|file an issue", re.I
)


def _refusal_reason(error: BaseException) -> str:
    """What the file asked for, as torch's refusal names it: the blocked global (``posix.system``)
    where there is one, otherwise torch's sentences without its advice to load the file anyway."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    blocked = re.search(r"GLOBAL (\S+)", text)
    if blocked:
        return f"it asks for {blocked.group(1)}"
    text = text.replace("WeightsUnpickler error:", "\n")
    sentences = re.split(r"(?<=\.)\s+|\n", text)
    kept = [s for s in sentences if s.strip() and not _TORCH_ADVICE.search(s)]
    return " ".join(" ".join(kept).split()).rstrip(".") or type(error).__name__
