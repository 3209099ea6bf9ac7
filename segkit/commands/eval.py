"""``segkit eval [CONFIG] [overrides] --checkpoint PATH [--mode slide] [--tta] [--merge LABEL_MAP]
[--out FILE]``; without CONFIG the checkpoint's stored config is used.

With ``--merge``, CONFIG still describes the checkpoint's model (e.g. 150 ADE20K classes) while
``data.val`` holds labels of the merged classes (e.g. ``ade20k25``): every image is predicted with
the model's inference settings, its probabilities are merged into the groups, and the groups
are scored against the labels.

Under torchrun every process evaluates its own block of the images and the confusion matrices
are summed, so the metrics are exactly those of one process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint on the validation set",
        description="Evaluate a checkpoint on data.val with the config's eval settings: prints "
        "the per-class table and mIoU, mAcc, aAcc, and writes them as JSON.",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="[CONFIG] [KEY=VALUE ...]",
        help="an optional YAML config (.yaml/.yml; default: the one the checkpoint stores) and "
        "KEY=VALUE or +KEY=VALUE overrides",
    )
    parser.add_argument("--checkpoint", required=True, help="a segkit checkpoint or state dict")
    parser.add_argument("--mode", choices=("whole", "slide"), help="override eval.mode")
    parser.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: eval.scales if it lists several (else 0.5-1.75) and flipping",
    )
    parser.add_argument("--device", help="override train.device (auto, cpu, cuda, cuda:N, mps)")
    parser.add_argument(
        "--merge",
        metavar="LABEL_MAP",
        help="score the model's classes merged into data.val's classes by summing probabilities: "
        "a label-map file or a dataset that declares one (ade20k25); CONFIG's model stays the "
        "checkpoint's",
    )
    parser.add_argument(
        "--out",
        help="JSON file for the metrics (default: eval_<checkpoint>_<mode>[_tta][_<merge>].json "
        "in the checkpoint's run directory)",
    )
    parser.set_defaults(handler=run_eval)


def run_eval(args) -> int:
    """Under torchrun every process evaluates its share of the images; rank 0 reports."""
    from segkit.engine.distributed import World

    world = World.from_environment()
    try:
        return _evaluate(args, world)
    finally:
        world.close()


def _evaluate(args, world) -> int:
    from segkit.data import build_dataset
    from segkit.engine.evaluator import Evaluator, validation_loader
    from segkit.engine.inference import InferenceSettings, Predictor
    from segkit.engine.loaded_model import inference_config, load_trained
    from segkit.engine.merge import MergedModel, resolve_merge
    from segkit.engine.progress import ProgressBar
    from segkit.errors import ConfigError
    from segkit.files import atomic_write_text
    from segkit.metrics import format_metrics
    from segkit.weights import read_checkpoint

    if args.out:
        check_out_file(Path(args.out))
    config_path, overrides = _config_and_overrides(args.overrides)
    checkpoint = Path(args.checkpoint)
    record = read_checkpoint(checkpoint)
    config = inference_config(
        config_path, checkpoint, record, overrides, check_val_classes=args.merge is None
    )
    settings = InferenceSettings.from_config(config["eval"], args.mode, args.tta)
    process_device = world.resolve_device(args.device or config["train"]["device"])
    world.start(process_device)
    dataset = build_dataset(config, "val")
    trained = load_trained(config, checkpoint, str(process_device), checkpoint=record)
    classes = list(dataset.classes)
    num_classes = config["model"]["num_classes"]
    model, evaluator_settings, precision = trained.model, settings, trained.precision
    if args.merge:
        names, colours, note = trained.labels(num_classes)
        if note and world.is_main:
            print(f"segkit: note: {note}", file=sys.stderr)
        merge = resolve_merge(args.merge, names, colours)
        _check_merged_classes(args.merge, merge.names, classes)
        # the merged model predicts with the settings itself; the evaluator only scores
        model = MergedModel(Predictor(trained.model, settings, trained.precision), merge)
        evaluator_settings, precision = InferenceSettings(), None
    elif len(classes) != num_classes:
        hint = (
            " (to score a model on merged classes, use --merge)"
            if len(classes) < num_classes
            else ""
        )
        raise ConfigError(
            f"model.num_classes is {num_classes} but data.val has {len(classes)} classes{hint}"
        )
    data = config["data"]
    loader = validation_loader(
        dataset,
        data["val_batch_size"],
        data["workers"],
        trained.device.type == "cuda",
        False,
        config["train"]["seed"],
        world.rank,
        world.size,
    )
    evaluator = Evaluator(
        evaluator_settings, classes, trained.normalizer, precision, panels=0, world=world
    )
    if world.is_main:
        _warn_if_non_finite(trained)
        processes = f" on {world.size} processes" if world.size > 1 else ""
        merged = f", classes merged by {args.merge}" if args.merge else ""
        print(
            f"segkit: evaluating {trained.path} on {len(dataset)} images{processes}: "
            f"{settings.describe()}; device {trained.device}, precision "
            f"{trained.precision.describe()}{merged}",
            flush=True,
        )
    bar = ProgressBar(len(loader.sampler), "eval") if world.is_main else None
    metrics = evaluator.evaluate(model, loader, bar)
    if bar is not None:
        bar.close()
    evaluator.skips.report(f"by process {world.rank}" if world.size > 1 else "while evaluating")
    metrics.pop("samples")
    if not world.is_main:
        return 0
    print(format_metrics(metrics))
    out = Path(args.out) if args.out else _default_output(trained.path, settings, args.merge)
    report = {
        "checkpoint": str(trained.path),
        "step": trained.step,
        "config": config_path or f"{checkpoint} (its stored config)",
        "images": len(dataset),
        "mode": settings.mode,
        "crop": settings.crop,
        "stride": settings.stride,
        "scales": list(settings.scales),
        "flip": settings.flip,
        "merge": args.merge,
        "precision": trained.precision.name,
        **metrics,
    }
    atomic_write_text(out, json.dumps(report, indent=2) + "\n", "the evaluation report")
    print(f"segkit: wrote {out}")
    return 0


def _config_and_overrides(arguments: list[str]) -> tuple[str | None, list[str]]:
    """The config (an argument named .yaml/.yml, if any) and the KEY=VALUE overrides."""
    from segkit.commands.predict import CONFIG_SUFFIXES
    from segkit.config import is_override
    from segkit.errors import SegkitError

    configs = [a for a in arguments if Path(a).suffix.lower() in CONFIG_SUFFIXES]
    others = [a for a in arguments if a not in configs and not is_override(a)]
    if len(configs) > 1 or others:
        raise SegkitError(
            f"{', '.join(configs[1:] + others)}: eval takes one config (.yaml/.yml) at most and "
            "KEY=VALUE overrides"
        )
    return (configs[0] if configs else None), [a for a in arguments if a not in configs]


def _warn_if_non_finite(trained) -> None:
    """A model with NaN or inf weights still produces a score; say so before it is believed."""
    names = trained.non_finite
    if names:
        listed = ", ".join(names[:3]) + (f", ... ({len(names) - 3} more)" if len(names) > 3 else "")
        print(
            f"segkit: warning: {trained.path}: {len(names)} weight tensor(s) hold NaN or inf "
            f"values ({listed}); the scores below measure a broken model",
            file=sys.stderr,
            flush=True,
        )


def check_out_file(out: Path) -> None:
    """``--out`` names a file in a folder that exists. A missing folder is refused, not made:
    it is most often a mistyped path, and the report would land where nobody looks."""
    from segkit.errors import SegkitError

    if out.is_dir():
        raise SegkitError(f"--out {out} is a folder; give a file name, e.g. {out / 'eval.json'}")
    if not out.parent.is_dir():
        raise SegkitError(
            f"--out {out}: the folder {out.parent} does not exist (or is not a folder); make "
            "it first, or choose another --out"
        )


def _check_merged_classes(spec: str, groups: list[str], classes: list[str]) -> None:
    """The groups of the merge must be data.val's classes (by name, where the map names them)."""
    from segkit.errors import ConfigError

    named = not all(name == f"group_{i}" for i, name in enumerate(groups))
    if len(groups) != len(classes) or (named and groups != classes):
        raise ConfigError(
            f"--merge {spec} merges the model's classes into {len(groups)} groups "
            f"({', '.join(groups[:3])}, ...), but data.val has {len(classes)} classes "
            f"({', '.join(classes[:3])}, ...); set data.val to a dataset of the merged classes, "
            f"e.g. data.val.type=ade20k25 for --merge ade20k25"
        )


def _default_output(checkpoint: Path, settings, merge: str | None) -> Path:
    in_run = checkpoint.parent.name == "checkpoints"
    run_dir = checkpoint.parent.parent if in_run else checkpoint.parent
    tta = "_tta" if len(settings.scales) > 1 or settings.flip else ""
    merged = f"_{Path(merge).stem}" if merge else ""
    return run_dir / f"eval_{checkpoint.stem}_{settings.mode}{tta}{merged}.json"
