"""The scores of docs/training.md, "Scores", against values worked out by hand: class scores of a
small confusion matrix, boundary IoU of tiny masks, per-image matrices and bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segkit.bootstrap import Bootstrap, confidence_interval, paired_difference, resample_counts
from segkit.boundary import BoundaryCounts, band_width, inner_band
from segkit.errors import DataError, SegkitError
from segkit.metrics import ConfusionMatrix, format_metrics, load_per_image, segmentation_metrics
from segkit.perimage import PerImageCollector, PerImageMatrices

# rows: ground truth a, b, c, d; columns: predictions
HAND = np.array(
    [
        [3, 1, 0, 0],  # a: 4 labelled, 3 right
        [0, 2, 2, 0],  # b: 4 labelled, 2 right, 2 taken for c
        [0, 0, 0, 0],  # c: never labelled, predicted twice
        [0, 0, 0, 0],  # d: absent from labels and predictions
    ]
)


def test_class_scores_of_a_hand_made_matrix():
    m = segmentation_metrics(torch.from_numpy(HAND), ["a", "b", "c", "d"])
    assert m["IoU"] == {"a": pytest.approx(3 / 4), "b": pytest.approx(2 / 5), "c": 0.0, "d": None}
    assert m["Dice"] == {"a": pytest.approx(6 / 7), "b": pytest.approx(4 / 7), "c": 0.0, "d": None}
    # precision of c: 0 right of 2 predicted; d never predicted: undefined
    assert m["Precision"] == {"a": 1.0, "b": pytest.approx(2 / 3), "c": 0.0, "d": None}
    assert m["Recall"] == {"a": 0.75, "b": 0.5, "c": None, "d": None}
    assert m["Acc"] == m["Recall"]
    assert m["mIoU"] == pytest.approx((3 / 4 + 2 / 5 + 0) / 3)  # d left out, c counts as 0
    assert m["mDice"] == pytest.approx(10 / 21)
    assert m["mPrecision"] == pytest.approx(5 / 9)
    assert m["mRecall"] == m["mAcc"] == pytest.approx(5 / 8)
    assert m["aAcc"] == pytest.approx(5 / 8)
    assert m["fwIoU"] == pytest.approx(4 / 8 * 3 / 4 + 4 / 8 * 2 / 5)  # 0.575


def test_an_empty_matrix_has_no_scores():
    m = segmentation_metrics(np.zeros((2, 2), dtype=np.int64), ["a", "b"])
    assert m["mIoU"] is None and m["aAcc"] is None and m["fwIoU"] is None
    assert m["IoU"] == {"a": None, "b": None}


def test_per_image_matrices_come_from_the_same_count_and_sum_to_the_batch_matrix():
    labels = torch.tensor([[[0, 1], [1, 255]], [[2, 2], [0, 0]]])
    predictions = torch.tensor([[[0, 1], [0, 2]], [[2, 1], [0, 0]]])
    matrix = ConfusionMatrix(3)
    per_image = matrix.update(predictions, labels, per_image=True)
    assert per_image.tolist() == [
        [[1, 0, 0], [1, 1, 0], [0, 0, 0]],  # the ignored pixel is not counted
        [[2, 0, 0], [0, 0, 0], [0, 1, 1]],
    ]
    assert torch.equal(matrix.matrix, per_image.sum(0))
    assert matrix.update(predictions, labels) is None


def _collected(dense: np.ndarray, names=None) -> PerImageMatrices:
    names = names or [f"img{i}" for i in range(len(dense))]
    collector = PerImageCollector([f"c{i}" for i in range(dense.shape[1])])
    for start in range(0, len(dense), 3):  # several batches, the last one short
        collector.add(names[start : start + 3], torch.from_numpy(dense[start : start + 3]))
    return collector.result()


def test_sparse_per_image_matrices_keep_only_nonzero_entries_and_round_trip(tmp_path):
    dense = np.zeros((4, 3, 3), dtype=np.int64)
    dense[0, 0, 0], dense[0, 1, 2] = 5, 1
    dense[2, 2, 2] = 7  # image 1 has no labelled pixel at all
    dense[3] = [[1, 2, 0], [0, 3, 0], [0, 0, 4]]
    matrices = _collected(dense)
    assert len(matrices.index) == 2 + 0 + 1 + 4
    assert np.array_equal(matrices.dense(), dense)
    assert np.array_equal(matrices.total(), dense.sum(0))
    tp, labelled, predicted = matrices.counts()
    assert np.array_equal(tp, np.diagonal(dense, axis1=1, axis2=2))
    assert np.array_equal(labelled, dense.sum(2)) and np.array_equal(predicted, dense.sum(1))
    path = tmp_path / "eval.per_image.npz"
    path.write_bytes(matrices.to_bytes())
    loaded = load_per_image(path)
    assert loaded.names == ["img0", "img1", "img2", "img3"] and loaded.classes == ["c0", "c1", "c2"]
    assert np.array_equal(loaded.dense(), dense)
    shuffled = loaded.reordered(["img3", "img1", "img0", "img2"])
    assert np.array_equal(shuffled.dense(), dense[[3, 1, 0, 2]])
    joined = PerImageMatrices.concatenate(
        [_collected(dense[:1]), _collected(dense[1:], ["x", "y", "z"])]
    )
    assert joined.names == ["img0", "x", "y", "z"]
    assert np.array_equal(joined.dense(), dense)


def test_each_image_has_its_own_scores():
    dense = np.zeros((2, 2, 2), dtype=np.int64)
    dense[0] = [[3, 1], [0, 4]]  # IoU 3/4 and 4/5
    dense[1, 0, 0] = 2  # only class 0, all right; class 1 absent: left out of its mean
    scores = _collected(dense).image_scores()
    assert scores["mIoU"] == pytest.approx([(3 / 4 + 4 / 5) / 2, 1.0])
    assert scores["aAcc"] == pytest.approx([7 / 8, 1.0])
    assert np.isnan(scores["IoU"][1, 1]) and scores["IoU"][0, 0] == pytest.approx(3 / 4)


def test_a_file_that_is_not_a_per_image_matrix_file_is_a_data_error(tmp_path):
    bad = tmp_path / "bad.per_image.npz"
    bad.write_text("no zip here")
    with pytest.raises(DataError, match="bad.per_image.npz: not a per-image matrix file"):
        load_per_image(bad)
    with pytest.raises(DataError, match="no such file"):
        load_per_image(tmp_path / "missing.npz")


# ---- boundary IoU --------------------------------------------------------------------------------


def test_inner_band_is_the_mask_pixels_within_d_of_its_outside():
    mask = torch.zeros(9, 9, dtype=torch.bool)
    mask[2:7, 2:7] = True  # a 5 x 5 square
    assert int(inner_band(mask, 1).sum()) == 25 - 9  # the outer ring
    assert int(inner_band(mask, 2).sum()) == 25 - 1  # all but the centre
    edge = torch.zeros(4, 4, dtype=torch.bool)
    edge[:, :2] = True  # touches the image border: the border counts as outside
    assert int(inner_band(edge, 1).sum()) == 8


def test_band_width_is_two_percent_of_the_diagonal_at_least_one_pixel():
    assert band_width(6, 6, 0.02) == 1
    assert band_width(512, 512, 0.02) == 14  # 0.02 * 724.1
    assert band_width(1024, 2048, 0.02) == 46


def test_boundary_iou_of_a_shifted_square_by_hand():
    """GT: class 1 a 4 x 4 square at rows 1-4, cols 1-4 of a 6 x 6 image; prediction: the same
    square one column to the right. d = 1. Class 1's bands are the squares' rings: rows 1 and 4
    overlap in 3 of 5 columns, rows 2 and 3 not at all: 6 / 18. Class 0 is a frame one pixel wide
    (all band) in both: 16 shared of 24."""
    label = torch.zeros(1, 6, 6, dtype=torch.int64)
    label[0, 1:5, 1:5] = 1
    prediction = torch.zeros(1, 6, 6, dtype=torch.int64)
    prediction[0, 1:5, 2:6] = 1
    counts = BoundaryCounts(3)
    counts.update(prediction, label)
    scores = counts.metrics(["background", "square", "unused"])
    assert scores["IoU"] == {
        "background": pytest.approx(16 / 24),
        "square": pytest.approx(6 / 18),
        "unused": None,
    }
    assert scores["mIoU"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    # the mask IoU of the square is 12 / 20: the boundary score is the stricter one
    matrix = ConfusionMatrix(3)
    matrix.update(prediction, label)
    assert segmentation_metrics(matrix.matrix, ["b", "s", "u"])["IoU"]["s"] == pytest.approx(0.6)


def test_boundary_iou_counts_no_ignored_pixel_and_sums_over_images():
    label = torch.zeros(2, 6, 6, dtype=torch.int64)
    label[0, 1:5, 1:5] = 1
    label[1] = 255  # an image without labels adds nothing
    prediction = torch.zeros(2, 6, 6, dtype=torch.int64)
    prediction[:, 1:5, 2:6] = 1
    counts = BoundaryCounts(2)
    counts.update(prediction, label)
    assert counts.counts[:, 1].tolist() == [6, 18]
    assert counts.counts[:, 0].tolist() == [16, 24]


def test_the_table_shows_intervals_and_boundary_iou_when_present():
    m = segmentation_metrics(HAND[:2, :2], ["a", "b"])
    m["ci"] = {"level": 0.95, "mIoU": [0.4, 0.7], "IoU": {"a": [0.5, 0.9], "b": None}}
    m["boundary"] = {"mIoU": 0.25, "IoU": {"a": 0.5, "b": None}, "describe": "2% of the diagonal"}
    text = format_metrics(m)
    assert "95% CI" in text and "50.00..90.00" in text and "BIoU" in text
    assert "(95% CI 40.00..70.00)" in text
    assert "boundary mIoU 25.00 (band 2% of the diagonal)" in text


# ---- bootstrap -----------------------------------------------------------------------------------


def noisy_images(count: int, seed: int = 0) -> PerImageMatrices:
    """Images whose 3-class matrices vary: some easy, some hard."""
    rng = np.random.default_rng(seed)
    dense = np.zeros((count, 3, 3), dtype=np.int64)
    for image in range(count):
        skill = rng.uniform(0.3, 0.95)
        for label in range(3):
            pixels = rng.integers(20, 200)
            right = rng.binomial(pixels, skill)
            dense[image, label, label] = right
            dense[image, label, (label + 1) % 3] = pixels - right
    return _collected(dense)


def test_resample_counts_draw_every_resample_with_replacement_reproducibly():
    settings = Bootstrap(resamples=250, seed=3)
    first = np.concatenate(list(resample_counts(7, settings)))
    again = np.concatenate(list(resample_counts(7, settings)))
    other = np.concatenate(list(resample_counts(7, Bootstrap(resamples=250, seed=4))))
    assert first.shape == (250, 7) and (first.sum(1) == 7).all()
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert (first.max(1) > 1).any()  # some image drawn twice: with replacement


def test_interval_is_deterministic_contains_the_point_estimate_and_shrinks_with_more_images():
    settings = Bootstrap(resamples=400, seed=0)
    few = noisy_images(20)
    ci = confidence_interval(few, settings)
    assert ci == confidence_interval(few, settings)
    assert ci != confidence_interval(few, Bootstrap(resamples=400, seed=1))
    assert (ci["level"], ci["resamples"], ci["seed"]) == (0.95, 400, 0)
    point = segmentation_metrics(few.total(), few.classes)
    low, high = ci["mIoU"]
    assert low < point["mIoU"] < high
    for name, (lo, hi) in ci["IoU"].items():
        assert lo < point["IoU"][name] < hi, name
    many = noisy_images(320)
    low_many, high_many = confidence_interval(many, settings)["mIoU"]
    assert high_many - low_many < (high - low) / 2  # ~1/4 expected: sqrt(16)


def test_identical_images_give_a_zero_width_interval():
    dense = np.tile(np.array([[4, 1], [2, 3]]), (5, 1, 1))
    ci = confidence_interval(_collected(dense), Bootstrap(resamples=50))
    assert ci["mIoU"] == pytest.approx([(4 / 7 + 3 / 6) / 2] * 2)


def test_a_class_absent_from_every_image_has_no_interval():
    dense = np.zeros((4, 3, 3), dtype=np.int64)
    dense[:, 0, 0] = [3, 4, 5, 6]
    dense[:, 1, 0] = [1, 0, 2, 1]
    ci = confidence_interval(_collected(dense), Bootstrap(resamples=50))
    assert ci["IoU"]["c2"] is None and ci["IoU"]["c1"] == [0.0, 0.0]


def test_one_image_is_not_enough_for_an_interval():
    with pytest.raises(SegkitError, match="at least 2 images"):
        confidence_interval(noisy_images(1), Bootstrap())


def test_paired_difference_of_a_model_with_itself_is_exactly_zero_and_detects_a_real_gain():
    a = noisy_images(30)
    same = paired_difference(a, a, Bootstrap(resamples=200))
    assert same["mIoU"] == [0.0, 0.0]
    # B gets one more pixel right per class and image than A: a small but consistent gain
    dense = a.dense()
    better = dense.copy()
    for label in range(3):
        moved = np.minimum(better[:, label, (label + 1) % 3], 5)
        better[:, label, label] += moved
        better[:, label, (label + 1) % 3] -= moved
    gain = paired_difference(a, _collected(better), Bootstrap(resamples=200))
    assert gain["mIoU"][0] > 0
