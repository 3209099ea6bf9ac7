"""``segkit eval [CONFIG] [overrides] --checkpoint PATH [--mode slide] [--tta] [--merge LABEL_MAP]
[--out FILE] [--ci [--resamples N] [--seed S]] [--boundary [--boundary-ratio R]]``; without
CONFIG the checkpoint's stored config is used. The scores, the files written beside the report
and the intervals are described in docs/training.md, "Scores".

With ``--merge``, CONFIG still describes the checkpoint's model (e.g. 150 ADE20K classes) while
``data.val`` holds labels of the merged classes (e.g. ``ade20k25``): every image is predicted with
the model's inference settings, its probabilities are merged into the groups, and the groups
are scored against the labels.

Under torchrun every process evaluates its own block of the images and the confusion matrices
are summed, so the metrics are exactly those of one process; every image's matrix is gathered to
rank 0, which writes them beside the report and draws the bootstrap intervals (``--ci``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


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
        "in the checkpoint's run directory); the confusion matrix (.confusion.csv, "
        ".confusion.npy) and per-image matrices (.per_image.npz) go beside it",
    )
    parser.add_argument(
        "--boundary",
        action="store_true",
        help="also score boundary IoU (Cheng et al. 2021): the bands within 2%% of the image "
        "diagonal of each mask's contour; costs more",
    )
    parser.add_argument(
        "--boundary-ratio",
        type=float,
        default=0.02,
        metavar="R",
        help="boundary band width as a fraction of the image diagonal (default 0.02)",
    )
    add_bootstrap_options(parser, "--ci")
    parser.add_argument(
        "--ci",
        action="store_true",
        help="95%% bootstrap intervals over images for mIoU and each class's IoU (also on with "
        "eval.ci: true)",
    )
    parser.set_defaults(handler=run_eval)


def add_bootstrap_options(parser, used_with: str) -> None:
    """``--resamples`` and ``--seed``, shared with segkit compare."""
    parser.add_argument(
        "--resamples",
        type=int,
        metavar="N",
        help=f"bootstrap resamples with {used_with} (default: eval.resamples, 1000)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        metavar="S",
        help=f"seed of the bootstrap's resampling with {used_with} (default: eval.ci_seed, 0)",
    )


def run_eval(args) -> int:
    """Under torchrun every process evaluates its share of the images; rank 0 reports."""
    from segkit.engine.distributed import World

    world = World.from_environment()
    try:
        return _evaluate(args, world)
    finally:
        world.close()


def _evaluate(args, world) -> int:
    from segkit.evalfiles import write_evaluation
    from segkit.metrics import format_metrics

    if args.out:
        check_out_file(Path(args.out))
    check_bootstrap_options(args)
    if args.boundary and not 0 < args.boundary_ratio < 1:
        from segkit.errors import SegkitError

        raise SegkitError(
            f"--boundary-ratio {args.boundary_ratio}: give a fraction of the image diagonal "
            "between 0 and 1, e.g. 0.02"
        )
    config_path, overrides = config_and_overrides(args.overrides, "eval")
    evaluation = score_checkpoint(
        Path(args.checkpoint),
        config_path,
        overrides,
        world,
        mode=args.mode,
        tta=args.tta,
        device=args.device,
        merge=args.merge,
        boundary=args.boundary_ratio if args.boundary else None,
        ci=args.ci or None,
        resamples=args.resamples,
        seed=args.seed,
    )
    if evaluation is None:
        return 0
    print(format_metrics(evaluation.report))
    out = (
        Path(args.out)
        if args.out
        else _default_output(evaluation.checkpoint, evaluation.settings, args.merge)
    )
    write_evaluation(
        out, evaluation.report, evaluation.matrix, evaluation.classes, evaluation.per_image
    )
    print(f"segkit: wrote {out} (and its .confusion.csv, .confusion.npy, .per_image.npz)")
    return 0


def check_bootstrap_options(args) -> None:
    from segkit.errors import SegkitError

    if args.resamples is not None and args.resamples < 10:
        raise SegkitError(f"--resamples {args.resamples}: give at least 10, e.g. 1000")
    if args.seed is not None and not 0 <= args.seed < 2**32:
        raise SegkitError(f"--seed {args.seed}: give a whole number in 0..4294967295")


@dataclass
class Evaluation:
    """One checkpoint scored on data.val (rank 0's view: every image)."""

    checkpoint: Path
    settings: Any
    classes: list[str]
    report: dict[str, Any]
    matrix: Any  # numpy [C, C]
    per_image: Any  # PerImageMatrices


def score_checkpoint(
    checkpoint: Path,
    config_path: str | None,
    overrides: list[str],
    world,
    *,
    mode: str | None = None,
    tta: bool = False,
    device: str | None = None,
    merge: str | None = None,
    boundary: float | None = None,
    ci: bool | None = None,
    resamples: int | None = None,
    seed: int | None = None,
) -> Evaluation | None:
    """Evaluate ``checkpoint`` on every process; rank 0 gets the evaluation (the others
    None). ``ci`` None: as the config's ``eval.ci`` says."""
    from segkit.data import build_dataset
    from segkit.engine.evaluator import Evaluator, bootstrap_settings, validation_loader
    from segkit.engine.inference import InferenceSettings, Predictor
    from segkit.engine.loaded_model import inference_config, load_trained
    from segkit.engine.merge import MergedModel, resolve_merge
    from segkit.engine.progress import ProgressBar
    from segkit.errors import ConfigError
    from segkit.weights import read_checkpoint

    record = read_checkpoint(checkpoint)
    config = inference_config(
        config_path, checkpoint, record, overrides, check_val_classes=merge is None
    )
    settings = InferenceSettings.from_config(config["eval"], mode, tta)
    bootstrap = None
    if ci or (ci is None and config["eval"].get("ci")):
        bootstrap = bootstrap_settings(config["eval"], resamples)
        if seed is not None:
            bootstrap = replace(bootstrap, seed=seed)
    process_device = world.resolve_device(device or config["train"]["device"])
    world.start(process_device)
    dataset = build_dataset(config, "val")
    trained = load_trained(config, checkpoint, str(process_device), checkpoint=record)
    classes = list(dataset.classes)
    num_classes = config["model"]["num_classes"]
    model, evaluator_settings, precision = trained.model, settings, trained.precision
    if merge:
        names, colours, note = trained.labels(num_classes)
        if note and world.is_main:
            print(f"segkit: note: {note}", file=sys.stderr)
        merged = resolve_merge(merge, names, colours)
        _check_merged_classes(merge, merged.names, classes)
        # the merged model predicts with the settings itself; the evaluator only scores
        model = MergedModel(Predictor(trained.model, settings, trained.precision), merged)
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
        evaluator_settings,
        classes,
        trained.normalizer,
        precision,
        panels=0,
        world=world,
        per_image=True,
        ci=bootstrap,
        boundary=boundary,
    )
    if world.is_main:
        _warn_if_non_finite(trained)
        processes = f" on {world.size} processes" if world.size > 1 else ""
        merged_note = f", classes merged by {merge}" if merge else ""
        print(
            f"segkit: evaluating {trained.path} on {len(dataset)} images{processes}: "
            f"{settings.describe()}; device {trained.device}, precision "
            f"{trained.precision.describe()}{merged_note}",
            flush=True,
        )
    bar = ProgressBar(len(loader.sampler), "eval") if world.is_main else None
    tally = evaluator.count(model, loader, bar)
    if bar is not None:
        bar.close()
    evaluator.skips.report(f"by process {world.rank}" if world.size > 1 else "while evaluating")
    if not world.is_main:
        return None
    metrics = evaluator.scores(tally)
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
        "merge": merge,
        "precision": trained.precision.name,
        **metrics,
    }
    return Evaluation(
        trained.path, settings, classes, report, tally.matrix.matrix.cpu().numpy(), tally.per_image
    )


def config_and_overrides(arguments: list[str], command: str) -> tuple[str | None, list[str]]:
    """The config (an argument named .yaml/.yml, if any) and the KEY=VALUE overrides."""
    from segkit.commands.predict import CONFIG_SUFFIXES
    from segkit.config import is_override
    from segkit.errors import SegkitError

    configs = [a for a in arguments if Path(a).suffix.lower() in CONFIG_SUFFIXES]
    others = [a for a in arguments if a not in configs and not is_override(a)]
    if len(configs) > 1 or others:
        raise SegkitError(
            f"{', '.join(configs[1:] + others)}: {command} takes one config (.yaml/.yml) at most and "
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
