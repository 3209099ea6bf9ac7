"""segkit: a plugin-based toolkit for semantic segmentation in PyTorch.

Importing segkit is cheap (no torch): plugin modules import it for ``segkit.hookimpl``, and
``segkit list`` must stay fast. Note that the functions ``segkit.builder`` and ``segkit.registry``
shadow the modules of the same name; inside segkit, import from those modules with
``from segkit.components import ...``.
"""

from __future__ import annotations

from typing import Any

from segkit.builder import build, build_model, registry
from segkit.errors import ConfigError, SegkitError
from segkit.hookspecs import hookimpl
from segkit.validation import load_config

__all__ = [
    "ConfigError",
    "SegkitError",
    "Segmenter",
    "build",
    "build_model",
    "hookimpl",
    "load",
    "load_config",
    "registry",
    "train",
]


def load(checkpoint: Any, config: Any = None, *, device: Any = None, precision: Any = None) -> Any:
    """A trained model ready to predict, a :class:`segkit.engine.segmenter.Segmenter`; see
    :func:`segkit.engine.segmenter.load` and docs/python-api.md. A ``.onnx`` file from
    ``segkit export`` gives a :class:`segkit.export.serving.OnnxSegmenter` instead, which runs
    it with onnxruntime and never imports torch."""
    import os

    if isinstance(checkpoint, (str, os.PathLike)) and str(checkpoint).lower().endswith(".onnx"):
        from segkit.export.serving import load as load_onnx

        given = [
            name
            for name, value in (("config", config), ("device", device), ("precision", precision))
            if value is not None
        ]
        if given:
            raise SegkitError(
                f"{checkpoint}: {', '.join(given)} cannot be given for an ONNX file, which "
                "carries its own normalisation and runs on the CPU with onnxruntime"
            )
        return load_onnx(checkpoint)
    from segkit.engine.segmenter import load as load_segmenter

    return load_segmenter(checkpoint, config, device=device, precision=precision)


def train(config: Any, work_dir: Any = None, **options: Any) -> Any:
    """Train a config from Python and return the :class:`segkit.engine.trainer.Outcome`; see
    :func:`segkit.engine.trainer.train` and docs/training.md ("Training from Python")."""
    from segkit.engine.trainer import train as run_training

    return run_training(config, work_dir, **options)


def __getattr__(name: str) -> Any:
    if name == "Segmenter":  # imported on use: it needs torch
        from segkit.engine.segmenter import Segmenter

        return Segmenter
    if name == "__version__":
        from importlib.metadata import version

        return version("segkit")
    raise AttributeError(f"module 'segkit' has no attribute '{name}'")
