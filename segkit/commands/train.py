"""``segkit train CONFIG [overrides] [--resume [PATH]] [--work-dir DIR] [--overwrite] [--nproc N]``,
and ``segkit train --resume RUN_DIR`` to continue a run with its own config.

Under torchrun the very same command runs in every process; ``--nproc N`` starts torchrun on this
machine for you.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import NoReturn

from segkit.config import is_override
from segkit.errors import CheckpointError, SegkitError
from segkit.files import DiskFull


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model",
        description="Train the model of a config. The run directory (train.work_dir, default "
        "runs/<config name>) receives the resolved config, env.json, metrics.jsonl, checkpoints/, "
        "predictions/ and what the loggers write. Exit status: 0 finished, 2 error (bad config, data, diverged "
        "loss), 130/143 stopped by SIGINT/SIGTERM after saving checkpoints/last.pt.",
    )
    parser.add_argument(
        "config",
        nargs="?",
        help="path to a YAML config (leave it out with --resume RUN_DIR: the run's own is used)",
    )
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE or +KEY=VALUE overrides")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="PATH",
        help="continue a run exactly where it stopped: from PATH (a checkpoint or a run "
        "directory), or from the run's checkpoints/last.pt (its newest iter_*.pt where last.pt "
        "was never written); write overrides before this option",
    )
    parser.add_argument(
        "--allow-changes",
        action="store_true",
        help="resume with values that differ from the checkpoint's config (without it, such a "
        "resume is refused with the list of differences)",
    )
    parser.add_argument("--work-dir", help="run directory (overrides train.work_dir)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in a run directory that already holds a run, deleting its files",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train with N processes on this machine (one per GPU; or N CPU processes): runs "
        "python -m torch.distributed.run --standalone --nproc_per_node N -m segkit train ... "
        "(for several machines, start torchrun yourself; see docs/distributed.md)",
    )
    parser.set_defaults(handler=run_train)


def run_train(args) -> int:
    from segkit.engine.rundir import RunExists
    from segkit.engine.summary import run_summary
    from segkit.engine.trainer import Trainer
    from segkit.validation import load_config

    _take_stray_override(args)
    run_dir = _resumed_run_dir(args)
    config_path = args.config if args.config is not None else run_dir / "config.yaml"
    config = load_config(config_path, args.overrides)  # a bad config fails here, once
    if args.nproc is not None and args.nproc != 1:
        return launch_torchrun(args)
    work_dir = Path(
        args.work_dir
        or run_dir
        or config["train"]["work_dir"]
        or Path("runs") / Path(args.config).stem
    )
    config["train"]["work_dir"] = str(work_dir)
    resume = _checkpoint_to_resume(args.resume, work_dir)
    trainer = Trainer(
        config,
        work_dir,
        resume=resume,
        overwrite=args.overwrite,
        overrides=args.overrides,
        allow_changes=args.allow_changes,
    )
    try:
        outcome = trainer.fit(on_ready=_announce)
    except RunExists as error:
        raise SegkitError(
            f"{error.path} already holds a run; continue it with --resume, start it over with "
            "--overwrite, or choose another --work-dir"
        ) from None
    except DiskFull as error:
        again = (
            f"resume with: segkit train --resume {shlex.quote(str(work_dir))}"
            if trainer.saved is not None
            else "start the run again"
        )
        raise DiskFull(f"{error}. Free some space, then {again}") from None
    if trainer.world.rank != 0:
        return outcome.status
    if outcome.finished_already and outcome.stopped_early is not None:
        print(
            f"segkit: {outcome.run_dir} finished already at iteration {outcome.step} "
            f"({outcome.stopped_early}); to train on, resume with a larger "
            "train.early_stop.patience (or null) and --allow-changes"
        )
    elif outcome.finished_already:
        print(
            f"segkit: {outcome.run_dir} finished already ({outcome.step} of "
            f"{outcome.max_iters} iterations); to train longer, resume with a larger "
            "train.max_iters and --allow-changes"
        )
    elif outcome.stopped_by is not None:
        print(
            f"segkit: stopped by {outcome.stopped_by} after iteration {outcome.step}; saved "
            f"{outcome.last_checkpoint}. Resume with: segkit train --resume "
            f"{shlex.quote(str(outcome.run_dir))}"
            + (", started as this run was (torchrun or --nproc)" if trainer.world.size > 1 else ""),
            file=sys.stderr,
        )
    else:
        print(
            run_summary(
                outcome.run_dir,
                outcome.best,
                outcome.logger_outputs,
                outcome.watch,
                ended=outcome.stopped_early,
            ),
            flush=True,
        )
    for failure in outcome.plugin_failures:
        print(
            f"segkit: warning: {failure.describe()}; it was not called again in this run",
            file=sys.stderr,
        )
    return outcome.status


def _announce(trainer) -> None:
    """The start banner: where the run lives, how long, on what."""
    run, config = trainer.run, trainer.config
    state = f"resuming at iteration {run.start_step}" if run.start_step else "starting"
    accumulate = config["train"]["accumulate"]
    processes = ""
    if run.world_size > 1:
        processes = (
            f"\nsegkit: {run.world_size} processes ({trainer.world.backend}), global batch "
            f"{run.images_per_step}, {trainer.parts.synced_norms} batch norm layer(s) synchronised"
        )
    print(
        f"segkit: training {run.work_dir} ({state}; {run.max_iters} iterations, "
        f"batch {run.batch_size} per process"
        + (f" x {accumulate} accumulated" if accumulate > 1 else "")
        + f")\nsegkit: {trainer.runtime.describe()}"
        + processes,
        flush=True,
    )


def _take_stray_override(args) -> None:
    """``segkit train --resume RUN_DIR KEY=VALUE``: argparse hands the override to CONFIG."""
    if args.config is not None and is_override(args.config) and not Path(args.config).exists():
        args.overrides.insert(0, args.config)
        args.config = None


def _resumed_run_dir(args) -> Path | None:
    """The run directory ``--resume`` points at (a run directory, or a checkpoint in one's
    ``checkpoints/``); without a CONFIG it must hold the run's ``config.yaml``."""
    if args.resume in (None, True):
        if args.config is None:
            raise SegkitError(
                "train: give a CONFIG to train, or --resume RUN_DIR to continue a run with its "
                "own config"
            )
        return None
    given = Path(args.resume)
    run_dir = given if given.is_dir() else _run_dir_of(given)
    if args.config is None and (run_dir is None or not (run_dir / "config.yaml").is_file()):
        raise CheckpointError(
            f"{given}: not a run directory (no config.yaml found); give the run's directory, "
            "or the CONFIG before --resume"
        )
    return run_dir


def _checkpoint_to_resume(resume: str | bool | None, work_dir: Path) -> Path | None:
    from segkit.engine.rundir import RunDirectory

    if resume is None:
        return None
    given = work_dir if resume is True else Path(resume)
    if given.is_dir():
        checkpoint = RunDirectory(given).checkpoints.resumable()
        if checkpoint is None:
            raise CheckpointError(
                f"{given}: no checkpoint to resume from (neither checkpoints/last.pt nor "
                "checkpoints/iter_*.pt); start the run again with --overwrite"
            )
        if checkpoint.name != "last.pt":
            print(
                f"segkit: note: {given} has no last.pt; resuming from {checkpoint}", file=sys.stderr
            )
        return checkpoint
    if not given.is_file():
        hint = ""
        if "=" in str(given):
            hint = " (write overrides before --resume, which takes an optional path)"
        raise CheckpointError(f"{given}: no checkpoint to resume from{hint}")
    return given


def _run_dir_of(checkpoint: Path) -> Path | None:
    """The run directory a checkpoint belongs to: the parent of its ``checkpoints/`` folder."""
    if checkpoint.parent.name != "checkpoints":
        return None
    return checkpoint.parent.parent


def launch_torchrun(args) -> NoReturn:
    """Replace this process by torchrun running ``segkit train`` (without ``--nproc``) in
    ``args.nproc`` processes; its exit status becomes this command's."""
    if args.nproc < 1:
        raise SegkitError(f"--nproc: needs at least 1 process, got {args.nproc}")
    if "WORLD_SIZE" in os.environ:
        raise SegkitError("--nproc starts torchrun itself; leave it out under torchrun")
    command = [*([str(args.config)] if args.config is not None else []), *args.overrides]
    if args.allow_changes:
        command.append("--allow-changes")
    if args.resume is True:
        command.append("--resume")
    elif args.resume is not None:
        command += ["--resume", str(args.resume)]
    if args.work_dir:
        command += ["--work-dir", str(args.work_dir)]
    if args.overwrite:
        command.append("--overwrite")
    # torchrun would give every process one thread; share this machine's cores instead.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.nproc)))
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={args.nproc}",
        "-m",
        "segkit",
        "train",
        *command,
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, launcher)
