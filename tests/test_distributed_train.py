"""Training and evaluation on two CPU processes under torchrun (Gloo), in real subprocesses.

The components come from engine_toys and dist_toys, installed as a plugin through a hand-made
dist-info on PYTHONPATH. dist_toys' backbone and head save their weights on every rank whenever
the model is put in evaluation mode, which is how these tests see rank 1's weights; its loss can
end rank 1 or send it a SIGTERM at a chosen call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segkit.engine.checkpoint import load_for_resume
from segkit.metrics import load_per_image

# Every test here starts torchrun with two training processes (5 to 20 s each on 2 cores);
# tests/test_distributed_collectives.py keeps the collectives in make test-fast.
pytestmark = pytest.mark.slow

TESTS = Path(__file__).parent

# Two processes with 2 images each against one process with 4: the same images in every step,
# batch norm synchronised, gradients averaged. Float sums in another order differ by about 2e-7
# after six steps (measured); without synchronised batch norm the weights differ by about 2e-2.
TOLERANCE = 1e-5

CONFIG = """
model:
  backbone: {{type: toy_sync_cnn, width: 8, dropout: {dropout}, dump_dir: '{dump}'}}
  head: {{type: toy_dump_head, dump_dir: '{dump}'}}
  num_classes: 3
data:
  train: {{type: toy_shapes, count: 16, transforms: [{{type: toy_flip}}]}}
  val: {{type: toy_shapes, count: 7, seed: 1, sizes: [[32, 32], [24, 40]]}}
  batch_size: 2
  workers: 0
optimizer: {{type: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.0001}}
train:
  max_iters: 6
  eval_interval: 0
  log_interval: 3
  precision: fp32
  device: cpu
logging: {{loggers: [{{type: progress}}]}}
"""


def plugin_environment(root: Path) -> dict[str, str]:
    """The environment of a subprocess in which the toy components are an installed plugin."""
    site = root / "site"
    info = site / "segkit_dist_toys-0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: segkit-dist-toys\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[segkit]\ntoys = engine_toys\ndist_toys = dist_toys\n")
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SEGKIT_") and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    }
    environment.update(
        PYTHONPATH=os.pathsep.join([str(site), str(TESTS), os.environ.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",
        SEGKIT_STRICT_PLUGINS="1",
    )
    return environment


def write_config(path: Path, dump: Path, dropout: float = 0.0) -> Path:
    path.write_text(CONFIG.format(dump=dump, dropout=dropout).lstrip(), encoding="utf-8")
    return path


def segkit(*args: str, env: dict[str, str], nproc: int = 1) -> subprocess.CompletedProcess:
    """``segkit ARGS`` in one process, or under torchrun in ``nproc``."""
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return subprocess.run(
        [*launcher, "-m", "segkit", *args], capture_output=True, text=True, env=env, timeout=240
    )


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def dumped(folder: Path, rank: int) -> dict[str, torch.Tensor]:
    """The whole model's weights that rank ``rank`` saved at its latest validation."""
    state = {f"backbone.{k}": v for k, v in weights(folder / f"backbone_rank{rank}.pt").items()}
    state.update({f"head.{k}": v for k, v in weights(folder / f"head_rank{rank}.pt").items()})
    return state


def metric_lines(run: Path, split: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [line for line in map(json.loads, lines) if line["split"] == split]


METRICS = ("mIoU", "mAcc", "aAcc", "IoU", "Acc")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same six steps twice: two processes with 2 images each (started with --nproc 2),
    and one process with 4."""
    root = tmp_path_factory.mktemp("distributed")
    env = plugin_environment(root)
    config = write_config(root / "toy.yaml", root / "dump")
    two = segkit("train", "--nproc", "2", str(config), "--work-dir", str(root / "two"), env=env)
    assert two.returncode == 0, two.stderr
    one = segkit(
        "train",
        str(config),
        "data.batch_size=4",
        "model.backbone.dump_dir=null",
        "model.head.dump_dir=null",
        "--work-dir",
        str(root / "one"),
        env=env,
    )
    assert one.returncode == 0, one.stderr
    return {"root": root, "env": env, "config": config, "two": two, "one": one}


def test_both_processes_end_with_identical_weights(runs):
    dump = runs["root"] / "dump"
    rank0, rank1 = dumped(dump, 0), dumped(dump, 1)
    assert rank0.keys() == rank1.keys() and len(rank0) == 14
    different = [key for key in rank0 if not torch.equal(rank0[key], rank1[key])]
    assert not different, f"rank 1 differs from rank 0 in {different}"
    saved = weights(runs["root"] / "two/checkpoints/last.pt")["model"]
    assert all(torch.equal(saved[key], rank0[key]) for key in rank0)


def test_two_processes_train_like_one_process_with_the_global_batch(runs):
    two = weights(runs["root"] / "two/checkpoints/last.pt")["model"]
    one = weights(runs["root"] / "one/checkpoints/last.pt")["model"]
    assert two.keys() == one.keys()
    assert torch.equal(two["backbone.stage1.1.num_batches_tracked"], torch.tensor(6))
    for key in one:
        difference = (two[key].double() - one[key].double()).abs().max().item()
        assert difference <= TOLERANCE, f"{key} differs by {difference}"
    two_loss = [line["loss"] for line in metric_lines(runs["root"] / "two", "train")]
    one_loss = [line["loss"] for line in metric_lines(runs["root"] / "one", "train")]
    assert two_loss == pytest.approx(one_loss, rel=1e-5)


def test_the_run_states_its_world_and_rank_0_alone_writes_and_prints(runs):
    run = runs["root"] / "two"
    env = json.loads((run / "env.json").read_text())
    assert env["world_size"] == 2 and env["backend"] == "gloo"
    assert env["batch_size_per_process"] == 2 and env["global_batch_size"] == 4
    assert "never rescales" in env["learning_rate"]
    assert env["sync_bn"] == "auto" and env["synchronized_batch_norms"] == 2
    assert [line["step"] for line in metric_lines(run, "train")] == [3, 6]
    assert [line["step"] for line in metric_lines(run, "val")] == [6]
    out = runs["two"].stdout
    assert out.count("segkit: training") == 1 and out.count("validation at iteration 6") == 1
    assert "2 processes (gloo), global batch 4, 2 batch norm layer(s) synchronised" in out
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


def test_distributed_validation_and_eval_equal_one_process_exactly(runs):
    root, env, config = runs["root"], runs["env"], runs["config"]
    checkpoint = root / "two/checkpoints/last.pt"
    single = segkit(
        "eval",
        str(config),
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(root / "eval_one.json"),
        env=env,
    )
    assert single.returncode == 0, single.stderr
    shared = segkit(
        "eval",
        str(config),
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(root / "eval_two.json"),
        env=env,
        nproc=2,
    )
    assert shared.returncode == 0, shared.stderr
    assert shared.stdout.count("mIoU") == 1  # rank 0 reports
    one = json.loads((root / "eval_one.json").read_text())
    two = json.loads((root / "eval_two.json").read_text())
    validation = metric_lines(root / "two", "val")[-1]  # 7 images: 4 on rank 0, 3 on rank 1
    assert one["images"] == two["images"] == 7
    for name in METRICS:
        assert two[name] == one[name] == validation[name], name
    assert two["confusion_matrix"] == one["confusion_matrix"]
    alone, gathered = (load_per_image(root / f"eval_{n}.per_image.npz") for n in ("one", "two"))
    assert gathered.names == alone.names and len(alone) == 7
    assert (gathered.dense() == alone.dense()).all()


def test_validation_with_unsynchronised_batch_norm_is_that_of_the_saved_model(tmp_path):
    """Plain batch norm keeps running statistics per process; validation uses rank 0's, which
    the checkpoint holds, so `segkit eval` of the checkpoint gives the same metric."""
    env = plugin_environment(tmp_path)
    config = write_config(tmp_path / "toy.yaml", tmp_path / "dump")
    run = tmp_path / "run"
    trained = segkit(
        "train", str(config), "model.backbone.norm=bn", "--work-dir", str(run), env=env, nproc=2
    )
    assert trained.returncode == 0, trained.stderr
    evaluated = segkit(
        "eval",
        str(config),
        "model.backbone.norm=bn",
        "--checkpoint",
        str(run / "checkpoints/last.pt"),
        "--out",
        str(tmp_path / "eval.json"),
        env=env,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    one = json.loads((tmp_path / "eval.json").read_text())
    validation = metric_lines(run, "val")[-1]
    for name in METRICS:
        assert one[name] == validation[name], name


def test_a_process_that_cannot_prepare_the_run_stops_all_of_them(runs):
    root = runs["root"]
    result = segkit(
        "train", str(runs["config"]), "--work-dir", str(root / "two"), env=runs["env"], nproc=2
    )
    assert result.returncode != 0
    assert "already holds a run" in result.stderr
    assert "another process failed while preparing the run; see its message" in result.stderr
    assert weights(root / "two/checkpoints/last.pt")["step"] == 6


@pytest.mark.parametrize("workers", [0, 1])
def test_a_process_that_dies_fails_the_run_and_leaves_the_last_checkpoint(tmp_path, workers):
    env = plugin_environment(tmp_path)
    config = write_config(tmp_path / "toy.yaml", tmp_path / "dump")
    run = tmp_path / "run"
    result = segkit(
        "train",
        str(config),
        "train.max_iters=10",
        "train.checkpoint_interval=2",
        f"data.workers={workers}",
        "loss={type: toy_fault_at, call: 7, rank: 1, action: exit}",
        "--work-dir",
        str(run),
        env=env,
        nproc=2,
    )
    assert result.returncode != 0
    assert (
        "segkit: error: process 0 of 2 lost contact with the others in iteration 7" in result.stderr
    ), result.stderr
    kept = f"the last good checkpoint is {run / 'checkpoints/last.pt'} (iteration 6)"
    assert kept in result.stderr
    assert load_for_resume(run / "checkpoints/last.pt")["step"] == 6
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "iter_000002.pt",
        "iter_000004.pt",
        "iter_000006.pt",
        "last.pt",
    ]
    assert max(line["step"] for line in metric_lines(run, "train")) == 6


def test_a_loss_gone_nan_on_one_process_stops_all_at_the_same_iteration(tmp_path):
    env = plugin_environment(tmp_path)
    config = write_config(tmp_path / "toy.yaml", tmp_path / "dump")
    run = tmp_path / "run"
    result = segkit(
        "train",
        str(config),
        "train.max_iters=10",
        "train.checkpoint_interval=2",
        "loss={type: toy_fault_at, call: 5, rank: 1, action: nan}",
        "--work-dir",
        str(run),
        env=env,
        nproc=2,
    )
    assert result.returncode != 0
    # Rank 0's own loss turns NaN one iteration later, through the averaged gradients; both
    # report the earliest bad iteration of either.
    message = (
        f"the loss became non-finite (NaN or infinite) at iteration 5; training stopped "
        f"without saving the broken state; the last good checkpoint is "
        f"{run / 'checkpoints/last.pt'} (iteration 4)"
    )
    assert result.stderr.count(message) == 2, result.stderr
    assert load_for_resume(run / "checkpoints/last.pt")["step"] == 4


def test_sigterm_to_one_process_stops_all_after_the_same_iteration_and_resumes_exactly(tmp_path):
    env = plugin_environment(tmp_path)
    # Dropout makes each process's own random stream matter for an exact resume.
    config = write_config(tmp_path / "toy.yaml", tmp_path / "dump", dropout=0.3)
    fault = "loss={type: toy_fault_at, call: 3, rank: 1, action: sigterm}"
    stopped = tmp_path / "stopped"
    result = segkit(
        "train",
        str(config),
        "train.max_iters=8",
        fault,
        "--work-dir",
        str(stopped),
        env=env,
        nproc=2,
    )
    # Both processes exit with 143; torchrun reports any non-zero worker status as a failure.
    assert result.returncode != 0
    # Rank 1 got the signal during iteration 3; the vote is read one iteration later.
    assert "segkit: stopped by SIGTERM after iteration 4" in result.stderr, result.stderr
    checkpoint = load_for_resume(stopped / "checkpoints/last.pt")
    assert checkpoint["step"] == 4 and len(checkpoint["rng_per_rank"]) == 2
    assert checkpoint["sampler"]["position"] == 16

    # the fault's call is moved out of reach: a change to the run, said so
    resumed = segkit(
        "train",
        str(config),
        "train.max_iters=8",
        fault,
        "loss.call=100",
        "--resume",
        "--allow-changes",
        "--work-dir",
        str(stopped),
        env=env,
        nproc=2,
    )
    assert resumed.returncode == 0, resumed.stderr
    straight = segkit(
        "train",
        str(config),
        "train.max_iters=8",
        fault,
        "loss.call=100",
        "--work-dir",
        str(tmp_path / "straight"),
        env=env,
        nproc=2,
    )
    assert straight.returncode == 0, straight.stderr
    after_resume = weights(stopped / "checkpoints/last.pt")["model"]
    uninterrupted = weights(tmp_path / "straight/checkpoints/last.pt")["model"]
    different = [k for k in uninterrupted if not torch.equal(after_resume[k], uninterrupted[k])]
    assert not different, f"the resumed run differs in {different}"


def test_gradient_accumulation_on_two_processes_equals_one_process(tmp_path):
    """2 processes x 2 images x 2 batches per step against 1 process x 4 images x 2 batches."""
    env = plugin_environment(tmp_path)
    config = write_config(tmp_path / "toy.yaml", tmp_path / "dump")
    two = segkit(
        "train",
        str(config),
        "train.accumulate=2",
        "--work-dir",
        str(tmp_path / "two"),
        env=env,
        nproc=2,
    )
    assert two.returncode == 0, two.stderr
    one = segkit(
        "train",
        str(config),
        "train.accumulate=2",
        "data.batch_size=4",
        "--work-dir",
        str(tmp_path / "one"),
        env=env,
    )
    assert one.returncode == 0, one.stderr
    assert json.loads((tmp_path / "two/env.json").read_text())["global_batch_size"] == 8
    two_weights = weights(tmp_path / "two/checkpoints/last.pt")["model"]
    one_weights = weights(tmp_path / "one/checkpoints/last.pt")["model"]
    for key in one_weights:
        difference = (two_weights[key].double() - one_weights[key].double()).abs().max().item()
        assert difference <= TOLERANCE, f"{key} differs by {difference}"


def test_every_process_keeps_the_same_weight_average_and_validates_the_saved_one(tmp_path):
    """train.ema under torchrun: each process averages the same synchronised parameters; with
    per-process batch norm the buffers are rank 0's, so both processes validate exactly the
    average that last.pt holds, and `segkit eval` of it gives the validation's metric."""
    env = plugin_environment(tmp_path)
    dump = tmp_path / "dump"
    config = write_config(tmp_path / "toy.yaml", dump)
    run = tmp_path / "run"
    options = ["model.backbone.norm=bn", "+train.ema.decay=0.5"]
    trained = segkit("train", str(config), *options, "--work-dir", str(run), env=env, nproc=2)
    assert trained.returncode == 0, trained.stderr
    last = weights(run / "checkpoints/last.pt")
    assert last["ema"]["updates"] == 6
    rank0, rank1 = dumped(dump, 0), dumped(dump, 1)
    for name, value in last["model"].items():
        assert torch.equal(rank0[name], value) and torch.equal(rank1[name], value), name
    evaluated = segkit(
        "eval",
        str(config),
        "model.backbone.norm=bn",
        "--checkpoint",
        str(run / "checkpoints/last.pt"),
        "--out",
        str(tmp_path / "eval.json"),
        env=env,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    one = json.loads((tmp_path / "eval.json").read_text())
    validation = metric_lines(run, "val")[-1]
    for name in METRICS:
        assert one[name] == validation[name], name
