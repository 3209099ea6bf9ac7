"""The tracker loggers fail the way a user meets them: a tracker that is not installed is named
with its extra before training starts; a store that cannot be written costs one warning, and
the training still finishes and writes its checkpoints."""

from __future__ import annotations

import pytest
import torch
from logger_runs import train_quickstart


@pytest.mark.slow  # segkit train gets as far as building the loggers
@pytest.mark.parametrize("package", ["mlflow", "wandb"])
def test_a_tracker_that_is_not_installed_names_its_extra(tmp_path, package):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / f"{package}.py").write_text(
        f"raise ImportError({f'No module named {package!r}'!r})\n"
    )
    result = train_quickstart(tmp_path / "run", f"[{{type: {package}}}]", pythonpath=shadow)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert f"logger '{package}' needs" in message
    assert f"pip install 'segkit[{package}]'" in message
    assert "logging.loggers.0" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_trackers_whose_store_cannot_be_written_warn_once_and_training_finishes(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where the tracker's folder should be\n")
    run = tmp_path / "run"
    loggers = (
        f"[{{type: mlflow, tracking_uri: 'sqlite:///{blocker}/mlflow.db'}}, "
        f"{{type: wandb, dir: '{blocker}/wandb'}}, {{type: csv, path: '{blocker}/log.csv'}}]"
    )
    result = train_quickstart(run, loggers)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for logger in ("mlflow", "wandb", "csv"):
        warned = [line for line in result.stderr.splitlines() if f"logger {logger}" in line]
        assert len(warned) == 2, result.stderr  # when it happens, and in the final summary
        assert "training goes on without it" in warned[0]
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 4
    assert (run / "checkpoints" / "best.pt").is_file()
