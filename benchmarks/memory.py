"""Peak training memory of PSPNet-R50-D8 (512x512, batch 2): the loss on full-resolution logits
(the path before issue 19) against cross-entropy scored band by band from the heads' logits (the
default), in fp32 and at ``precision: auto``.

Every variant trains a few steps of ``segkit.engine.step.train_step`` (the function training runs)
in a fresh process, so that its peak is its own. On the CPU the figure is the growth of the
process's peak resident memory from the moment the parts are built (weights already counted out)
to the end of the last step: activations, logits, gradients, optimizer state (Linux). On CUDA it
is the peak memory allocated on the GPU during the steps. The loss of the first step is recorded
too, so that the two paths can be seen to train the same thing.

    python benchmarks/memory.py             # a few minutes on a 2-core CPU
    python benchmarks/memory.py --quick     # seconds: 64x64 inputs, 2 steps
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import format_table, write_results  # noqa: E402
from training import load, peak_rss, reset_peak_rss  # noqa: E402

import segkit  # noqa: E402
from segkit.components import Provider  # noqa: E402
from segkit.plugins import get_plugins  # noqa: E402

# (input size, batch, steps) at full scale and at --quick scale.
SCALES = {"full": (512, 2, 3), "quick": (64, 2, 2)}
PATHS = ("full-resolution logits", "banded cross-entropy")
PRECISIONS = ("fp32", "auto")


class FullResolutionCrossEntropy:
    """Cross-entropy as it was computed before: on the logits upsampled to the label size."""

    takes_head_logits = False

    def __init__(self, ignore_index: int):
        from segkit_plugins.losses.cross_entropy import CrossEntropyLoss

        self.loss = CrossEntropyLoss(ignore_index)

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, target)


class MemoryComponents:
    @staticmethod
    @segkit.hookimpl
    def segkit_register_losses(register):
        register("bench_full_resolution_ce", FullResolutionCrossEntropy)


def use_full_resolution_loss(config: dict[str, Any]) -> None:
    """Make ``config`` train with cross-entropy on full-resolution logits."""
    plugins = get_plugins()
    if "bench_full_resolution_ce" not in plugins.registry.names("loss"):
        plugins.add(MemoryComponents, Provider("benchmarks_memory"))
    config["loss"] = {"type": "bench_full_resolution_ce", "loss_weight": 1.0}


def variant(path: str, precision: str, size: int, batch: int, steps: int) -> dict[str, Any]:
    """One variant's peak memory and first loss; meant to run in a process of its own."""
    from segkit.engine.distributed import World
    from segkit.engine.parts import build_training_parts, train_loader
    from segkit.engine.runtime import Runtime
    from segkit.engine.step import train_step
    from segkit.engine.watch import LogWindow

    config = load("pspnet_r50d8", size, batch, steps)
    config["train"]["precision"] = precision
    config["logging"]["loggers"] = []
    if path == PATHS[0]:
        use_full_resolution_loss(config)
    runtime = Runtime.resolve(config["train"])
    parts = build_training_parts(config, runtime)
    parts.model.train()
    data = iter(train_loader(config, parts)[0])
    window = LogWindow(runtime.device)
    world = World()
    cuda = runtime.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(runtime.device)
        baseline = torch.cuda.memory_allocated(runtime.device)
    else:
        baseline = reset_peak_rss()
    losses = []
    for step in range(steps):
        train_step(parts, data, step, window=window)
        losses.append(window.read(world)["loss"])
    peak = torch.cuda.max_memory_allocated(runtime.device) if cuda else peak_rss()
    return {
        "path": path,
        "precision": precision,
        "resolved_precision": runtime.precision.name,
        "peak_mb": (peak - baseline) / 2**20,
        "measure": "CUDA max allocated" if cuda else "CPU peak RSS growth",
        "losses": losses,
    }


def measure(size: int, batch: int, steps: int) -> list[dict[str, Any]]:
    rows = []
    for precision in PRECISIONS:
        for path in PATHS:
            command = [sys.executable, __file__, "--variant", path, precision]
            command += [str(size), str(batch), str(steps)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"variant {path} {precision} failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    for row in rows:
        before = next(
            r for r in rows if r["precision"] == row["precision"] and r["path"] == PATHS[0]
        )
        row["vs_full_resolution"] = row["peak_mb"] / before["peak_mb"] - 1.0
        # The first step's loss: same weights, same batch. Later steps drift apart by the float
        # noise of the updates (in bf16, by bf16 rounding of the gradients).
        row["first_loss_difference"] = abs(row["losses"][0] / before["losses"][0] - 1.0)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds: 64x64 inputs, 2 steps")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/)")
    parser.add_argument("--variant", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant:
        path, precision, size, batch, steps = args.variant
        print(json.dumps(variant(path, precision, int(size), int(batch), int(steps))))
        return 0
    size, batch, steps = SCALES["quick" if args.quick else "full"]
    rows = measure(size, batch, steps)
    tables = "\n".join(
        [
            f"Peak training memory, PSPNet-R50-D8, {batch}x3x{size}x{size}, {steps} steps "
            f"({rows[0]['measure']})\n",
            format_table(
                ("precision", "loss path", "peak MB", "vs full-resolution", "first loss rel. diff"),
                [
                    (
                        f"{r['precision']} ({r['resolved_precision']})",
                        r["path"],
                        r["peak_mb"],
                        f"{r['vs_full_resolution']:+.1%}",
                        f"{r['first_loss_difference']:.1e}",
                    )
                    for r in rows
                ],
            ),
        ]
    )
    print(tables)
    results = {"quick": args.quick, "input": [batch, 3, size, size], "steps": steps, "rows": rows}
    path = write_results("memory", results, tables, args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
