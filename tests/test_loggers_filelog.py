"""The csv and jsonl loggers: long rows any tool reads, clean after a resume, the config beside
them; a real training writes them, and one that cannot write warns once and training goes on."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas
import pluggy
import pytest
import torch
from engine_toys import fill_disk
from logger_runs import train_quickstart
from test_engine_disk_full import disk  # noqa: F401  (a small real tmpfs, as a fixture)

import segkit
from segkit import hookspecs
from segkit.engine.events import RunEvents
from segkit.engine.run import Run

CONFIG = {"model": {"backbone": {"type": "resnet18"}}, "data": {"transforms": [{"type": "flip"}]}}


def make_run(work_dir: Path, start_step: int = 0) -> Run:
    return Run(
        config=CONFIG,
        work_dir=work_dir,
        model=torch.nn.Identity(),
        classes=["road", "sky"],
        palette=[(0, 0, 0), (255, 255, 255)],
        max_iters=10,
        device=torch.device("cpu"),
        precision="fp32",
        batch_size=2,
        start_step=start_step,
    )


def log_steps(logger, run: Run, steps: range) -> None:
    for step in steps:
        logger.segkit_on_train_iter_end(run=run, step=step, logs={"loss": 1.0 / step})
        if step % 2 == 0:  # a metric name that first appears late: a validation
            metrics = {"mIoU": 0.5, "IoU": {"road": 0.4, "sky": None}, "samples": [{}]}
            logger.segkit_on_eval_end(run=run, step=step, metrics=metrics)


def read_rows(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        return list(csv.DictReader(path.open(encoding="utf-8")))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_rows_are_long_so_a_late_metric_needs_no_new_column(tmp_path, kind):
    logger = segkit.build("logger", {"type": kind})
    run = make_run(tmp_path)
    logger.segkit_on_train_start(run=run)
    log_steps(logger, run, range(1, 3))
    rows = read_rows(tmp_path / f"log.{kind}")
    assert [(str(r["step"]), r["split"], r["name"]) for r in rows] == [
        ("1", "train", "loss"),
        ("2", "train", "loss"),
        ("2", "val", "mIoU"),
        ("2", "val", "IoU/road"),  # a class without a score has no row
    ]
    table = pandas.read_csv(tmp_path / "log.csv") if kind == "csv" else None
    if table is None:
        table = pandas.read_json(tmp_path / "log.jsonl", lines=True)
    wide = table.pivot_table(index="step", columns="name", values="value")
    assert wide.loc[2, "mIoU"] == 0.5 and wide.loc[1, "loss"] == 1.0


def test_the_config_is_written_beside_the_rows(tmp_path):
    for kind in ("csv", "jsonl"):
        segkit.build("logger", {"type": kind}).segkit_on_train_start(run=make_run(tmp_path))
    params = dict(csv.reader((tmp_path / "log.params.csv").open(encoding="utf-8")))
    assert params["model.backbone.type"] == "resnet18"
    assert params["data.transforms.0.type"] == "flip"
    assert json.loads((tmp_path / "log.params.json").read_text()) == CONFIG


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_resumed_run_drops_the_rows_after_its_checkpoint_and_a_torn_one(tmp_path, kind):
    path = tmp_path / "logs" / f"scalars.{kind}"
    first = segkit.build("logger", {"type": kind, "path": str(path)})
    first.segkit_on_train_start(run=make_run(tmp_path))
    log_steps(first, make_run(tmp_path), range(1, 7))  # killed after step 6 ...
    with path.open("a", encoding="utf-8") as file:
        file.write("7,train,lo" if kind == "csv" else '{"step": 7, "spl')  # ... mid-write
    resumed = make_run(tmp_path, start_step=4)  # ... and resumed from the checkpoint of step 4
    again = segkit.build("logger", {"type": kind, "path": str(path)})
    again.segkit_on_train_start(run=resumed)
    log_steps(again, resumed, range(5, 7))
    steps = [(int(r["step"]), r["split"], r["name"]) for r in read_rows(path)]
    assert len(steps) == len(set(steps)), "a step logged twice"
    assert sorted({step for step, _, _ in steps}) == [1, 2, 3, 4, 5, 6]


def test_a_fresh_run_starts_the_file_anew(tmp_path):
    first = segkit.build("logger", {"type": "csv"})
    first.segkit_on_train_start(run=make_run(tmp_path))
    log_steps(first, make_run(tmp_path), range(1, 4))
    segkit.build("logger", {"type": "csv"}).segkit_on_train_start(run=make_run(tmp_path))
    assert (tmp_path / "log.csv").read_text() == "step,split,name,value\n"


def test_a_full_disk_under_the_log_costs_one_warning_and_no_torn_row(tmp_path, disk, capsys):  # noqa: F811
    """The log on its own full disk (the run's is fine): the trainer's hook caller warns once
    and goes on; the file keeps whole rows only."""
    path = disk / "log.csv"
    logger = segkit.build("logger", {"type": "csv", "path": str(path)})
    manager = pluggy.PluginManager("segkit")
    manager.add_hookspecs(hookspecs)
    manager.register(logger, name="logger csv")
    events = RunEvents(manager)
    run = make_run(tmp_path)
    events.segkit_on_train_start(run=run)
    events.segkit_on_train_iter_end(run=run, step=1, logs={"loss": 1.0})
    fill_disk(disk / "ballast")
    many = {f"loss_term_{n}": 0.5 for n in range(400)}  # more than the page the file has
    for step in (2, 3):
        events.segkit_on_train_iter_end(run=run, step=step, logs=many)
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1, warnings
    assert "logger csv" in warnings[0] and "no space left on device" in warnings[0]
    assert str(path) in warnings[0] and "training goes on without it" in warnings[0]
    assert path.read_text() == "step,split,name,value\n1,train,loss,1.0\n"


@pytest.mark.slow
def test_quickstart_trains_with_both_and_a_logger_that_cannot_write_only_warns(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the logger's folder should be\n")
    run = tmp_path / "run"
    loggers = f"[{{type: csv}}, {{type: jsonl, path: {blocker / 'log.jsonl'}}}]"
    result = train_quickstart(run, loggers)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "logger jsonl" in line]
    assert len(warnings) == 2, result.stderr  # when it happens, and in the final summary
    assert "not_a_folder" in warnings[0] and "training goes on without it" in warnings[0]
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 4
    rows = pandas.read_csv(run / "log.csv")
    assert sorted(set(rows[rows.split == "train"].step)) == [2, 4]
    assert set(rows[rows.split == "val"].name) >= {"mIoU", "mAcc", "aAcc", "IoU/road"}
    params = dict(csv.reader((run / "log.params.csv").open(encoding="utf-8")))
    assert params["train.max_iters"] == "4" and params["model.backbone.type"] == "resnet18"
    assert "log.csv" in result.stdout  # the summary lists the file
