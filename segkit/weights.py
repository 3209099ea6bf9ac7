"""Reading weight files safely and loading them into modules with a useful error.

Every file is read with ``torch.load(weights_only=True)``: a checkpoint is data, and a file that
would need to run pickled code to load is refused before any of that code can run.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from segkit.errors import CheckpointError


def read_checkpoint(path: str | os.PathLike) -> Any:
    """The object stored in a weight file, loaded on the CPU without executing any code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weight file not found (pretrained weights are local files)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused: the file contains pickled code or objects that are not plain "
            f"weights, and segkit does not run code from weight files ({_first_line(error)}). "
            "If you trust it, re-save its state dict with torch.save(model.state_dict(), ...)."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path}: not a readable PyTorch weight file (truncated or corrupt?): {_first_line(error)}"
        ) from None


def state_dict_of(checkpoint: Any, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model state dict inside a checkpoint: a bare state dict or a dict with a ``model``,
    ``state_dict`` or ``model_state_dict`` entry (segkit, most trainers, Lightning-like)."""
    if isinstance(checkpoint, Mapping):
        for key in ("model", "state_dict", "model_state_dict"):
            inner = checkpoint.get(key)
            if isinstance(inner, Mapping) and _is_state_dict(inner):
                return dict(inner)
        if _is_state_dict(checkpoint):
            return dict(checkpoint)
    raise CheckpointError(f"{path}: holds no state dict (a mapping of names to tensors)")


def _is_state_dict(mapping: Mapping) -> bool:
    return bool(mapping) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in mapping.items()
    )


def load_into(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str | os.PathLike,
    strict: bool = True,
) -> None:
    """Load weights; on any mismatch name the missing, unexpected and wrongly shaped keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong_shape = [
        f"{k} (file {tuple(v.shape)}, model {tuple(own[k].shape)})"
        for k, v in state_dict.items()
        if k in own and v.shape != own[k].shape
    ]
    if wrong_shape or (strict and (missing or unexpected)):
        parts = [f"{source}: the weights do not fit the model"]
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", wrong_shape),
        ):
            if keys:
                parts.append(f"{label} ({len(keys)}): {_shorten(keys)}")
        raise CheckpointError("; ".join(parts))
    module.load_state_dict(state_dict, strict=strict)


def _shorten(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
