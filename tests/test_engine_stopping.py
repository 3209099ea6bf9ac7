"""Stopping ``segkit train`` from outside, with real processes and real signals: SIGTERM and
SIGINT to the whole process group (as SLURM, Kubernetes, torchrun and Ctrl-C send them) in every
phase of a run, and data workers killed by the kernel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from engine_toys import write_toy_config as write

# Real training processes stopped by real signals, 4 to 9 s each on 2 cores: all marked slow,
# so make test (and CI) runs them and make test-fast does not.
pytestmark = pytest.mark.slow

TESTS = Path(__file__).parent
STATUS = {signal.SIGTERM: 143, signal.SIGINT: 130}


def plugin_environment(root: Path) -> dict[str, str]:
    """A subprocess environment in which engine_toys and stop_toys are an installed plugin."""
    site = root / "site"
    info = site / "segkit_stop_toys-0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: segkit-stop-toys\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[segkit]\ntoys = engine_toys\nstop_toys = stop_toys\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SEGKIT_") and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(site), str(TESTS), os.environ.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",
        SEGKIT_STRICT_PLUGINS="1",
    )
    return env


def start(config: Path, run: Path, *extra: str) -> subprocess.Popen:
    """``segkit train`` in a process group of its own, as a job under a scheduler runs."""
    return subprocess.Popen(
        [sys.executable, "-m", "segkit", "train", str(config), "--work-dir", str(run), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=plugin_environment(config.parent),
        start_new_session=True,
    )


def wait_for(process: subprocess.Popen, ready, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"training ended (status {process.returncode}) before {what}:\n{err}")
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def step_of(path: Path) -> int:
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text else 0


def stop_group(process: subprocess.Popen, signum: int) -> tuple[str, str]:
    os.killpg(process.pid, signum)
    out, err = process.communicate(timeout=120)
    return out, err


def assert_stopped_and_saved(process, err: str, run: Path, signum: int, at_least: int) -> int:
    assert process.returncode == STATUS[signum], err
    assert "Traceback" not in err, err
    last = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert last["step"] >= at_least
    assert f"stopped by {signal.Signals(signum).name} after iteration {last['step']}" in err
    return last["step"]


# Three delays after the marker, each with both signals: the signal lands in different places
# of the step (loading, forward, backward, the hooks).
CASES = [
    pytest.param(signal.SIGTERM, 0.0, id="SIGTERM-0s"),
    pytest.param(signal.SIGINT, 0.15, id="SIGINT-0.15s"),
    pytest.param(signal.SIGTERM, 0.4, id="SIGTERM-0.4s"),
]


@pytest.mark.parametrize("signum, delay", CASES)
def test_a_signal_to_the_group_during_validation_saves_last_pt(tmp_path, signum, delay):
    marker = tmp_path / "served.txt"
    config = write(
        tmp_path,
        train="train: {max_iters: 1000, eval_interval: 2, log_interval: 1, precision: fp32, device: cpu}\n",
        data=f"""
data:
  train: {{type: toy_shapes, count: 16}}
  val: {{type: toy_marked_shapes, count: 40, seed: 1, marker: '{marker}', delay: 0.05}}
  batch_size: 2
  val_batch_size: 1
  workers: 2
""",
    )
    run = tmp_path / "run"
    process = start(config, run)
    wait_for(process, lambda: lines(marker) >= 2, "validation started")
    time.sleep(delay)
    _, err = stop_group(process, signum)
    assert_stopped_and_saved(process, err, run, signum, at_least=2)


@pytest.mark.parametrize("signum, delay", CASES)
def test_a_signal_to_the_group_with_accumulated_batches_saves_last_pt(tmp_path, signum, delay):
    step_file = tmp_path / "step.txt"
    config = write(
        tmp_path,
        train="train: {max_iters: 1000, eval_interval: 0, log_interval: 5, accumulate: 8, precision: fp32, device: cpu}\n",
        data="""
data:
  train: {type: toy_shapes, count: 16, image_size: 64}
  batch_size: 2
  workers: 2
""",
        logging=f"logging: {{loggers: [{{type: toy_step_file, path: '{step_file}'}}]}}\n",
    )
    run = tmp_path / "run"
    process = start(config, run)
    wait_for(process, lambda: step_of(step_file) >= 1, "the first step")
    time.sleep(delay)
    _, err = stop_group(process, signum)
    assert_stopped_and_saved(process, err, run, signum, at_least=1)


@pytest.mark.parametrize("signum, delay", CASES)
def test_a_signal_to_the_group_of_a_data_bound_run_saves_last_pt(tmp_path, signum, delay):
    """Large images and one worker: the main process spends its time waiting for data."""
    step_file = tmp_path / "step.txt"
    config = write(
        tmp_path,
        train="train: {max_iters: 1000, eval_interval: 0, log_interval: 5, precision: fp32, device: cpu}\n",
        data="""
data:
  train: {type: toy_marked_shapes, count: 16, image_size: 384, delay: 0.2}
  batch_size: 2
  workers: 1
""",
        logging=f"logging: {{loggers: [{{type: toy_step_file, path: '{step_file}'}}]}}\n",
    )
    run = tmp_path / "run"
    process = start(config, run)
    wait_for(process, lambda: step_of(step_file) >= 1, "the first step")
    time.sleep(delay)
    _, err = stop_group(process, signum)
    assert_stopped_and_saved(process, err, run, signum, at_least=1)


def test_a_data_worker_killed_by_the_kernel_is_one_message_with_the_last_checkpoint(tmp_path):
    """SIGKILL, as the out-of-memory killer sends it, to the one worker, after a checkpoint."""
    config = write(
        tmp_path,
        train="train: {max_iters: 1000, eval_interval: 0, checkpoint_interval: 2, precision: fp32, device: cpu}\n",
        data="""
data:
  train: {type: toy_marked_shapes, count: 16, kill_at: 30}
  batch_size: 2
  workers: 1
""",
    )
    run = tmp_path / "run"
    process = start(config, run)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    assert "Traceback" not in err, err
    last = torch.load(run / "checkpoints/last.pt", weights_only=True)["step"]
    assert (
        f"segkit: error: a data worker was killed (signal 9), probably out of memory; lower "
        f"data.workers or the image size; the last good checkpoint is "
        f"{run / 'checkpoints/last.pt'} (iteration {last})"
    ) in err, err
    assert err.count("data worker") == 1


def test_a_data_worker_killed_under_torchrun_is_one_message_with_the_last_checkpoint(tmp_path):
    """The OOM killer takes rank 1's worker: that process says what happened, with the last
    good checkpoint, and exits with 2; torchrun then stops rank 0 and prints its own report,
    but no traceback comes from segkit's code."""
    config = write(
        tmp_path,
        train="train: {max_iters: 1000, eval_interval: 0, checkpoint_interval: 2, precision: fp32, device: cpu}\n",
        data="""
data:
  train: {type: toy_marked_shapes, count: 16, kill_at: 20, kill_rank: 1}
  batch_size: 2
  workers: 1
""",
    )
    run = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "segkit",
            "train",
            str(config),
            "--work-dir",
            str(run),
        ],
        capture_output=True,
        text=True,
        env=plugin_environment(tmp_path),
        timeout=240,
    )
    assert result.returncode != 0
    last = torch.load(run / "checkpoints/last.pt", weights_only=True)["step"]
    kept = f"the last good checkpoint is {run / 'checkpoints/last.pt'} (iteration {last})"
    killed = [line for line in result.stderr.splitlines() if "a data worker was killed" in line]
    assert len(killed) == 1, result.stderr
    assert "probably out of memory; lower data.workers or the image size" in killed[0]
    assert kept in killed[0]
    assert "exitcode  : 2" in result.stderr  # torchrun's report of rank 1
    frames = [line for line in result.stderr.splitlines() if line.strip().startswith('File "')]
    assert not [frame for frame in frames if "/segkit/" in frame], result.stderr
