import random

import numpy as np
import pytest
import torch

from segkit.engine import checkpoint as checkpoint_module
from segkit.engine.checkpoint import (
    CheckpointDirectory,
    atomic_save,
    capture_rng,
    load_for_resume,
    restore_rng,
)
from segkit.errors import CheckpointError


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


def test_failed_write_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"step": 1, "model": {"w": torch.ones(3)}}, path)

    def broken_save(obj, file):
        file.write(b"partial garbage")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", broken_save)
    with pytest.raises(CheckpointError, match="could not write.*No space left.*previous file is intact"):
        atomic_save({"step": 2}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_numbered_checkpoints_keep_the_newest(tmp_path):
    directory = CheckpointDirectory(tmp_path, keep=2)
    for step in (100, 200, 300):
        directory.save_numbered({"step": step})
    assert [p.name for p in directory.numbered()] == ["iter_000200.pt", "iter_000300.pt"]


def test_resuming_from_a_model_only_checkpoint_explains_why_not(tmp_path):
    atomic_save({"model": {"w": torch.ones(1)}, "step": 5, "metric": {"name": "mIoU", "value": 0.5}},
                tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match="cannot resume.*lacks optimizer.*resume from last.pt"):
        load_for_resume(tmp_path / "best.pt")
