"""A trained model as a function from images to class maps: what :func:`segkit.load` returns and
what ``segkit predict`` runs, so that Python and the command predict the very same pixels.

Images of equal size (after ``resize``) go through the model together, ``data.val_batch_size``
at a time, as validation batches them; the class map comes back at each input's own size.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from segkit.engine import visualize
from segkit.engine.inference import InferenceSettings, Predictor
from segkit.engine.loaded_model import TrainedModel, inference_config, load_trained
from segkit.engine.merge import ClassMerge, resolve_merge
from segkit.errors import SegkitError
from segkit.imageread import image_pixels
from segkit.inputs import InputSpec
from segkit.schema import PrecisionName
from segkit.weights import read_checkpoint

Key = TypeVar("Key")


@dataclass
class Segmentation:
    """One image's prediction, at the image's size, on the CPU."""

    labels: torch.Tensor  # HxW int64 class (or group) indices
    confidence: torch.Tensor | None  # HxW float32: the probability of the chosen class, if asked
    probabilities: torch.Tensor | None  # CxHxW float32, where asked for


class Segmenter(visualize.PaletteImages):
    """A checkpoint's model with its config, classes and palette, ready to predict."""

    def __init__(self, trained: TrainedModel, config: dict[str, Any]):
        self.trained = trained
        self.config = config
        self.classes, self.palette, self.labels_note = trained.labels(
            config["model"]["num_classes"]
        )
        self.batch_size = int(config["data"]["val_batch_size"])
        self.inputs = InputSpec.of(config)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | os.PathLike,
        config: str | os.PathLike | dict[str, Any] | None = None,
        *,
        overrides: Sequence[str] = (),
        device: str | torch.device | None = None,
        precision: str | None = None,
    ) -> Segmenter:
        """``config`` defaults to the one the checkpoint stores (see :func:`segkit.load`)."""
        if precision is not None and precision not in typing.get_args(PrecisionName):
            names = ", ".join(typing.get_args(PrecisionName))
            raise SegkitError(f"precision '{precision}' is not one of {names}")
        path = Path(checkpoint)
        record = read_checkpoint(path)
        resolved = inference_config(config, path, record, overrides, check_val_classes=False)
        trained = load_trained(resolved, path, device, precision, checkpoint=record)
        return cls(trained, resolved)

    @property
    def device(self) -> torch.device:
        return self.trained.device

    def settings(self, mode: str | None = None, tta: bool = False) -> InferenceSettings:
        """The config's ``eval`` settings, with ``mode`` and test-time augmentation as
        ``--mode`` and ``--tta`` set them."""
        if mode not in (None, "whole", "slide"):
            raise SegkitError(f"mode '{mode}' is not one of whole, slide")
        return InferenceSettings.from_config(self.config["eval"], mode, tta)

    def class_merge(self, merge: str | os.PathLike | ClassMerge) -> ClassMerge:
        """The merge of this model's classes that ``merge`` names (``--merge``: a label-map file
        or a dataset that declares one, e.g. ``ade20k25``); its ``names`` and ``palette`` are
        those of the groups."""
        if isinstance(merge, ClassMerge):
            return merge
        return resolve_merge(str(merge), self.classes, self.palette)

    def predict(
        self,
        images: Any,
        *,
        mode: str | None = None,
        tta: bool = False,
        merge: str | os.PathLike | ClassMerge | None = None,
        return_probs: bool = False,
        resize: int | str | None = None,
    ) -> Any:
        """HxW int64 class maps (numpy) of one image or a list of them (see :data:`segkit.imageread.INPUT_FORMS`),
        each at its image's size; with ``return_probs`` also the CxHxW float32 probabilities,
        as a pair ``(masks, probabilities)``. ``mode``, ``tta``, ``merge`` and ``resize`` are
        ``--mode``, ``--tta``, ``--merge`` and ``--resize`` of ``segkit predict``."""
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        tensors = [
            image_tensor(item, "the image" if single else f"image {index} of the list", self.inputs)
            for index, item in enumerate(items)
        ]
        results = [
            result
            for _, result in self.segment(
                enumerate(tensors),
                self.settings(mode, tta),
                self.class_merge(merge) if merge is not None else None,
                resize,
                keep_probabilities=return_probs,
            )
        ]
        masks = [result.labels.numpy() for result in results]
        if not return_probs:
            return masks[0] if single else masks
        probabilities = [result.probabilities.numpy() for result in results]
        return (masks[0], probabilities[0]) if single else (masks, probabilities)

    def segment(
        self,
        images: Iterable[tuple[Key, torch.Tensor]],
        settings: InferenceSettings,
        merge: ClassMerge | None = None,
        resize: int | str | None = None,
        *,
        keep_probabilities: bool = False,
        keep_confidence: bool = False,
    ) -> Iterator[tuple[Key, Segmentation]]:
        """``(key, Segmentation)`` for each ``(key, CxHxW image)`` of the model's channels and
        pixel type (:attr:`inputs`), in order. Images are
        read from ``images`` only as far as the current batch needs, so that a command can
        decode files as it goes. Sliding windows asked for labels alone run in bounded memory
        (:meth:`Predictor.labels`), so that a photo of any size can be segmented."""
        predictor = Predictor(self.trained.model, settings, self.trained.precision)
        scale = self.resizer(resize)
        group: list[tuple[Key, tuple[int, int], torch.Tensor]] = []
        for key, image in images:
            scaled = scale(image)
            if group and (len(group) == self.batch_size or group[0][2].shape != scaled.shape):
                yield from self._run(group, predictor, merge, keep_probabilities, keep_confidence)
                group = []
            group.append((key, tuple(image.shape[-2:]), scaled))
        if group:
            yield from self._run(group, predictor, merge, keep_probabilities, keep_confidence)

    def _run(
        self,
        group: list[tuple[Key, tuple[int, int], torch.Tensor]],
        predictor: Predictor,
        merge: ClassMerge | None,
        keep_probabilities: bool,
        keep_confidence: bool,
    ) -> Iterator[tuple[Key, Segmentation]]:
        batch = self.trained.normalizer(torch.stack([scaled for _, _, scaled in group]))
        if not (keep_probabilities or keep_confidence):
            labels = predictor.labels(batch, merge=merge)
            probabilities = confidence = None
        else:
            probabilities = predictor.probabilities(batch)
            if merge is not None:
                probabilities = merge(probabilities)
            labels = probabilities.argmax(dim=1)
            confidence = probabilities.amax(dim=1)
        for number, (key, size, _) in enumerate(group):
            kept = (
                probabilities[number] if probabilities is not None and keep_probabilities else None
            )
            if tuple(labels.shape[-2:]) != size:
                # back at the input's size by nearest neighbour: classes are not blended
                kept = None if kept is None else nearest(kept[None], size)[0]
                yield (
                    key,
                    Segmentation(
                        nearest(labels[number][None, None].float(), size)[0, 0].long().cpu(),
                        None
                        if confidence is None
                        else nearest(confidence[number][None, None], size)[0, 0].cpu(),
                        None if kept is None else kept.cpu(),
                    ),
                )
            else:
                yield (
                    key,
                    Segmentation(
                        labels[number].cpu(),
                        None if confidence is None else confidence[number].cpu(),
                        None if kept is None else kept.cpu(),
                    ),
                )

    def resizer(self, resize: int | str | None) -> Callable[[torch.Tensor], torch.Tensor]:
        """What ``--resize`` does to an image before the model sees it: nothing (None), its
        shorter side to ``resize`` pixels (an int), or ``"val"``: the ``resize`` transform of
        ``data.val``, the scale the model was validated at."""
        if resize is None:
            return lambda image: image
        if resize == "val":
            return self._validation_resize()
        if isinstance(resize, bool) or not isinstance(resize, int) or resize < 1:
            raise SegkitError(
                f"resize {resize!r}: give the shorter side in pixels (a positive whole number) "
                "or 'val' for data.val's resize transform"
            )
        return lambda image: _shorter_side(image, resize)

    def _validation_resize(self) -> Callable[[torch.Tensor], torch.Tensor]:
        from segkit.builder import build

        specs = self.config["data"]["val"].get("transforms") or []
        spec = next((s for s in specs if str(s.get("type", "")).split(":")[-1] == "resize"), None)
        if spec is None:
            raise SegkitError(
                "resize 'val': data.val.transforms has no resize transform; give the shorter "
                "side instead, e.g. --resize 512"
            )
        transform = build("transform", {**spec, "mask": False})
        rng = np.random.default_rng(0)
        return lambda image: transform({"image": image}, rng)["image"]


def image_tensor(item: Any, what: str, inputs: InputSpec | None = None) -> torch.Tensor:
    """One input image (any of :data:`INPUT_FORMS`) as a CxHxW tensor on the CPU, of the
    channels and pixel type of ``inputs`` (default: 8-bit RGB)."""
    inputs = inputs or InputSpec(3, "uint8")
    pixels = image_pixels(item, what, inputs.channels, inputs.dtype)
    # torch refuses to share read-only memory (np.asarray of a PIL image is)
    pixels = np.ascontiguousarray(pixels) if pixels.flags.writeable else pixels.copy()
    return torch.from_numpy(pixels).permute(2, 0, 1)


def _shorter_side(image: torch.Tensor, side: int) -> torch.Tensor:
    height, width = image.shape[-2:]
    factor = side / min(height, width)
    return resize_image(
        image, (max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5)))
    )


def resize_image(image: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear, antialiased resize of a CxHxW uint8 or uint16 image, keeping its type."""
    size = tuple(size)
    if size == tuple(image.shape[-2:]):
        return image
    if image.dtype == torch.uint16:  # no integer kernel: through float32, which holds uint16
        resized = F.interpolate(
            image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False
        )[0]
        return resized.round_().clamp_(0, 65535).to(torch.uint16)
    return F.interpolate(
        image[None], size=size, mode="bilinear", antialias=True, align_corners=False
    )[0]


def nearest(tensor: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """[N, C, h, w] -> [N, C, *size], each output pixel taking the input pixel under its centre."""
    return F.interpolate(tensor, size=tuple(size), mode="nearest-exact")


def load(
    checkpoint: str | os.PathLike,
    config: str | os.PathLike | dict[str, Any] | None = None,
    *,
    device: str | torch.device | None = None,
    precision: str | None = None,
) -> Segmenter:
    """A checkpoint ready to predict (docs/python-api.md). ``config``: a YAML file or a resolved
    config; by default the one the checkpoint stores. ``device`` and ``precision`` replace the
    config's ``train.device`` and ``train.precision``."""
    import warnings

    segmenter = Segmenter.from_checkpoint(checkpoint, config, device=device, precision=precision)
    if segmenter.labels_note:
        warnings.warn(segmenter.labels_note, stacklevel=2)
    return segmenter
