"""segkit: a plugin-based toolkit for semantic segmentation in PyTorch.

Importing segkit is cheap (no torch): plugin modules import it for ``segkit.hookimpl``, and
``segkit list`` must stay fast. The heavier parts load when first used.
"""

from __future__ import annotations

from typing import Any

from segkit.errors import ConfigError, SegkitError
from segkit.hookspecs import hookimpl

__all__ = [
    "ConfigError",
    "SegkitError",
    "build",
    "build_model",
    "hookimpl",
    "load_config",
    "registry",
]

_LAZY = {
    "load_config": "segkit.validation",
    "build": "segkit.build",
    "build_model": "segkit.build",
    "registry": "segkit.build",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "__version__":
        from importlib.metadata import version

        return version("segkit")
    raise AttributeError(f"module 'segkit' has no attribute '{name}'")
