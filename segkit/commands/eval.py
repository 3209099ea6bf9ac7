"""``segkit eval CONFIG [overrides] --checkpoint PATH [--mode slide] [--tta] [--out FILE]``.

Under torchrun every process evaluates its own block of the images and the confusion matrices
are summed, so the metrics are exactly those of one process.
"""

from __future__ import annotations

import json
from pathlib import Path


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint on the validation set",
        description="Evaluate a checkpoint on data.val with the config's eval settings: prints "
        "the per-class table and mIoU, mAcc, aAcc, and writes them as JSON.",
    )
    parser.add_argument("config", help="path to a YAML config")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE or +KEY=VALUE overrides")
    parser.add_argument("--checkpoint", required=True, help="a segkit checkpoint or state dict")
    parser.add_argument("--mode", choices=("whole", "slide"), help="override eval.mode")
    parser.add_argument(
        "--tta", action="store_true",
        help="test-time augmentation: eval.scales if it lists several (else 0.5-1.75) and flipping",
    )
    parser.add_argument("--device", help="override train.device (auto, cpu, cuda, cuda:N, mps)")
    parser.add_argument(
        "--out", help="JSON file for the metrics (default: eval_<checkpoint>_<mode>[_tta].json in "
        "the checkpoint's run directory)",
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
    from segkit.engine.inference import InferenceSettings
    from segkit.engine.progress import ProgressBar
    from segkit.engine.trained import load_trained
    from segkit.errors import ConfigError
    from segkit.metrics import format_metrics
    from segkit.validation import load_config

    config = load_config(args.config, args.overrides)
    settings = InferenceSettings.from_config(config["eval"], args.mode, args.tta)
    process_device = world.resolve_device(args.device or config["train"]["device"])
    world.start(process_device)
    dataset = build_dataset(config, "val")
    trained = load_trained(config, args.checkpoint, str(process_device))
    classes = list(dataset.classes)
    if len(classes) != config["model"]["num_classes"]:
        raise ConfigError(
            f"model.num_classes is {config['model']['num_classes']} but data.val has "
            f"{len(classes)} classes"
        )
    data = config["data"]
    loader = validation_loader(
        dataset, data["val_batch_size"], data["workers"], trained.device.type == "cuda", False,
        config["train"]["seed"], world.rank, world.size,
    )
    evaluator = Evaluator(settings, classes, trained.normalizer, trained.precision, panels=0,
                          world=world)
    if world.is_main:
        processes = f" on {world.size} processes" if world.size > 1 else ""
        print(
            f"segkit: evaluating {trained.path} on {len(dataset)} images{processes}: "
            f"{settings.describe()}; device {trained.device}, precision "
            f"{trained.precision.describe()}",
            flush=True,
        )
    bar = ProgressBar(len(loader.sampler), "eval") if world.is_main else None
    metrics = evaluator.evaluate(trained.model, loader, bar)
    if bar is not None:
        bar.close()
    metrics.pop("samples")
    if not world.is_main:
        return 0
    print(format_metrics(metrics))
    out = Path(args.out) if args.out else _default_output(trained.path, settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "checkpoint": str(trained.path),
        "step": trained.step,
        "config": str(args.config),
        "images": len(dataset),
        "mode": settings.mode,
        "crop": settings.crop,
        "stride": settings.stride,
        "scales": list(settings.scales),
        "flip": settings.flip,
        "precision": trained.precision.name,
        **metrics,
    }
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"segkit: wrote {out}")
    return 0


def _default_output(checkpoint: Path, settings) -> Path:
    in_run = checkpoint.parent.name == "checkpoints"
    run_dir = checkpoint.parent.parent if in_run else checkpoint.parent
    tta = "_tta" if len(settings.scales) > 1 or settings.flip else ""
    return run_dir / f"eval_{checkpoint.stem}_{settings.mode}{tta}.json"
