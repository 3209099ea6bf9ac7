"""``segkit export``'s work: build the graph of a trained model, write it under a temporary
name, verify it, and only then give it its name and write the verification report beside it
(``FILE.json``). A refused export leaves no file behind."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from segkit.errors import SegkitError
from segkit.export import formats
from segkit.export.catalog import INPUT_NAME, SUFFIXES, VAL_IMAGES
from segkit.export.graph import ExportGraph, Output, with_window_pools
from segkit.export.valcheck import ValidationCheck, validation_check
from segkit.export.verify import MIN_AGREEMENT, Check, check_shapes, compare
from segkit.files import atomic_write_text
from segkit.inputs import InputSpec

DYNAMIC_MIN_SIDE = 64


@dataclass(frozen=True)
class ExportRequest:
    checkpoint: Path
    config: dict[str, Any]
    format: str
    out: Path
    size: tuple[int, int]
    batch: int = 1
    dynamic: bool = False
    output: Output = "logits"
    val_images: int = VAL_IMAGES  # how many validation images to check on; 0: none
    # the checkpoint file's contents where the caller has read them already
    contents: Any = field(default=None, repr=False, compare=False)


def export(request: ExportRequest) -> dict[str, Any]:
    """Write and verify the export of ``request``; the report written to ``FILE.json``."""
    from segkit.engine.loaded_model import load_trained

    trained = load_trained(request.config, request.checkpoint, "cpu", checkpoint=request.contents)
    segmentor = trained.model.float().to(memory_format=torch.contiguous_format).eval()
    mean, std = request.config["data"]["mean"], request.config["data"]["std"]
    reference = ExportGraph(segmentor, mean, std, request.output).eval()
    # ONNX lowers adaptive pooling to fixed kernels fitted to the example input
    exported = segmentor if request.format != "onnx" else with_window_pools(segmentor)
    graph = ExportGraph(exported, mean, std, request.output).eval()
    height, width = request.size
    inputs = InputSpec.of(request.config)
    dtype = getattr(torch, inputs.dtype)
    example = torch.zeros(*example_shape(request, inputs.channels), dtype=dtype)

    # beside the target, so that the rename stays on one file system; torch.export.load wants
    # its own suffix
    suffix = SUFFIXES[request.format]
    temporary = request.out.with_name(f".{request.out.name}.{os.getpid()}.tmp{suffix}")
    try:
        try:
            formats.write(graph, example, temporary, request.format, request.dynamic)
        except Exception as error:  # the exporter's many ways of refusing a model
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise SegkitError(
                f"{request.out}: not written: torch could not export this model to "
                f"{request.format} ({type(error).__name__}: {first_line[:300]}); try another "
                "--format, or without --dynamic (SEGKIT_DEBUG=1 shows the exporter's traceback)"
            ) from error
        shapes = check_shapes(request.batch, height, width, request.dynamic, inputs.channels)
        written = formats.load(temporary, request.format)
        checks = compare(reference, written, shapes, dtype=dtype)
        failed = [check for check in checks if not check.passed]
        if failed:
            raise SegkitError(refusal(request, failed))
        validation = on_validation_images(request, reference, written)
        if isinstance(validation, ValidationCheck) and not validation.passed:
            raise SegkitError(refusal(request, [validation]))
        names, palette, _ = trained.labels(request.config["model"]["num_classes"])
        report = describe(request, checks, validation, mean, std, names, palette)
        os.replace(temporary, request.out)
    finally:
        temporary.unlink(missing_ok=True)
    atomic_write_text(report_path(request.out), json.dumps(report, indent=2) + "\n")
    return report


def example_shape(request: ExportRequest, channels: int = 3) -> tuple[int, int, int, int]:
    """The input the graph is traced on. torch.export specialises every size that is 1 in the
    example to 1, so a free graph is traced where no size is: a batch of two, and sides of at
    least DYNAMIC_MIN_SIDE, where the coarsest features of a stride-32 backbone are 2x2. (At
    32x32 they are 1x1, and the graph fails at every size where they are not.)"""
    height, width = request.size
    if not request.dynamic:
        return request.batch, channels, height, width
    side = DYNAMIC_MIN_SIDE
    return max(request.batch, 2), channels, max(height, side), max(width, side)


def on_validation_images(
    request: ExportRequest, reference, written
) -> ValidationCheck | str | None:
    """The check on real images (None where not asked for, a string where the data is absent)."""
    if request.val_images <= 0:
        return None
    fixed = None if request.dynamic else (request.batch, *request.size)
    return validation_check(request.config, reference, written, fixed, request.val_images)


def report_path(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def refusal(request: ExportRequest, failed: list[Check | ValidationCheck]) -> str:
    problems = "; ".join(check.describe() for check in failed)
    advice = (
        "export at a fixed --size without --dynamic"
        if request.dynamic
        else "try another --format, and report the model's config as a segkit bug"
    )
    return (
        f"{request.out}: not written: the {request.format} export does not reproduce the "
        f"PyTorch model (argmax agreement must be at least {MIN_AGREEMENT:.1%}): {problems}; "
        f"{advice}"
    )


def describe(
    request: ExportRequest,
    checks: list[Check],
    validation: ValidationCheck | str | None,
    mean: list[float],
    std: list[float],
    names: list[str],
    palette: list[tuple[int, int, int]],
) -> dict[str, Any]:
    """What a user of the file needs to feed it and read its answer, and how it was checked."""
    inputs = InputSpec.of(request.config)
    free = f"N x {inputs.channels} x H x W, any N, H, W" if request.dynamic else "fixed"
    top = 65535 if inputs.dtype == "uint16" else 255
    kind = "RGB" if inputs.channels == 3 else f"{inputs.channels} channels"
    runtimes = {"torch": torch.__version__, "segkit": version("segkit")}
    if request.format == "onnx":
        runtimes["onnxruntime"] = version("onnxruntime")
    return {
        "file": request.out.name,
        "format": request.format,
        "checkpoint": str(request.checkpoint),
        "input": {
            "name": INPUT_NAME,
            "dtype": inputs.dtype,
            "layout": f"NCHW, {kind}, 0..{top}",
            "shape": [request.batch, inputs.channels, *request.size],
            "dynamic": request.dynamic,
            "sizes": free,
            "normalization": {"mean": list(mean), "std": list(std)},
        },
        "output": {
            "name": request.output,
            "shape": "N x classes x H x W (the input size)",
            "num_classes": len(names),
        },
        "classes": names,
        "palette": [list(colour) for colour in palette],
        "verification": {
            "min_agreement": MIN_AGREEMENT,
            "checks": [check.as_json() for check in checks],
            "validation": (
                validation.as_json()
                if isinstance(validation, ValidationCheck)
                else {"skipped": validation or "--val-images 0"}
            ),
        },
        "versions": runtimes,
    }
