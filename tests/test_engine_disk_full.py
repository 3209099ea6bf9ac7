"""A full disk for real, and outputs that cannot be written where asked.

The runs write into a small tmpfs that a ballast file fills at a chosen moment (before the run,
or from a toy logger inside it); each must end with one message in words that names the file
(exit 2, no traceback) and leave every good file as it was. tmpfs counts whole 4 KiB pages, so a
short append into a page already in use still fits: each case fills the disk just before a write
that needs a new file. Also: a torn last line of metrics.jsonl does not block ``--resume``, and
``predict --out`` / ``eval --out`` that cannot be used are refused before anything is written.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import run_segkit
from engine_toys import fill_disk
from engine_toys import write_toy_config as write
from test_engine_cli import toy_plugin_path, write_images

from segkit.engine.rundir import RunDirectory

PAGE = 4096
SHORT = "train: {max_iters: 6, eval_interval: 6, log_interval: 3, precision: fp32, device: cpu}\n"


@pytest.fixture
def disk(tmp_path):
    """A 16 MiB tmpfs at tmp_path/disk, unmounted at the end (lazily: a process that failed may
    still hold a file there for a moment)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a real disk that fills up) needs root")
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def plugins(tmp_path) -> str:
    return toy_plugin_path(tmp_path)


def segkit(plugin_path: str, *arguments, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return run_segkit(
        *map(str, arguments), pythonpath=plugin_path, cwd=cwd, env={"OMP_NUM_THREADS": "1"}
    )


def fill(disk: Path, leave_pages: int = 0) -> None:
    """Fill ``disk`` with a ballast file, then free ``leave_pages`` pages of it again."""
    ballast = disk / "ballast"
    fill_disk(ballast)
    if leave_pages:
        os.truncate(ballast, ballast.stat().st_size - leave_pages * PAGE)


def filler(disk: Path, hook: str, step: int = 1, **more: str) -> str:
    """A logging section whose toy logger fills ``disk`` in ``hook`` (at ``step``), plus the
    loggers of ``more`` (type -> inline YAML options)."""
    loggers = [f"{{type: toy_fill_disk, path: '{disk / 'ballast'}', hook: {hook}, step: {step}}}"]
    loggers += [
        f"{{type: {kind}{', ' + options if options else ''}}}" for kind, options in more.items()
    ]
    return f"logging: {{loggers: [{', '.join(loggers)}]}}\n"


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> contents)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def assert_disk_full(result: subprocess.CompletedProcess, *words) -> str:
    """Exit 2 with one error line that says the disk is full and holds each of ``words``."""
    stderr = result.stderr
    assert result.returncode == 2, stderr
    assert "Traceback" not in stderr and "Exception in thread" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("segkit: error: ")]
    assert len(errors) == 1, stderr
    assert stderr.lower().count("no space left on device") == 1, stderr
    assert "segkit: error: no space left on device" in errors[0], stderr
    for word in map(str, words):
        assert word in errors[0], f"{word!r} not in {errors[0]!r}"
    return errors[0]


# ---- training --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_at_the_start_names_config_yaml_and_leaves_no_partial_file(
    disk, tmp_path, plugins
):
    config = write(tmp_path, train=SHORT)
    fill(disk, leave_pages=1)  # the run lock takes the last page
    run = disk / "run"
    result = segkit(plugins, "train", config, "--work-dir", run)
    assert_disk_full(result, run / "config.yaml", "no checkpoint had been written yet")
    assert [p.name for p in run.iterdir()] == [".lock"]


@pytest.mark.slow
def test_a_full_disk_on_resume_names_the_run_lock_and_changes_nothing(disk, tmp_path, plugins):
    config, run = write(tmp_path, train=SHORT), disk / "run"
    assert segkit(plugins, "train", config, "--work-dir", run).returncode == 0
    before = files_of(run)
    fill(disk)
    result = segkit(
        plugins,
        "train",
        config,
        "train.max_iters=12",
        "--resume",
        "--work-dir",
        run,
        "--allow-changes",
    )
    last = run / "checkpoints" / "last.pt"
    assert_disk_full(
        result, f"the run lock {run / '.lock'}", f"the last good checkpoint is {last} (iteration 6)"
    )
    assert files_of(run) == before


@pytest.mark.slow
def test_a_full_disk_at_the_first_metrics_line_names_metrics_jsonl(disk, tmp_path, plugins):
    config = write(tmp_path, train=SHORT, logging=filler(disk, "segkit_on_train_start"))
    run = disk / "run"
    result = segkit(plugins, "train", config, "--work-dir", run)
    assert_disk_full(
        result, run / "metrics.jsonl", "no checkpoint had been written yet", "start the run again"
    )
    assert (run / "metrics.jsonl").read_bytes() == b""  # no torn line
    (disk / "ballast").unlink()  # space freed: the run starts again, as the message says
    assert segkit(plugins, "train", config, "logging.loggers=[]", "--work-dir", run).returncode == 0


@pytest.mark.slow
def test_a_full_disk_for_tensorboard_events_is_reported_once_naming_the_events_file(
    disk, tmp_path, plugins
):
    logging = filler(disk, "segkit_on_train_start", tensorboard="")
    config = write(tmp_path, train=SHORT, logging=logging)
    run = disk / "run"
    result = segkit(plugins, "train", config, "--work-dir", run)
    assert_disk_full(
        result,
        "plugin 'logger tensorboard'",
        run / "tb" / "events.out.tfevents.",
        "no checkpoint had been written yet",
    )


@pytest.mark.slow
def test_a_full_disk_while_saving_panels_keeps_the_earlier_panels(disk, tmp_path, plugins):
    logging = filler(disk, "segkit_on_train_iter_end", step=12)
    config, run = write(tmp_path, train=SHORT, logging=logging), disk / "run"
    assert segkit(plugins, "train", config, "--work-dir", run).returncode == 0
    panels = files_of(run / "predictions")
    assert len(panels) == 4
    result = segkit(
        plugins,
        "train",
        config,
        "train.max_iters=12",
        "--resume",
        "--work-dir",
        run,
        "--allow-changes",
    )
    last = run / "checkpoints" / "last.pt"
    assert_disk_full(
        result,
        f"the prediction panel {run / 'predictions'}/00_",
        f"the last good checkpoint is {last} (iteration 6)",
    )
    assert files_of(run / "predictions") == panels


@pytest.mark.slow
def test_a_full_disk_while_saving_last_pt_keeps_the_previous_one(disk, tmp_path, plugins):
    """A SIGTERM after the disk filled up: the run's last save fails, the one before stays."""
    train = (
        "train: {max_iters: 12, eval_interval: 0, log_interval: 3, checkpoint_interval: 4, "
        "precision: fp32, device: cpu}\n"
    )
    logging = filler(disk, "segkit_on_train_iter_end", step=6, toy_signal_at="step: 6")
    config, run = write(tmp_path, train=train, logging=logging), disk / "run"
    result = segkit(plugins, "train", config, "--work-dir", run)
    last = run / "checkpoints" / "last.pt"
    assert_disk_full(
        result,
        f"could not write checkpoint {last}",
        "the previous file is intact",
        f"the last good checkpoint is {last} (iteration 4)",
    )
    assert torch.load(last, weights_only=True)["step"] == 4
    assert sorted(p.name for p in last.parent.iterdir()) == ["iter_000004.pt", "last.pt"]


@pytest.mark.slow
def test_a_torn_last_metrics_line_is_dropped_with_a_note_and_the_run_resumes(tmp_path, plugins):
    config, run = write(tmp_path, train=SHORT), tmp_path / "run"
    assert segkit(plugins, "train", config, "--work-dir", run).returncode == 0
    metrics = run / "metrics.jsonl"
    with open(metrics, "a", encoding="utf-8") as file:
        file.write('{"split": "train", "step": 7, "lo')  # a crash in the middle of a write
    result = segkit(
        plugins,
        "train",
        config,
        "train.max_iters=9",
        "--resume",
        "--work-dir",
        run,
        "--allow-changes",
    )
    assert result.returncode == 0, result.stderr
    assert (
        f"segkit: note: {metrics}: dropped 1 line that is not a whole JSON object" in result.stderr
    )
    lines = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines()]
    assert [(line["split"], line["step"]) for line in lines] == [
        ("train", 3),
        ("train", 6),
        ("val", 6),
        ("train", 9),
        ("val", 9),
    ]


def test_unreadable_metrics_lines_anywhere_are_dropped_with_a_note_saying_how_many(
    tmp_path, capsys
):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_bytes(
        b'{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n[3]\n\xff\xfe\n'
        b'{"step": 5}\n{"step": "six"}\n{"spl'
    )
    RunDirectory(tmp_path).start(resume_step=4, overwrite=False)
    assert metrics.read_text(encoding="utf-8") == '{"step": 1}\n{"step": 3}\n'
    note = capsys.readouterr().err
    assert f"segkit: note: {metrics}: dropped 5 lines that are not whole JSON objects" in note


# ---- predict and eval ------------------------------------------------------------------------


@dataclass
class Trained:
    config: Path
    checkpoint: Path
    plugins: str


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    root = tmp_path_factory.mktemp("trained")
    plugin_path = toy_plugin_path(root)
    config = write(
        root, train="train: {max_iters: 2, eval_interval: 0, precision: fp32, device: cpu}\n"
    )
    result = segkit(plugin_path, "train", config, "--work-dir", root / "run")
    assert result.returncode == 0, result.stderr
    return Trained(config, root / "run" / "checkpoints" / "last.pt", plugin_path)


def predict(trained: Trained, *arguments, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return segkit(
        trained.plugins,
        "predict",
        trained.config,
        "--checkpoint",
        trained.checkpoint,
        *arguments,
        cwd=cwd,
    )


def evaluate(trained: Trained, *arguments, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return segkit(
        trained.plugins,
        "eval",
        trained.config,
        "--checkpoint",
        trained.checkpoint,
        *arguments,
        cwd=cwd,
    )


@pytest.mark.slow
def test_a_full_disk_while_predicting_names_the_picture_and_keeps_the_earlier_ones(
    disk, tmp_path, trained
):
    out = disk / "out"
    first = write_images(tmp_path / "first", [(32, 32)])
    assert predict(trained, first[0], "--out", out).returncode == 0
    earlier = files_of(out)
    fill(disk)
    second = write_images(tmp_path / "second", [(24, 24), (28, 28)])  # another img0, and img1
    result = predict(trained, second[0].parent, "--out", out)
    assert_disk_full(result, f"the prediction {out / 'img0.png'}")
    assert files_of(out) == earlier


def test_a_full_disk_while_writing_the_eval_report_keeps_the_earlier_one(disk, trained):
    report = disk / "eval.json"
    report.write_text('{"mIoU": 0.5}\n', encoding="utf-8")
    fill(disk)
    result = evaluate(trained, "--out", report)
    assert_disk_full(result, f"the evaluation report {report}")
    assert report.read_text(encoding="utf-8") == '{"mIoU": 0.5}\n'
    assert sorted(p.name for p in disk.iterdir()) == ["ballast", "eval.json"]


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("segkit: error: ")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], f"{word!r} not in {errors[0]!r}"


@pytest.mark.parametrize("under", [False, True], ids=["at-a-file", "under-a-file"])
def test_predict_out_at_or_under_a_file_is_refused_and_nothing_is_written(tmp_path, trained, under):
    images = write_images(tmp_path / "images", [(32, 32)])
    place = tmp_path / "place"
    place.mkdir()
    taken = place / "taken.png"
    taken.write_bytes(b"someone's picture")
    out = taken / "predictions" if under else taken
    result = predict(trained, images[0], "--out", out, cwd=place)
    assert_refused(result, f"--out {out}", f"{taken} is a file")
    assert files_of(place) == {"taken.png": b"someone's picture"}
    assert [p.name for p in images[0].parent.iterdir()] == ["img0.png"]


def test_eval_out_in_a_missing_folder_is_refused_and_nothing_is_written(tmp_path, trained):
    place = tmp_path / "place"
    place.mkdir()
    out = place / "missing" / "eval.json"
    run_before = files_of(trained.checkpoint.parent.parent)
    result = evaluate(trained, "--out", out, cwd=place)
    assert_refused(result, f"--out {out}", f"the folder {out.parent} does not exist")
    assert list(place.iterdir()) == []
    assert files_of(trained.checkpoint.parent.parent) == run_before
