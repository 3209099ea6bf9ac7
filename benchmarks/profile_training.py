"""Where the training step's time goes: torch.profiler over ``train_step`` (forward, backward,
optimizer) of PSPNet-R50-D8 and the quickstart model, in fp32 and at ``precision: auto``, as
tables of the operators with the most self time.

Self time is an operator's own time, without the operators it calls, so the rows add up to the
step and a conversion (``aten::copy_``) or an upsampling shows as itself rather than inside its
caller. The steps profiled follow warm-up steps; on CUDA the device time is listed too.

    python benchmarks/profile_training.py           # a few minutes on a 2-core CPU
    python benchmarks/profile_training.py --quick   # seconds: 64x64 inputs, one step
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import format_table, write_results  # noqa: E402
from training import load  # noqa: E402

# model -> (input size, batch, warm-up steps, profiled steps) at full and at --quick scale.
# PSPNet at 256x256 (not its 512x512 crop) keeps a profiled fp32 step under a minute here.
SCALES = {
    "pspnet_r50d8": ((256, 2, 1, 2), (64, 2, 1, 1)),
    "quickstart": ((128, 8, 2, 3), (64, 2, 1, 1)),
}
TOP = 12


def profile_model(model: str, precision: str, size: int, batch: int, warmup: int, steps: int):
    """The top operators by self time, per profiled step, of one model at one precision."""
    from segkit.engine.parts import build_training_parts, train_loader
    from segkit.engine.runtime import Runtime
    from segkit.engine.step import train_step

    config = load(model, size, batch, warmup + steps)
    config["train"]["precision"] = precision
    config["logging"]["loggers"] = []
    runtime = Runtime.resolve(config["train"])
    parts = build_training_parts(config, runtime)
    parts.model.train()
    data = iter(train_loader(config, parts)[0])
    for step in range(warmup):
        train_step(parts, data, step)
    cuda = runtime.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as profiler:
        for step in range(warmup, warmup + steps):
            train_step(parts, data, step)
        if cuda:
            torch.cuda.synchronize(runtime.device)
    events = [e for e in profiler.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return {
        "model": model,
        "precision": precision,
        "resolved_precision": runtime.precision.name,
        "channels_last": runtime.channels_last,
        "input": [batch, 3, size, size],
        "steps": steps,
        "self_cpu_ms_per_step": total / 1000 / steps,
        "top": [
            {
                "op": e.key,
                "self_cpu_ms": e.self_cpu_time_total / 1000 / steps,
                "share": e.self_cpu_time_total / total,
                "calls": e.count // steps,
                **({"self_device_ms": _device_us(e) / 1000 / steps} if cuda else {}),
            }
            for e in events[:TOP]
        ],
    }


def _device_us(event: Any) -> float:
    return getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0.0))


def table(run: dict[str, Any]) -> str:
    title = (
        f"{run['model']}, {'x'.join(map(str, run['input']))}, {run['precision']} "
        f"({run['resolved_precision']}{', channels-last' if run['channels_last'] else ''}): "
        f"{run['self_cpu_ms_per_step']:.0f} ms of self CPU time per step\n"
    )
    rows = [(t["op"], t["self_cpu_ms"], f"{t['share']:.1%}", t["calls"]) for t in run["top"]]
    return title + "\n" + format_table(("operator", "self CPU ms/step", "share", "calls"), rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds: 64x64 inputs, one step")
    parser.add_argument("--models", nargs="+", default=list(SCALES), choices=list(SCALES))
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/)")
    args = parser.parse_args(argv)
    runs = []
    for model in args.models:
        size, batch, warmup, steps = SCALES[model][1 if args.quick else 0]
        for precision in ("fp32", "auto"):
            runs.append(profile_model(model, precision, size, batch, warmup, steps))
            print(table(runs[-1]) + "\n", flush=True)
    tables = "\n\n".join(table(run) for run in runs)
    path = write_results("profile_training", {"quick": args.quick, "runs": runs}, tables, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
