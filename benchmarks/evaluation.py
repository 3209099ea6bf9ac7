"""Inference speed of the evaluation modes: whole image, sliding windows (batched, and one
window per forward pass for comparison), and multi-scale + flip test-time augmentation.

The model of a shipped config runs in eval mode, at the precision ``auto`` picks and in
channels-last, exactly as ``segkit eval`` runs it (the same ``Predictor``), on random images of
a fixed size. Modes alternate in rounds; images/s is the median over rounds.

    python benchmarks/evaluation.py            # about a minute on a 2-core CPU
    python benchmarks/evaluation.py --quick    # seconds
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_synchronizer, format_table, median, timed, write_results  # noqa: E402

import segkit  # noqa: E402
from segkit.engine.inference import InferenceSettings, InputNormalizer, Predictor  # noqa: E402
from segkit.engine.precision import resolve_device, resolve_precision  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# model -> (config, image size, window) at full and at --quick scale
MODELS = {
    "quickstart": ("configs/quickstart.yaml", (512, 256), (128, 64)),
    "pspnet_r50d8": ("configs/pspnet_r50_ade20k.yaml", (512, 256), (96, 64)),
}


def modes(window: int) -> dict[str, dict]:
    stride = window * 2 // 3
    slide = {"mode": "slide", "crop": [window, window], "stride": [stride, stride]}
    return {
        "whole": {"mode": "whole"},
        "slide": {**slide, "window_batch": 8},
        "slide, 1 window per pass": {**slide, "window_batch": 1},
        "whole, 6 scales + flip": {
            "mode": "whole",
            "scales": [0.5, 0.75, 1.0, 1.25, 1.5, 1.75],
            "flip": True,
        },
    }


def _predict_all(predictor: Predictor, batch: torch.Tensor, images: int) -> None:
    for _ in range(images):
        predictor.probabilities(batch)


def measure(model_name: str, size: int, window: int, images: int, rounds: int) -> list[dict]:
    config = segkit.load_config(REPO / MODELS[model_name][0])
    device = resolve_device(config["train"]["device"])
    precision = resolve_precision(config["train"]["precision"], device)
    channels_last = config["train"]["channels_last"]
    model = segkit.build_model(config).to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    normalizer = InputNormalizer(
        config["data"]["mean"], config["data"]["std"], device, channels_last
    )
    batch = normalizer(torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8))
    synchronize = device_synchronizer(device)
    predictors = {
        name: Predictor(model, InferenceSettings.from_config(section), precision)
        for name, section in modes(window).items()
    }
    seconds: dict[str, list[float]] = {name: [] for name in predictors}
    for predictor in predictors.values():  # warm-up
        predictor.probabilities(batch)
    for _ in range(rounds):
        for name, predictor in predictors.items():
            elapsed = timed(partial(_predict_all, predictor, batch, images), synchronize)
            seconds[name].append(elapsed / images)
    whole = median(seconds["whole"])
    return [
        {
            "model": model_name,
            "mode": name,
            "image": [size, size],
            "window": [window, window] if "slide" in name else None,
            "precision": precision.name,
            "imgs_per_s": 1 / median(values),
            "time_vs_whole": median(values) / whole,
        }
        for name, values in seconds.items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds: small images, one round")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--images", type=int, default=None, help="images per round (default 2)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3; quick 1)")
    parser.add_argument(
        "--out", default=None, help="JSON path (default benchmarks/results/evaluation.json)"
    )
    args = parser.parse_args(argv)
    rows = []
    for model in args.models:
        size, window = MODELS[model][2] if args.quick else MODELS[model][1]
        rows += measure(
            model,
            size,
            window,
            args.images or (1 if args.quick else 2),
            args.rounds or (1 if args.quick else 3),
        )
    tables = format_table(
        ("model", "mode", "image", "window", "precision", "images/s", "time vs whole"),
        [
            (
                r["model"],
                r["mode"],
                "x".join(map(str, r["image"])),
                "x".join(map(str, r["window"])) if r["window"] else "",
                r["precision"],
                r["imgs_per_s"],
                f"{r['time_vs_whole']:.2f}x",
            )
            for r in rows
        ],
    )
    print(tables)
    path = write_results("evaluation", {"quick": args.quick, "modes": rows}, tables, args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
