"""``segkit predict [CONFIG] [KEY=VALUE...] --checkpoint PATH IMAGES_OR_DIRS... --out DIR``:
palette PNGs (and overlays, confidences, probabilities) of a model's predictions; with
``--model FILE.onnx`` (``--backend onnxruntime``) of an exported file, without torch.

The prediction itself is :class:`segkit.engine.segmenter.Segmenter`'s (or, for an ONNX file,
:class:`segkit.export.serving.OnnxSegmenter`'s), the same that ``segkit.load(...).predict``
runs; this module finds the files, decodes them as it goes and writes the results."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

CONFIG_SUFFIXES = (".yaml", ".yml")
BACKENDS = ("torch", "onnxruntime")
# what --backend onnxruntime does not do, by the attribute argparse gives each option
TORCH_ONLY = {
    "probs": "--probs",
    "probs_npy": "--probs-npy",
    "resize": "--resize",
    "merge": "--merge",
    "mode": "--mode",
    "tta": "--tta",
    "device": "--device",
}


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="segment images with a checkpoint or an exported ONNX file",
        description="Segment images (files, or folders of images searched recursively) and "
        "write, per image, <name>.png: a palette PNG whose pixel values are the class indices; "
        "with --overlay also <name>_overlay.png, with --probs <name>_conf.png. classes.json "
        "lists the class names and colours. Without CONFIG the checkpoint's stored config is "
        "used.",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="IMAGES_OR_DIRS",
        help="an optional YAML config (.yaml/.yml; default: the one the checkpoint stores), "
        "image files or folders, and KEY=VALUE config overrides (e.g. eval.crop=[512,512])",
    )
    parser.add_argument("--checkpoint", help="a segkit checkpoint or state dict")
    parser.add_argument(
        "--model",
        metavar="FILE.onnx",
        help="instead of --checkpoint: an ONNX file from segkit export, run with onnxruntime "
        "(classes and colours from FILE.onnx.json beside it)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="what runs the model: torch (for --checkpoint, the default) or onnxruntime (for "
        "--model, which implies it)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--overlay", action="store_true", help="also write the image with the colours blended in"
    )
    parser.add_argument(
        "--probs",
        action="store_true",
        help="also write <name>_conf.png: the probability of the predicted class x 255 (uint8)",
    )
    parser.add_argument(
        "--probs-npy",
        action="store_true",
        help="also write <name>_probs.npy: every class's probability, CxHxW float16",
    )
    parser.add_argument(
        "--resize",
        type=_resize_argument,
        metavar="SIDE|val",
        help="run the model with the image's shorter side at SIDE pixels, or at data.val's "
        "resize transform (val); the results are resized back to the image (nearest)",
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="go on past images that cannot be read, and list them at the end",
    )
    parser.add_argument(
        "--merge",
        metavar="LABEL_MAP",
        help="merge the model's classes into groups by summing their probabilities: a label-map "
        "file (CSV source,target[,target_name] or YAML) or a dataset that declares one (ade20k25)",
    )
    parser.add_argument("--mode", choices=("whole", "slide"), help="override eval.mode")
    parser.add_argument(
        "--tta", action="store_true", help="multi-scale and flip test-time augmentation"
    )
    parser.add_argument("--device", help="override train.device (auto, cpu, cuda, cuda:N, mps)")
    # images, folders and overrides after the options join the inputs (segkit.cli)
    parser.set_defaults(handler=run_predict, more_positionals="inputs")


def _resize_argument(text: str) -> int | str:
    import argparse

    if text == "val":
        return text
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise argparse.ArgumentTypeError(
        f"'{text}' is not a side in pixels (a positive whole number) or 'val'"
    )


def run_predict(args) -> int:
    out = Path(args.out)
    backend = choose_backend(args)
    check_out_folder(out)
    config, inputs, overrides = split_arguments(args.inputs)
    images = collect_images(inputs)
    if backend == "onnxruntime":
        return _serve_onnx(args, out, images, config, overrides)
    return _predict_checkpoint(args, out, images, config, overrides)


def choose_backend(args) -> str:
    """The backend that runs the model: ``--checkpoint`` is run by torch, ``--model`` by
    onnxruntime; exactly one of them, and ``--backend`` must agree with it."""
    from segkit.errors import SegkitError

    given = "give --checkpoint CK (a PyTorch checkpoint) or --model FILE.onnx (an exported file)"
    if args.checkpoint and args.model:
        raise SegkitError(f"--checkpoint and --model exclude each other; {given}")
    if not args.checkpoint and not args.model:
        raise SegkitError(f"no model to predict with; {given}")
    implied = "torch" if args.checkpoint else "onnxruntime"
    if args.backend not in (None, implied):
        if args.backend == "onnxruntime":
            raise SegkitError(
                "--backend onnxruntime runs an exported ONNX file: give it as --model FILE.onnx "
                "(segkit export --format onnx writes one from a checkpoint)"
            )
        raise SegkitError(
            f"--backend torch runs a checkpoint; {args.model} is an exported file, run it with "
            "--backend onnxruntime, or give the checkpoint with --checkpoint"
        )
    return implied


def _serve_onnx(args, out: Path, images, config, overrides) -> int:
    """The ONNX file of ``--model`` run on the images with onnxruntime only (no torch)."""
    from segkit.errors import SegkitError
    from segkit.export.serving import OnnxSegmenter

    refused = [flag for attribute, flag in TORCH_ONLY.items() if getattr(args, attribute)]
    if config or overrides:
        refused.append(" ".join([*([config] if config else []), *overrides]))
    if refused:
        raise SegkitError(
            f"{', '.join(refused)}: not for --model (an ONNX file predicts whole images at the "
            "size it was exported at, with its own normalisation; --overlay and --skip-bad "
            "apply); use --checkpoint for these"
        )
    segmenter = OnnxSegmenter(args.model)
    if segmenter.labels_note:
        print(f"segkit: note: {segmenter.labels_note}", file=sys.stderr)

    def note(text: str) -> None:
        print(f"segkit: note: {text}", file=sys.stderr)

    skipped: list[str] = []
    pixels = _decoded(
        images,
        args.skip_bad,
        skipped,
        lambda image: image.fitted(segmenter.channels, segmenter.dtype).pixels(),
    )
    results = ((key, Labels(labels)) for key, (labels, _) in segmenter.segment(pixels, note))
    return _write_all(out, results, images, skipped, segmenter.classes, segmenter.palette, args)


class Labels:
    """A prediction that is only its class map (what ``_write`` reads of an ONNX file's)."""

    def __init__(self, labels):
        self.labels = labels


def _predict_checkpoint(args, out: Path, images, config, overrides) -> int:
    from segkit.engine.segmenter import Segmenter

    segmenter = Segmenter.from_checkpoint(
        args.checkpoint, config, overrides=overrides, device=args.device
    )
    if segmenter.labels_note:
        print(f"segkit: note: {segmenter.labels_note}", file=sys.stderr)
    settings = segmenter.settings(args.mode, args.tta)
    merge = segmenter.class_merge(args.merge) if args.merge else None
    names, palette = (
        (merge.names, merge.palette) if merge else (segmenter.classes, segmenter.palette)
    )
    skipped: list[str] = []
    results = segmenter.segment(
        _decoded(
            images,
            args.skip_bad,
            skipped,
            lambda image: image.fitted(segmenter.inputs.channels, segmenter.inputs.dtype).decode(),
        ),
        settings,
        merge,
        args.resize,
        keep_probabilities=args.probs_npy,
        keep_confidence=args.probs,
    )
    return _write_all(out, results, images, skipped, names, palette, args)


def _write_all(out: Path, results, images, skipped: list[str], names, palette, args) -> int:
    """Every ``((name, image), result)`` written as it comes, then the skipped files listed and
    classes.json: the files of a prediction, whichever backend made it."""
    from segkit.engine.progress import ProgressBar
    from segkit.errors import DataError
    from segkit.files import atomic_write_text

    bar = ProgressBar(len(images), "predict")
    written = 0
    for (name, image), result in results:
        _write(out, name, image, result, palette, args)
        written += 1
        bar.update(written + len(skipped))
    bar.close()
    if skipped:
        listed = "".join(f"\n  {problem}" for problem in skipped)
        print(
            f"segkit: warning: skipped {len(skipped)} unreadable image(s):{listed}", file=sys.stderr
        )
    if not written:
        raise DataError(f"none of the {len(images)} image(s) could be read; nothing was written")
    classes = [
        {"index": i, "name": name, "color": list(colour)}
        for i, (name, colour) in enumerate(zip(names, palette))
    ]
    atomic_write_text(out / "classes.json", json.dumps(classes, indent=2) + "\n")
    print(f"segkit: wrote {written} prediction(s) to {out}")
    return 0


def _decoded(images: list[tuple[Path, str]], skip_bad: bool, skipped: list[str], decode):
    """``((name, image), image)`` for every image file that can be read, decoded by
    ``decode(EncodedImage)``; with ``skip_bad`` a file that cannot is recorded in ``skipped``
    instead of ending the command."""
    from segkit.errors import SampleError
    from segkit.imageread import EncodedImage

    for path, name in images:
        try:
            image = decode(EncodedImage(path))
        except SampleError as error:
            if not skip_bad:
                raise SampleError(f"{error} (--skip-bad goes on past such files)") from None
            skipped.append(str(error))
            continue
        yield (name, image), image


def _write(out: Path, name: str, image, result, palette, args) -> None:
    import numpy as np

    from segkit.engine.visualize import overlay, png_bytes, save_label_png, save_rgb
    from segkit.files import atomic_write_bytes

    save_label_png(result.labels, palette, out / f"{name}.png", "the prediction")
    if args.overlay:
        picture = overlay(image, result.labels, palette)
        save_rgb(picture, out / f"{name}_overlay.png", "the overlay")
    if args.probs:
        confidence = (result.confidence * 255).round().clamp(0, 255).byte().numpy()
        atomic_write_bytes(out / f"{name}_conf.png", png_bytes(confidence), "the confidence")
    if args.probs_npy:
        buffer = io.BytesIO()
        np.save(buffer, result.probabilities.numpy().astype(np.float16))
        atomic_write_bytes(out / f"{name}_probs.npy", buffer.getvalue(), "the probabilities")


def check_out_folder(out: Path) -> None:
    """``--out`` is a folder, made with its parents where missing; a file there or above it is
    refused before any work, so that nothing is written anywhere else."""
    from segkit.errors import SegkitError

    if out.exists() and not out.is_dir():
        raise SegkitError(
            f"--out {out} is a file, not a folder; give a folder for the predictions (a missing "
            "one is made)"
        )
    existing = next((folder for folder in out.parents if folder.exists()), None)
    if existing is not None and not existing.is_dir():
        raise SegkitError(
            f"--out {out}: {existing} is a file, not a folder, so no folder can be made under "
            "it; give another folder for the predictions"
        )


def split_arguments(arguments: list[str]) -> tuple[str | None, list[str], list[str]]:
    """The config (the one argument named .yaml/.yml, if any), the images and folders, and the
    ``KEY=VALUE`` overrides; an existing file whose name happens to look like an override stays
    an image."""
    from segkit.config import is_override
    from segkit.errors import SegkitError

    configs = [a for a in arguments if Path(a).suffix.lower() in CONFIG_SUFFIXES]
    if len(configs) > 1:
        raise SegkitError(f"one config at most, got {', '.join(configs)}")
    overrides = [a for a in arguments if is_override(a) and not Path(a).exists()]
    inputs = [a for a in arguments if a not in overrides and a not in configs]
    return (configs[0] if configs else None), inputs, overrides


def collect_images(inputs: list[str]) -> list[tuple[Path, str]]:
    """``(file, name)`` of every image: a file given by itself is named by its stem, a file found
    in a folder (recursively, by :data:`segkit.imagefiles.IMAGE_SUFFIXES`) by its path below the
    folder, so ``photos/a.jpg`` and ``photos/sub/a.jpg`` become ``a`` and ``sub/a``. Two images
    that would still get one name are refused before any work."""
    from segkit.errors import DataError
    from segkit.imageread import IMAGE_SUFFIXES

    images: list[tuple[Path, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
            if not found:
                suffixes = ", ".join(IMAGE_SUFFIXES)
                raise DataError(f"{path}: no images ({suffixes}) in this folder or below it")
            images += [(p, p.relative_to(path).with_suffix("").as_posix()) for p in found]
        elif path.is_file():
            images.append((path, path.stem))
        else:
            raise DataError(f"{path}: no such image file or folder")
    by_name: dict[str, Path] = {}
    for path, name in images:
        if name in by_name:
            raise DataError(
                f"{by_name[name]} and {path} would both be written as {name}.png; "
                "predict them into different --out folders"
            )
        by_name[name] = path
    return images
