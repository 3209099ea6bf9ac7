"""Peak memory and time of sliding-window prediction on large images: the full-image path (one
C x H x W logit sum, ``Predictor.probabilities``) against the bounded one (rows of logits held
only while windows reach them, ``Predictor.labels``, which ``segkit predict`` and ``eval`` use).

The quickstart model (random weights) runs as ``segkit predict`` runs it (eval mode, the
precision ``auto`` picks, channels-last) on one random square image per size, 512 x 512 windows at stride 341 (the default 2/3).
Every measurement is a fresh process, since a process's peak resident memory
(``ru_maxrss``) only grows; the figure reported is that peak less the resident memory before
the image was made. The full-image path is skipped where its logit sums would not fit in half
of this machine's memory.

    python benchmarks/large_images.py            # sides 1000..8000, about 10 minutes on 2 cores
    python benchmarks/large_images.py --quick    # sides 500 and 1000, 256 windows without overlap
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import format_table, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "quickstart.yaml"
PATHS = ("full image", "bounded")


def _resident_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(path: str, side: int, window: int, stride: int) -> dict:
    """In this process: predict one side x side image along ``path``; seconds and peak MB."""
    import torch

    import segkit
    from segkit.engine.inference import InferenceSettings, InputNormalizer, Predictor
    from segkit.engine.precision import resolve_device, resolve_precision

    config = segkit.load_config(CONFIG)
    device = resolve_device("auto")
    precision = resolve_precision(config["train"]["precision"], device)
    model = segkit.build_model(config).to(device).eval().to(memory_format=torch.channels_last)
    normalizer = InputNormalizer(config["data"]["mean"], config["data"]["std"], device, True)
    section = {"crop": [window, window], "stride": [stride, stride]}
    settings = InferenceSettings.from_config(section, mode="slide")
    predictor = Predictor(model, settings, precision)
    predictor.labels(normalizer(torch.zeros((1, 3, window, window), dtype=torch.uint8)))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = _resident_mb()
    started = time.perf_counter()
    image = normalizer(torch.randint(0, 256, (1, 3, side, side), dtype=torch.uint8))
    if path == "full image":
        labels = predictor.probabilities(image).argmax(dim=1)
    else:
        labels = predictor.labels(image)
    labels.cpu()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    result = {
        "path": path,
        "side": side,
        "window": window,
        "stride": stride,
        "classes": config["model"]["num_classes"],
        "precision": precision.name,
        "seconds": seconds,
        "peak_mb": peak - before,
        "process_peak_mb": peak,
    }
    if device.type == "cuda":
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def _fits(side: int, classes: int) -> bool:
    """Whether the full-image path's fp32 sums, averages and probabilities fit in half the RAM."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return 3 * classes * side * side * 4 < memory / 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="sides 500 and 1000, 256 windows without overlap"
    )
    parser.add_argument("--sides", type=int, nargs="+", help="image sides (default 1000..8000)")
    parser.add_argument("--out", default=None, help="JSON path (default results/large_images)")
    parser.add_argument("--measure", nargs=4, metavar=("PATH", "SIDE", "WINDOW", "STRIDE"))
    args = parser.parse_args(argv)
    if args.measure:
        path, side, window, stride = args.measure
        print(json.dumps(measure(path.replace("_", " "), int(side), int(window), int(stride))))
        return 0
    sides = args.sides or ([500, 1000] if args.quick else [1000, 2000, 4000, 8000])
    window, stride = (256, 256) if args.quick else (512, 341)
    rows = []
    for side in sides:
        for path in PATHS:
            if path == "full image" and not _fits(side, 8):
                continue
            command = [sys.executable, __file__, "--measure", path.replace(" ", "_")]
            done = subprocess.run(
                [*command, str(side), str(window), str(stride)],
                capture_output=True,
                text=True,
                check=True,
            )
            rows.append(json.loads(done.stdout.splitlines()[-1]))
            print(f"{side}x{side} {path}: {rows[-1]['peak_mb']:.0f} MB", flush=True)
    tables = format_table(
        ("image", "window, stride", "classes", "path", "precision", "seconds", "peak MB"),
        [
            (
                f"{r['side']}x{r['side']}",
                f"{r['window']}, {r['stride']}",
                r["classes"],
                r["path"],
                r["precision"],
                r["seconds"],
                f"{r['peak_mb']:.0f}",
            )
            for r in rows
        ],
    )
    print(tables)
    path = write_results("large_images", {"quick": args.quick, "runs": rows}, tables, args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
