"""Dataset fixtures in the exact on-disk formats, shared by the tests/test_data_*.py modules
(``from test_data_fixtures import ...``), and tests that the fixtures are what they claim.

Images are real JPEG files, masks 8-bit single-channel PNGs, Cityscapes instance masks 16-bit
PNGs, with the official file names. Configs name in-test stub components for the sections a
data test does not exercise (model, loss, optimizer, scheduler), so that validation passes
without depending on other plugins.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

import segkit

# ---- files -----------------------------------------------------------------------------------


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, noisy RGB picture (JPEG-friendly, like a photograph)."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    x = np.linspace(0, 1, width)[None, :, None]
    base = 255 * (0.3 + 0.4 * y * np.array([1.0, 0.6, 0.2]) + 0.3 * x * np.array([0.2, 0.5, 1.0]))
    return np.clip(base + rng.normal(0, 10, (height, width, 3)), 0, 255).astype(np.uint8)


def write_jpeg(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
    return path


def write_png(path: Path, values: np.ndarray) -> Path:
    """An 8-bit single-channel PNG (mode L), as label masks are stored."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8), mode="L").save(path, format="PNG")
    return path


def write_png16(path: Path, values: np.ndarray) -> Path:
    """A 16-bit single-channel PNG, like Cityscapes' instanceIds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint16)).save(path, format="PNG")
    return path


def every_value_mask(values: list[int], height: int, width: int) -> np.ndarray:
    """A mask in which each value covers at least one pixel (cycled row-major)."""
    assert len(values) <= height * width
    return np.resize(np.array(values), height * width).reshape(height, width)


# ---- ADE20K ----------------------------------------------------------------------------------


def make_ade20k(root: Path, masks: dict[str, list[np.ndarray]]) -> Path:
    """``root/ADEChallengeData2016`` with one JPEG + annotation PNG per mask, per split
    (``training``/``validation``), named like the real files."""
    prefix = {"training": "ADE_train", "validation": "ADE_val"}
    for split, arrays in masks.items():
        for number, mask in enumerate(arrays, start=1):
            name = f"{prefix[split]}_{number:08d}"
            height, width = mask.shape
            write_jpeg(
                root / "ADEChallengeData2016" / "images" / split / f"{name}.jpg",
                photo(height, width, number),
            )
            write_png(root / "ADEChallengeData2016" / "annotations" / split / f"{name}.png", mask)
    return root


def write_odgt(path: Path, root: Path, split: str) -> Path:
    """A CSAIL index of the split: one JSON object per line, paths relative to ``root``."""
    lines = []
    for image in sorted((root / "ADEChallengeData2016" / "images" / split).glob("*.jpg")):
        mask = root / "ADEChallengeData2016" / "annotations" / split / f"{image.stem}.png"
        width, height = Image.open(image).size
        lines.append(
            json.dumps(
                {
                    "fpath_img": image.relative_to(root).as_posix(),
                    "fpath_segm": mask.relative_to(root).as_posix(),
                    "width": width,
                    "height": height,
                }
            )
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---- Cityscapes ------------------------------------------------------------------------------


def make_cityscapes(
    root: Path,
    split: str,
    label_ids: list[np.ndarray],
    city: str = "aachen",
    train_ids: list[np.ndarray] | None = None,
) -> list[str]:
    """The official layout: leftImg8bit PNGs and gtFine labelIds, color, 16-bit instanceIds and
    polygons files; labelTrainIds too when given. Returns the sample names."""
    names = []
    for number, labels in enumerate(label_ids):
        name = f"{city}_{number:06d}_000019"
        height, width = labels.shape
        image_dir = root / "leftImg8bit" / split / city
        image_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo(height, width, number)).save(image_dir / f"{name}_leftImg8bit.png")
        gt = root / "gtFine" / split / city
        write_png(gt / f"{name}_gtFine_labelIds.png", labels)
        write_png16(gt / f"{name}_gtFine_instanceIds.png", labels.astype(np.uint16) * 1000 + 1)
        Image.fromarray(np.zeros((height, width, 4), dtype=np.uint8)).save(
            gt / f"{name}_gtFine_color.png"
        )
        (gt / f"{name}_gtFine_polygons.json").write_text('{"objects": []}', encoding="utf-8")
        if train_ids is not None:
            write_png(gt / f"{name}_gtFine_labelTrainIds.png", train_ids[number])
        names.append(name)
    return names


# ---- configs ---------------------------------------------------------------------------------


class StubPlugin:
    """Components for the config sections a data test does not exercise."""

    @staticmethod
    def backbone():
        """A placeholder backbone."""

    @staticmethod
    def head(in_channels, num_classes):
        """A placeholder head."""

    @staticmethod
    def loss(ignore_index):
        """A placeholder loss."""

    @staticmethod
    def optimizer(params, lr: float = 0.01):
        """A placeholder optimizer."""

    @staticmethod
    def scheduler(optimizer, max_iters):
        """A placeholder schedule."""

    @segkit.hookimpl
    def segkit_register_backbones(self, register):
        register("data_test_stub", self.backbone)

    @segkit.hookimpl
    def segkit_register_heads(self, register):
        register("data_test_stub", self.head)

    @segkit.hookimpl
    def segkit_register_losses(self, register):
        register("data_test_stub", self.loss)

    @segkit.hookimpl
    def segkit_register_optimizers(self, register):
        register("data_test_stub", self.optimizer)

    @segkit.hookimpl
    def segkit_register_lr_schedulers(self, register):
        register("data_test_stub", self.scheduler)


def write_data_config(path: Path, data: str, num_classes: int) -> Path:
    """A complete config around a ``data:`` section given as YAML text."""
    text = textwrap.dedent(
        f"""\
        model:
          backbone: {{type: data_test_stub}}
          head: {{type: data_test_stub}}
          num_classes: {num_classes}
        loss: {{type: data_test_stub}}
        optimizer: {{type: data_test_stub}}
        lr_scheduler: {{type: data_test_stub}}
        logging: {{loggers: []}}
        data:
        """
    ) + textwrap.indent(textwrap.dedent(data).strip() + "\n", "  ")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---- the fixtures are what they claim --------------------------------------------------------


def test_ade20k_fixture_is_jpeg_and_8bit_single_channel_png(tmp_path):
    make_ade20k(tmp_path, {"validation": [every_value_mask(list(range(151)), 16, 20)]})
    image = tmp_path / "ADEChallengeData2016/images/validation/ADE_val_00000001.jpg"
    mask = tmp_path / "ADEChallengeData2016/annotations/validation/ADE_val_00000001.png"
    assert image.read_bytes()[:3] == b"\xff\xd8\xff"
    with Image.open(mask) as opened:
        assert (opened.format, opened.mode) == ("PNG", "L")
        assert sorted(np.unique(np.array(opened))) == list(range(151))


def test_cityscapes_fixture_has_official_names_and_16bit_instances(tmp_path):
    names = make_cityscapes(tmp_path, "val", [np.full((8, 16), 26)], city="lindau")
    assert names == ["lindau_000000_000019"]
    gt = tmp_path / "gtFine/val/lindau"
    assert sorted(p.name for p in gt.iterdir()) == [
        "lindau_000000_000019_gtFine_color.png",
        "lindau_000000_000019_gtFine_instanceIds.png",
        "lindau_000000_000019_gtFine_labelIds.png",
        "lindau_000000_000019_gtFine_polygons.json",
    ]
    with Image.open(gt / "lindau_000000_000019_gtFine_instanceIds.png") as opened:
        assert opened.mode.startswith("I")
        assert np.array(opened).max() == 26001
    assert (tmp_path / "leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png").is_file()
