"""Transforms: image and mask move together, masks are never filled with a real class,
colours change as documented, and everything is reproducible from the generator."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from test_data_fixtures import photo, write_jpeg

from segkit.builder import build
from segkit.imagefiles import EncodedImage
from segkit_plugins.transforms.photometric import hsv_adjust


def sample(height=24, width=32, seed=0):
    rng = np.random.default_rng(seed)
    image = torch.from_numpy(photo(height, width, seed)).permute(2, 0, 1).contiguous()
    mask = torch.from_numpy(rng.integers(0, 5, (height, width))).long()
    return {"image": image, "mask": mask, "name": "x"}


def transform(spec):
    return build("transform", spec)


def rng(seed=0):
    return np.random.default_rng(seed)


def test_resize_keeps_ratio_within_long_and_short_side():
    out = transform({"type": "resize", "size": [64, 16]})(sample(24, 32), rng())
    assert out["image"].shape == (3, 16, 21) and out["mask"].shape == (16, 21)
    exact = transform({"type": "resize", "size": [10, 40], "keep_ratio": False})(
        sample(24, 32), rng()
    )
    assert exact["image"].shape == (3, 10, 40)
    image_only = transform({"type": "resize", "size": [64, 16], "mask": False})(
        sample(24, 32), rng()
    )
    assert image_only["image"].shape == (3, 16, 21) and image_only["mask"].shape == (24, 32)


def test_mask_resize_is_nearest_and_aligned_with_the_image():
    data = sample(8, 8)
    data["mask"] = torch.arange(64).view(8, 8) % 4
    up = transform({"type": "resize", "size": [16, 16], "keep_ratio": False})(data, rng())
    assert torch.equal(
        up["mask"].long(), data["mask"].repeat_interleave(2, 0).repeat_interleave(2, 1)
    )


def test_random_resize_draws_a_ratio_of_the_base_size():
    resize = transform({"type": "random_resize", "base_size": [64, 32], "ratio_range": [0.5, 2.0]})
    shorts = {resize(sample(24, 32), rng(seed))["image"].shape[1] for seed in range(20)}
    assert min(shorts) >= 16 and max(shorts) <= 64 and len(shorts) > 5


def test_resize_decodes_a_large_jpeg_at_reduced_scale(tmp_path):
    path = write_jpeg(tmp_path / "big.jpg", photo(400, 600))
    encoded = EncodedImage(path)
    assert encoded.size == (400, 600)
    assert encoded.decode(at_least=(90, 140)).shape == (3, 100, 150)  # 1/4 scale
    out = transform({"type": "resize", "size": [150, 100]})(
        {"image": encoded, "mask": torch.zeros(400, 600, dtype=torch.uint8), "name": "big"}, rng()
    )
    assert out["image"].shape == (3, 100, 150) and out["mask"].shape == (100, 150)
    full = TF.resize(encoded.decode().contiguous(), [100, 150], antialias=True)
    assert (out["image"].int() - full.int()).abs().float().mean() < 4  # same picture


def test_random_crop_takes_a_window_and_keeps_small_images_whole():
    data = sample(24, 32)
    out = transform({"type": "random_crop", "size": [10, 12]})(data, rng(3))
    assert out["image"].shape == (3, 10, 12)
    found = [
        (y, x)
        for y in range(15)
        for x in range(21)
        if torch.equal(data["mask"][y : y + 10, x : x + 12], out["mask"])
    ]
    assert any(
        torch.equal(data["image"][:, y : y + 10, x : x + 12], out["image"]) for y, x in found
    )
    small = transform({"type": "random_crop", "size": [100, 100]})(data, rng())
    assert small["image"].shape == (3, 24, 32)


def test_cat_max_ratio_avoids_windows_of_one_class():
    data = sample(40, 40)
    data["mask"] = torch.zeros(40, 40, dtype=torch.long)
    data["mask"][30:, 30:] = 1  # one corner holds a second class
    plain = transform({"type": "random_crop", "size": [12, 12]})
    balanced = transform({"type": "random_crop", "size": [12, 12], "cat_max_ratio": 0.9})
    mixed_plain = sum(plain(data, rng(s))["mask"].unique().numel() > 1 for s in range(40))
    mixed_balanced = sum(balanced(data, rng(s))["mask"].unique().numel() > 1 for s in range(40))
    assert mixed_balanced > mixed_plain + 10


def test_flip_mirrors_image_and_mask_together():
    data = sample()
    out = transform({"type": "random_flip", "prob": 1.0})(data, rng())
    assert torch.equal(out["image"], data["image"].flip(-1)) and torch.equal(
        out["mask"], data["mask"].flip(-1)
    )
    assert transform({"type": "random_flip", "prob": 0.0})(data, rng()) is data


def test_rotation_fills_the_mask_with_ignore_and_invents_no_class():
    data = sample(40, 40)
    out = transform({"type": "random_rotate", "degrees": 10, "image_fill": [1, 2, 3]})(data, rng(1))
    mask = out["mask"].long()
    assert mask[0, 0] == 255 and mask[-1, -1] == 255
    assert set(mask.unique().tolist()) <= set(data["mask"].unique().tolist()) | {255}
    assert out["image"][:, 0, 0].tolist() == [1, 2, 3]
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, 40, 40)


def test_pad_uses_ignore_for_the_mask_and_the_fill_for_the_image():
    data = sample(10, 13)
    out = transform({"type": "pad", "size": [12, 16], "image_fill": 7})(data, rng())
    assert out["image"].shape == (3, 12, 16)
    assert (out["mask"][10:] == 255).all() and (out["mask"][:, 13:] == 255).all()
    assert torch.equal(out["mask"][:10, :13], data["mask"]) and (out["image"][:, 10:] == 7).all()
    divisible = transform({"type": "pad", "size_divisor": 8})(data, rng())
    assert divisible["image"].shape == (3, 16, 16)


def test_normalize_makes_float32_with_imagenet_statistics():
    data = sample()
    out = transform({"type": "normalize"})(data, rng())
    assert out["image"].dtype == torch.float32 and out["image"].is_contiguous()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    assert torch.allclose(out["image"], (data["image"] / 255 - mean) / std, atol=1e-5)


def test_colour_transforms_need_uint8_and_say_where_to_put_them():
    normalized = transform({"type": "normalize"})(sample(), rng())
    for name in ("photometric_distortion", "gaussian_blur", "normalize", "random_rotate"):
        spec = (
            {"type": name, "prob": 1.0}
            if name in ("photometric_distortion", "gaussian_blur")
            else {"type": name}
        )
        with pytest.raises(ValueError, match="before 'normalize'"):
            transform(spec)(normalized, rng())


def test_hue_rotation_matches_the_hsv_model():
    pixels = photo(16, 16, 5).transpose(2, 0, 1).copy()
    pixels[:, 0, :8] = [[255], [0], [0]]  # pure red, whose hue is known
    shifted = hsv_adjust(pixels, 1.0, 120.0)
    assert shifted[:, 0, 0].tolist() == [0, 255, 0]  # red + 120 degrees = green
    expected = TF.adjust_hue(torch.from_numpy(pixels), 36 / 360).numpy()
    got = hsv_adjust(pixels, 1.0, 36.0)
    assert np.abs(got.astype(int) - expected).max() <= 1


def test_saturation_scales_hsv_saturation():
    pixels = photo(8, 8, 2).transpose(2, 0, 1).copy()
    got = hsv_adjust(pixels, 1.4, 0.0)
    for y, x in [(0, 0), (3, 5), (7, 7)]:
        h, s, v = colorsys.rgb_to_hsv(*(pixels[:, y, x] / 255))
        expected = np.array(colorsys.hsv_to_rgb(h, min(1.0, s * 1.4), v)) * 255
        assert np.abs(got[:, y, x] - expected).max() <= 1.5


def test_photometric_distortion_changes_colours_not_the_mask():
    data = sample(32, 32)
    distort = transform({"type": "photometric_distortion", "prob": 1.0})
    out = distort(data, rng(4))
    assert out["mask"] is data["mask"] and out["image"].dtype == torch.uint8
    assert not torch.equal(out["image"], data["image"])
    assert torch.equal(distort(data, rng(4))["image"], out["image"])  # same generator, same result
    brighter = transform(
        {
            "type": "photometric_distortion",
            "brightness_delta": 20,
            "prob": 1.0,
            "contrast_range": [1, 1],
            "saturation_range": [1, 1],
            "hue_delta": 0,
        }
    )
    shift = brighter(data, rng(0))["image"].float().mean() - data["image"].float().mean()
    assert abs(shift) > 1  # a brightness change happened, contrast/saturation/hue were no-ops


def test_contrast_scales_around_the_mean_grey_level():
    data = sample(32, 32)
    flatten = transform(
        {
            "type": "photometric_distortion",
            "prob": 1.0,
            "brightness_delta": 0,
            "contrast_range": [0.0, 0.0],
            "saturation_range": [1, 1],
            "hue_delta": 0,
        }
    )
    out = flatten(data, rng())["image"].float()
    grey = (torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1) * data["image"].float()).sum(0).mean()
    assert (out - grey).abs().max() <= 0.5  # contrast 0: every value becomes the mean grey


def test_gaussian_blur_smooths_but_keeps_flat_images_and_masks():
    flat = {
        "image": torch.full((3, 16, 16), 90, dtype=torch.uint8),
        "mask": torch.zeros(16, 16, dtype=torch.long),
        "name": "f",
    }
    blur = transform({"type": "gaussian_blur", "prob": 1.0, "sigma_range": [1.0, 1.5]})
    assert torch.equal(blur(flat, rng())["image"], flat["image"])
    data = sample(32, 32)
    out = blur(data, rng())
    assert out["mask"] is data["mask"]
    assert (
        out["image"].float().diff(dim=2).abs().mean()
        < data["image"].float().diff(dim=2).abs().mean() / 2
    )


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"type": "random_crop", "size": [0, 5]}, "size must be two positive numbers"),
        ({"type": "random_crop", "cat_max_ratio": 1.5}, "cat_max_ratio must be in"),
        ({"type": "pad"}, "give size, size_divisor or both"),
        ({"type": "random_resize", "ratio_range": [2.0, 0.5]}, "ratio_range"),
        ({"type": "photometric_distortion", "contrast_range": [1.5, 0.5]}, "contrast_range"),
    ],
)
def test_bad_arguments_are_explained(spec, message):
    with pytest.raises(Exception, match=message):
        transform(spec)
