"""``segkit train CONFIG [overrides] [--resume [PATH]] [--work-dir DIR] [--overwrite] [--nproc N]``.

Under torchrun the very same command runs in every process; ``--nproc N`` starts torchrun on this
machine for you.
"""

from __future__ import annotations

import os
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
