"""``segkit predict CONFIG [KEY=VALUE...] --checkpoint PATH IMAGES_OR_DIRS... --out DIR
[--overlay] [--merge LABEL_MAP]``: palette PNGs (and overlays) of a model's predictions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="segment images with a checkpoint",
        description="Segment images (files, or folders of images) and write, per image, "
        "<name>.png: a palette PNG whose pixel values are the class indices; with --overlay "
        "also <name>_overlay.png. classes.json lists the class names and colours.",
    )
    parser.add_argument("config", help="path to a YAML config")
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="IMAGES_OR_DIR",
        help="image files or folders, and KEY=VALUE config overrides (e.g. eval.crop=[512,512])",
    )
    parser.add_argument("--checkpoint", required=True, help="a segkit checkpoint or state dict")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--overlay", action="store_true", help="also write the image with the colours blended in"
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
    parser.set_defaults(handler=run_predict)


def run_predict(args) -> int:
    from segkit.engine.inference import InferenceSettings, Predictor
    from segkit.engine.loaded_model import load_trained
    from segkit.engine.merge import resolve_merge
    from segkit.engine.progress import ProgressBar
    from segkit.engine.visualize import overlay, save_label_png, save_rgb
    from segkit.files import atomic_write_text
    from segkit.imagefiles import EncodedImage
    from segkit.validation import load_config

    out = Path(args.out)
    check_out_folder(out)
    inputs, overrides = split_overrides(args.inputs)
    config = load_config(args.config, overrides, check_val_classes=False)
    settings = InferenceSettings.from_config(config["eval"], args.mode, args.tta)
    paths = collect_images(inputs)
    trained = load_trained(config, args.checkpoint, args.device)
    names, palette, note = trained.labels(config["model"]["num_classes"])
    if note:
        print(f"segkit: note: {note}", file=sys.stderr)
    merge = resolve_merge(args.merge, names, palette) if args.merge else None
    if merge is not None:
        names, palette = merge.names, merge.palette
    predictor = Predictor(trained.model, settings, trained.precision)
    bar = ProgressBar(len(paths), "predict")
    for number, path in enumerate(paths, start=1):
        image = EncodedImage(path).decode()
        labels = predictor.labels(trained.normalizer(image.unsqueeze(0)), merge=merge)[0].cpu()
        save_label_png(labels, palette, out / f"{path.stem}.png", "the prediction")
        if args.overlay:
            picture = overlay(image, labels, palette)
            save_rgb(picture, out / f"{path.stem}_overlay.png", "the overlay")
        bar.update(number)
    bar.close()
    classes = [
        {"index": i, "name": name, "color": list(colour)}
        for i, (name, colour) in enumerate(zip(names, palette))
    ]
    atomic_write_text(out / "classes.json", json.dumps(classes, indent=2) + "\n")
    print(f"segkit: wrote {len(paths)} prediction(s) to {out}")
    return 0


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


def split_overrides(arguments: list[str]) -> tuple[list[str], list[str]]:
    """Images and folders on one side, ``KEY=VALUE`` overrides on the other; an existing file
    whose name happens to look like an override stays an image."""
    from segkit.config import is_override

    overrides = [a for a in arguments if is_override(a) and not Path(a).exists()]
    return [a for a in arguments if a not in overrides], overrides


def collect_images(inputs: list[str]) -> list[Path]:
    from segkit.errors import DataError

    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
                raise DataError(f"{path}: no images ({suffixes}) in this folder")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise DataError(f"{path}: no such image file or folder")
    by_name: dict[str, Path] = {}
    for path in paths:
        if path.stem in by_name:
            raise DataError(
                f"{by_name[path.stem]} and {path} would both be written as {path.stem}.png; "
                "predict them into different --out folders"
            )
        by_name[path.stem] = path
    return paths
