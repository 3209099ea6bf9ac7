"""``segkit report RUN_DIR [--eval EVAL_JSON] [--worst K] [--out report.html]``: one HTML file
about a run that opens anywhere, offline (docs/report.md)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of a training run",
        description="Learning curves, per-class metrics, the confusion matrix, the worst "
        "validation images (predicted as segkit eval predicts them), the config and the "
        "environment of a run, in one HTML file with everything embedded.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run's directory (train.work_dir)")
    parser.add_argument(
        "--eval",
        dest="evaluation",
        metavar="EVAL_JSON",
        help="segkit eval's JSON of this run, for its metrics (intervals, Dice, ... where it "
        "has them); without it they are counted in the report's own pass",
    )
    parser.add_argument("--out", help="the HTML file to write (default: report.html in RUN_DIR)")
    parser.add_argument(
        "--worst",
        type=_count,
        default=6,
        metavar="K",
        help="how many of the lowest-IoU validation images to show (default 6; 0 for none)",
    )
    parser.add_argument(
        "--checkpoint", help="the checkpoint to predict with (default: best.pt, else last.pt)"
    )
    parser.add_argument("--device", help="override train.device (auto, cpu, cuda, cuda:N, mps)")
    parser.set_defaults(handler=run_report)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def run_report(args) -> int:
    from segkit.errors import SegkitError
    from segkit.files import atomic_write_text
    from segkit.report import make_report

    out = Path(args.out) if args.out else Path(args.run_dir) / "report.html"
    if out.is_dir():
        raise SegkitError(f"--out {out} is a folder; give a file name, e.g. {out / 'report.html'}")
    if args.out and not out.parent.is_dir():
        raise SegkitError(
            f"--out {out}: the folder {out.parent} does not exist (or is not a folder); make it "
            "first, or choose another --out"
        )
    page = make_report(
        args.run_dir,
        args.evaluation,
        worst=args.worst,
        checkpoint=args.checkpoint,
        device=args.device,
    )
    atomic_write_text(out, page, "the report")
    print(f"segkit: wrote {out} ({len(page.encode('utf-8')) / 1e6:.1f} MB)")
    return 0
