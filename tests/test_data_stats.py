"""`segkit data stats`: mean/std and class weights of real image files, against hand values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from segkit.cli import main
from segkit.datastats import ClassCounts, ImageMoments, class_weights

CONFIG = """\
model:
  backbone: {{type: resnet18}}
  head: {{type: fcn}}
  num_classes: 3
data:
  workers: 0
  train:
    type: folder
    images: {root}/images
    masks: {root}/masks
    classes: [a, b, c]
loss: {loss}
"""


@pytest.fixture
def config(tmp_path):
    """Image A (2x2) and B (1x2): red 0..50 in steps of 10, green 100 then 200, blue 0/255.
    Masks: A = a a / b ignore, B = b b; class c is absent."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    a = np.array([[[0, 100, 0], [10, 100, 0]], [[20, 100, 255], [30, 100, 255]]], np.uint8)
    b = np.array([[[40, 200, 255], [50, 200, 255]]], np.uint8)
    Image.fromarray(a).save(tmp_path / "images" / "a.png")
    Image.fromarray(b).save(tmp_path / "images" / "b.png")
    Image.fromarray(np.array([[0, 0], [1, 255]], np.uint8)).save(tmp_path / "masks" / "a.png")
    Image.fromarray(np.array([[1, 1]], np.uint8)).save(tmp_path / "masks" / "b.png")

    def write(loss="{type: cross_entropy}"):
        path = tmp_path / "config.yaml"
        path.write_text(CONFIG.format(root=tmp_path, loss=loss))
        return str(path)

    return write


def test_mean_std_and_median_frequency_weights(config, capsys):
    assert main(["data", "stats", config()]) == 0
    out = capsys.readouterr().out
    # red 0..50: mean 25, std sqrt(1750 / 6); green: 133.333, sqrt(13333.3 / 6);
    # blue: 170, sqrt(86700 / 6)
    assert "  mean: [25.0, 133.333, 170.0]" in out
    assert "  std: [17.078, 47.14, 120.208]" in out
    # f_a = 2/3 (2 of the 3 labelled pixels of A), f_b = 3/5; median 19/30
    # w_a = 0.95, w_b = 1.0556, c absent: 1
    assert "  class_weights: [0.95, 1.056, 1.0]" in out
    assert "loss.class_weights=[0.95,1.056,1.0]" in out
    assert "absent from the training set (weight 1, which changes nothing): c" in out


def test_enet_weights_with_parallel_readers(config, capsys):
    assert main(["data", "stats", config(), "--weights", "enet", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    w_a, w_b = 1 / math.log(1.02 + 2 / 5), 1 / math.log(1.02 + 3 / 5)
    assert f"  class_weights: [{w_a:.4g}, {w_b:.4g}, 1.0]" in out
    assert "  mean: [25.0, 133.333, 170.0]" in out


def test_loss_without_class_weights_says_which_losses_have_them(config, capsys):
    assert main(["data", "stats", config("{type: dice}")]) == 0
    out = capsys.readouterr().out
    assert "the config's loss (dice) takes no class weights" in out
    assert "cross_entropy" in out and "ohem_ce" in out and "loss.class_weights" not in out


def test_loss_terms_list_gets_indexed_keys(config, capsys):
    loss = "[{type: cross_entropy}, {type: dice, loss_weight: 0.5}]"
    assert main(["data", "stats", config(loss)]) == 0
    assert "loss.0.class_weights=[0.95,1.056,1.0]" in capsys.readouterr().out


def test_moments_over_any_channel_count_are_stable_in_float64():
    rng = np.random.default_rng(0)
    parts = [rng.normal(1e6, 0.5, size=(4, 30, 20 + i)) for i in range(5)]  # 4 channels
    merged = ImageMoments.of(parts[0])
    for part in parts[1:]:
        merged = merged.merged(ImageMoments.of(part))
    everything = np.concatenate([p.reshape(4, -1) for p in parts], axis=1)
    np.testing.assert_allclose(merged.mean, everything.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(merged.std, everything.std(axis=1), rtol=1e-9)
    sixteen_bit = ImageMoments.of(np.array([[[0, 65535]]], np.uint16))
    assert sixteen_bit.mean.tolist() == [32767.5] and sixteen_bit.std.tolist() == [32767.5]


def test_class_weights_formulas_by_hand():
    counts = ClassCounts(3)
    counts.add(np.array([6, 2]))  # image 1: 8 labelled pixels
    counts.add(np.array([0, 2, 0, 0]))  # image 2: values beyond the classes do not count
    # median: f0 = 6/8, f1 = 4/10 -> median 0.575
    np.testing.assert_allclose(class_weights(counts, "median"), [0.575 / 0.75, 0.575 / 0.4, 1.0])
    np.testing.assert_allclose(
        class_weights(counts, "enet"), [1 / math.log(1.02 + 0.6), 1 / math.log(1.02 + 0.4), 1.0]
    )


def test_unreadable_image_is_listed_and_exits_2(config, tmp_path, capsys):
    (tmp_path / "images" / "c.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp_path / "masks" / "c.png")
    assert main(["data", "stats", config()]) == 2
    out = capsys.readouterr().out
    assert "  mean: [25.0, 133.333, 170.0]" in out  # the readable samples still count
    assert "1 sample(s) could not be read" in out and "c.png" in out
