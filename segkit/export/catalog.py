"""The export formats by name, their usual suffixes, and the check for the ``export`` extra.

Plain data without torch: the CLI builds ``segkit export``'s options from it on every command,
and serving an ONNX file with onnxruntime (:mod:`segkit.export.serving`) needs no torch at all.
"""

from __future__ import annotations

import importlib

from segkit.errors import SegkitError

FORMATS = ("onnx", "torchscript", "exported")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts", "exported": ".pt2"}
INPUT_NAME = "images"
ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")
VAL_IMAGES = 50  # validation images an export is checked on, where data.val can be read


def require_onnx_extra(modules: tuple[str, ...] = ONNX_MODULES) -> None:
    """Refuse, before any work, when a package of the ``export`` extra cannot be imported."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise SegkitError(
            f"this needs {', '.join(missing)}, which cannot be imported here; install segkit's "
            "export extra: pip install 'segkit[export]'"
        )
