"""Every benchmark script runs in its quick mode and writes its JSON and Markdown table (that
they run, not how fast: speed is measured by `make bench`, not by tests)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_every_benchmark_runs_in_quick_mode(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run_all.py"), "--quick", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    names = (
        "data_pipeline",
        "training",
        "evaluation",
        "precision",
        "large_images",
        "inference",
        "gpu",
        "decoders",
        "memory",
        "profile_training",
    )
    for name in names:
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["benchmark"] == name and result["machine"]["torch"]
        assert "|" in (tmp_path / f"{name}.md").read_text()
    training = json.loads((tmp_path / "training.json").read_text())
    assert {row["precision"] for row in training["matrix"]} == {"fp32", "bf16"}
    assert all(row["segkit_s_per_step"] > 0 for row in training["overhead"])
    retention = training["retention"]
    assert set(retention["s_per_step"]) == {
        "pspnet fp32",
        "pspnet auto",
        "resnet50 fp32",
        "resnet50 bf16",
    }
    assert all(seconds > 0 for seconds in retention["s_per_step"].values())
    assert retention["retention"] == pytest.approx(
        retention["pspnet_speedup"] / retention["classifier_speedup"]
    )
    assert set(training["machine"]["cpu_flags"]) == {"avx512_bf16", "amx_bf16", "amx_tile"}
    assert "retention:" in (tmp_path / "training.md").read_text()
    large = json.loads((tmp_path / "large_images.json").read_text())
    assert {(r["side"], r["path"]) for r in large["runs"]} == {
        (side, path) for side in (500, 1000) for path in ("full image", "bounded")
    }
    assert all(r["peak_mb"] > 0 and r["seconds"] > 0 for r in large["runs"])
    inference = json.loads((tmp_path / "inference.json").read_text())
    (run,) = inference["runs"]
    assert {"eager fp32", "onnxruntime fp32", "Segmenter.predict (default)"} <= set(run["seconds"])
    assert all(seconds > 0 for seconds in run["seconds"].values())
    assert run["agreement"]["onnxruntime fp32"] > 0.99
    gpu = json.loads((tmp_path / "gpu.json").read_text())
    if gpu["device"] == "cpu":  # the CUDA-only rows are skipped, each said so, the rest ran
        assert "fp16 AMP: skipped" in done.stdout
        fp32, fp16, bf16 = gpu["training"]
        assert fp16["skipped"] and "max_memory_allocated" in fp32["memory_skipped"]
        assert fp32["s_per_iter"] > 0 and bf16["s_per_iter"] > 0
    else:
        assert all(r["max_memory_allocated_gb"] > 0 for r in gpu["training"] if "skipped" not in r)
    assert {row["precision"] for row in gpu["inference"] if "fps" in row} >= {"fp32"}
    assert gpu["quickstart"]["it_per_s"] > 0 and gpu["torch"]
    assert "another machine" in (tmp_path / "gpu.md").read_text()
    decoders = json.loads((tmp_path / "decoders.json").read_text())
    assert [r["head"] for r in decoders["runs"]] == [
        "uper",
        "ppm",
        "aspp",
        "deeplabv3plus",
        "fpn",
        "unet",
        "segformer",
    ]
    assert all(0 <= r["mIoU"] <= 1 and r["head_params"] > 0 for r in decoders["runs"])
    memory = json.loads((tmp_path / "memory.json").read_text())
    assert {(r["path"], r["precision"]) for r in memory["rows"]} == {
        (path, precision)
        for path in ("full-resolution logits", "banded cross-entropy")
        for precision in ("fp32", "auto")
    }
    assert all(r["peak_mb"] > 0 and r["first_loss_difference"] < 1e-4 for r in memory["rows"])
    profiled = json.loads((tmp_path / "profile_training.json").read_text())
    assert {(r["model"], r["precision"]) for r in profiled["runs"]} == {
        (model, precision)
        for model in ("pspnet_r50d8", "quickstart")
        for precision in ("fp32", "auto")
    }
    assert all(len(r["top"]) == 12 and r["self_cpu_ms_per_step"] > 0 for r in profiled["runs"])
    summary = (tmp_path / "summary.md").read_text()
    assert "## training" in summary and "## evaluation" in summary
