"""Images that are not 8-bit RGB: TIFF pages and samples as channels, 16-bit PNG and TIFF kept at
full depth, BMP and WebP, C-channel models from the files to predict, and RGB weights adapted to
C input channels. Every image is a real file written in the test."""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

import segkit
from segkit.cli import main
from segkit.data import build_dataset
from segkit.engine.inference import InputNormalizer
from segkit.errors import ConfigError, SampleError, SegkitError
from segkit.imageread import EncodedImage
from segkit.validation import load_config
from segkit.weights import adapt_input_conv, load_into

CONFIG = """\
model:
  backbone: {{type: resnet18, in_channels: {channels}}}
  head: {{type: fcn, channels: 16, num_convs: 1}}
  num_classes: 2
data:
  workers: 0
  batch_size: 2
  image_dtype: {dtype}
  mean: {mean}
  std: {std}
  train:
    type: folder
    images: {root}/images
    masks: {root}/masks
    classes: [land, water]
    transforms: {transforms}
  val:
    type: folder
    images: {root}/images
    masks: {root}/masks
    classes: [land, water]
train: {{max_iters: 2, eval_interval: 0, precision: fp32, device: cpu, work_dir: {root}/run}}
logging: {{loggers: []}}
"""


def write_config(root, channels=4, dtype="uint16", mean=None, std=None, transforms="[]"):
    path = root / "config.yaml"
    path.write_text(
        CONFIG.format(
            root=root,
            channels=channels,
            dtype=dtype,
            mean=mean or [30000.0] * channels,
            std=std or [10000.0] * channels,
            transforms=transforms,
        )
    )
    return path


def four_band_folder(root, count=3, size=(32, 32)):
    """``count`` 4-channel uint16 TIFFs (interleaved HxWx4) and their masks: water (1) where
    the fourth band is bright, land (0) elsewhere, so a model has something to learn."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        labels = np.zeros(size, np.uint8)
        labels[:, : size[1] // 2 + index] = 1
        bands = rng.integers(10000, 20000, (*size, 4)).astype(np.uint16)
        bands[..., 3][labels == 1] = 50000
        tifffile.imwrite(
            root / "images" / f"tile{index}.tif",
            bands,
            photometric="minisblack",
            planarconfig="contig",
        )
        Image.fromarray(labels).save(root / "masks" / f"tile{index}.png")
    return root


# ---- reading -----------------------------------------------------------------------------------


def test_a_16_bit_png_keeps_its_values(tmp_path):
    values = np.array([[0, 255, 256], [40000, 65535, 1]], np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as written:
        assert written.mode == "I;16"
    pixels = EncodedImage(tmp_path / "deep.png", channels=None).pixels()
    assert pixels.dtype == np.uint16 and pixels.shape == (2, 3, 1)
    assert np.array_equal(pixels[..., 0], values)
    # an RGB model sees the grey channel three times, still unclipped
    rgb = EncodedImage(tmp_path / "deep.png", channels=3).pixels()
    assert rgb.shape == (2, 3, 3) and int(rgb.max()) == 65535 and int(rgb[1, 0, 2]) == 40000


def test_tiff_pages_become_channels_in_page_order(tmp_path):
    pages = np.stack([np.full((6, 5), 1000 * (p + 1), np.uint16) for p in range(5)])
    pages[2, 0, 0] = 40000
    tifffile.imwrite(tmp_path / "stack.tif", pages)
    image = EncodedImage(tmp_path / "stack.tif", channels=None)
    assert image.size == (6, 5)
    pixels = image.pixels()
    assert pixels.shape == (6, 5, 5) and pixels.dtype == np.uint16
    assert [int(pixels[1, 1, c]) for c in range(5)] == [1000, 2000, 3000, 4000, 5000]
    assert int(pixels[0, 0, 2]) == 40000


@pytest.mark.parametrize("planar", ["contig", "separate"])
def test_a_tiff_with_samples_per_pixel_reads_them_as_channels(tmp_path, planar):
    """HxWxC (interleaved) and CxHxW (planar) files are told apart by the file's own layout."""
    bands = np.arange(7 * 9 * 4, dtype=np.uint16).reshape(7, 9, 4) * 50
    data = bands if planar == "contig" else np.moveaxis(bands, 2, 0)
    tifffile.imwrite(tmp_path / "bands.tif", data, photometric="minisblack", planarconfig=planar)
    image = EncodedImage(tmp_path / "bands.tif", channels=4)
    assert image.size == (7, 9)
    assert np.array_equal(image.pixels(), bands)


def test_tiff_pages_of_different_sizes_are_refused(tmp_path):
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as writer:
        writer.write(np.zeros((8, 8), np.uint8))
        writer.write(np.zeros((4, 4), np.uint8))
    with pytest.raises(SampleError, match="mixed.tif: holds images of different sizes"):
        EncodedImage(tmp_path / "mixed.tif")


def test_a_tiff_without_tifffile_names_the_extra(tmp_path, monkeypatch):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((4, 4), np.uint8))
    real_import = builtins.__import__

    def no_tifffile(name, *args, **kwargs):
        if name == "tifffile":
            raise ImportError("No module named 'tifffile'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tifffile)
    with pytest.raises(SegkitError, match=r"pip install segkit\[tiff\]"):
        EncodedImage(tmp_path / "a.tif")
    # a dataset of TIFFs says so when it is opened, before any worker reads a file
    (tmp_path / "masks").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "a.tif").rename(tmp_path / "images" / "a.tif")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "masks" / "a.png")
    spec = {"type": "folder", "images": "images", "masks": "masks", "classes": ["x"]}
    with pytest.raises(SegkitError, match=r"needs tifffile: pip install segkit\[tiff\]"):
        segkit.build("dataset", {**spec, "root": str(tmp_path)})


@pytest.mark.parametrize("suffix", [".bmp", ".webp"])
def test_bmp_and_webp_are_read(tmp_path, suffix):
    colours = np.random.default_rng(1).integers(0, 256, (10, 12, 3)).astype(np.uint8)
    options = {"lossless": True} if suffix == ".webp" else {}
    Image.fromarray(colours).save(tmp_path / f"photo{suffix}", **options)
    assert np.array_equal(EncodedImage(tmp_path / f"photo{suffix}", 3, "uint8").pixels(), colours)


def test_a_folder_pairs_tif_bmp_and_webp_images_with_their_masks(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "ann").mkdir()
    colours = np.zeros((8, 8, 3), np.uint8)
    tifffile.imwrite(tmp_path / "img" / "a.tif", colours, photometric="rgb")
    Image.fromarray(colours).save(tmp_path / "img" / "b.bmp")
    Image.fromarray(colours).save(tmp_path / "img" / "c.webp", lossless=True)
    for name in "abc":
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "ann" / f"{name}.png")
    dataset = segkit.build(
        "dataset",
        {
            "type": "folder",
            "images": str(tmp_path / "img"),
            "masks": str(tmp_path / "ann"),
            "classes": ["x"],
        },
    )
    assert [pair.name for pair in dataset.pairs] == ["a", "b", "c"]
    assert dataset.problems == []
    assert all(dataset[i]["image"].shape == (3, 8, 8) for i in range(3))


# ---- the pipeline ------------------------------------------------------------------------------


def test_a_16_bit_value_reaches_the_normaliser_unclipped(tmp_path):
    four_band_folder(tmp_path, count=1, size=(16, 16))
    bands = tifffile.imread(tmp_path / "images" / "tile0.tif")
    bands[3, 5] = [40000, 40001, 65535, 0]
    tifffile.imwrite(
        tmp_path / "images" / "tile0.tif", bands, photometric="minisblack", planarconfig="contig"
    )
    config = load_config(
        write_config(
            tmp_path,
            mean=[100.0, 200.0, 300.0, 400.0],
            std=[2.0, 4.0, 5.0, 8.0],
            transforms="[{type: random_flip, prob: 0}, {type: resize, size: [16, 16], keep_ratio: false}]",
        )
    )
    sample = build_dataset(config, "train")[0]
    assert sample["image"].dtype == torch.uint16
    assert sample["image"][:, 3, 5].tolist() == [40000, 40001, 65535, 0]
    normaliser = InputNormalizer(config["data"]["mean"], config["data"]["std"], torch.device("cpu"))
    normalised = normaliser(sample["image"][None])[0, :, 3, 5]
    expected = [(40000 - 100) / 2, (40001 - 200) / 4, (65535 - 300) / 5, (0 - 400) / 8]
    assert normalised.tolist() == pytest.approx(expected)


def test_an_image_of_another_depth_or_channel_count_is_refused_naming_it(tmp_path):
    four_band_folder(tmp_path, count=2, size=(16, 16))
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "images" / "tile1.tif")
    (tmp_path / "images" / "tile1.tif").unlink()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "images" / "tile1.png")
    dataset = build_dataset(load_config(write_config(tmp_path)), "train")
    with pytest.raises(
        SampleError, match=r"tile1.png: the image has 3 channel\(s\) but the model takes 4"
    ):
        dataset[1]
    eight_bit = build_dataset(
        load_config(write_config(tmp_path, channels=4, dtype="uint8")), "train"
    )
    with pytest.raises(
        SampleError, match="tile0.tif: a uint16 image, but data.image_dtype is uint8"
    ):
        eight_bit[0]


def test_mean_and_std_need_one_value_per_backbone_channel(tmp_path):
    four_band_folder(tmp_path, count=1, size=(16, 16))
    path = write_config(tmp_path, mean=[1.0, 2.0, 3.0], std=[1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert "data.mean: has 3 value(s) but model.backbone.in_channels is 4" in str(refused.value)
    assert main(["config", str(path), "--check"]) == 2


def test_colour_jitter_is_refused_for_four_channels_before_any_sample(tmp_path):
    four_band_folder(tmp_path, count=1, size=(16, 16))
    config = load_config(write_config(tmp_path, transforms="[{type: photometric_distortion}]"))
    with pytest.raises(ConfigError) as refused:
        build_dataset(config, "train")
    message = str(refused.value)
    assert message.startswith("data.train.transforms.0 (photometric_distortion): ")
    assert "8-bit RGB images, and these are 4-channel uint16; remove it" in message


def test_geometric_transforms_keep_channels_and_16_bit_values(tmp_path):
    image = torch.full((5, 20, 24), 40000, dtype=torch.uint16)
    image[4] = 65535
    sample = {"image": image, "mask": torch.zeros(20, 24, dtype=torch.uint8), "name": "x"}
    rng = np.random.default_rng(0)
    for spec in (
        {"type": "resize", "size": [10, 12], "keep_ratio": False},
        {"type": "random_rotate", "degrees": 30, "image_fill": [40000, 40000, 40000, 40000, 65535]},
        {"type": "random_flip", "prob": 1.0},
        {"type": "random_crop", "size": [8, 8]},
        {"type": "gaussian_blur", "prob": 1.0},
        {"type": "pad", "size": [12, 12], "image_fill": 40000},
    ):
        sample = segkit.build("transform", spec)(sample, rng)
        assert sample["image"].dtype == torch.uint16 and sample["image"].shape[0] == 5, spec
    assert sample["image"].shape == (5, 12, 12)
    assert sample["image"][:4].unique().tolist() == [40000]
    assert sample["image"][4, :8, :8].unique().tolist() == [65535]  # the crop, blurred
    assert sample["image"][4, 8:].unique().tolist() == [40000]  # the padding


def test_normalize_takes_16_bit_on_the_0_to_1_scale(tmp_path):
    transform = segkit.build(
        "transform", {"type": "normalize", "mean": [0.5, 0.0], "std": [0.25, 1.0]}
    )
    image = torch.tensor([[[65535]], [[32768]]], dtype=torch.uint16)
    out = transform({"image": image, "mask": torch.zeros(1, 1)}, None)["image"]
    assert out.flatten().tolist() == pytest.approx([2.0, 32768 / 65535])


# ---- weights -----------------------------------------------------------------------------------


def test_rgb_weights_adapt_to_four_and_one_channels_by_the_documented_rule():
    rgb = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1) * torch.ones(2, 3, 1, 1)
    four = adapt_input_conv(rgb, 4)
    # channel c takes RGB channel c mod 3, divided by how many channels take that one
    assert four[0, :, 0, 0].tolist() == pytest.approx([0.5, 2.0, 3.0, 0.5])
    # six channels: every weight scaled by 3/6
    assert adapt_input_conv(rgb, 6)[1, :, 0, 0].tolist() == pytest.approx([0.5, 1, 1.5] * 2)
    assert adapt_input_conv(rgb, 1)[0, :, 0, 0].tolist() == pytest.approx([6.0])
    assert adapt_input_conv(rgb, 2)[0, :, 0, 0].tolist() == pytest.approx([4.0, 2.0])
    # each filter keeps its sum: alike channels give the RGB network's activation
    grey = torch.full((1, 3, 1, 1), 7.0)
    expected = torch.nn.functional.conv2d(grey, rgb)
    assert torch.allclose(torch.nn.functional.conv2d(torch.full((1, 4, 1, 1), 7.0), four), expected)


def test_a_four_channel_resnet_loads_rgb_weights_with_a_note(tmp_path, capsys):
    rgb = segkit.build("backbone", {"type": "resnet18"})
    path = tmp_path / "rgb.pt"
    torch.save(rgb.state_dict(), path)
    four = segkit.build("backbone", {"type": "resnet18", "in_channels": 4, "pretrained": str(path)})
    note = capsys.readouterr().err
    assert "conv1.weight holds RGB weights and the model takes 4 channels: adapted" in note
    assert torch.equal(four.conv1.weight, adapt_input_conv(rgb.conv1.weight, 4))
    assert torch.equal(four.layer1[0].conv1.weight, rgb.layer1[0].conv1.weight)
    drn_rgb = segkit.build("backbone", {"type": "drn_d_22"})
    torch.save(drn_rgb.state_dict(), tmp_path / "drn.pt")
    drn = segkit.build(
        "backbone", {"type": "drn_d_22", "in_channels": 2, "pretrained": str(tmp_path / "drn.pt")}
    )
    rgb_stem = drn_rgb.layer0[0].weight
    # two channels: channel 0 sums R and B, channel 1 takes G
    assert torch.allclose(drn.layer0[0].weight[:, 0], rgb_stem[:, 0] + rgb_stem[:, 2])
    assert torch.equal(drn.layer0[0].weight[:, 1], rgb_stem[:, 1])
    with pytest.raises(SegkitError, match="in_channels must be a positive number"):
        segkit.build("backbone", {"type": "resnet18", "in_channels": 0})


def test_whole_model_rgb_weights_adapt_when_loaded_into_a_c_channel_model():
    conv = torch.nn.Conv2d(4, 2, 1, bias=False)
    rgb = {"weight": torch.ones(2, 3, 1, 1)}
    load_into(conv, rgb, "rgb.pt", in_channels=4)
    assert conv.weight[0, :, 0, 0].tolist() == pytest.approx([0.5, 1.0, 1.0, 0.5])


# ---- end to end --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_four_band_16_bit_folder_trains_evaluates_and_predicts(tmp_path, capsys):
    four_band_folder(tmp_path)
    config = write_config(
        tmp_path,
        transforms="[{type: random_flip}, {type: random_crop, size: [24, 24]}, "
        "{type: pad, size: [24, 24]}, {type: random_rotate, degrees: 5, image_fill: 0}]",
    )
    assert main(["data", "stats", str(config)]) == 0
    stats = capsys.readouterr().out
    assert "4 channel(s), uint16" in stats
    measured = tifffile.imread(sorted((tmp_path / "images").glob("*.tif")))
    mean = measured.reshape(-1, 4).astype(np.float64).mean(axis=0)
    assert f"  mean: {[round(float(m), 3) for m in mean]}" in stats  # in 0..65535 units

    assert main(["train", str(config)]) == 0
    checkpoint = tmp_path / "run" / "checkpoints" / "last.pt"
    assert main(["eval", str(config), "--checkpoint", str(checkpoint)]) == 0
    out = tmp_path / "predicted"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(checkpoint),
                str(tmp_path / "images"),
                "--out",
                str(out),
                "--overlay",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.glob("*.png"))[:2] == ["tile0.png", "tile0_overlay.png"]

    segmenter = segkit.load(checkpoint)
    bands = tifffile.imread(tmp_path / "images" / "tile0.tif")
    from_path = segmenter.predict(tmp_path / "images" / "tile0.tif")
    from_array = segmenter.predict(bands)
    from_tensor = segmenter.predict(torch.from_numpy(bands).permute(2, 0, 1))
    with Image.open(out / "tile0.png") as written:
        from_command = np.asarray(written)
    assert from_path.shape == (32, 32)
    assert np.array_equal(from_path, from_array) and np.array_equal(from_path, from_tensor)
    assert np.array_equal(from_path, from_command)
    with pytest.raises(SegkitError, match="a uint8 image, but data.image_dtype is uint16"):
        segmenter.predict(np.zeros((8, 8, 4), np.uint8))


@pytest.mark.slow
def test_a_16_bit_model_exports_to_onnx_taking_uint16(tmp_path):
    pytest.importorskip("onnxruntime")
    four_band_folder(tmp_path, count=2)
    config = write_config(tmp_path)
    assert main(["train", str(config)]) == 0
    checkpoint = tmp_path / "run" / "checkpoints" / "last.pt"
    onnx = tmp_path / "model.onnx"
    size = ["--size", "32", "32"]
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(checkpoint),
                "--format",
                "onnx",
                "--out",
                str(onnx),
                *size,
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "model.onnx.json").read_text())
    assert report["input"]["dtype"] == "uint16" and report["input"]["shape"][1] == 4
    from segkit.export.serving import OnnxSegmenter

    served = OnnxSegmenter(onnx)
    assert served.session.get_inputs()[0].type == "tensor(uint16)"
    bands = tifffile.imread(tmp_path / "images" / "tile0.tif")
    agree = served.predict(bands) == segkit.load(checkpoint).predict(bands)
    assert agree.mean() > 0.99
    out = tmp_path / "served"
    images = str(tmp_path / "images")
    assert main(["predict", "--model", str(onnx), images, "--out", str(out), "--overlay"]) == 0
    with Image.open(out / "tile0.png") as written:
        assert np.array_equal(np.asarray(written), served.predict(bands))


def test_model_info_measures_a_four_channel_model_on_four_channels(tmp_path):
    from segkit.commands.model_info import model_info

    four_band_folder(tmp_path, count=1, size=(16, 16))
    info = model_info(load_config(write_config(tmp_path)), (32, 32))
    assert info["input"] == [1, 4, 32, 32]


def test_pictures_of_16_bit_and_four_channel_images_show_three_channels_stretched():
    from segkit.engine.visualize import image_hwc, panel

    image = torch.zeros(4, 2, 2, dtype=torch.uint16)
    image[0] = torch.tensor([[1000, 2000], [3000, 5000]], dtype=torch.uint16)
    image[1:3] = 1000
    image[3] = 65535  # the fourth band is not drawn
    picture = image_hwc(image)
    assert picture.shape == (2, 2, 3) and picture.dtype == np.uint8
    # stretched from the lowest (1000) to the highest drawn value (5000)
    assert picture[..., 0].tolist() == [[0, 64], [128, 255]]
    assert picture[..., 1].max() == 0
    grey = image_hwc(torch.full((1, 2, 2), 7, dtype=torch.uint8))
    assert grey.tolist() == [[[7, 7, 7]] * 2] * 2
    labels = torch.zeros(2, 2, dtype=torch.long)
    assert panel(image, labels, labels, [(0, 0, 0)]).shape == (2, 2 * 3 + 8, 3)


def test_data_check_reads_images_as_the_model_takes_them(tmp_path, capsys):
    """A 4-band 16-bit folder passes `segkit data check`; an RGB PNG among its TIFFs is named."""
    four_band_folder(tmp_path, count=2, size=(16, 16))
    config = write_config(tmp_path)
    assert main(["data", "check", str(config), "--workers", "0"]) == 0, capsys.readouterr()
    assert "data.train: OK" in capsys.readouterr().out
    (tmp_path / "images" / "tile1.tif").unlink()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "images" / "tile1.png")
    assert main(["data", "check", str(config), "--workers", "0"]) == 2
    assert "tile1.png: the image has 3 channel(s) but the model takes 4" in capsys.readouterr().out
