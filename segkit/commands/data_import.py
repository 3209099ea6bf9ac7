"""``segkit data import --from coco|labelme``: annotation files -> a ``folder`` dataset.

Writes ``OUT/masks/NAME.png`` (class indices, 255 = ignore) for every usable image and
``OUT/classes.csv``, then prints what was skipped and why, and the config lines that train on
the result. Exit status 0 with that report; 2 when the input cannot be used at all (a file that
is not JSON, a COCO file without its lists, no image left).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from segkit.errors import DataError

FORMATS = ("coco", "labelme")
# Per format: COCO lists instances in no meaningful order, so smaller ones go on top; labelme
# shows later shapes over earlier ones, so the mask does the same.
DEFAULT_OVERLAP = {"coco": "larger", "labelme": "later"}


def add_import_command(verbs) -> None:
    command = verbs.add_parser(
        "import",
        help="convert COCO or labelme annotations into masks and a class list for the folder dataset",
        description="Convert COCO JSON (polygons, RLE) or labelme JSON files into index PNG "
        "masks (OUT/masks/) and a class list (OUT/classes.csv) that the folder dataset reads. "
        "Prints what was skipped and why, and a ready data: snippet.",
    )
    command.add_argument(
        "--from", dest="source", choices=FORMATS, required=True, help="annotation format"
    )
    command.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        help="coco: one annotation JSON file; labelme: JSON files or folders (searched recursively)",
    )
    command.add_argument(
        "--out", type=Path, required=True, help="output folder (masks/, classes.csv)"
    )
    command.add_argument(
        "--images",
        type=Path,
        help="the images folder: coco: what file_name is relative to (checks the files are there); "
        "labelme: what mask names are relative to (default: the input folder)",
    )
    command.add_argument(
        "--background",
        choices=("class", "ignore"),
        default="class",
        help="unannotated pixels: a class 'background' at index 0 (default), or 255 (ignored)",
    )
    command.add_argument(
        "--overlap",
        choices=("later", "larger", "order"),
        help="who keeps overlapping pixels: later (file order, later on top; labelme default), "
        "larger (smaller regions on top; coco default), order (see --order)",
    )
    command.add_argument(
        "--order",
        help="CLASS,CLASS,...: z-order by class, later names on top (implies --overlap order)",
    )
    command.add_argument(
        "--crowd",
        choices=("ignore", "class", "skip"),
        default="ignore",
        help="coco iscrowd regions: 255 (default), painted as their class, or left out",
    )
    command.add_argument(
        "--classes",
        type=Path,
        help="labelme: a class list (one name a line, or a CSV with a name column) fixing the "
        "order; labels not in it are reported and skipped",
    )
    command.add_argument(
        "--overwrite", action="store_true", help="write into an OUT that holds an import already"
    )
    command.set_defaults(handler=run_import)


def run_import(args) -> int:
    from segkit.commands.data import Progress
    from segkit.dataimport.classes import class_list, read_class_names
    from segkit.dataimport.images import report_unannotated
    from segkit.dataimport.output import CLASSES, MASKS, folder_snippet, write_classes, write_mask
    from segkit.dataimport.raster import IGNORE, paint
    from segkit.dataimport.report import ImportReport

    rule, order = _overlap(args)
    _check_out(args.out, args.overwrite, MASKS, CLASSES)
    if args.images is not None and not args.images.is_dir():
        raise DataError(f"--images {args.images}: no such folder")
    report = ImportReport()
    if args.source == "coco":
        from segkit.dataimport.coco import read_coco

        if args.classes is not None:
            raise DataError(
                "--classes is for labelme; COCO classes are the file's categories, by id"
            )
        if len(args.inputs) != 1 or not args.inputs[0].is_file():
            raise DataError("--from coco takes one annotation JSON file")
        names, jobs = read_coco(args.inputs[0], args.images, args.crowd, report)
        images = args.images
    else:
        from segkit.dataimport.labelme import labelme_files, read_labelme

        files = labelme_files(args.inputs)
        images = args.images or _common_folder(args.inputs)
        wanted = read_class_names(args.classes) if args.classes is not None else None
        names, jobs = read_labelme(files, images, wanted, report)
    classes = class_list(names, args.background)
    unknown = [name for name in order if name not in classes.names]
    if unknown:
        raise DataError(
            f"--order names {', '.join(unknown)}, which are not classes; the classes are: "
            f"{', '.join(classes.names)}"
        )
    if not jobs:
        print(report.render(), file=sys.stderr)
        raise DataError("no image could be imported (see what was skipped above)")
    index = {name: number for number, name in enumerate(classes.names)}

    def value_of(region) -> int:
        return IGNORE if region.crowd and args.crowd == "ignore" else index[region.label]

    progress = Progress("importing", len(jobs))
    for job in jobs:
        mask = paint(job, value_of, classes.background, rule, order, report)
        write_mask(args.out, job.name, mask)
        progress.step()
    progress.done()
    write_classes(args.out, classes)
    if images is not None:
        report_unannotated(images, [job.name for job in jobs], report)
    background = (
        f"background = class {classes.background}"
        if classes.background != IGNORE
        else "background = 255 (ignored)"
    )
    print(
        f"segkit: imported {len(jobs)} image(s) from {args.source} into {args.out}: "
        f"{MASKS}/ and {CLASSES} ({len(classes.names)} classes, {background}, overlap {rule})"
    )
    print(report.render())
    print("\nTrain on it with the folder dataset (in your config):")
    print(folder_snippet(images, args.out, classes))
    return 0


def _overlap(args) -> tuple[str, list[str]]:
    order = [name.strip() for name in args.order.split(",") if name.strip()] if args.order else []
    if args.order is not None and not order:
        raise DataError(
            "--order: give class names separated by commas, e.g. --order road,car,person"
        )
    if order and args.overlap not in (None, "order"):
        raise DataError(f"--order sets the overlap rule 'order'; drop --overlap {args.overlap}")
    if args.overlap == "order" and not order:
        raise DataError("--overlap order needs --order CLASS,CLASS,... (later names on top)")
    return ("order" if order else args.overlap or DEFAULT_OVERLAP[args.source]), order


def _check_out(out: Path, overwrite: bool, masks: str, classes: str) -> None:
    """Refuse to mix a new import with the masks of an earlier one, unless asked to."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: exists and is not a folder")
    earlier = (out / classes).exists() or (out / masks).is_dir() and any((out / masks).iterdir())
    if earlier and not overwrite:
        raise DataError(
            f"--out {out} holds an import already ({masks}/, {classes}); choose another folder, "
            "or pass --overwrite (masks of images no longer annotated stay)"
        )


def _common_folder(inputs: list[Path]) -> Path:
    folders = [path if path.is_dir() else path.parent for path in inputs]
    return Path(os.path.commonpath([folder.resolve() for folder in folders]))
