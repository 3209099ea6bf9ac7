import errno
import os
import random

import numpy as np
import pytest
import torch

from segkit import files
from segkit.engine.checkpoint import (
    CheckpointDirectory,
    atomic_save,
    capture_rng,
    load_for_resume,
    restore_rng,
)
from segkit.errors import CheckpointError
from segkit.files import DiskFull


def draws():
    return random.random(), np.random.rand(), torch.rand(1).item()


def test_rng_state_is_plain_data_and_restores_every_generator(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    atomic_save({"rng": capture_rng()}, tmp_path / "rng.pt")
    expected = draws()
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    assert draws() == expected


@pytest.mark.parametrize(
    "code, error, words",
    [
        (errno.EIO, CheckpointError, "could not write checkpoint .*last.pt: Input/output error"),
        (errno.ENOSPC, DiskFull, "no space left on device: could not write checkpoint .*last.pt"),
    ],
    ids=["io-error", "disk-full"],
)
def test_failed_write_leaves_the_previous_checkpoint_whole(
    tmp_path, monkeypatch, code, error, words
):
    path = tmp_path / "last.pt"
    atomic_save({"step": 1, "model": {"w": torch.ones(3)}}, path)

    def failing_fsync(descriptor):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    with pytest.raises(error, match=f"{words}; the previous file is intact"):
        atomic_save({"step": 2}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left
    with pytest.raises(error, match=f"{words.replace('last', 'other')}; nothing was written"):
        atomic_save({"step": 2}, tmp_path / "other.pt")


def test_numbered_checkpoints_keep_the_newest(tmp_path):
    directory = CheckpointDirectory(tmp_path, keep=2)
    for step in (100, 200, 300):
        directory.save_numbered({"step": step})
    assert [p.name for p in directory.numbered()] == ["iter_000200.pt", "iter_000300.pt"]


def test_resuming_from_a_model_only_checkpoint_explains_why_not(tmp_path):
    atomic_save(
        {"model": {"w": torch.ones(1)}, "step": 5, "metric": {"name": "mIoU", "value": 0.5}},
        tmp_path / "best.pt",
    )
    with pytest.raises(
        CheckpointError, match="cannot resume.*lacks optimizer.*resume from last.pt"
    ):
        load_for_resume(tmp_path / "best.pt")
