"""Does ``precision: auto`` train as well as fp32, and how much faster? The quickstart trained
twice through ``segkit train`` with the same seed: once in fp32 (NCHW, the plain PyTorch
default), once with segkit's defaults (``precision: auto``, channels-last). Compares the loss
curves point by point (each point the mean over ``train.log_interval`` iterations), the final
validation mIoU and the training throughput.

    python benchmarks/precision.py              # the quickstart's 300 iterations, twice
    python benchmarks/precision.py --quick      # a few iterations on tiny images
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import format_table, median, write_results  # noqa: E402

import segkit  # noqa: E402
from segkit.engine.trainer import Trainer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUICK = [
    "train.max_iters=6",
    "train.eval_interval=0",
    "train.log_interval=2",
    "lr_scheduler.warmup_iters=0",
    "data.train.size=[64, 64]",
    "data.val.size=[64, 64]",
    "data.val.length=4",
]
SETTINGS = {
    "fp32, NCHW": ["train.precision=fp32", "train.channels_last=false"],
    "auto, channels-last": ["train.precision=auto", "train.channels_last=true"],
}


def train(overrides: list[str]) -> dict:
    config = segkit.load_config(
        REPO / "configs/quickstart.yaml", [*overrides, "logging.loggers=[{type: progress}]"]
    )
    with tempfile.TemporaryDirectory() as work_dir:
        started = time.perf_counter()
        status = Trainer(config, work_dir, overwrite=True).fit().status
        elapsed = time.perf_counter() - started
        lines = [
            json.loads(line) for line in (Path(work_dir) / "metrics.jsonl").read_text().splitlines()
        ]
        environment = json.loads((Path(work_dir) / "env.json").read_text())
    if status != 0:
        raise SystemExit(f"training stopped with status {status}")
    train_lines = [line for line in lines if line["split"] == "train"]
    val_lines = [line for line in lines if line["split"] == "val"]
    return {
        "precision": environment.get("precision"),
        "seconds": elapsed,
        "imgs_per_s": median(
            [line["imgs_per_s"] for line in train_lines[1:]] or [train_lines[0]["imgs_per_s"]]
        ),
        "loss": [(line["step"], line["loss"]) for line in train_lines],
        "final_mIoU": val_lines[-1]["mIoU"] if val_lines else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few iterations on tiny images")
    parser.add_argument(
        "--iters", type=int, default=None, help="training iterations (default: the config's 300)"
    )
    parser.add_argument(
        "--out", default=None, help="JSON path (default benchmarks/results/precision.json)"
    )
    args = parser.parse_args(argv)
    overrides = QUICK if args.quick else ([f"train.max_iters={args.iters}"] if args.iters else [])
    runs = {name: train([*overrides, *extra]) for name, extra in SETTINGS.items()}
    reference, auto = runs["fp32, NCHW"], runs["auto, channels-last"]
    gaps = [abs(a - b) for (_, a), (_, b) in zip(reference["loss"], auto["loss"])]
    late = gaps[len(gaps) // 2 :]
    comparison = {
        "speedup": auto["imgs_per_s"] / reference["imgs_per_s"],
        "mean_abs_loss_gap": sum(gaps) / len(gaps),
        "mean_abs_loss_gap_second_half": sum(late) / len(late),
        "mean_loss_second_half_fp32": sum(loss for _, loss in reference["loss"][len(gaps) // 2 :])
        / len(late),
        "mIoU_gap": (
            None
            if reference["final_mIoU"] is None
            else auto["final_mIoU"] - reference["final_mIoU"]
        ),
    }
    tables = "\n".join(
        [
            format_table(
                ("setting", "precision", "images/s", "seconds", "final mIoU", "last loss"),
                [
                    (
                        name,
                        run["precision"],
                        run["imgs_per_s"],
                        run["seconds"],
                        run["final_mIoU"],
                        run["loss"][-1][1],
                    )
                    for name, run in runs.items()
                ],
            ),
            f"\nauto vs fp32: {comparison['speedup']:.2f}x the training throughput; loss curves "
            f"differ by {comparison['mean_abs_loss_gap']:.4f} on average "
            f"({comparison['mean_abs_loss_gap_second_half']:.4f} over the second half, where the "
            f"fp32 loss averages {comparison['mean_loss_second_half_fp32']:.4f})",
        ]
    )
    print(tables)
    path = write_results(
        "precision", {"quick": args.quick, "runs": runs, "comparison": comparison}, tables, args.out
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
