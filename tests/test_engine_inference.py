import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segkit.engine.evaluator import Evaluator
from segkit.engine.inference import InferenceSettings, InputNormalizer, Predictor, _window_starts
from segkit.errors import ConfigError
from segkit.metrics import ConfusionMatrix


class Pointwise(nn.Module):
    """Per-pixel logits (no spatial context), counting its forward passes and batch sizes."""

    def __init__(self, classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, classes, 1)
        self.batches = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return {"main": self.conv(x)}


class LeftRight(nn.Module):
    """Logits that depend on the column: not flip-invariant, and not scale-invariant."""

    def forward(self, x):
        ramp = torch.linspace(-1, 1, x.shape[-1]).expand(x.shape[0], 1, x.shape[-2], -1)
        return {"main": torch.cat([ramp, -ramp, x[:, :1]], dim=1)}


def settings(**options):
    return InferenceSettings.from_config(
        {"mode": "whole", "scales": [1.0], "flip": False, **options}
    )


def test_window_starts_cover_the_image_with_windows_inside_it():
    assert _window_starts(10, 4, 3) == [0, 3, 6]
    assert _window_starts(11, 4, 3) == [0, 3, 6, 7]
    assert _window_starts(3, 3, 2) == [0]


def test_sliding_windows_of_a_pointwise_model_equal_the_whole_image():
    model = Pointwise()
    images = torch.randn(2, 3, 13, 17)
    whole = Predictor(model, settings()).probabilities(images)
    model.batches.clear()
    slide = Predictor(model, settings(mode="slide", crop=[6, 8], stride=[4, 5], window_batch=6))
    assert torch.allclose(slide.probabilities(images), whole, atol=1e-6)
    # 3 rows x 3 columns of windows for 2 images, 3 windows (6 crops) per forward pass.
    assert model.batches == [6, 6, 6]


def test_an_image_smaller_than_the_window_is_one_window():
    model = Pointwise()
    slide = Predictor(model, settings(mode="slide", crop=[32, 32], stride=[16, 16]))
    assert slide.probabilities(torch.randn(1, 3, 9, 12)).shape == (1, 3, 9, 12)
    assert model.batches == [1]


def test_flip_averages_the_mirrored_prediction_mirrored_back():
    images = torch.randn(1, 3, 5, 8)
    plain = LeftRight()(images)["main"].softmax(1)
    mirrored = LeftRight()(images.flip(-1))["main"].flip(-1).softmax(1)
    probabilities = Predictor(LeftRight(), settings(flip=True)).probabilities(images)
    assert torch.allclose(probabilities, (plain + mirrored) / 2, atol=1e-6)


def test_scales_resize_the_input_and_average_at_the_original_size():
    images = torch.randn(1, 3, 8, 12)
    half = F.interpolate(images, size=(4, 6), mode="bilinear", align_corners=False)
    at_half = F.interpolate(
        LeftRight()(half)["main"], size=(8, 12), mode="bilinear", align_corners=False
    )
    expected = (LeftRight()(images)["main"].softmax(1) + at_half.softmax(1)) / 2
    probabilities = Predictor(LeftRight(), settings(scales=[1.0, 0.5])).probabilities(images)
    assert torch.allclose(probabilities, expected, atol=1e-6)


def test_tta_flag_uses_default_scales_and_flip_and_slide_needs_a_crop():
    tta = InferenceSettings.from_config({"mode": "whole", "scales": [1.0]}, tta=True)
    assert tta.scales == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75) and tta.flip
    assert InferenceSettings.from_config({"scales": [0.5, 1.0]}, tta=True).scales == (0.5, 1.0)
    with pytest.raises(ConfigError, match="eval.crop"):
        InferenceSettings.from_config({}, mode="slide")


def test_validation_takes_images_of_different_sizes_in_one_batch():
    model = Pointwise()
    normalizer = InputNormalizer([0, 0, 0], [1, 1, 1], torch.device("cpu"))
    evaluator = Evaluator(settings(), ["a", "b", "c"], normalizer, panels=2)
    generator = torch.Generator().manual_seed(0)
    samples = [
        {
            "image": torch.randint(0, 255, (3, h, w), dtype=torch.uint8, generator=generator),
            "mask": torch.randint(0, 3, (h, w), generator=generator),
            "name": f"s{i}",
        }
        for i, (h, w) in enumerate([(8, 8), (8, 8), (5, 11), (8, 8)])
    ]
    matrix, kept = evaluator.confusion(model, [samples[:3], samples[3:]])
    assert model.batches == [2, 1, 1]  # equal sizes go together
    expected = ConfusionMatrix(3)
    for sample in samples:
        logits = model.conv(sample["image"].float().unsqueeze(0))
        expected.update(logits.argmax(1)[0], sample["mask"])
    assert torch.equal(matrix.matrix, expected.matrix)
    assert [s["name"] for s in kept] == ["s0", "s1"]
