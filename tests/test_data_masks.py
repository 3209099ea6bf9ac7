"""Mask encodings: colour masks, palette PNGs, grey masks saved as RGB, JPEG-damaged masks,
0/255 binary and shifted-by-one labels; what the folder dataset, `segkit data check` (with
--suggest) and the start of training make of them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image
from test_data_fixtures import photo, write_data_config, write_jpeg, write_png

from segkit.builder import build
from segkit.cli import main
from segkit.errors import SampleError

PALETTE = [(0, 0, 0), (220, 20, 60), (0, 128, 0)]
VOID = (255, 255, 255)


def classes_mask(height: int = 12, width: int = 16, shift: int = 0) -> np.ndarray:
    """Class 0 on the left, 1 in the middle, 2 on the right; a void (255) top row."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[:, (width // 3 + shift) :] = 1
    mask[:, (2 * width // 3 + shift) :] = 2
    mask[0] = 255
    return mask


def colourise(mask: np.ndarray) -> np.ndarray:
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(PALETTE)] = PALETTE
    table[255] = VOID
    return table[mask]


def write_rgb(path, pixels: np.ndarray, format: str = "PNG", **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="RGB").save(path, format=format, **options)
    return path


def write_palette_png(path, mask: np.ndarray):
    """A palette-mode PNG as PASCAL VOC stores masks: pixel values are classes, the palette
    colours them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(mask, mode="P")
    flat = [0] * 768
    for index, colour in [*enumerate(PALETTE), (255, VOID)]:
        flat[3 * index : 3 * index + 3] = colour
    image.putpalette(flat)
    image.save(path, format="PNG")
    return path


def make_folder(root, masks: dict[str, np.ndarray], write, size=(12, 16)):
    for name, mask in masks.items():
        write_jpeg(root / "images" / f"{name}.jpg", photo(*size, seed=len(name)))
        write(root / "masks" / f"{name}.png", mask)
    return root


def colour_folder(root, count: int = 3):
    return make_folder(
        root,
        {f"s{i}": colourise(classes_mask(shift=i)) for i in range(count)},
        write_rgb,
    )


def rgb_spec(root, **options):
    return {
        "type": "folder",
        "root": str(root),
        "images": "images",
        "masks": "masks",
        "classes": ["background", "person", "tree"],
        "mask_format": "rgb",
        "palette": [list(c) for c in PALETTE],
        "ignore_color": list(VOID),
        **options,
    }


# ---- decoding ---------------------------------------------------------------------------------


def test_colour_masks_decode_to_class_indices_and_ignore(tmp_path):
    dataset = build("dataset", rgb_spec(colour_folder(tmp_path)))
    for index in range(len(dataset)):
        assert np.array_equal(dataset[index]["mask"].numpy(), classes_mask(shift=index))
    assert dataset.palette == PALETTE


def test_colour_palette_from_the_classes_csv(tmp_path):
    root = colour_folder(tmp_path)
    (root / "classes.csv").write_text(
        "name,r,g,b\n" + "".join(f"c{i},{r},{g},{b}\n" for i, (r, g, b) in enumerate(PALETTE)),
        encoding="utf-8",
    )
    spec = rgb_spec(root, classes="classes.csv")
    del spec["palette"]
    dataset = build("dataset", spec)
    assert dataset.classes == ["c0", "c1", "c2"]
    assert np.array_equal(dataset[1]["mask"].numpy(), classes_mask(shift=1))


def test_rgb_without_class_colours_is_refused(tmp_path):
    spec = rgb_spec(colour_folder(tmp_path))
    del spec["palette"]
    with pytest.raises(Exception, match="mask_format: rgb needs the class colours"):
        build("dataset", spec)


def test_an_unknown_colour_names_file_pixels_and_nearest_class(tmp_path):
    root = colour_folder(tmp_path)
    pixels = colourise(classes_mask())
    pixels[5, :4] = (10, 0, 0)  # four pixels near black
    write_rgb(root / "masks" / "s0.png", pixels)
    dataset = build("dataset", rgb_spec(root))
    with pytest.raises(SampleError) as caught:
        dataset[0]
    message = str(caught.value)
    assert "s0.png" in message and "[10, 0, 0] on 4 pixels" in message
    assert "nearest: [0, 0, 0], class 0" in message and "ignore_color" in message


def test_a_jpeg_compressed_colour_mask_gets_its_own_message(tmp_path):
    root = tmp_path / "data"
    big = colourise(np.kron(classes_mask(), np.ones((4, 4), dtype=np.uint8)))
    write_jpeg(root / "images" / "a.jpg", photo(48, 64))
    write_rgb(root / "masks" / "a.jpg", big, format="JPEG", quality=75)
    dataset = build("dataset", rgb_spec(root, mask_suffix=".jpg", image_suffix=".jpg"))
    with pytest.raises(SampleError, match="looks JPEG-compressed; save masks as PNG"):
        dataset[0]


def test_a_palette_png_reads_as_indices_and_as_colours(tmp_path):
    mask = classes_mask()
    root = make_folder(tmp_path, {"a": mask}, write_palette_png)
    as_index = build(
        "dataset",
        {
            "type": "folder",
            "root": str(root),
            "images": "images",
            "masks": "masks",
            "classes": ["a", "b", "c"],
        },
    )
    assert np.array_equal(as_index[0]["mask"].numpy(), mask)
    as_colour = build("dataset", rgb_spec(root))
    assert np.array_equal(as_colour[0]["mask"].numpy(), mask)


def index_spec(root, **options):
    return {
        "type": "folder",
        "root": str(root),
        "images": "images",
        "masks": "masks",
        "classes": ["a", "b", "c"],
        **options,
    }


def test_a_grey_mask_saved_as_rgb_reads_as_an_index_mask_with_one_note(tmp_path, capsys):
    masks = {f"g{i}": np.repeat(classes_mask()[..., None], 3, axis=2) for i in range(3)}
    root = make_folder(tmp_path, masks, write_rgb)
    dataset = build("dataset", index_spec(root))
    assert all(np.array_equal(dataset[i]["mask"].numpy(), classes_mask()) for i in range(3))
    notes = capsys.readouterr().err
    assert notes.count("segkit: note:") == 1 and "R = G = B; read as index masks" in notes


def test_a_colour_mask_read_as_index_says_to_set_mask_format_rgb(tmp_path):
    dataset = build("dataset", index_spec(colour_folder(tmp_path, count=1)))
    with pytest.raises(SampleError, match="set mask_format: rgb and a palette"):
        dataset[0]


def test_colour_options_do_not_mix_with_index_options(tmp_path):
    root = colour_folder(tmp_path, count=1)
    with pytest.raises(Exception, match="ignore_color applies to mask_format: rgb"):
        build("dataset", index_spec(root, ignore_color=[255, 255, 255]))
    with pytest.raises(Exception, match="label_map maps mask values"):
        build("dataset", rgb_spec(root, label_map={0: 0}))
    with pytest.raises(Exception, match="same colour"):
        build("dataset", rgb_spec(root, palette=[[0, 0, 0], [0, 0, 0], [1, 1, 1]]))


def test_colour_decoding_of_a_large_mask_with_many_palette_colours_is_exact():
    """The packed-code lookup gives every pixel its class, also with a palette larger than the
    colours present and colours that differ in one channel only."""
    from segkit.maskformat import ColourDecoder

    palette = [*PALETTE, *[(i, i, 7) for i in range(16)]]
    decoder = ColourDecoder(palette, VOID)
    classes = np.random.default_rng(0).integers(0, len(palette), (512, 1024)).astype(np.uint8)
    pixels = np.asarray(palette, dtype=np.uint8)[classes]
    decoded = decoder.decode(pixels, "x.png")
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, classes)


# ---- data check: the traps ----------------------------------------------------------------------


def check(tmp_path, dataset: str, num_classes: int, capsys, name: str = "c.yaml"):
    config = write_data_config(
        tmp_path / name, f"workers: 0\ntrain: {dataset}\n", num_classes=num_classes
    )
    status = main(["data", "check", str(config)])
    return status, capsys.readouterr().out


def binary_folder(root):
    masks = {}
    for i in range(3):
        mask = np.zeros((12, 16), dtype=np.uint8)
        mask[3:9, 2 + i : 10] = 255
        masks[f"b{i}"] = mask
    return make_folder(root, masks, write_png)


def pasted(out: str) -> dict:
    """The YAML lines data check says to paste, parsed."""
    lines = out.split("paste into the dataset's section (data.train, data.val):\n", 1)[1]
    block = []
    for line in lines.splitlines():
        if not line.startswith("      "):
            break
        block.append(line.strip())
    return yaml.safe_load("\n".join(block))


def test_data_check_fails_0_255_binary_masks_with_the_fix(tmp_path, data_plugins, capsys):
    root = binary_folder(tmp_path / "bin")
    spec = f"{{type: folder, root: {root}, images: images, masks: masks, classes: [bg, fg]}}"
    status, out = check(tmp_path, spec, 2, capsys)
    assert status == 2
    assert "the masks hold only 0 and 255: a binary mask saved as 0/255" in out
    assert "fake 100% mIoU" in out
    fix = pasted(out)
    assert fix == {"label_map": {0: 0, 255: 1}, "ignore_index": None}
    fixed = spec[:-1] + ", label_map: {0: 0, 255: 1}, ignore_index: null}"
    status, out = check(tmp_path, fixed, 2, capsys, "fixed.yaml")
    assert status == 0 and "label encoding" not in out


def test_data_check_fails_a_single_class(tmp_path, data_plugins, capsys):
    root = make_folder(tmp_path / "one", {"a": np.ones((12, 16), dtype=np.uint8)}, write_png)
    spec = f"{{type: folder, root: {root}, images: images, masks: masks, classes: [x, y, z]}}"
    status, out = check(tmp_path, spec, 3, capsys)
    assert status == 2 and "only one class occurs in the labels (1 'y')" in out


def test_data_check_recognises_labels_shifted_by_one(tmp_path, data_plugins, capsys):
    shifted = {f"s{i}": classes_mask(shift=i) + 1 for i in range(2)}
    for mask in shifted.values():
        mask[mask == 0] = 0  # the void row (255 + 1) wraps to 0: "unlabelled"
    root = make_folder(tmp_path / "shift", shifted, write_png)
    spec = f"{{type: folder, root: {root}, images: images, masks: masks, classes: [x, y, z]}}"
    status, out = check(tmp_path, spec, 3, capsys)
    assert status == 2 and "the mask values run 1..3 for 3 classes with 0 as well" in out
    fix = pasted(out)
    assert fix == {"label_map": {1: 0, 2: 1, 3: 2}, "ignore_index": 0}
    fixed = spec[:-1] + ", label_map: {1: 0, 2: 1, 3: 2}, ignore_index: 0}"
    assert check(tmp_path, fixed, 3, capsys, "fixed.yaml")[0] == 0


def test_data_check_warns_about_a_class_that_never_occurs(tmp_path, data_plugins, capsys):
    masks = {"a": np.array([[0, 1] * 8] * 12, dtype=np.uint8)}
    root = make_folder(tmp_path / "absent", masks, write_png)
    spec = f"{{type: folder, root: {root}, images: images, masks: masks, classes: [x, y, z]}}"
    status, out = check(tmp_path, spec, 3, capsys)
    assert status == 0 and "1 class(es) never occur in these labels: 2 'z'" in out


def test_data_check_on_colour_masks_is_clean(tmp_path, data_plugins, capsys):
    root = colour_folder(tmp_path / "colour")
    spec = json.dumps(rgb_spec(root))
    status, out = check(tmp_path, spec, 3, capsys)
    assert status == 0 and "data.train: OK" in out and "person" in out


def test_training_warns_about_0_255_masks_at_the_start(tmp_path, toys, capsys):
    from engine_toys import write_toy_config

    root = binary_folder(tmp_path / "bin")
    data = (
        f"data:\n  train: {{type: folder, root: {root}, images: images, masks: masks, "
        "classes: [bg, fg, other]}\n  batch_size: 2\n  workers: 0\n"
    )
    config = write_toy_config(tmp_path, data=data, train="train: {max_iters: 1, device: cpu}\n")
    assert main(["train", str(config), "--work-dir", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert (
        "segkit: warning: data.train (a sample of the masks): the masks hold only 0 and 255" in err
    )
    assert "label_map: {0: 0, 255: 1}" in err


# ---- data check --suggest ---------------------------------------------------------------------


def suggested(capsys, *folders) -> tuple[str, dict]:
    assert main(["data", "check", "--suggest", *map(str, folders)]) == 0
    text = capsys.readouterr().out
    return text, yaml.safe_load(text)


def loads(section: dict):
    return build("dataset", section["data"]["train"])


def test_suggest_for_colour_masks_gives_a_palette_that_loads(tmp_path, capsys):
    root = colour_folder(tmp_path / "colour")
    text, section = suggested(capsys, root)
    spec = section["data"]["train"]
    assert spec["mask_format"] == "rgb" and "ignore_color" not in spec
    # black first; white (the void row) is a colour like any other to --suggest
    assert spec["palette"][0] == [0, 0, 0] and len(spec["palette"]) == 4
    assert sorted(map(tuple, spec["palette"])) == sorted([*PALETTE, VOID])
    dataset = loads(section)
    assert len(dataset) == 3 and dataset[0]["mask"].max() < 4


def test_suggest_for_0_255_masks_maps_255_to_the_second_class(tmp_path, capsys):
    text, section = suggested(capsys, binary_folder(tmp_path / "bin"))
    spec = section["data"]["train"]
    assert spec["label_map"] == {0: 0, 255: 1} and spec["ignore_index"] is None
    dataset = loads(section)
    assert set(np.unique(dataset[0]["mask"].numpy())) == {0, 1}


def test_suggest_for_a_palette_png_with_separate_folders_and_suffix(tmp_path, capsys):
    for i in range(2):
        write_jpeg(tmp_path / "pics" / f"p{i}.jpg", photo(12, 16))
        write_palette_png(tmp_path / "labels" / f"p{i}_gt.png", classes_mask(shift=i))
    text, section = suggested(capsys, tmp_path / "pics", tmp_path / "labels")
    spec = section["data"]["train"]
    assert spec["mask_suffix"] == "_gt.png" and spec["image_suffix"] == ".jpg"
    assert spec["classes"] == ["background", "class_1", "class_2"]
    assert spec["ignore_index"] == 255 and spec["palette"] == [list(c) for c in PALETTE]
    dataset = loads(section)
    assert np.array_equal(dataset[1]["mask"].numpy(), classes_mask(shift=1))


def test_suggest_compacts_sparse_values_with_a_label_map(tmp_path, capsys):
    masks = {"a": np.array([[0, 10, 20, 255]] * 12, dtype=np.uint8).repeat(4, axis=1)}
    root = make_folder(tmp_path / "sparse", masks, write_png)
    text, section = suggested(capsys, root)
    assert section["data"]["train"]["label_map"] == {0: 0, 10: 1, 20: 2}
    assert set(np.unique(loads(section)[0]["mask"].numpy())) == {0, 1, 2, 255}


def test_suggest_refuses_jpeg_masks_and_missing_pairs(tmp_path, capsys):
    write_jpeg(tmp_path / "images" / "a.jpg", photo(12, 16))
    write_jpeg(tmp_path / "masks" / "a.jpg", colourise(classes_mask()))
    assert main(["data", "check", "--suggest", str(tmp_path)]) == 2
    assert "JPEG files" in capsys.readouterr().err
    assert main(["data", "check", "--suggest", str(tmp_path / "images"), str(tmp_path)]) == 2
    assert "no image" in capsys.readouterr().err


# ---- training on colour masks -----------------------------------------------------------------

REGION_COLOURS = np.array([[90, 90, 120], [200, 60, 50], [60, 190, 80]], dtype=np.float32)


def learnable_colour_folder(root, count: int, seed: int, size: int = 32):
    """Images of random rectangles whose colour tells their class, and the colour masks that
    mark them with the class palette: learnable by a tiny CNN in a few dozen steps."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        mask = np.zeros((size, size), dtype=np.uint8)
        for cls in (1, 2):
            top, left = rng.integers(0, size - 10, 2)
            height, width = rng.integers(8, 16, 2)
            mask[top : top + height, left : left + width] = cls
        image = REGION_COLOURS[mask] + rng.normal(0, 12, (size, size, 3))
        write_rgb(root / "images" / f"{index:03d}.png", np.clip(image, 0, 255).astype(np.uint8))
        write_rgb(root / "masks" / f"{index:03d}.png", colourise(mask))
    return root


def colour_data_section(train_root, val_root, **extra) -> str:
    common = {
        "type": "folder",
        "images": "images",
        "masks": "masks",
        "classes": ["background", "person", "tree"],
        "mask_format": "rgb",
        "palette": [list(c) for c in PALETTE],
        "ignore_color": list(VOID),
    }
    data = {
        "train": {**common, "root": str(train_root)},
        "val": {**common, "root": str(val_root)},
        "batch_size": 4,
        "workers": 0,
        **extra,
    }
    return yaml.safe_dump({"data": data})


@pytest.mark.slow
def test_training_on_colour_masks_learns(tmp_path, toys):
    from engine_toys import write_toy_config

    train = learnable_colour_folder(tmp_path / "train", 16, seed=0)
    val = learnable_colour_folder(tmp_path / "val", 6, seed=1)
    config = write_toy_config(
        tmp_path,
        data=colour_data_section(train, val),
        train="train: {max_iters: 40, eval_interval: 20, log_interval: 10, device: cpu, "
        "precision: fp32}\n",
    )
    assert main(["train", str(config), "--work-dir", str(tmp_path / "run")]) == 0
    lines = (tmp_path / "run" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    final = [json.loads(line) for line in lines if '"val"' in line][-1]
    # chance (predicting one class, or at random) is at most ~0.33 mIoU here
    assert final["mIoU"] > 0.6, final
    assert set(final["IoU"]) == {"background", "person", "tree"}


def test_skipped_samples_are_summarised_per_epoch_not_warned_per_file(tmp_path, toys, capsys):
    from engine_toys import write_toy_config

    train = learnable_colour_folder(tmp_path / "train", 6, seed=0, size=16)
    broken = colourise(classes_mask(16, 16))
    broken[4:6, 4:6] = (1, 2, 3)
    write_rgb(train / "masks" / "002.png", broken)
    config = write_toy_config(
        tmp_path,
        data=colour_data_section(train, train, on_bad_sample="skip", workers=1),
        train="train: {max_iters: 3, eval_interval: 3, log_interval: 1, device: cpu}\n",
    )
    assert main(["train", str(config), "--work-dir", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 bad sample(s) in the validation after iteration 3" in err
    assert err.count("in training epoch") >= 1 and "002.png: colours not in the palette" in err
    assert "Warning" not in err and "torch/utils" not in err
