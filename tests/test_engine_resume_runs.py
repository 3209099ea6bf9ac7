"""Resuming and sharing a run directory with real processes: a run resumed by its directory alone
uses its own config exactly, a changed config is refused unless asked for, files of writers
killed with kill -9 are cleaned up, and a second process cannot train in a run that is in use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from engine_toys import write_toy_config as write
from test_engine_stopping import plugin_environment, step_of, wait_for

TRAIN = (
    "train: {max_iters: 4, eval_interval: 0, log_interval: 1, checkpoint_interval: 2, "
    "precision: fp32, device: cpu}\n"
)


def segkit_train(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    env = plugin_environment(tmp_path)
    env.pop("SEGKIT_STRICT_PLUGINS")
    return subprocess.run(
        [sys.executable, "-m", "segkit", "train", *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )


def trained_run(tmp_path: Path) -> tuple[Path, Path]:
    config = write(tmp_path, train=TRAIN)
    run = tmp_path / "run"
    result = segkit_train(tmp_path, str(config), "--work-dir", str(run))
    assert result.returncode == 0, result.stderr
    return config, run


@pytest.mark.slow
def test_resume_by_run_directory_uses_the_runs_own_config_exactly(tmp_path):
    config, run = trained_run(tmp_path)
    stored = (run / "config.yaml").read_text()
    # raise max_iters the documented way, then resume by directory alone
    grown = segkit_train(
        tmp_path,
        str(config),
        "train.max_iters=6",
        "--resume",
        "--work-dir",
        str(run),
        "--allow-changes",
    )
    assert grown.returncode == 0, grown.stderr
    assert "resuming with changed values: train.max_iters: 4 -> 6" in grown.stderr
    (run / "checkpoints" / "last.pt").unlink()  # force the numbered fallback below
    by_directory = segkit_train(tmp_path, "--resume", str(run))
    assert by_directory.returncode == 0, by_directory.stderr
    assert "finished already (6 of 6 iterations)" in by_directory.stdout
    assert "resuming from" in by_directory.stderr and "iter_000006.pt" in by_directory.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["max_iters"] == 6
    assert stored != (run / "config.yaml").read_text()


@pytest.mark.slow
def test_a_config_that_differs_from_the_checkpoints_is_refused_with_the_differences(tmp_path):
    config, run = trained_run(tmp_path)
    last_before = (run / "checkpoints" / "last.pt").read_bytes()
    result = segkit_train(
        tmp_path,
        str(config),
        "data.batch_size=3",
        "train.max_iters=9",
        "--resume",
        "--work-dir",
        str(run),
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert "data.batch_size: 4 -> 3" in message and "train.max_iters: 4 -> 9" in message
    assert "--allow-changes" in message and f"segkit train --resume {run}" in message
    assert (run / "checkpoints" / "last.pt").read_bytes() == last_before


def test_resume_without_any_checkpoint_says_so(tmp_path):
    config = write(tmp_path, train=TRAIN)
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    (tmp_path / "empty" / "config.yaml").write_text(config.read_text())
    result = segkit_train(tmp_path, "--resume", str(tmp_path / "empty"))
    assert result.returncode == 2 and "no checkpoint to resume from" in result.stderr
    assert "Traceback" not in result.stderr


def killed_writer(folder: Path, name: str) -> Path:
    """A real process that starts writing ``folder/.NAME.PID.tmp`` and is killed with kill -9."""
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time; f = open(os.path.join(sys.argv[1], f'.{sys.argv[2]}.{os.getpid()}.tmp'), 'wb');"
            "f.write(b'half a checkpoint'); f.flush(); print('ready', flush=True); time.sleep(60)",
            str(folder),
            name,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline().strip() == "ready"
    temporary = folder / f".{name}.{writer.pid}.tmp"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    return temporary


@pytest.mark.slow
def test_temporary_files_of_killed_writers_are_removed_when_the_run_resumes(tmp_path):
    config, run = trained_run(tmp_path)
    checkpoints = run / "checkpoints"
    dead = [
        killed_writer(checkpoints, "last.pt"),
        killed_writer(checkpoints, "iter_000004.pt"),
        killed_writer(run, "config.yaml"),
    ]
    alive = checkpoints / f".best.pt.{os.getpid()}.tmp"  # this test process is running
    alive.write_bytes(b"in progress")
    result = segkit_train(tmp_path, str(config), "--resume", "--work-dir", str(run))
    assert result.returncode == 0, result.stderr
    assert "removed 3 temporary file(s) left by a writer that was killed" in result.stderr
    assert not any(path.exists() for path in dead)
    assert alive.exists()


@pytest.mark.slow
def test_a_second_process_cannot_train_in_a_run_in_use(tmp_path):
    step_file = tmp_path / "step.txt"
    config = write(
        tmp_path,
        train="train: {max_iters: 1000, eval_interval: 0, log_interval: 1, checkpoint_interval: 1, "
        "precision: fp32, device: cpu}\n",
        logging=f"logging: {{loggers: [{{type: toy_step_file, path: '{step_file}', sleep: 0.05}}]}}\n",
    )
    run = tmp_path / "run"
    env = plugin_environment(tmp_path)
    first = subprocess.Popen(
        [sys.executable, "-m", "segkit", "train", str(config), "--work-dir", str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        wait_for(
            first,
            lambda: step_of(step_file) >= 2 and (run / "checkpoints/last.pt").exists(),
            "the first run saved a checkpoint",
        )
        for extra in (["--overwrite"], ["--resume"]):
            second = segkit_train(tmp_path, str(config), "--work-dir", str(run), *extra)
            assert second.returncode == 2, second.stderr
            assert f"in use by another segkit train (pid {first.pid} on " in second.stderr
            assert "Traceback" not in second.stderr
        assert first.poll() is None  # the first run went on, its files untouched
        assert (run / "metrics.jsonl").exists()
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the kernel drops the lock with the process
        first.communicate()
    after = segkit_train(
        tmp_path, str(config), "train.max_iters=2", "--work-dir", str(run), "--overwrite"
    )
    assert after.returncode == 0, after.stderr
    assert (
        f"took over the lock of {run} from a run that is no longer running (pid {first.pid}"
        in after.stderr
    )
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=False)["step"] == 2


def test_segkit_convert_removes_the_temporary_file_of_a_conversion_killed_midway(tmp_path):
    from original_formats import official_drn

    weights = tmp_path / "drn_d_22.pth"
    torch.save(official_drn("drn_d_22").state_dict(), weights)
    out = tmp_path / "out"
    out.mkdir()
    dead = killed_writer(out, "backbone.pt")
    other = killed_writer(out, "another.pt")  # a different file's: not this conversion's to judge
    env = plugin_environment(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "segkit",
            "convert",
            "--from",
            "drn",
            str(weights),
            "--backbone",
            "drn_d_22",
            "--out",
            str(out / "backbone.pt"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert not dead.exists() and other.exists()
    assert (out / "backbone.pt").is_file()
