"""``make bench-gpu``: the figures to record on a CUDA GPU, in one command of a few minutes.

PSPNet-R50-D8 on a Cityscapes crop (512x1024, 19 classes, batch 2): seconds per training
iteration and peak GPU memory (``torch.cuda.max_memory_allocated``) in fp32, fp16 autocast with
the gradient scaler, and bf16 autocast; inference images/s at batch 1 on whole 1024x2048 frames in
fp32 and under autocast; the quickstart's training iterations/s. Everything runs through
segkit's own code: the model and the training parts as a config builds them, the very
``train_step`` the trainer runs, the ``train.precision`` settings (fp16 brings its gradient
scaler), and the ``Predictor`` of ``segkit eval``; only the data is replaced, by in-memory random
samples, so that decoding plays no part.

Without CUDA the same code runs on the CPU at tiny sizes, so that the script is known to work the
first time a GPU is there; the rows only CUDA can give (fp16 with a gradient scaler, GPU memory)
are skipped, each with a message, and the exit status is 0.

    python benchmarks/gpu.py            # a few minutes on one GPU; a minute on a 2-core CPU
    python benchmarks/gpu.py --quick    # fewer iterations on a GPU (the CPU runs few anyway)
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_synchronizer, format_table, median, timed, write_results  # noqa: E402
from training import in_memory_config, trainer_step  # noqa: E402

import segkit  # noqa: E402
from segkit.engine.inference import InferenceSettings, Predictor  # noqa: E402
from segkit.engine.runtime import Runtime  # noqa: E402

PSPNET = "configs/pspnet_r50_cityscapes.yaml"
QUICKSTART = "configs/quickstart.yaml"
# (training crop, batch, inference frame, quickstart side) on CUDA, and the CPU's stand-ins.
SIZES = {
    "cuda": ((512, 1024), 2, (1024, 2048), 128),
    "cpu": ((64, 128), 2, (128, 256), 64),
}
# (warm-up, timed) training iterations and inference images; cuDNN autotuning happens in the
# warm-up. The CPU's rows only show that the code runs: the fewest that do.
COUNTS = {"full": (10, 40, 3, 20), "quick": (2, 3, 1, 2), "cpu": (1, 1, 1, 1)}
# MMSegmentation's published PSPNet R-50-D8, Cityscapes, 512x1024 crop, 40k/80k schedule,
# measured on V100s (mmsegmentation configs/pspnet/README.md): another machine, for reference.
REFERENCE = {
    "source": "MMSegmentation model zoo, PSPNet R-50-D8 Cityscapes 512x1024 (40k/80k)",
    "device": "NVIDIA V100 (another machine)",
    "train_memory_gb": 6.1,
    "train_images_per_gpu": 2,
    "inference_fps_fp32": 4.07,
}


def cuda_only(device: torch.device, row: str, why: str) -> str | None:
    """The reason ``row`` is skipped on this device (printed once), or None where it runs."""
    if device.type == "cuda":
        return None
    reason = f"{row}: skipped, {why} needs CUDA (this machine has no CUDA GPU)"
    print(f"gpu.py: {reason}", flush=True)
    return reason


def unavailable(device: torch.device, precision: str, task: str) -> str | None:
    """Why ``task`` at ``precision`` cannot run here (printed), or None: fp16 autocast with a
    gradient scaler is for CUDA GPUs, and bf16 needs a GPU that computes it."""
    if precision == "fp16":
        return cuda_only(device, f"{task} fp16 AMP", "fp16 autocast (with a gradient scaler)")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        reason = f"{task} bf16: skipped, {torch.cuda.get_device_name(device)} has no bf16"
        print(f"gpu.py: {reason}", flush=True)
        return reason
    return None


def run_steps(step: Callable[[int], None], first: int, count: int) -> None:
    for number in range(first, first + count):
        step(number)


def training_row(
    device: torch.device, precision: str, crop: tuple[int, int], batch: int, counts: tuple
) -> dict[str, Any]:
    """PSPNet-R50-D8's training iteration at ``train.precision=precision``, and its peak GPU
    memory: the parts are built after the peak count is reset, so the peak is this setting's
    (weights, optimizer state, activations, cuDNN workspaces)."""
    warmup, timed_steps = counts[:2]
    row: dict[str, Any] = {"precision": precision, "input": [batch, 3, *crop]}
    skipped = unavailable(device, precision, "training")
    if skipped:
        return {**row, "skipped": skipped}
    if device.type == "cuda":
        gc.collect()  # the previous setting's parts, so that their memory is free
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    config = in_memory_config(
        PSPNET,
        crop,
        batch,
        warmup + timed_steps,
        [f"train.precision={precision}", f"train.device={device}", "logging.loggers=[]"],
    )
    step, parts = trainer_step(config)
    synchronize = device_synchronizer(device)
    run_steps(step, 0, warmup)
    elapsed = timed(lambda: run_steps(step, warmup, timed_steps), synchronize)
    row["s_per_iter"] = elapsed / timed_steps
    row["grad_scaler"] = parts.scaler.is_enabled()
    if device.type == "cuda":
        row["max_memory_allocated_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        row["memory_skipped"] = cuda_only(
            device, f"training {precision} memory", "torch.cuda.max_memory_allocated"
        )
    return row


def inference_row(
    device: torch.device, precision: str, frame: tuple[int, int], counts: tuple
) -> dict[str, Any]:
    """Whole-image prediction of one frame at a time, as ``segkit eval`` runs it (autocast,
    logits resized to the frame and softmaxed), in images/s."""
    warmup, images = counts[2:]
    row: dict[str, Any] = {"precision": precision, "input": [1, 3, *frame]}
    skipped = unavailable(device, precision, "inference")
    if skipped:
        return {**row, "skipped": skipped}
    config = segkit.load_config(Path(__file__).resolve().parents[1] / PSPNET)
    runtime = Runtime.resolve(config["train"], device=device, precision=precision)
    model = runtime.place(segkit.build_model(config)).eval()
    normalizer = runtime.normalizer(config["data"]["mean"], config["data"]["std"])
    predictor = Predictor(
        model, InferenceSettings.from_config({"mode": "whole"}), runtime.precision
    )
    frame_batch = normalizer(torch.randint(0, 256, (1, 3, *frame), dtype=torch.uint8))
    synchronize = device_synchronizer(device)
    for _ in range(warmup):
        predictor.probabilities(frame_batch)
    seconds = [
        timed(lambda: predictor.probabilities(frame_batch), synchronize) for _ in range(images)
    ]
    row["fps"] = 1.0 / median(seconds)
    return row


def quickstart_row(device: torch.device, side: int, counts: tuple) -> dict[str, Any]:
    """The quickstart's training iterations/s at its own settings (batch 8, ``precision:
    auto``), on in-memory samples of its size."""
    warmup, timed_steps = counts[:2]
    base = segkit.load_config(Path(__file__).resolve().parents[1] / QUICKSTART)
    batch = base["data"]["batch_size"]
    config = in_memory_config(
        QUICKSTART,
        (side, side),
        batch,
        warmup + timed_steps,
        [f"train.device={device}", "logging.loggers=[]"],
    )
    step, parts = trainer_step(config)
    run_steps(step, 0, warmup)
    elapsed = timed(lambda: run_steps(step, warmup, timed_steps), device_synchronizer(device))
    return {
        "input": [batch, 3, side, side],
        "precision": parts.runtime.precision.name,
        "it_per_s": timed_steps / elapsed,
    }


def note(row: dict[str, Any]) -> str:
    """The table's short form of what a row left out (the JSON has the whole reason)."""
    if row.get("skipped"):
        return "skipped: " + row["skipped"].split(", ", 1)[1]
    if row.get("memory_skipped"):
        return "memory: CUDA only"
    return ""


def tables(result: dict[str, Any]) -> str:
    reference = result["reference"]
    device = result["device"]
    train_rows = [
        (
            device,
            "x".join(map(str, r["input"])),
            r["precision"] + (" + GradScaler" if r.get("grad_scaler") else ""),
            r.get("s_per_iter"),
            r.get("max_memory_allocated_gb"),
            note(r),
        )
        for r in result["training"]
    ]
    train_rows.append(
        (
            reference["device"],
            "2x3x512x1024",
            "fp32",
            None,
            reference["train_memory_gb"],
            "published reference, not measured here",
        )
    )
    inference_rows = [
        (
            device,
            "x".join(map(str, r["input"])),
            r["precision"],
            r.get("fps"),
            note(r),
        )
        for r in result["inference"]
    ]
    inference_rows.append(
        (
            reference["device"],
            "1x3x1024x2048",
            "fp32",
            reference["inference_fps_fp32"],
            "published reference, not measured here",
        )
    )
    quick = result["quickstart"]
    return "\n".join(
        [
            "PSPNet-R50-D8 training (Cityscapes crop, 19 classes; segkit's train_step)\n",
            format_table(
                ("device", "input", "precision", "s/iter", "max memory allocated GB", "note"),
                train_rows,
            ),
            "\nPSPNet-R50-D8 inference, whole image, batch 1 (segkit's Predictor)\n",
            format_table(("device", "input", "precision", "images/s", "note"), inference_rows),
            f"\nquickstart training: {quick['it_per_s']:.2f} it/s "
            f"({'x'.join(map(str, quick['input']))}, {quick['precision']}) on {device}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument(
        "--out", default=None, help="JSON path (default benchmarks/results/gpu.json)"
    )
    args = parser.parse_args(argv)
    if torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
        print(
            "gpu.py: no CUDA GPU here; running the CPU-possible rows at tiny sizes "
            "(their figures say nothing about a GPU)",
            flush=True,
        )
    crop, batch, frame, side = SIZES[device.type]
    counts = COUNTS["cpu" if device.type == "cpu" else "quick" if args.quick else "full"]
    result: dict[str, Any] = {
        "quick": args.quick,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "training": [
            training_row(device, precision, crop, batch, counts)
            for precision in ("fp32", "fp16", "bf16")
        ],
        "inference": [
            inference_row(device, precision, frame, counts)
            for precision in ("fp32", "fp16", "bf16")
        ],
        "quickstart": quickstart_row(device, side, counts),
        "reference": REFERENCE,
    }
    text = tables(result)
    print(text)
    path = write_results("gpu", result, text, args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
