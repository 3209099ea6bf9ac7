"""``segkit data check CONFIG``: are a config's datasets complete, readable and consistent?

Reads every sample the way training would (every image decoded in full), and reports the
sample counts, images without masks and masks without images, unreadable files, images and
masks of different sizes, label values outside the dataset's range (naming files and values),
and how often each class occurs. It also reads the values stored in the mask files, before any
label map, to recognise encodings that load and train to nonsense (segkit.labeltraps: 0/255
binary masks, values shifted by one, a single class, classes that never occur), with the config
lines that fix them. Exit status 0 when nothing is wrong, 2 otherwise.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from segkit.commands.table import format_table, printable
from segkit.errors import ConfigError, SegkitError

SPLITS = ("train", "val")
MAX_LISTED = 50


def add_commands(subparsers) -> None:
    data = subparsers.add_parser(
        "data", help="check datasets", description="Inspect the datasets of a config."
    )
    verbs = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    check = verbs.add_parser(
        "check",
        help="check a config's datasets: pairs, files, sizes, labels, class frequencies",
        description="Read every sample of the config's datasets and report missing pairs, "
        "unreadable files, size mismatches, label values out of range, class pixel "
        "frequencies and label encodings that train to nonsense (0/255 binary masks, values "
        "shifted by one, a single class), with the config lines that fix them. Exit status 0 "
        "when clean, 2 otherwise. With --suggest, no config: print a data: section for a "
        "folder of images and masks.",
    )
    check.add_argument("config", nargs="?", help="path to a YAML config")
    check.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, e.g. data.root=/data")
    check.add_argument("--split", choices=SPLITS, help="check only this split (default: all)")
    check.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes reading files (default: data.workers, at most one per core)",
    )
    check.add_argument(
        "--suggest",
        nargs="+",
        metavar="FOLDER",
        help="instead of checking a config: read the images and masks in ROOT (with images/ "
        "and masks/ sub-folders, or both in one folder) or in IMAGES MASKS, and print a data: "
        "section (folder dataset: suffixes, classes, mask format, label map or palette) that "
        "loads them",
    )
    check.set_defaults(handler=run_check)
    from segkit.commands import data_import, data_stats  # `data import`, `data stats`

    data_import.add_import_command(verbs)
    data_stats.add_stats_command(verbs)


def run_check(args) -> int:
    from segkit.validation import load_config

    if args.suggest is not None:
        return run_suggest(args)
    if args.config is None:
        raise SegkitError("data check: give a CONFIG, or --suggest IMAGES MASKS")

    config = load_config(args.config, args.overrides)
    splits = [args.split] if args.split else [s for s in SPLITS if config["data"].get(s)]
    if args.split and not config["data"].get(args.split):
        raise ConfigError(f"data.{args.split}: the config defines no {args.split} dataset")
    if not splits:
        raise ConfigError("data: the config defines no dataset (data.train, data.val)")
    # The config's worker count suits training on its intended machine; a check on a smaller
    # one gains nothing from more readers than cores.
    workers = args.workers if args.workers is not None else min(config["data"]["workers"], _cores())
    clean = True
    for split in splits:
        report = check_split(config, split, workers)
        print(printable(report.render()))  # file names are whatever the disk holds
        clean &= report.clean
    return 0 if clean else 2


def run_suggest(args) -> int:
    from segkit.commands.data_suggest import suggest

    if args.config is not None or args.split or args.overrides:
        raise SegkitError(
            "data check --suggest reads folders, not a config: segkit data check --suggest "
            "IMAGES MASKS (or --suggest ROOT)"
        )
    print(printable(suggest(args.suggest)), end="")
    return 0


@dataclass
class Report:
    split: str
    dataset: str
    samples: int = 0
    classes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    pixels: Any = None  # per-value pixel counts (0..255)
    images_with: Any = None  # per-value count of images containing it
    findings: list = field(default_factory=list)  # segkit.labeltraps.Finding

    @property
    def clean(self) -> bool:
        return not self.problems and not any(f.fatal for f in self.findings)

    def render(self) -> str:
        lines = [f"data.{self.split}: {self.dataset}"]
        if self.classes:
            lines[0] += f", {self.samples} samples, {len(self.classes)} classes"
        if self.pixels is not None and self.pixels.sum():
            lines.append(self._frequencies())
        if self.findings:
            lines.append("label encoding:")
            lines += [finding.render() for finding in self.findings]
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  {p}" for p in self.problems[:MAX_LISTED]]
            if len(self.problems) > MAX_LISTED:
                lines.append(f"  ... and {len(self.problems) - MAX_LISTED} more")
        if not self.clean:
            lines.append(f"data.{self.split}: PROBLEMS")
        else:
            lines.append(f"data.{self.split}: OK")
        return "\n".join(lines)

    def _frequencies(self) -> str:
        total = int(self.pixels.sum())
        labelled = int(self.pixels[: len(self.classes)].sum())
        ignored = int(self.pixels[255])
        rows = [
            (
                index,
                name,
                f"{int(self.pixels[index]):,}",
                f"{100 * self.pixels[index] / max(labelled, 1):.2f}%",
                int(self.images_with[index]),
            )
            for index, name in enumerate(self.classes)
        ]
        header = f"class pixel frequencies ({labelled:,} labelled pixels; {100 * ignored / total:.1f}% ignored):"
        table = format_table(("ID", "CLASS", "PIXELS", "SHARE", "IMAGES"), rows)
        return header + "\n" + "\n".join(f"  {line}" for line in table.splitlines())


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_split(config: dict, split: str, workers: int) -> Report:
    from collections import Counter

    import numpy as np
    from torch.utils.data import DataLoader

    from segkit.data import build_raw_dataset
    from segkit.inputs import InputSpec
    from segkit.labeltraps import find_traps

    report = Report(split, config["data"][split]["type"])
    try:
        dataset = build_raw_dataset(config, split)
    except SegkitError as error:
        report.problems.append(str(error))
        return report
    report.samples = len(dataset)
    report.classes = list(dataset.classes)
    report.problems += list(getattr(dataset, "problems", None) or ())
    if config["model"]["num_classes"] != len(report.classes):
        report.problems.append(
            f"model.num_classes is {config['model']['num_classes']} but the dataset has "
            f"{len(report.classes)} classes"
        )
    if len(getattr(dataset, "palette", [])) != len(report.classes):
        report.problems.append("the dataset's palette does not have one colour per class")
    report.pixels = np.zeros(256, dtype=np.int64)
    report.images_with = np.zeros(256, dtype=np.int64)
    checks = DataLoader(
        SampleChecks(dataset, InputSpec.of(config)),
        batch_size=None,
        num_workers=workers,
        collate_fn=_same,
    )
    progress = Progress(f"checking data.{split}", len(dataset))
    stored: Counter = Counter()
    for problems, counts, values in checks:
        report.problems += problems
        if counts is not None:
            report.pixels += counts
            report.images_with += counts > 0
        if values is not None:
            stored.update(values)
        progress.step()
    progress.done()
    if stored:
        table = None if getattr(dataset, "colours", None) is not None else dataset.table
        report.findings = find_traps(stored, report.classes, table)
    return report


def _same(item):
    return item


class SampleChecks:
    """Each item is the check of one sample: (problems, per-class pixel counts or None, pixels
    per value stored in the mask file or None). The stored values are read only from datasets
    of mask files (``stored_values``), whose encoding they reveal."""

    def __init__(self, dataset, inputs):
        self.dataset = dataset
        self.inputs = inputs  # the channels and pixel type the model takes
        self.num_classes = len(dataset.classes)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        from segkit.errors import SampleError
        from segkit.imagefiles import EncodedImage, decode_image

        stored = self._stored(index)
        load = getattr(self.dataset, "load", None)
        try:
            sample = load(index) if load is not None else self.dataset[index]
            image = sample["image"]
            if isinstance(image, EncodedImage):
                image = image.fitted(self.inputs.channels, self.inputs.dtype)
            image = decode_image(image)
        except SampleError as error:
            return [str(error)], None, stored
        problems, counts = self._sample(index, sample, image)
        return problems, counts, stored

    def _stored(self, index: int):
        """Pixels per value stored in the sample's mask file (None where that cannot be read:
        the load reports the file)."""
        stored_values = getattr(self.dataset, "stored_values", None)
        if stored_values is None:
            return None
        from segkit.errors import SampleError
        from segkit.labeltraps import value_counts

        try:
            return value_counts(stored_values(self.dataset.pairs[index].mask))
        except SampleError:
            return None

    def _sample(self, index: int, sample: dict, image):
        """(problems, per-class pixel counts) of a loaded sample."""
        import numpy as np
        import torch

        name = sample.get("name", f"sample {index}")
        mask = sample["mask"]
        channels, dtype = self.inputs.channels, self.inputs.dtype
        if not (
            isinstance(image, torch.Tensor)
            and image.dtype == getattr(torch, dtype)
            and image.ndim == 3
            and image.shape[0] == channels
        ):
            return [
                f"{name}: the image is not a {dtype} {channels}xHxW tensor, as the model takes "
                "(model.backbone.in_channels, data.image_dtype)"
            ], None
        if not (isinstance(mask, torch.Tensor) and mask.ndim == 2 and not mask.is_floating_point()):
            return [f"{name}: the mask is not an integer HxW tensor"], None
        if tuple(mask.shape) != tuple(image.shape[1:]):
            return [
                f"{name}: image is {image.shape[2]}x{image.shape[1]} but mask is {mask.shape[1]}x{mask.shape[0]} (WxH)"
            ], None
        values = mask.numpy().ravel()
        if values.size and (values.min() < 0 or values.max() > 255):
            return [f"{name}: mask values outside 0..255"], None
        counts = np.bincount(values, minlength=256)
        wrong = [v for v in np.flatnonzero(counts) if self.num_classes <= v < 255]
        if wrong:
            shown = ", ".join(str(int(v)) for v in wrong[:10])
            return [
                f"{name}: label values {shown} are not classes (0..{self.num_classes - 1}) or 255"
            ], counts
        return [], counts


class Progress:
    """A status line on stderr: a live counter on a terminal, a line per 10% otherwise."""

    def __init__(self, title: str, total: int):
        self.title, self.total = title, total
        self.count = 0
        self.start = time.monotonic()
        self.shown = 0.0
        self.live = sys.stderr.isatty()

    def step(self) -> None:
        self.count += 1
        now = time.monotonic()
        if self.live and now - self.shown > 0.2:
            print(f"\r{self._line(now)}", end="", file=sys.stderr, flush=True)
            self.shown = now
        elif not self.live and self.total >= 1000 and self.count % (self.total // 10) == 0:
            print(self._line(now), file=sys.stderr, flush=True)

    def _line(self, now: float) -> str:
        rate = self.count / max(now - self.start, 1e-9)
        left = (self.total - self.count) / rate if rate > 0 else 0
        return f"{self.title}: {self.count}/{self.total} ({rate:.0f}/s, {left:.0f}s left)"

    def done(self) -> None:
        if self.live:
            print(
                "\r" + " " * len(self._line(time.monotonic())) + "\r",
                end="",
                file=sys.stderr,
                flush=True,
            )
