"""``segkit compare A.json B.json`` or ``segkit compare --checkpoint A --checkpoint B [CONFIG]
[overrides]``: is B's mIoU really different from A's, or within what another sample of images
would give?

Both models are scored on the same images; the difference B - A of mIoU and of each class's IoU
gets a paired bootstrap interval (segkit.bootstrap: the same resampled images for both). The
verdict reads the interval: if it excludes 0 the difference is distinguishable from the noise
of the image sample at this level, otherwise it is not. Two eval reports are compared through
the per-image matrices segkit eval writes beside them; reports of different images (or
classes) are refused, since their difference would mix models and data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def add_commands(subparsers) -> None:
    from segkit.commands.eval import add_bootstrap_options

    parser = subparsers.add_parser(
        "compare",
        help="compare two checkpoints or eval reports, with a paired bootstrap interval",
        description="The difference B - A of mIoU and per-class IoU on the same images, with a "
        "95% paired bootstrap interval over images and a verdict. Give two eval JSON reports "
        "(their .per_image.npz beside them), or --checkpoint A --checkpoint B and optionally "
        "a CONFIG (default: each checkpoint's stored config) and overrides.",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="A.json B.json | [CONFIG] [KEY=VALUE ...]",
        help="two reports of segkit eval, or (with --checkpoint) an optional config and overrides",
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        help="a checkpoint to evaluate; give it twice (A, then B)",
    )
    parser.add_argument("--mode", choices=("whole", "slide"), help="override eval.mode")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation, as in eval")
    parser.add_argument("--device", help="override train.device (auto, cpu, cuda, cuda:N, mps)")
    add_bootstrap_options(parser, "the comparison")
    parser.add_argument("--json", metavar="OUT", help="also write the comparison as JSON")
    parser.set_defaults(handler=run_compare)


def run_compare(args) -> int:
    from segkit.commands.eval import check_bootstrap_options, check_out_file
    from segkit.engine.distributed import World
    from segkit.errors import SegkitError

    check_bootstrap_options(args)
    if args.json:
        check_out_file(Path(args.json))
    if args.checkpoint:
        if len(args.checkpoint) != 2:
            raise SegkitError(
                f"compare takes --checkpoint twice (A, then B), got {len(args.checkpoint)}"
            )
        world = World.from_environment()
        try:
            sides = _evaluate_both(args, world)
        finally:
            world.close()
        if sides is None:
            return 0
    else:
        reports = [a for a in args.overrides if Path(a).suffix.lower() == ".json"]
        if len(reports) != 2 or len(args.overrides) != 2:
            raise SegkitError(
                "compare takes two eval reports (A.json B.json), or --checkpoint A --checkpoint "
                f"B [CONFIG]; got {' '.join(args.overrides) or 'nothing'}"
            )
        sides = [_read_side(Path(path)) for path in reports]
    return _report(args, sides)


def _read_side(path: Path) -> dict[str, Any]:
    from segkit.evalfiles import per_image_of, read_report

    report = read_report(path)
    return {"source": str(path), "report": report, "per_image": per_image_of(path, report)}


def _evaluate_both(args, world) -> list[dict[str, Any]] | None:
    from segkit.commands.eval import config_and_overrides, score_checkpoint

    config_path, overrides = config_and_overrides(args.overrides, "compare")
    sides = []
    for checkpoint in args.checkpoint:
        evaluation = score_checkpoint(
            Path(checkpoint),
            config_path,
            overrides,
            world,
            mode=args.mode,
            tta=args.tta,
            device=args.device,
            ci=False,
        )
        if evaluation is not None:
            sides.append(
                {
                    "source": checkpoint,
                    "report": evaluation.report,
                    "per_image": evaluation.per_image,
                }
            )
    return sides if world.is_main else None


def _report(args, sides: list[dict[str, Any]]) -> int:
    from segkit.bootstrap import Bootstrap, paired_difference
    from segkit.files import atomic_write_text

    a, b = sides[0]["per_image"], _aligned(sides)
    settings = Bootstrap(
        resamples=args.resamples or 1000, seed=args.seed if args.seed is not None else 0
    )
    print(
        f"segkit: comparing A = {sides[0]['source']} and B = {sides[1]['source']} on {len(a)} "
        f"images; {settings.resamples} paired resamples, seed {settings.seed}",
        flush=True,
    )
    ci = paired_difference(a, b, settings)
    comparison = _comparison(sides, a, b, ci)
    print(_table(comparison))
    print(comparison["verdict"])
    if args.json:
        atomic_write_text(args.json, json.dumps(comparison, indent=2) + "\n", "the comparison")
        print(f"segkit: wrote {args.json}")
    return 0


def _aligned(sides: list[dict[str, Any]]):
    """B's matrices in A's image order, or an error saying how the two sets differ."""
    from segkit.errors import SegkitError

    (a, b), (first, second) = (s["per_image"] for s in sides), (s["source"] for s in sides)
    if a.classes != b.classes:
        raise SegkitError(
            f"{first} and {second} score different classes ({len(a.classes)}: "
            f"{', '.join(a.classes[:3])}, ... vs {len(b.classes)}: {', '.join(b.classes[:3])}, "
            "...); compare evaluations of the same dataset"
        )
    for matrices, source in ((a, first), (b, second)):
        if len(set(matrices.names)) != len(matrices.names):
            raise SegkitError(f"{source}: some image names occur twice; cannot pair the images")
    only_a = sorted(set(a.names) - set(b.names))
    only_b = sorted(set(b.names) - set(a.names))
    if only_a or only_b:
        raise SegkitError(
            f"{first} ({len(a)} images) and {second} ({len(b)} images) do not cover the same "
            f"images: {len(only_a)} only in A (e.g. {', '.join(only_a[:3]) or '-'}), "
            f"{len(only_b)} only in B (e.g. {', '.join(only_b[:3]) or '-'}); evaluate both on "
            "the same data.val"
        )
    return b.reordered(a.names)


def _comparison(sides, a, b, ci: dict[str, Any]) -> dict[str, Any]:
    from segkit.metrics import segmentation_metrics

    scores = [segmentation_metrics(m.total(), m.classes) for m in (a, b)]
    difference = {
        "mIoU": _minus(scores[1]["mIoU"], scores[0]["mIoU"]),
        "IoU": {c: _minus(scores[1]["IoU"][c], scores[0]["IoU"][c]) for c in a.classes},
    }
    low_high = ci["mIoU"]
    distinguishable = low_high is not None and (low_high[0] > 0 or low_high[1] < 0)
    return {
        "a": {"source": sides[0]["source"], "mIoU": scores[0]["mIoU"], "IoU": scores[0]["IoU"]},
        "b": {"source": sides[1]["source"], "mIoU": scores[1]["mIoU"], "IoU": scores[1]["IoU"]},
        "images": len(a),
        "difference": difference,
        "ci": ci,
        "distinguishable": distinguishable,
        "verdict": verdict(difference["mIoU"], low_high, ci["level"]),
    }


def verdict(difference: float | None, bounds: list[float] | None, level: float) -> str:
    """One plain line: which is better, by how much, and whether the interval excludes 0."""
    if difference is None or bounds is None:
        return "no mIoU to compare: neither evaluation has a class in its labels or predictions"
    points = f"{100 * abs(difference):.2f} mIoU points"
    interval = f"({round(100 * level)}% interval {100 * bounds[0]:.2f}..{100 * bounds[1]:.2f})"
    if bounds[0] > 0 or bounds[1] < 0:
        direction = "better" if difference > 0 else "worse"
        return (
            f"B is {direction} than A by {points} {interval}: distinguishable from noise at "
            "this level"
        )
    if difference == 0:
        return f"B and A have the same mIoU {interval}: not distinguishable from noise"
    direction = "higher" if difference > 0 else "lower"
    return (
        f"B is {direction} than A by {points} {interval}: not distinguishable from noise at "
        "this level"
    )


def _minus(b: float | None, a: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _table(comparison: dict[str, Any]) -> str:
    from segkit.commands.table import format_table

    ci = comparison["ci"]
    rows = []
    for name, a_iou in comparison["a"]["IoU"].items():
        bounds = ci["IoU"].get(name)
        rows.append(
            (
                name,
                _percent(a_iou),
                _percent(comparison["b"]["IoU"][name]),
                _signed(comparison["difference"]["IoU"][name]),
                "-" if bounds is None else f"{100 * bounds[0]:.2f}..{100 * bounds[1]:.2f}",
            )
        )
    bounds = ci["mIoU"]
    rows.append(
        (
            "mIoU",
            _percent(comparison["a"]["mIoU"]),
            _percent(comparison["b"]["mIoU"]),
            _signed(comparison["difference"]["mIoU"]),
            "-" if bounds is None else f"{100 * bounds[0]:.2f}..{100 * bounds[1]:.2f}",
        )
    )
    level = f"{round(100 * ci['level'])}% interval"
    return format_table(("CLASS", "A IoU", "B IoU", "B-A", level), rows)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.2f}"
