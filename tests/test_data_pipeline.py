"""The data pipeline: datasets from configs, per-draw randomness, batching, and bad samples."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from test_data_fixtures import (
    every_value_mask,
    make_ade20k,
    write_data_config,
)
from torch.utils.data import DataLoader

from segkit.badsamples import SkippedSample
from segkit.cli import main
from segkit.data import BadSampleWarning, build_dataset, collate
from segkit.engine.evaluator import validation_loader
from segkit.engine.parts import pin_memory
from segkit.engine.sampler import InfiniteSampler
from segkit.errors import DataError, SampleError
from segkit.validation import load_config


@pytest.fixture
def ade_config(tmp_path, data_plugins):
    masks = [every_value_mask(list(range(151)), 30 + 2 * i, 40 - i) for i in range(4)]
    root = make_ade20k(tmp_path / "data", {"training": masks, "validation": masks[:2]})

    def write(on_bad_sample="error", workers=0, batch_size=2):
        path = write_data_config(
            tmp_path / "config.yaml",
            f"""
            root: {root}
            workers: {workers}
            batch_size: {batch_size}
            on_bad_sample: {on_bad_sample}
            train:
              type: ade20k
              split: training
              transforms:
                - {{type: random_resize, base_size: [64, 32], ratio_range: [0.5, 2.0]}}
                - {{type: random_crop, size: [24, 24], cat_max_ratio: 0.75}}
                - {{type: random_flip}}
                - {{type: random_rotate, degrees: 10}}
                - {{type: photometric_distortion}}
                - {{type: gaussian_blur}}
                - {{type: normalize}}
                - {{type: pad, size: [24, 24]}}
            val: {{type: ade20k, split: validation}}
            """,
            num_classes=150,
        )
        return load_config(path)

    write.root = root
    return write


def test_training_samples_follow_the_contract_and_the_seed(ade_config):
    dataset = build_dataset(ade_config(), "train")
    first = dataset[(1, 7)]
    assert first["image"].dtype == torch.float32 and first["image"].shape == (3, 24, 24)
    assert first["mask"].dtype == torch.int64 and first["mask"].shape == (24, 24)
    assert first["name"] == "ADE_train_00000002"
    again = dataset[(1, 7)]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["mask"], again["mask"])
    other = dataset[(1, 8)]
    assert not torch.equal(first["image"], other["image"])
    values = set(torch.cat([dataset[(i, i)]["mask"].flatten() for i in range(4)]).tolist())
    assert values <= set(range(150)) | {255} and 255 in values


def training_batches(dataset, config):
    """Batches as the trainer draws them."""
    data = config["data"]
    return iter(
        DataLoader(
            dataset,
            batch_size=data["batch_size"],
            sampler=InfiniteSampler(len(dataset), seed=0),
            num_workers=data["workers"],
            collate_fn=collate,
        )
    )


def validation_batches(dataset, config):
    """Validation batches as the evaluator reads them: lists of samples, skipped ones None."""
    return validation_loader(
        dataset, config["data"]["val_batch_size"], config["data"]["workers"], False, False
    )


def test_augmentation_does_not_depend_on_the_number_of_workers(ade_config):
    batches = {}
    for workers in (0, 2):
        config = ade_config(workers=workers)
        loader = training_batches(build_dataset(config, "train"), config)
        batches[workers] = [next(loader) for _ in range(3)]
    for serial, parallel in zip(batches[0], batches[2]):
        assert serial["name"] == parallel["name"]
        assert torch.equal(serial["image"], parallel["image"]) and torch.equal(
            serial["mask"], parallel["mask"]
        )


def test_validation_loader_keeps_each_image_at_its_size(ade_config):
    config = ade_config()
    samples = [
        s for batch in validation_batches(build_dataset(config, "val"), config) for s in batch
    ]
    assert [tuple(s["image"].shape) for s in samples] == [(3, 30, 40), (3, 32, 39)]
    assert samples[0]["image"].dtype == torch.uint8 and samples[0]["mask"].dtype == torch.int64


def test_collate_explains_mixed_sizes():
    a = {"image": torch.zeros(3, 4, 4), "mask": torch.zeros(4, 4, dtype=torch.long), "name": "a"}
    b = {"image": torch.zeros(3, 5, 4), "mask": torch.zeros(5, 4, dtype=torch.long), "name": "b"}
    assert collate([a, a])["name"] == ["a", "a"]
    with pytest.raises(DataError, match=r"differ in size \(4x4, 5x4, HxW\)"):
        collate([a, b])


# ---- bad samples ------------------------------------------------------------------------------


def corrupt_first_image(root):
    path = root / "ADEChallengeData2016/images/training/ADE_train_00000001.jpg"
    path.write_bytes(b"not a picture")
    return path


def truncated_first_image(root):
    path = root / "ADEChallengeData2016/images/training/ADE_train_00000001.jpg"
    data = path.read_bytes()
    pixels_start = data.index(b"\xff\xda")  # start of scan: headers before, pixels after
    path.write_bytes(data[: pixels_start + 40])
    return path


def wrong_size_mask(root):
    from test_data_fixtures import write_png

    return write_png(
        root / "ADEChallengeData2016/annotations/training/ADE_train_00000002.png", np.zeros((5, 5))
    )


def out_of_range_mask(root):
    from test_data_fixtures import write_png

    values = np.zeros((34, 38), dtype=np.uint8)
    values[0, :3] = [151, 200, 7]
    return write_png(
        root / "ADEChallengeData2016/annotations/training/ADE_train_00000003.png", values
    )


@pytest.mark.parametrize(
    "damage, index, message",
    [
        (corrupt_first_image, 0, "ADE_train_00000001.jpg: cannot read the image"),
        (truncated_first_image, 0, "ADE_train_00000001.jpg: cannot decode the image"),
        (wrong_size_mask, 1, "ADE_train_00000002.png: mask is 5x5 (WxH) but its image"),
        (
            out_of_range_mask,
            2,
            "ADE_train_00000003.png: label values 151, 200 are outside the dataset's range (allowed: 0..150)",
        ),
    ],
)
def test_a_bad_sample_is_an_error_naming_the_file(ade_config, damage, index, message):
    config = ade_config()
    damage(ade_config.root)
    dataset = build_dataset(config, "train")
    with pytest.raises(SampleError) as caught:
        dataset[(index, 0)]
    assert message in str(caught.value)


def test_a_bad_sample_in_a_worker_reaches_the_user_as_one_message(ade_config, capsys):
    config = ade_config(workers=1, batch_size=4)
    out_of_range_mask(ade_config.root)
    with pytest.raises(SampleError) as caught:
        next(training_batches(build_dataset(config, "train"), config))
    message = str(caught.value)
    assert message.startswith(str(ade_config.root)) and "label values 151, 200" in message
    assert "Traceback" not in message and "\n" not in message


@pytest.mark.parametrize(
    "damage, index, file",
    [
        (corrupt_first_image, 0, "ADE_train_00000001.jpg"),
        (wrong_size_mask, 1, "ADE_train_00000002.png"),
        (out_of_range_mask, 2, "ADE_train_00000003.png"),
    ],
)
def test_skip_records_the_file_and_draws_another_sample(ade_config, damage, index, file):
    config = ade_config(on_bad_sample="skip")
    damage(ade_config.root)
    dataset = build_dataset(config, "train")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the skip travels with the sample, not as a warning
        replaced = dataset[(index, 5)]
    assert file in replaced["skipped"][0]
    assert replaced["name"] != f"ADE_train_{index + 1:08d}" and replaced["image"].shape == (
        3,
        24,
        24,
    )


def test_skip_replaces_bad_training_samples_and_drops_bad_validation_samples(ade_config):
    config = ade_config(on_bad_sample="skip", batch_size=4)
    corrupt_first_image(ade_config.root)
    dataset = build_dataset(config, "train")
    batch = next(training_batches(dataset, config))
    assert len(batch["name"]) == 4 and "ADE_train_00000001" not in batch["name"]
    validation = build_dataset(
        {**config, "data": {**config["data"], "val": config["data"]["train"]}}, "val"
    )
    assert isinstance(validation[0], SkippedSample)
    assert "ADE_train_00000001.jpg" in validation[0].message
    names = [
        s["name"]
        for b in validation_batches(validation, config)
        for s in b
        if not isinstance(s, SkippedSample)
    ]
    assert names == ["ADE_train_00000002", "ADE_train_00000003", "ADE_train_00000004"]


def test_a_missing_root_stops_with_the_layout_and_how_to_set_it(ade_config, tmp_path, capsys):
    config = ade_config()
    config["data"]["root"] = str(tmp_path / "elsewhere")
    with pytest.raises(
        DataError, match=r"(?s)data.train: ADE20K not found.*Expected layout.*data.root="
    ):
        build_dataset(config, "train")
    path = ade_config.root.parent / "config.yaml"
    assert (
        main(["data", "check", str(path), f"data.root={tmp_path / 'elsewhere'}", "--split", "val"])
        == 2
    )
    assert "data.val: ADE20K not found" in capsys.readouterr().out
    assert main(["data", "check", str(path), "data.val=null", "--split", "val"]) == 2
    assert "the config defines no val dataset" in capsys.readouterr().err


def test_missing_pairs_stop_the_run_or_are_left_out_with_a_warning(ade_config):
    (ade_config.root / "ADEChallengeData2016/annotations/training/ADE_train_00000004.png").unlink()
    with pytest.raises(
        DataError,
        match=r"ADE_train_00000004.jpg: image without a mask \(expected .*ADE_train_00000004.png\)",
    ):
        build_dataset(ade_config(), "train")
    with pytest.warns(BadSampleWarning, match="leaving out 1 file"):
        assert len(build_dataset(ade_config(on_bad_sample="skip"), "train")) == 3


def test_data_check_reports_every_problem_and_exits_2(ade_config, capsys):
    ade_config()
    truncated_first_image(ade_config.root)
    wrong_size_mask(ade_config.root)
    out_of_range_mask(ade_config.root)
    config_path = ade_config.root.parent / "config.yaml"
    assert main(["data", "check", str(config_path), "--split", "train"]) == 2
    out = capsys.readouterr().out
    assert "3 problem(s):" in out and "data.train: PROBLEMS" in out
    assert "ADE_train_00000001.jpg: cannot decode the image" in out
    assert "ADE_train_00000002.png: mask is 5x5" in out
    assert "label values 151, 200" in out
    assert "data.val" not in out


def test_data_check_progress_prints_a_line_per_tenth_when_not_on_a_terminal(capsys):
    from segkit.commands.data import Progress

    progress = Progress("checking data.train", 2000)
    for _ in range(2000):
        progress.step()
    progress.done()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("checking data.train: 2000/2000 (")


def test_host_memory_is_pinned_for_cuda_unless_the_config_says_otherwise():
    assert pin_memory(None, torch.device("cuda", 0)) is True
    assert pin_memory(None, torch.device("cpu")) is False
    assert pin_memory(False, torch.device("cuda")) is False


def test_the_evaluator_passes_over_skipped_validation_samples():
    from segkit.engine.evaluator import Evaluator
    from segkit.engine.inference import InferenceSettings, InputNormalizer

    class Constant(torch.nn.Module):
        def forward(self, images):
            logits = torch.zeros(images.shape[0], 2, *images.shape[-2:])
            logits[:, 1] = 1.0
            return {"main": logits}

    sample = {
        "image": torch.zeros(3, 4, 4, dtype=torch.uint8),
        "mask": torch.ones(4, 4, dtype=torch.long),
        "name": "a",
    }
    normalizer = InputNormalizer([0, 0, 0], [1, 1, 1], torch.device("cpu"))
    evaluator = Evaluator(InferenceSettings(), ["zero", "one"], normalizer, panels=0)
    skipped = [SkippedSample("b.png: cannot read"), SkippedSample("c.png: cannot read")]
    matrix, _ = evaluator.confusion(Constant(), [[sample, skipped[0]], [skipped[1]]])
    assert matrix.matrix.tolist() == [[0, 0], [0, 16]]
    summary = evaluator.skips.summary("in the validation")
    assert summary.startswith("segkit: warning: skipped 2 bad sample(s) in the validation")
    assert "b.png: cannot read" in summary and "c.png: cannot read" in summary
