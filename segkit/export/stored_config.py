"""The config a segkit checkpoint was trained with, validated as a config file would be, so that
commands can take a checkpoint alone (``segkit export --checkpoint CK``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from segkit.config import ConfigSource
from segkit.errors import CheckpointError, ConfigError
from segkit.weights import read_checkpoint


def checkpoint_config(path: str | Path) -> dict[str, Any]:
    """The resolved config stored in the checkpoint at ``path``; its problems are reported
    against the checkpoint file (it has no lines to point at)."""
    from segkit.plugins import get_plugins
    from segkit.validation import Validator

    path = Path(path)
    checkpoint = read_checkpoint(path)
    stored = checkpoint.get("config") if isinstance(checkpoint, dict) else None
    if not isinstance(stored, dict) or not stored:
        raise CheckpointError(
            f"{path}: holds no training config (a bare state dict, or written by another tool); "
            "give the config it was trained with: segkit export CONFIG --checkpoint ..."
        )
    source = ConfigSource(copy.deepcopy(stored), {}, path)
    resolved = Validator(source, get_plugins().registry, check_val_classes=False).resolve()
    if source.problems:
        raise ConfigError(source.problems)
    return resolved
