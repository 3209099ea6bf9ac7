"""An exported ONNX file run with onnxruntime alone: what ``segkit.load("model.onnx")`` returns
and what ``segkit predict --model FILE.onnx`` runs.

Only numpy, PIL and onnxruntime are used, never torch, so that a server can predict with the
exported file and none of the training stack installed. The classes and palette come from the
``FILE.onnx.json`` that ``segkit export`` writes beside the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from segkit.engine import visualize
from segkit.errors import SegkitError
from segkit.export.catalog import require_onnx_extra
from segkit.imageread import image_pixels

SUPPORTED = "whole-image prediction, one image at a time, with return_probs"
Key = TypeVar("Key")


class OnnxSegmenter(visualize.PaletteImages):
    """An ONNX file from ``segkit export`` with its classes and palette, ready to predict."""

    def __init__(self, path: str | os.PathLike):
        require_onnx_extra(("onnxruntime",))
        import onnxruntime

        self.path = Path(path)
        if not self.path.is_file():
            raise SegkitError(f"{self.path}: no such ONNX file")
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime's own errors share no base class
            raise SegkitError(
                f"{self.path}: onnxruntime cannot load it ({str(error).strip()[:200]}); give a "
                "file written by segkit export --format onnx"
            ) from None
        (given,) = self.session.get_inputs()
        self.input_name = given.name
        batch, channels, height, width = given.shape
        self.channels = channels if isinstance(channels, int) else 3
        self.dtype = "uint16" if given.type == "tensor(uint16)" else "uint8"
        # a free dimension is a name (or None) in onnxruntime's shapes, a fixed one an int
        self.batch = batch if isinstance(batch, int) else None
        self.size = (height, width) if isinstance(height, int) and isinstance(width, int) else None
        self.output_name = self.session.get_outputs()[0].name
        count = self.session.get_outputs()[0].shape[1]
        self.classes, self.palette, self.labels_note = self._labels(count)

    def _labels(self, count: Any) -> tuple[list[str], list[tuple[int, int, int]], str | None]:
        """The class names and colours of ``FILE.onnx.json``; without that file the defaults
        (``class_i``, generated colours) and a note saying so."""
        report_file = self.path.with_name(self.path.name + ".json")
        if not report_file.is_file():
            if not isinstance(count, int):
                raise SegkitError(
                    f"{self.path}: {report_file.name} is missing beside it and the file does not "
                    "fix the number of classes; put the FILE.json segkit export wrote beside it"
                )
            note = (
                f"{report_file} is missing (segkit export writes it beside the .onnx file); "
                f"using default class names (class_0..class_{count - 1}) and colours"
            )
            return [f"class_{i}" for i in range(count)], visualize.default_palette(count), note
        try:
            report = json.loads(report_file.read_text(encoding="utf-8"))
            names = [str(name) for name in report["classes"]]
            palette = [tuple(int(c) for c in colour) for colour in report["palette"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SegkitError(
                f"{report_file}: cannot read the classes and palette ({type(error).__name__}: "
                f"{error}); export the model again, or remove the file to use default names"
            ) from None
        if isinstance(count, int) and len(names) != count:
            raise SegkitError(
                f"{report_file} lists {len(names)} classes but {self.path.name} answers {count}; "
                "the two files do not belong together: export the model again"
            )
        return names, palette, None

    def size_note(self) -> str | None:
        """What is done to images the file cannot take as they are: said once per run."""
        if self.size is None:
            return None
        height, width = self.size
        return (
            f"{self.path.name} takes {height}x{width} images only (exported without --dynamic): "
            "other sizes are resized to it and their class maps back (nearest)"
        )

    def predict(
        self,
        images: Any,
        *,
        mode: str | None = None,
        tta: bool = False,
        merge: Any = None,
        return_probs: bool = False,
        resize: int | str | None = None,
    ) -> Any:
        """HxW int64 class maps of one image or a list of them (see :data:`segkit.imageread.INPUT_FORMS`), each at
        its image's size; with ``return_probs`` also the CxHxW float32 probabilities, as a pair
        ``(masks, probabilities)``, as :meth:`segkit.engine.segmenter.Segmenter.predict`."""
        asked = [
            text
            for text, given in (
                (f"mode={mode!r}", mode not in (None, "whole")),
                ("tta=True", tta),
                ("merge", merge is not None),
                (f"resize={resize!r}", resize is not None),
            )
            if given
        ]
        if asked:
            raise SegkitError(
                f"{', '.join(asked)}: an ONNX file is served with {SUPPORTED} only; use the "
                "checkpoint (segkit.load('checkpoint.pt')) for sliding windows, TTA, merges "
                "and resizing"
            )
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        arrays = [
            image_pixels(
                item,
                "the image" if single else f"image {index} of the list",
                self.channels,
                self.dtype,
            )
            for index, item in enumerate(items)
        ]
        notes: list[str] = []
        results = [
            output for _, output in self.segment(enumerate(arrays), notes.append, return_probs)
        ]
        if notes:
            import warnings

            warnings.warn(notes[0], stacklevel=2)
        masks = [labels for labels, _ in results]
        if not return_probs:
            return masks[0] if single else masks
        probabilities = [probs for _, probs in results]
        return (masks[0], probabilities[0]) if single else (masks, probabilities)

    def segment(
        self,
        images: Iterable[tuple[Key, np.ndarray]],
        note: Callable[[str], None],
        keep_probabilities: bool = False,
    ) -> Iterator[tuple[Key, tuple[np.ndarray, np.ndarray | None]]]:
        """``(key, (HxW int64 labels, KxHxW probabilities or None))`` for each ``(key, HxWxC
        image)`` of the file's channels and type, in order, read one at a time; ``note`` is told :meth:`size_note` the
        first time an image is resized."""
        noted = False
        for key, image in images:
            size = image.shape[:2]
            fed = image
            if self.size is not None and size != self.size:
                if not noted:
                    note(self.size_note())
                    noted = True
                fed = _resized(image, self.size)
            batch = fed.transpose(2, 0, 1)[None]
            if self.batch is not None and self.batch > 1:  # a fixed batch: fill it with copies
                batch = np.repeat(batch, self.batch, axis=0)
            output = self.session.run(None, {self.input_name: np.ascontiguousarray(batch)})[0][0]
            labels = output.argmax(axis=0).astype(np.int64)
            probabilities = None
            if keep_probabilities:
                probabilities = output if self.output_name == "probs" else _softmax(output)
                probabilities = _nearest(probabilities.astype(np.float32), size)
            yield key, (_nearest(labels[None], size)[0], probabilities)


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An HxWxC uint8 or uint16 image resized bilinearly by Pillow, channel by channel (as
    32-bit floats, which hold every uint16 value) where it is not 8-bit RGB."""
    if image.dtype == np.uint8 and image.shape[2] == 3:
        return np.asarray(Image.fromarray(image).resize(size[::-1], Image.Resampling.BILINEAR))
    top = np.iinfo(image.dtype).max
    planes = [
        np.asarray(
            Image.fromarray(image[..., c].astype(np.float32)).resize(
                size[::-1], Image.Resampling.BILINEAR
            )
        )
        for c in range(image.shape[2])
    ]
    return np.clip(np.rint(np.stack(planes, axis=2)), 0, top).astype(image.dtype)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Over the classes (axis 0), shifted by the maximum so that no exponential overflows."""
    shifted = np.exp(logits - logits.max(axis=0, keepdims=True))
    return shifted / shifted.sum(axis=0, keepdims=True)


def _nearest(planes: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """C x h x w -> C x H x W, each output pixel taking the input pixel under its centre (as
    torch's ``nearest-exact``, which the checkpoint path uses)."""
    height, width = planes.shape[-2:]
    if (height, width) == tuple(size):
        return planes
    rows = np.minimum(((np.arange(size[0]) + 0.5) * height / size[0]).astype(np.int64), height - 1)
    columns = np.minimum(((np.arange(size[1]) + 0.5) * width / size[1]).astype(np.int64), width - 1)
    return planes[:, rows[:, None], columns[None, :]]


def load(path: str | os.PathLike) -> OnnxSegmenter:
    """An ONNX file ready to predict (docs/python-api.md); a missing ``FILE.onnx.json`` is
    a warning, the defaults replacing its classes and palette."""
    import warnings

    segmenter = OnnxSegmenter(path)
    if segmenter.labels_note:
        warnings.warn(segmenter.labels_note, stacklevel=3)
    return segmenter
