"""Writing the export graph in each format, and running a written file again.

ONNX goes through torch's exporter (``torch.onnx.export(dynamo=True)``, which needs onnxscript)
into one self-contained file, so that renaming it after verification keeps it whole; TorchScript
is a trace; ``exported`` is torch.export's ExportedProgram saved with ``torch.export.save``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from segkit.export.catalog import INPUT_NAME

Runner = Callable[[torch.Tensor], torch.Tensor]


def write(graph: nn.Module, example: torch.Tensor, path: Path, format: str, dynamic: bool) -> None:
    """``graph`` traced on ``example`` and written to ``path`` in ``format``; with ``dynamic``
    the batch size, height and width stay free."""
    shapes = None
    if dynamic:
        free = torch.export.Dim.DYNAMIC
        shapes = {INPUT_NAME: {0: free, 2: free, 3: free}}
    with torch.no_grad(), warnings.catch_warnings():
        # the tracers' notes on Python-level shape checks: verification covers what they warn of
        warnings.simplefilter("ignore")
        if format == "onnx":
            with contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
                torch.onnx.export(
                    graph,
                    (example,),
                    str(path),
                    dynamo=True,
                    external_data=False,
                    input_names=[INPUT_NAME],
                    output_names=[graph.output],
                    dynamic_shapes=shapes,
                )
        elif format == "torchscript":
            torch.jit.trace(graph, (example,), check_trace=False).save(str(path))
        else:
            program = torch.export.export(graph, (example,), dynamic_shapes=shapes)
            torch.export.save(program, str(path))


def load(path: Path, format: str) -> Runner:
    """A function from a uint8 batch to the output of the graph written at ``path``."""
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda images: torch.from_numpy(session.run(None, {name: images.numpy()})[0])
    if format == "torchscript":
        with warnings.catch_warnings():  # TorchScript's deprecation notice, not the user's concern
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    else:
        module = torch.export.load(str(path)).module()

    def run(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(images)

    return run
