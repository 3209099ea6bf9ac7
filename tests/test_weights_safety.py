"""Weight files are data: a file that would run pickled code when loaded is refused, by every
command and option that reads weights, and its code never runs."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from conftest import run_segkit
from PIL import Image

import segkit
from segkit.cli import main
from segkit.weights import read_checkpoint

CONFIGS = Path(__file__).parent.parent / "configs"


class Payload:
    """Unpickling this object runs ``code``: what a malicious checkpoint does."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


class SystemCall:
    """Unpickling this object runs a shell command through ``os.system``, which pickle records
    as the global ``posix.system``: the textbook malicious checkpoint."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.fixture
def malicious(tmp_path):
    """Two files that look like state dicts and create ``marker`` when unpickled: one in
    torch.save's zip format, one a plain (legacy) pickle."""
    marker = tmp_path / "payload_ran"
    state = {
        "conv1.weight": torch.zeros(64, 3, 7, 7),
        "bn1.weight": Payload(f"open({str(marker)!r}, 'w').write('pwned')"),
    }
    zipped, legacy = tmp_path / "evil.pth", tmp_path / "evil_legacy.pth"
    torch.save(state, zipped)
    with open(legacy, "wb") as file:
        pickle.dump(state, file)
    return marker, [zipped, legacy]


def refused(status: int, err: str, path: Path) -> bool:
    return (
        status == 2
        and f"{path}: refused" in err
        and "never runs code" in err
        and "Traceback" not in err
    )


def test_every_way_of_reading_weights_refuses_pickled_code(malicious, tmp_path, capsys):
    marker, files = malicious
    config = CONFIGS / "csail/ppm_deepsup_r18_ade20k.yaml"
    out = tmp_path / "out.pt"
    image = tmp_path / "image.png"
    Image.new("RGB", (32, 32)).save(image)
    for path in files:
        for command in (
            [
                "convert",
                "--from",
                "torchvision",
                str(path),
                "--backbone",
                "resnet18",
                "--out",
                str(out),
            ],
            ["convert", "--from", "drn", str(path), "--backbone", "drn_d_22", "--out", str(out)],
            [
                "convert",
                "--from",
                "csail",
                str(path),
                str(path),
                "--config",
                str(config),
                "--out",
                str(out),
            ],
            [
                "predict",
                str(config),
                "--checkpoint",
                str(path),
                str(image),
                "--out",
                str(tmp_path / "p"),
            ],
            ["model-info", str(config), f"model.backbone.pretrained={path}"],
            ["model-info", str(config), f"model.pretrained={path}"],
        ):
            status = main(command)
            assert refused(status, capsys.readouterr().err, path), command
        with pytest.raises(segkit.SegkitError, match="refused: loading it would run code"):
            segkit.build("backbone", {"type": "resnet18", "pretrained": str(path)})
    assert not out.exists()
    assert not marker.exists()

    # the files are really malicious: loading them the unsafe way runs the payload
    torch.load(files[0], weights_only=False)
    assert marker.read_text() == "pwned"


def test_refusal_names_what_the_file_asked_for(malicious, capsys):
    """The zip file asks for a global; the legacy pickle (protocol 4) uses an opcode that torch's
    safe unpickler lacks, and its refusal is torch's minus the advice to load it anyway."""
    _, (zipped, legacy) = malicious
    assert (
        main(
            [
                "convert",
                "--from",
                "torchvision",
                str(zipped),
                "--backbone",
                "resnet18",
                "--out",
                "x.pt",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "it asks for exec" in err and "\x1b[" not in err
    assert (
        main(
            [
                "convert",
                "--from",
                "torchvision",
                str(legacy),
                "--backbone",
                "resnet18",
                "--out",
                "x.pt",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"{legacy}: refused" in err and "weights_only" not in err


@pytest.mark.slow
def test_cli_names_the_blocked_global_and_never_advises_loading_it_anyway(tmp_path):
    """torch's refusal of a blocked module starts by suggesting ``weights_only`` set to False;
    the user sees what the file asked for instead."""
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "evil.pt"
    torch.save(
        {
            "model": {"backbone.conv1.weight": torch.zeros(8, 3, 3, 3)},
            "step": 1,
            "payload": SystemCall(f"touch {marker}"),
        },
        evil,
    )
    quickstart = str(CONFIGS / "quickstart.yaml")
    for command in (
        ["eval", quickstart, "--checkpoint", str(evil)],
        ["train", quickstart, "--resume", str(evil), "--work-dir", str(tmp_path / "run")],
    ):
        result = run_segkit(*command, cwd=tmp_path)
        errors = [line for line in result.stderr.splitlines() if line.startswith("segkit: error:")]
        assert result.returncode == 2, result.stderr
        assert len(errors) == 1 and f"{evil}: refused" in errors[0], result.stderr
        assert "it asks for posix.system" in errors[0]
        assert "weights_only" not in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()

    torch.load(evil, weights_only=False)  # the file is really malicious
    assert marker.exists()


def test_eval_refuses_a_malicious_checkpoint(malicious, tmp_path, capsys, write_config):
    marker, files = malicious
    config = write_config(
        "synthetic.yaml",
        """
        model:
          backbone: {type: resnet18}
          head: {type: fcn, channels: 8}
          num_classes: 8
        data:
          val: {type: synthetic, length: 1, size: [32, 32], split: val}
          workers: 0
        train: {device: cpu, precision: fp32}
    """,
    )
    for path in files:
        assert refused(
            main(["eval", str(config), "--checkpoint", str(path)]), capsys.readouterr().err, path
        )
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"hello world\n", b"x" * 100, b"\x89PNG\r\n\x1a\n"])
def test_a_file_that_is_no_weight_file_is_named_as_such(content, tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(segkit.SegkitError, match="weights.pt: not a PyTorch weight file"):
        read_checkpoint(path)


def test_a_truncated_checkpoint_is_called_truncated_or_corrupt(tmp_path):
    path = tmp_path / "half.pt"
    torch.save({"weight": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(
        segkit.SegkitError,
        match="half.pt: not a readable PyTorch weight file \\(truncated or corrupt",
    ):
        read_checkpoint(path)
