"""``segkit train CONFIG [overrides] [--resume [PATH]] [--work-dir DIR] [--overwrite]``."""

from __future__ import annotations

from pathlib import Path

from segkit.errors import CheckpointError


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model",
        description="Train the model of a config. The run directory (train.work_dir, default "
        "runs/<config name>) receives the resolved config, env.json, metrics.jsonl, checkpoints/, "
        "tb/ and predictions/. Exit status: 0 finished, 2 error (bad config, data, diverged "
        "loss), 130/143 stopped by SIGINT/SIGTERM after saving checkpoints/last.pt.",
    )
    parser.add_argument("config", help="path to a YAML config")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE or +KEY=VALUE overrides")
    parser.add_argument(
        "--resume", nargs="?", const=True, default=None, metavar="PATH",
        help="continue a run exactly where it stopped: from PATH, or from the run's "
        "checkpoints/last.pt (write overrides before this option)",
    )
    parser.add_argument("--work-dir", help="run directory (overrides train.work_dir)")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="start over in a run directory that already holds a run, deleting its files",
    )
    parser.set_defaults(handler=run_train)


def run_train(args) -> int:
    from segkit.engine.summary import run_summary
    from segkit.engine.trainer import Trainer
    from segkit.validation import load_config

    config = load_config(args.config, args.overrides)
    resume = None if args.resume in (None, True) else Path(args.resume)
    work_dir = Path(args.work_dir or _run_dir_of(resume) or config["train"]["work_dir"]
                    or Path("runs") / Path(args.config).stem)
    config["train"]["work_dir"] = str(work_dir)
    if args.resume is True:
        resume = work_dir / "checkpoints" / "last.pt"
    if resume is not None and not resume.is_file():
        hint = ""
        if "=" in str(resume):
            hint = " (write overrides before --resume, which takes an optional path)"
        raise CheckpointError(f"{resume}: no checkpoint to resume from{hint}")
    trainer = Trainer(config, work_dir, resume, args.overwrite, args.overrides, args.config)
    status = trainer.fit()
    if status == 0 and trainer.rank == 0:
        print(run_summary(trainer.rundir.path, trainer.best), flush=True)
    return status


def _run_dir_of(checkpoint: Path | None) -> Path | None:
    """The run directory a checkpoint belongs to: the parent of its ``checkpoints/`` folder."""
    if checkpoint is None or checkpoint.parent.name != "checkpoints":
        return None
    return checkpoint.parent.parent
