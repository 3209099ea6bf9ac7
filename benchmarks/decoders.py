"""Decoders compared on the quickstart: the same ResNet-18 (output stride 32), data, optimizer,
schedule, seed and iterations for every head; only ``model.head`` changes. Reports the final
validation mIoU, the parameters and GFLOPs (at the training size) and the training time.

Each head takes its own default widths (the papers'), except UPerNet, which keeps the
quickstart's 128 channels. On the stride-32 features of 128x128 images (a 4x4 map) dilation
rates of 12 or more only see the centre tap, so the ASPP heads take rates (1, 2, 3): the paper's
(6, 12, 18) on its 33x33 map, scaled to this one.

    python benchmarks/decoders.py                  # 300 iterations each, as the quickstart (~15 min)
    python benchmarks/decoders.py --iters 30 --size 64   # shorter, on 64x64 scenes
    python benchmarks/decoders.py --quick          # a few iterations on 64x64 images
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import format_table, write_results  # noqa: E402

import segkit  # noqa: E402
from segkit.commands.model_info import model_info  # noqa: E402

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"

HEADS = {
    "uper": "{type: uper, channels: 128, in_index: [0, 1, 2, 3]}",
    "ppm": "{type: ppm, in_index: -1}",
    "aspp": "{type: aspp, dilations: [1, 2, 3], in_index: -1}",
    "deeplabv3plus": "{type: deeplabv3plus, dilations: [1, 2, 3], in_index: [0, 3]}",
    "fpn": "{type: fpn, in_index: [0, 1, 2, 3]}",
    "unet": "{type: unet, in_index: [0, 1, 2, 3]}",
    "segformer": "{type: segformer, channels: 128, in_index: [0, 1, 2, 3]}",
}


def overrides(head: str, iters: int, size: int | None, quick: bool) -> list[str]:
    settings = [
        f"model.head={HEADS[head]}",
        f"train.max_iters={iters}",
        f"train.eval_interval={iters}",
        "logging.loggers=[]",
    ]
    if size is not None:
        settings += [f"data.train.size=[{size}, {size}]", f"data.val.size=[{size}, {size}]"]
    if quick:
        settings += ["data.val.length=10", "data.batch_size=2", "data.workers=0"]
    return settings


def run(head: str, iters: int, size: int | None, quick: bool, work: Path) -> dict[str, Any]:
    config = segkit.load_config(QUICKSTART, overrides(head, iters, size, quick))
    size = tuple(config["data"]["train"]["size"])
    info = model_info(config, size)
    started = time.perf_counter()
    outcome = segkit.train(config, work / head)
    seconds = time.perf_counter() - started
    if outcome.status != 0:
        raise SystemExit(f"training with the {head} head failed (status {outcome.status})")
    return {
        "head": head,
        "spec": HEADS[head],
        "iters": iters,
        "mIoU": outcome.final_metrics["mIoU"],
        "head_params": info["params"]["head"],
        "total_params": info["params"]["total"],
        "gflops": info["gflops"],
        "gflops_size": list(size),
        "train_s": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=300, help="training iterations per head")
    parser.add_argument("--heads", nargs="+", choices=list(HEADS), default=list(HEADS))
    parser.add_argument("--size", type=int, help="side of the scenes (the quickstart's: 128)")
    parser.add_argument("--quick", action="store_true", help="4 iterations on 64x64 images")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/decoders.json)")
    args = parser.parse_args(argv)
    iters = 4 if args.quick else args.iters
    size = 64 if args.quick else args.size
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for head in args.heads:
            rows.append(run(head, iters, size, args.quick, Path(work)))
            print(f"{head}: mIoU {rows[-1]['mIoU']:.4f} in {rows[-1]['train_s']:.0f} s", flush=True)
    shape = "x".join(map(str, rows[0]["gflops_size"]))
    table = format_table(
        ["head", "mIoU", "head params", "total params", f"GFLOPs @{shape}", "train s"],
        [
            [
                r["head"],
                r["mIoU"],
                f"{r['head_params']:,}",
                f"{r['total_params']:,}",
                r["gflops"],
                r["train_s"],
            ]
            for r in rows
        ],
    )
    print(table)
    path = write_results(
        "decoders",
        {"iters": iters, "size": size, "quick": args.quick, "runs": rows},
        table,
        args.out,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
