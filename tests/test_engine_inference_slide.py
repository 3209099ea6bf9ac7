"""Bounded-memory sliding windows (``Predictor.labels``) against the full-image path
(``Predictor.probabilities``, which keeps one C x H x W logit sum): the same labels and, within
float rounding, the same probabilities, for every shape of image against the window, window
batch, scale, flip and class merge."""

import itertools

import pytest
import torch
from torch import nn

from segkit.engine.inference import InferenceSettings, Predictor
from segkit.label_map import LabelMap


class Context(nn.Module):
    """Logits from 3x3 neighbourhoods, so that a window's border differs from the whole image."""

    def __init__(self, classes=5):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, classes, 3, padding=1)
        self.batches = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return {"main": self.conv(x) * 4}


def slide(crop=(6, 8), stride=(4, 5), **options):
    return InferenceSettings.from_config(
        {"mode": "slide", "crop": list(crop), "stride": list(stride), **options}
    )


def assert_same(predictor, images, size=None, merge=None):
    expected = predictor.probabilities(images, size)
    if merge is not None:
        expected = merge(expected)
    out = torch.empty_like(expected)
    labels = predictor.labels(images, size, merge, probabilities_out=out)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    changed = (labels != expected.argmax(dim=1)).sum().item()
    assert changed == 0, f"{changed} of {labels.numel()} labels differ from the full-image path"


SHAPES = {
    "smaller than the window": (4, 5),
    "shorter than the window": (4, 23),
    "not a multiple of the stride": (19, 23),
    "exactly one window": (6, 8),
}


@pytest.mark.parametrize(
    "shape, window_batch, batch",
    [(s, wb, n) for s, wb, n in itertools.product(SHAPES, (1, 3, 8), (1, 2)) if wb != 8 or n == 2],
)
def test_labels_equal_the_full_image_path(shape, window_batch, batch):
    images = torch.randn(batch, 3, *SHAPES[shape], generator=torch.Generator().manual_seed(1))
    assert_same(Predictor(Context(), slide(window_batch=window_batch)), images)


@pytest.mark.parametrize("shape", SHAPES)
def test_labels_equal_the_full_image_path_with_scales_and_flip(shape):
    images = torch.randn(2, 3, *SHAPES[shape], generator=torch.Generator().manual_seed(2))
    settings = slide(scales=[0.5, 0.75, 1.0, 1.3, 1.75], flip=True, window_batch=3)
    assert_same(Predictor(Context(), settings), images)


def test_labels_at_another_size_than_the_images():
    images = torch.randn(1, 3, 17, 21, generator=torch.Generator().manual_seed(3))
    predictor = Predictor(Context(), slide(scales=[1.0, 1.5], flip=True))
    assert_same(predictor, images, size=(23, 13))
    assert_same(predictor, images, size=(17, 30))


def test_merged_labels_equal_the_merged_full_image_path():
    merge = LabelMap({0: 0, 1: 0, 2: 1, 3: 255, 4: 1}).merge_probabilities
    images = torch.randn(2, 3, 15, 26, generator=torch.Generator().manual_seed(4))
    assert_same(Predictor(Context(), slide(scales=[0.75, 1.0], flip=True)), images, merge=merge)


def test_windows_go_through_the_model_in_the_same_batches():
    images = torch.randn(1, 3, 19, 23)
    model = Context()
    predictor = Predictor(model, slide(window_batch=4))
    predictor.probabilities(images)
    full = list(model.batches)
    model.batches.clear()
    predictor.labels(images)
    assert model.batches == full == [4, 4, 4, 4, 4]


def most_rows_held(monkeypatch, height):
    """The most rows of logits a sliding view held at once, predicting an image ``height`` tall."""
    held = [0]
    concatenate = torch.cat

    def recording(tensors, dim=0, **options):
        result = concatenate(tensors, dim, **options)
        if result.dim() == 4 and result.shape[1] == 5:  # the logit sums of Context()
            held[0] = max(held[0], result.shape[2])
        return result

    monkeypatch.setattr(torch, "cat", recording)
    Predictor(Context(), slide(crop=(8, 8), stride=(5, 5))).labels(torch.randn(1, 3, height, 9))
    monkeypatch.setattr(torch, "cat", concatenate)
    return held[0]


def test_the_logit_rows_held_do_not_grow_with_the_image_height(monkeypatch):
    short, tall = most_rows_held(monkeypatch, 40), most_rows_held(monkeypatch, 400)
    assert 8 <= tall == short <= 3 * 8, f"held {short} rows of 40 and {tall} rows of 400"


def test_whole_mode_labels_are_the_argmax_of_the_probabilities():
    images = torch.randn(1, 3, 9, 11)
    predictor = Predictor(Context(), InferenceSettings.from_config({"mode": "whole"}))
    assert torch.equal(predictor.labels(images), predictor.probabilities(images).argmax(1))
