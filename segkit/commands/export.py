"""``segkit export [CONFIG] --checkpoint CK --format onnx|torchscript|exported --out FILE
[--size H W] [--batch N] [--dynamic] [--output logits|probs]``: a trained model as one file that
runs without segkit, checked against the PyTorch model before it is given its name."""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_SIZE = (512, 512)


def add_commands(subparsers) -> None:
    from segkit.export.catalog import FORMATS, VAL_IMAGES

    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX, TorchScript or torch.export",
        description="Export a trained model as one file whose graph takes the model's images "
        "(N x C x H x W: uint8 0..255, or uint16 0..65535 for data.image_dtype uint16), "
        "normalises them itself and answers class logits or "
        "probabilities at the input size. The file is run once against the PyTorch model; "
        "FILE.json beside it records the comparison. Below 99.9%% argmax agreement nothing "
        "is written.",
    )
    parser.add_argument(
        "config", nargs="?", help="path to a YAML config (default: the checkpoint's own)"
    )
    parser.add_argument("--checkpoint", required=True, help="a segkit checkpoint or state dict")
    parser.add_argument("--format", required=True, choices=FORMATS, help="the file format")
    parser.add_argument("--out", required=True, help="the file to write (and FILE.json)")
    parser.add_argument(
        "--size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="input height and width to export at (default: eval.crop, else 512 512)",
    )
    parser.add_argument(
        "--batch", type=int, default=1, help="images per batch at the export size (default 1)"
    )
    parser.add_argument(
        "--dynamic",
        action="store_true",
        help="leave batch size, height and width free (checked at two more sizes)",
    )
    parser.add_argument(
        "--output",
        choices=("logits", "probs"),
        default="logits",
        help="class logits or softmax probabilities (default logits)",
    )
    parser.add_argument(
        "--val-images",
        type=int,
        default=VAL_IMAGES,
        metavar="N",
        help=f"also compare on the first N images of data.val where they can be read "
        f"(default {VAL_IMAGES}; 0: not at all)",
    )
    parser.set_defaults(handler=run_export)


def run_export(args) -> int:
    from segkit.engine.loaded_model import inference_config
    from segkit.errors import SegkitError
    from segkit.export.catalog import SUFFIXES, require_onnx_extra
    from segkit.export.exporter import ExportRequest, export, report_path
    from segkit.export.valcheck import ValidationCheck
    from segkit.weights import read_checkpoint

    out = Path(args.out)
    if out.is_dir():
        raise SegkitError(f"--out {out} is a folder; give the file to write, e.g. {out}/model.onnx")
    if args.val_images < 0:
        raise SegkitError(f"--val-images {args.val_images}: give 0 or more images")
    if args.batch < 1:
        raise SegkitError(f"--batch {args.batch}: give a positive number of images")
    if args.size is not None and min(args.size) < 1:
        raise SegkitError(f"--size {args.size[0]} {args.size[1]}: give a positive height and width")
    if args.format == "onnx":
        require_onnx_extra()
    checkpoint = read_checkpoint(args.checkpoint)  # read once: its config and its weights
    config = inference_config(
        args.config, Path(args.checkpoint), checkpoint, check_val_classes=False
    )
    size = tuple(args.size or config["eval"].get("crop") or DEFAULT_SIZE)
    suffix = SUFFIXES[args.format]
    if out.suffix != suffix:
        print(
            f"segkit: note: {out} does not end in {suffix}, the usual suffix of {args.format} files",
            file=sys.stderr,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    request = ExportRequest(
        checkpoint=Path(args.checkpoint),
        config=config,
        format=args.format,
        out=out,
        size=(int(size[0]), int(size[1])),
        batch=args.batch,
        dynamic=args.dynamic,
        output=args.output,
        contents=checkpoint,
        val_images=args.val_images,
    )
    report = export(request)
    for check in report["verification"]["checks"]:
        n, _, h, w = check["shape"]
        print(
            f"segkit: checked batch {n} at {h}x{w}: argmax agreement "
            f"{check['argmax_agreement']:.4%}, max difference {check['max_abs_diff']:.3g}"
        )
    validation = report["verification"]["validation"]
    if "skipped" in validation:
        print(f"segkit: note: not checked on validation images: {validation['skipped']}")
    else:
        print(f"segkit: checked on {ValidationCheck(**validation).describe()}")
    print(f"segkit: wrote {out} and {report_path(out)}")
    return 0
