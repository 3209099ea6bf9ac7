"""``segkit train CONFIG [overrides] [--resume [PATH]] [--work-dir DIR] [--overwrite] [--nproc N]``.

Under torchrun the very same command runs in every process; ``--nproc N`` starts torchrun on this
machine for you.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import NoReturn

from segkit.errors import CheckpointError, SegkitError


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
    parser.add_argument(
        "--nproc", type=int, metavar="N",
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

    config = load_config(args.config, args.overrides)  # a bad config fails here, once
    if args.nproc is not None and args.nproc != 1:
        return launch_torchrun(args)
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
    trainer = Trainer(
        config, work_dir, resume=resume, overwrite=args.overwrite, overrides=args.overrides
    )
    try:
        outcome = trainer.fit(on_ready=_announce)
    except RunExists as error:
        raise SegkitError(
            f"{error.path} already holds a run; continue it with --resume, start it over with "
            "--overwrite, or choose another --work-dir"
        ) from None
    if trainer.world.rank != 0:
        return outcome.status
    if outcome.finished_already:
        print(
            f"segkit: {outcome.run_dir} finished already ({outcome.step} of "
            f"{outcome.max_iters} iterations); raise train.max_iters to train longer"
        )
    elif outcome.stopped_by is not None:
        command = shlex.join([str(args.config), *args.overrides])
        print(
            f"segkit: stopped by {outcome.stopped_by} after iteration {outcome.step}; saved "
            f"{outcome.last_checkpoint}. Resume with: segkit train {command} --resume "
            f"--work-dir {outcome.run_dir}"
            + (", started as this run was (torchrun or --nproc)" if trainer.world.size > 1 else ""),
            file=sys.stderr,
        )
    else:
        print(run_summary(outcome.run_dir, outcome.best), flush=True)
    for failure in outcome.plugin_failures:
        print(f"segkit: warning: {failure.describe()}; it was not called again in this run",
              file=sys.stderr)
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
        + f")\nsegkit: {trainer.runtime.describe()}" + processes,
        flush=True,
    )


def _run_dir_of(checkpoint: Path | None) -> Path | None:
    """The run directory a checkpoint belongs to: the parent of its ``checkpoints/`` folder."""
    if checkpoint is None or checkpoint.parent.name != "checkpoints":
        return None
    return checkpoint.parent.parent


def launch_torchrun(args) -> NoReturn:
    """Replace this process by torchrun running ``segkit train`` (without ``--nproc``) in
    ``args.nproc`` processes; its exit status becomes this command's."""
    if args.nproc < 1:
        raise SegkitError(f"--nproc: needs at least 1 process, got {args.nproc}")
    if "WORLD_SIZE" in os.environ:
        raise SegkitError("--nproc starts torchrun itself; leave it out under torchrun")
    command = [str(args.config), *args.overrides]
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
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={args.nproc}", "-m", "segkit", "train", *command,
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, launcher)
