"""The synthetic dataset: procedural, deterministic, and consistent with its own labels."""

from __future__ import annotations

import numpy as np
import torch
from test_data_fixtures import write_data_config

from segkit.builder import build
from segkit.cli import main


def synthetic(**options):
    return build("dataset", {"type": "synthetic", **options})


def test_items_follow_the_dataset_contract_at_any_size():
    dataset = synthetic(length=5, size=[40, 72])
    assert len(dataset) == 5
    item = dataset[4]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 40, 72)
    assert item["mask"].dtype == torch.int64 and item["mask"].shape == (40, 72)
    assert item["name"] == "train_000004"
    assert dataset.classes == ["sky", "ground", "water", "road", "building", "tree", "sun", "ball"]
    assert len(dataset.palette) == len(dataset.classes)


def test_scenes_are_determined_by_seed_split_and_index():
    a, b = synthetic(length=3, seed=1), synthetic(length=3, seed=1)
    assert all(
        torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["mask"], b[i]["mask"])
        for i in range(3)
    )
    assert not torch.equal(a[0]["image"], a[1]["image"])
    assert not torch.equal(a[0]["image"], synthetic(length=3, seed=2)[0]["image"])
    assert not torch.equal(a[0]["image"], synthetic(length=3, seed=1, split="val")[0]["image"])


def test_every_class_occurs_and_sky_is_above_ground():
    dataset = synthetic(length=24, size=[64, 64])
    counts = np.zeros(8, dtype=int)
    for index in range(len(dataset)):
        mask = dataset[index]["mask"].numpy()
        counts += np.bincount(mask.ravel(), minlength=8)
        rows = np.arange(64)[:, None].repeat(64, 1)
        assert rows[mask == 0].mean() < rows[mask == 1].mean()  # sky on top, ground below
        if (mask == 6).any() and (mask == 7).any():  # the sun is higher than the ball
            assert rows[mask == 6].max() < rows[mask == 7].min()
    assert (counts > 0).all(), counts
    assert counts.max() < 0.6 * counts.sum()


def test_the_image_depends_on_the_labels():
    """A class's pixels look alike across scenes: a nearest-mean colour classifier beats chance
    by far, yet is far from perfect (texture and context are needed too)."""
    dataset = synthetic(length=16, size=[48, 48])
    pixels = [dataset[i] for i in range(16)]
    means = np.stack(
        [
            np.concatenate(
                [
                    p["image"].numpy().reshape(3, -1)[:, p["mask"].numpy().ravel() == c]
                    for p in pixels[:8]
                ],
                1,
            ).mean(1)
            for c in range(8)
        ]
    )
    correct = total = 0
    for p in pixels[8:]:
        colours = p["image"].numpy().reshape(3, -1).T.astype(float)
        guess = np.argmin(((colours[:, None] - means[None]) ** 2).sum(-1), 1)
        correct += (guess == p["mask"].numpy().ravel()).sum()
        total += guess.size
    assert 0.4 < correct / total < 0.95


def test_data_check_is_clean_on_the_synthetic_set(data_plugins, tmp_path, capsys):
    config = write_data_config(
        tmp_path / "synthetic.yaml",
        """
        workers: 0
        train: {type: synthetic, length: 12, size: [32, 32]}
        val: {type: synthetic, length: 4, size: [32, 32], split: val}
        """,
        num_classes=8,
    )
    assert main(["data", "check", str(config)]) == 0
    out = capsys.readouterr().out
    assert "data.train: synthetic, 12 samples, 8 classes" in out
    assert "data.train: OK" in out and "data.val: OK" in out and "0.0% ignored" in out
