"""One validation pass: every constraint is checked by `segkit config --check` with file:line,
and `segkit train` refuses exactly the same configs before it writes anything."""

import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from segkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs/quickstart.yaml"


def child_config(tmp_path: Path, body: str) -> Path:
    """A config on top of the quickstart, so that every problem has a line of its own."""
    path = tmp_path / "run.yaml"
    path.write_text(f"_base_: {QUICKSTART}\n" + textwrap.dedent(body))
    return path


# (a line of YAML, the key it sets, what the message must say)
OUT_OF_RANGE = [
    ("train: {max_iters: 0}", "train.max_iters", "expected int at least 1, got int 0"),
    ("data: {batch_size: 0}", "data.batch_size", "expected int at least 1"),
    ("data: {val_batch_size: 0}", "data.val_batch_size", "expected int at least 1"),
    ("data: {workers: -1}", "data.workers", "expected int at least 0"),
    ("train: {accumulate: 0}", "train.accumulate", "expected int at least 1"),
    ("train: {eval_interval: -5}", "train.eval_interval", "expected int at least 0"),
    ("train: {checkpoint_interval: -1}", "train.checkpoint_interval", "at least 0"),
    ("train: {log_interval: 0}", "train.log_interval", "at least 1"),
    ("train: {seed: 4294967296}", "train.seed", "expected int in 0..4294967295"),
    ("train: {seed: -1}", "train.seed", "in 0..4294967295"),
    ("train: {grad_clip: 0}", "train.grad_clip", "expected float above 0 or null"),
    ("train: {device: gpu}", "train.device", "(auto, cpu, cuda, cuda:N or mps)"),
    ("eval: {panels: -1}", "eval.panels", "at least 0"),
    ("eval: {crop: [0, 64]}", "eval.crop", "list[int at least 1] of 2 values"),
    ("eval: {stride: [32]}", "eval.stride", "of 2 values"),
    ("eval: {scales: []}", "eval.scales", "of at least 1 value"),
    ("eval: {scales: [1.0, -0.5]}", "eval.scales", "list[float above 0]"),
    ("eval: {window_batch: 0}", "eval.window_batch", "at least 1"),
    ("data: {mean: [1, 2]}", "data.mean", "has 2 value(s) but model.backbone.in_channels is 3"),
    ("data: {std: [1, 0, 1]}", "data.std", "list[float above 0] of at least 1 value"),
    ("lr_scheduler: {warmup_ratio: 0}", "lr_scheduler.warmup_ratio", "float above 0, in 0..1"),
    ("loss: []", "loss", "needs at least 1 loss, got an empty list"),
    ("eval: {mode: slide}", "eval.mode", "slide needs the window size: set eval.crop"),
    (
        "model: {num_classes: 5}",
        "model.num_classes",
        "is 5 but data.train (synthetic) and data.val (synthetic) have 8 classes; "
        "set model.num_classes: 8",
    ),
]


@pytest.mark.parametrize("line, key, says", OUT_OF_RANGE, ids=[c[1] for c in OUT_OF_RANGE])
def test_check_and_train_refuse_the_same_value_with_its_file_and_line(
    line, key, says, tmp_path, capsys
):
    config = child_config(tmp_path, line + "\n")
    assert main(["config", str(config), "--check"]) == 2
    checked = capsys.readouterr().err
    assert f"run.yaml:2: {key}: " in checked and says in checked, checked
    run = tmp_path / "run"
    assert main(["train", str(config), "--work-dir", str(run)]) == 2
    trained = capsys.readouterr().err
    assert trained == checked and "Traceback" not in trained
    assert not run.exists()  # refused before anything was written


def test_every_problem_of_a_config_is_listed_at_once(tmp_path, capsys):
    config = child_config(tmp_path, "train: {max_iters: 0, seed: -3}\neval: {panels: -1}\n")
    assert main(["config", str(config), "--check"]) == 2
    err = capsys.readouterr().err
    assert "3 problems" in err
    assert err.count("run.yaml:2:") == 2 and "run.yaml:3: eval.panels" in err


def test_a_warmup_longer_than_a_short_run_is_shortened_with_a_note(capsys):
    assert main(["config", str(QUICKSTART), "train.max_iters=5"]) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)["lr_scheduler"]["warmup_iters"] == 5
    assert err.strip() == (
        "segkit: note: lr_scheduler.warmup_iters 20 is longer than the run "
        "(train.max_iters 5); shortened to 5"
    )
    assert main(["config", str(QUICKSTART)]) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)["lr_scheduler"]["warmup_iters"] == 20 and err == ""


@pytest.mark.slow
def test_a_short_run_of_the_quickstart_trains_as_written(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(QUICKSTART), "train.max_iters=5", "--work-dir", str(run)]) == 0
    assert "shortened to 5" in capsys.readouterr().err
    assert yaml.safe_load((run / "config.yaml").read_text())["lr_scheduler"]["warmup_iters"] == 5


def test_changing_a_type_by_override_keeps_the_options_the_new_type_takes(capsys):
    assert main(["config", str(QUICKSTART), "lr_scheduler.type=cosine"]) == 0
    out, err = capsys.readouterr()
    # poly's power is dropped; the warmup the file wrote is cosine's too; the rest its defaults
    assert yaml.safe_load(out)["lr_scheduler"] == {
        "type": "cosine",
        "min_lr": 0.0,
        "warmup_iters": 20,
        "warmup_ratio": 0.1,
    }
    assert err.strip() == (
        "segkit: note: lr_scheduler: type poly -> cosine: dropped power, which cosine does not take"
    )


def test_options_given_by_override_apply_to_the_new_type_before_or_after_it(capsys):
    overrides = [
        "lr_scheduler.warmup_iters=7",
        "lr_scheduler.type=cosine",
        "lr_scheduler.min_lr=0.001",
    ]
    assert main(["config", str(QUICKSTART), *overrides]) == 0
    scheduler = yaml.safe_load(capsys.readouterr().out)["lr_scheduler"]
    assert scheduler["type"] == "cosine"
    assert scheduler["warmup_iters"] == 7 and scheduler["min_lr"] == 0.001


def test_core_keys_stay_when_a_components_type_changes(tmp_path, capsys):
    config = child_config(
        tmp_path, "optimizer: {type: sgd, lr: 0.5, momentum: 0.5, lr_mult: {head: 10}}\n"
    )
    assert main(["config", str(config), "optimizer.type=adamw"]) == 0
    optimizer = yaml.safe_load(capsys.readouterr().out)["optimizer"]
    assert optimizer["type"] == "adamw" and optimizer["lr_mult"] == {"head": 10}
    assert "momentum" not in optimizer and optimizer["lr"] == 0.5


def test_a_dataset_type_change_keeps_the_options_both_types_take(capsys):
    config = ROOT / "configs/pspnet_ade25.yaml"
    assert (
        main(
            [
                "config",
                str(config),
                "data.val.type=ade20k",
                "model.num_classes=150",
                "data.train.type=ade20k",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    before = yaml.safe_load((ROOT / "configs/_base_/datasets/ade20k.yaml").read_text())["data"][
        "val"
    ]
    after = yaml.safe_load(out)["data"]["val"]
    assert after["type"] == "ade20k"
    assert after["split"] == before["split"] == "validation"
    assert [t["type"] for t in after["transforms"]] == [t["type"] for t in before["transforms"]]
    assert "dropped" not in err


def hostile(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def alias_bomb() -> str:
    """Nine levels of nine aliases each: 441 bytes that expand to 387 million strings."""
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for previous, name in zip("abcdefgh", "bcdefghi"):
        text += f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]\n"
    return text


def merge_bomb() -> str:
    text = "a: &a {x: 1, y: 2}\n"
    previous = "a"
    for i in range(40):
        text += f"m{i}: &m{i} {{<<: [*{previous}, *{previous}], k{i}: 1}}\n"
        previous = f"m{i}"
    return text


HOSTILE = {
    "alias_bomb": (alias_bomb(), "expands to over 100000 values"),
    "merge_bomb": (merge_bomb(), ""),
    "self_reference": (
        "model: &m\n  backbone: *m\n",
        "an alias refers to the value that contains it",
    ),
    "unhashable_key": ("model:\n  ? [a, b]\n  : 1\n", "a key must be a plain name or number"),
    "deep_lists": ("model: " + "[" * 3000 + "]" * 3000 + "\n", "nested more than 64 levels deep"),
    "deep_mappings": (
        "model:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(3000)),
        "nested more than 64 levels deep",
    ),
}


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_yaml_is_one_message_in_bounded_time_and_memory(case, tmp_path):
    """Read under 1 GB of address space and a minute; the alias bomb alone took over a minute
    and 4 GB before."""
    text, says = HOSTILE[case]
    path = hostile(tmp_path, f"{case}.yaml", text)
    reader = textwrap.dedent("""
        import sys
        from segkit.config import read_config_files
        from segkit.errors import ConfigError
        try:
            read_config_files(sys.argv[1])
        except ConfigError as error:
            sys.exit(f"segkit: error: {error}")
    """)
    result = subprocess.run(
        [sys.executable, "-c", reader, path.name],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_memory,
        cwd=tmp_path,
    )
    if case == "merge_bomb":  # PyYAML keeps one copy of each merged key: small, but bounded too
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 1, result.stderr  # sys.exit(message)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"segkit: error: {case}.yaml"), result.stderr
    assert says in lines[0]


@pytest.mark.parametrize("case", ["alias_bomb", "self_reference", "unhashable_key", "deep_lists"])
def test_hostile_yaml_through_the_cli_exits_2_without_a_traceback(case, tmp_path, capsys):
    text, says = HOSTILE[case]
    path = hostile(tmp_path, f"{case}.yaml", text)
    assert main(["config", str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_hostile_override_value_is_bounded_too(capsys):
    bomb = "[" * 3000 + "]" * 3000
    assert main(["config", str(QUICKSTART), f"data.mean={bomb}", "--check"]) == 2
    assert "nested more than 64 levels deep" in capsys.readouterr().err
