"""Configs: inheritance, overrides, validation with file:line, and the resolved dump."""

from typing import Literal

import pytest
import yaml
from conftest import make_distribution, run_segkit

import segkit
from segkit.cli import main
from segkit.config import dump_config, flatten_config


def toy_backbone(depth: int = 18, widths: list[int] = (8, 16), frozen: bool = False):
    """A stand-in backbone that records its options."""
    return {"depth": depth, "widths": widths, "frozen": frozen}


def toy_head(
    in_channels, num_classes, pool: Literal["avg", "max"] = "avg", channels: int | None = None
):
    """A stand-in head."""
    return {"pool": pool, "channels": channels}


class CoreComponents:
    """The components the config tests name: the schema's defaults plus toys."""

    @staticmethod
    @segkit.hookimpl
    def segkit_register_backbones(register):
        register("toy", toy_backbone)

    @staticmethod
    @segkit.hookimpl
    def segkit_register_heads(register):
        register("toy_head", toy_head)

    @staticmethod
    @segkit.hookimpl
    def segkit_register_losses(register):
        register("cross_entropy", lambda ignore_index, label_smoothing=0.0: None)

    @staticmethod
    @segkit.hookimpl
    def segkit_register_optimizers(register):
        register("sgd", lambda params, lr=0.01, momentum=0.9: None)

    @staticmethod
    @segkit.hookimpl
    def segkit_register_lr_schedulers(register):
        register("poly", lambda optimizer, max_iters, power=0.9: None)

    @staticmethod
    @segkit.hookimpl
    def segkit_register_loggers(register):
        register("progress", lambda: None)
        register("tensorboard", lambda images=4: None)


@pytest.fixture(autouse=True)
def components(use_plugins):
    return use_plugins({"core": CoreComponents})


BASE = """
model:
  backbone: {type: toy, depth: 34}
  head: {type: toy_head}
  num_classes: 5
train:
  max_iters: 100
"""


def test_base_is_merged_deeply_and_lists_replace(write_config):
    write_config("base.yaml", BASE + "eval:\n  scales: [0.5, 1.0, 1.5]\n")
    path = write_config(
        "child.yaml",
        """
        _base_: base.yaml
        model:
          backbone: {widths: [4]}
        eval:
          scales: [1.0]
    """,
    )
    config = segkit.load_config(path)
    assert config["model"]["backbone"] == {
        "type": "toy",
        "depth": 34,
        "widths": [4],
        "frozen": False,
    }
    assert config["eval"]["scales"] == [1.0]
    assert config["train"]["max_iters"] == 100


def test_several_bases_later_ones_win(write_config):
    write_config("a.yaml", BASE)
    write_config("b.yaml", "train:\n  max_iters: 7\n  seed: 3\n")
    path = write_config("c.yaml", "_base_: [a.yaml, b.yaml]\ntrain:\n  seed: 4\n")
    config = segkit.load_config(path)
    assert (config["train"]["max_iters"], config["train"]["seed"]) == (7, 4)


def test_delete_replaces_instead_of_merging(write_config):
    write_config("base.yaml", BASE)
    path = write_config(
        "child.yaml",
        """
        _base_: base.yaml
        model:
          backbone: {_delete_: true, type: toy}
    """,
    )
    assert segkit.load_config(path)["model"]["backbone"]["depth"] == 18


def test_overrides_parse_yaml_values(write_config):
    path = write_config("c.yaml", BASE)
    config = segkit.load_config(
        path,
        [
            "train.max_iters=20",
            "model.backbone.widths=[1, 2]",
            "eval.flip=true",
            "model.head.channels=null",
        ],
    )
    assert config["train"]["max_iters"] == 20 and config["eval"]["flip"] is True
    assert config["model"]["backbone"]["widths"] == [1, 2]


def test_override_may_set_a_default_key_not_written_in_the_file(write_config):
    path = write_config("c.yaml", BASE)
    assert segkit.load_config(path, ["model.head.pool=max"])["model"]["head"]["pool"] == "max"


def test_override_into_a_component_the_file_does_not_write_starts_from_its_default(write_config):
    path = write_config("c.yaml", BASE)
    config = segkit.load_config(path, ["loss.label_smoothing=0.1", "logging.loggers.1.images=2"])
    assert config["loss"] == {"type": "cross_entropy", "label_smoothing": 0.1, "loss_weight": 1.0}
    assert config["logging"]["loggers"] == [
        {"type": "progress"},
        {"type": "tensorboard", "images": 2},
    ]
    with pytest.raises(segkit.ConfigError, match=r"loss\.smoothing: no such key 'smoothing'"):
        segkit.load_config(path, ["loss.smoothing=0.1"])


def test_numbers_with_an_exponent_and_no_dot_are_numbers(write_config):
    path = write_config("c.yaml", BASE + "optimizer: {type: sgd, lr: 1e-2}\n")
    config = segkit.load_config(path, ["optimizer.momentum=5E-1"])
    assert config["optimizer"]["lr"] == 0.01 and config["optimizer"]["momentum"] == 0.5
    with pytest.raises(segkit.ConfigError, match="expects 'avg' or 'max', got str '1e3x'"):
        segkit.load_config(path, ["model.head.pool=1e3x"])


def test_a_key_written_twice_is_refused_with_both_lines(write_config):
    path = write_config("c.yaml", BASE + "train: {seed: 2}\n")
    with pytest.raises(
        segkit.ConfigError, match=r"c.yaml:7: train: written twice \(first on line 5\)"
    ):
        segkit.load_config(path)


def test_keys_brought_by_a_yaml_merge_key_may_be_overridden(write_config):
    path = write_config(
        "c.yaml",
        """
        model:
          backbone: &toy {type: toy, depth: 34}
          head: {type: toy_head}
          num_classes: 5
          aux_heads: []
        train: {max_iters: 100}
        model_variant:
          <<: *toy
          depth: 50
    """,
    )
    with pytest.raises(segkit.ConfigError) as caught:
        segkit.load_config(path)
    assert "unknown key in the config" in str(caught.value) and "written twice" not in str(
        caught.value
    )


def test_override_messages_name_the_override_for_list_items_and_added_keys(write_config):
    path = write_config("c.yaml", BASE + "eval:\n  scales: [1.0]\n")
    with pytest.raises(
        segkit.ConfigError, match=r"eval\.scales\.3: no such list item \(the list has 1\)"
    ):
        segkit.load_config(path, ["eval.scales.3.x=2"])
    with pytest.raises(segkit.ConfigError, match=r"override '\+extra\.key=1': extra: unknown key"):
        segkit.load_config(path, ["+extra.key=1"])


def test_override_of_missing_key_suggests_and_plus_adds(write_config):
    path = write_config("c.yaml", BASE)
    with pytest.raises(
        segkit.ConfigError, match=r"train\.sede: no such key 'sede'; did you mean 'seed'"
    ):
        segkit.load_config(path, ["train.sede=1"])
    # `+` adds the key; the validation then judges it like any other key
    with pytest.raises(segkit.ConfigError, match="unknown key in section 'train'"):
        segkit.load_config(path, ["+train.sede=1"])


def test_all_problems_reported_at_once_with_file_line_and_suggestion(write_config, capsys):
    write_config(
        "_base_/model.yaml",
        """
        model:
          backbone:
            type: toy
            dpeth: 50
          head: {type: toy_head}
          num_classes: 5
    """,
    )
    path = write_config(
        "run.yaml",
        """
        _base_: _base_/model.yaml
        model:
          head: {type: toy_haed}
        train:
          max_iters: many
    """,
    )
    assert main(["config", str(path), "--check", "train.sed=3"]) == 2
    err = capsys.readouterr().err
    assert "4 problems" in err and "Traceback" not in err
    assert (
        "_base_/model.yaml:4: model.backbone.dpeth: unknown argument of backbone 'toy'; did you mean 'depth'?"
        in err
    )
    assert "run.yaml:3: model.head.type: unknown head 'toy_haed'; did you mean 'toy_head'?" in err
    assert "run.yaml:5: train.max_iters: expected int at least 1, got str 'many'" in err
    assert "override 'train.sed=3': train.sed: no such key 'sed'; did you mean 'seed'?" in err


def test_literal_and_missing_required_keys(write_config):
    path = write_config(
        "c.yaml",
        """
        model:
          backbone: {type: toy}
          head: {type: toy_head, pool: median}
    """,
    )
    with pytest.raises(segkit.ConfigError) as error:
        segkit.load_config(path)
    message = str(error.value)
    assert (
        "c.yaml:3: model.head.pool: head 'toy_head' expects 'avg' or 'max', got str 'median'"
        in message
    )
    assert "model.num_classes: missing required key" in message


def test_core_supplied_arguments_are_refused_in_configs(write_config):
    path = write_config(
        "c.yaml", BASE.replace("{type: toy_head}", "{type: toy_head, num_classes: 3}")
    )
    with pytest.raises(segkit.ConfigError, match="'num_classes' is supplied by segkit"):
        segkit.load_config(path)


def test_resolved_dump_has_every_default_and_loads_back_the_same(write_config, tmp_path):
    path = write_config("c.yaml", BASE)
    resolved = segkit.load_config(path)
    assert resolved["model"]["head"] == {
        "type": "toy_head",
        "pool": "avg",
        "channels": None,
        "in_index": -1,
    }
    assert resolved["model"]["backbone"]["widths"] == [8, 16]  # tuple default written as a list
    assert resolved["optimizer"]["type"] == "sgd" and resolved["optimizer"]["momentum"] == 0.9
    dumped = tmp_path / "resolved.yaml"
    dumped.write_text(dump_config(resolved))
    assert segkit.load_config(dumped) == resolved


def test_config_command_prints_the_resolved_yaml(write_config, capsys):
    path = write_config("c.yaml", BASE)
    assert main(["config", str(path), "train.seed=9"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["seed"] == 9 and printed["data"]["batch_size"] == 8


def test_base_cycle_is_reported(write_config):
    write_config("a.yaml", "_base_: b.yaml\n")
    path = write_config("b.yaml", "_base_: a.yaml\n")
    with pytest.raises(segkit.ConfigError, match="include each other"):
        segkit.load_config(path)


def test_invalid_yaml_names_the_line(write_config):
    path = write_config("bad.yaml", "model:\n  backbone: {type: toy\n  head: x\n")
    with pytest.raises(segkit.ConfigError, match=r"bad\.yaml:\d+: invalid YAML"):
        segkit.load_config(path)


def test_missing_base_file_names_the_referring_line(write_config):
    path = write_config("c.yaml", "_base_: nowhere.yaml\n")
    with pytest.raises(
        segkit.ConfigError, match=r"c\.yaml:1: _base_ file 'nowhere.yaml' not found"
    ):
        segkit.load_config(path)


def test_base_naming_a_folder_says_so_and_suggests_its_files(write_config):
    write_config("_base_/models/small.yaml", "model: {num_classes: 3}\n")
    write_config("_base_/models/large.yaml", "model: {num_classes: 5}\n")
    path = write_config("c.yaml", "train:\n  seed: 1\n_base_: _base_/models\n")
    with pytest.raises(segkit.ConfigError) as caught:
        segkit.load_config(path)
    folder = path.parent / "_base_" / "models"
    assert str(caught.value) == (
        f"{path}:3: _base_ '_base_/models' is a folder ({folder}); _base_ must name a YAML file, "
        "e.g. _base_/models/large.yaml, _base_/models/small.yaml"
    )


def test_base_naming_a_folder_without_configs_is_one_cli_error(write_config, tmp_path):
    (tmp_path / "empty").mkdir()
    path = write_config("c.yaml", "_base_: [empty/]\n")
    result = run_segkit("config", str(path), "--check", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        f"segkit: error: c.yaml:1: _base_ 'empty/' is a folder ({tmp_path / 'empty'}); "
        "_base_ must name a YAML file, and this folder holds none\n"
    )


TOY_PLUGIN = """
import segkit

def toy(depth: int = 18):
    return None

@segkit.hookimpl
def segkit_register_backbones(register):
    register("toy", toy)

@segkit.hookimpl
def segkit_register_heads(register):
    register("toy_head", lambda in_channels, num_classes: None)
"""


def test_cli_reports_config_errors_without_traceback(write_config, tmp_path):
    """Through the real command in a fresh interpreter, with a plugin found by entry point."""
    site = make_distribution(
        tmp_path / "site", "toy-dist", {"toy": "toy_plugin"}, {"toy_plugin": TOY_PLUGIN}
    )
    path = write_config("c.yaml", BASE.replace("depth: 34", "depth: deep"))
    result = run_segkit("config", str(path), "--check", "train.max_iters=5", pythonpath=site)
    assert result.returncode == 2
    assert (
        "c.yaml:2: model.backbone.depth: backbone 'toy' expects int, got str 'deep'"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_plus_override_appends_to_a_list(write_config):
    path = write_config("c.yaml", BASE + "eval:\n  scales: [1.0]\n")
    assert segkit.load_config(path, ["+eval.scales.1=1.5"])["eval"]["scales"] == [1.0, 1.5]
    with pytest.raises(
        segkit.ConfigError, match=r"no such list item; write \+eval\.scales\.1=VALUE"
    ):
        segkit.load_config(path, ["eval.scales.3=2.0"])


def test_flatten_config_gives_dotted_keys_and_keeps_lists_of_plain_values_whole():
    config = {
        "model": {"backbone": {"type": "resnet18", "strides": [1, 2]}, "aux_heads": []},
        "data": {"transforms": [{"type": "flip"}, {"type": "crop", "size": [64, 64]}]},
        "logging": {},
    }
    assert flatten_config(config) == {
        "model.backbone.type": "resnet18",
        "model.backbone.strides": [1, 2],
        "model.aux_heads": [],
        "data.transforms.0.type": "flip",
        "data.transforms.1.type": "crop",
        "data.transforms.1.size": [64, 64],
        "logging": {},
    }
