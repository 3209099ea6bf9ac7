"""Where the training step's time goes: torch.profiler over ``train_step`` (forward, backward,
optimizer) of PSPNet-R50-D8 and the quickstart model, in fp32 and at ``precision: auto``, as
tables of the operators with the most self time.

Self time is an operator's own time, without the operators it calls, so the rows add up to the
step and a conversion (``aten::copy_``) or an upsampling shows as itself rather than inside its
caller. The steps profiled follow warm-up steps; on CUDA the device time is listed too.

A second table times the step itself, unprofiled: PSPNet-R50-D8 in fp32 and at ``precision:
auto``, each with the loss on full-resolution logits (the path before issue 19) and with the
banded cross-entropy (the default), four models in one process, one step of each in turn, so
that the speed-ups are ratios taken side by side on this noisy machine (medians).

    python benchmarks/profile_training.py           # a few minutes on a 2-core CPU
    python benchmarks/profile_training.py --quick   # seconds: 64x64 inputs, one step
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_synchronizer, format_table, median, timed, write_results  # noqa: E402
from memory import PATHS, use_full_resolution_loss  # noqa: E402
from training import load  # noqa: E402

# model -> (input size, batch, warm-up steps, profiled steps) at full and at --quick scale.
# PSPNet at 256x256 (not its 512x512 crop) keeps a profiled fp32 step under a minute here.
SCALES = {
    "pspnet_r50d8": ((256, 2, 1, 1), (64, 2, 1, 1)),
    "quickstart": ((128, 8, 1, 2), (64, 2, 1, 1)),
}
TOP = 12


# PSPNet's step-time comparison: (input size, batch, warm-up steps, timed steps) full and quick.
SPEED = ((256, 2, 1, 4), (64, 2, 1, 2))


def trainable(model: str, precision: str, size: int, batch: int, steps: int, path: str = PATHS[1]):
    """The training parts of ``model`` at ``precision`` and their endless batch stream."""
    from segkit.engine.parts import build_training_parts, train_loader
    from segkit.engine.runtime import Runtime

    config = load(model, size, batch, steps)
    config["train"]["precision"] = precision
    config["logging"]["loggers"] = []
    if path == PATHS[0]:
        use_full_resolution_loss(config)
    runtime = Runtime.resolve(config["train"])
    parts = build_training_parts(config, runtime)
    parts.model.train()
    return parts, iter(train_loader(config, parts)[0])


def profile_model(model: str, precision: str, size: int, batch: int, warmup: int, steps: int):
    """The top operators by self time, per profiled step, of one model at one precision."""
    from segkit.engine.step import train_step

    parts, data = trainable(model, precision, size, batch, warmup + steps)
    runtime = parts.runtime
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


def step_times(size: int, batch: int, warmup: int, steps: int) -> dict[str, Any]:
    """Median seconds per PSPNet step of each precision and loss path, one step of each in
    turn, and the speed-ups of ``auto`` over fp32 with either loss."""
    from segkit.engine.precision import resolve_device
    from segkit.engine.step import train_step

    synchronize = device_synchronizer(resolve_device("auto"))
    variants = {
        (precision, path): trainable("pspnet_r50d8", precision, size, batch, warmup + steps, path)
        for precision in ("fp32", "auto")
        for path in PATHS
    }
    times: dict[tuple[str, str], list[float]] = {key: [] for key in variants}
    keys = list(variants)
    for step in range(warmup + steps):
        for key in keys[step % len(keys) :] + keys[: step % len(keys)]:  # each goes first in turn
            seconds = timed(partial(train_step, *variants[key], step), synchronize)
            if step >= warmup:
                times[key].append(seconds)
    rows = [
        {"precision": p, "path": path, "s_per_step": median(times[(p, path)])}
        for p, path in variants
    ]
    speedups = {
        path: median([f / a for f, a in zip(times[("fp32", path)], times[("auto", path)])])
        for path in PATHS
    }
    return {"input": [batch, 3, size, size], "steps": steps, "rows": rows, "speedup": speedups}


def speed_table(speed: dict[str, Any]) -> str:
    title = (
        f"PSPNet-R50-D8 training step, {'x'.join(map(str, speed['input']))}, "
        f"{speed['steps']} steps of each in turn (medians)\n"
    )
    rows = [
        (r["precision"], r["path"], r["s_per_step"], f"{speed['speedup'][r['path']]:.2f}x")
        for r in speed["rows"]
    ]
    header = ("precision", "loss path", "s/step", "auto over fp32, same loss path")
    return title + "\n" + format_table(header, rows)


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
    parser.add_argument("--no-speed", action="store_true", help="leave the step timing out")
    args = parser.parse_args(argv)
    runs = []
    for model in args.models:
        size, batch, warmup, steps = SCALES[model][1 if args.quick else 0]
        for precision in ("fp32", "auto"):
            runs.append(profile_model(model, precision, size, batch, warmup, steps))
            print(table(runs[-1]) + "\n", flush=True)
    tables = "\n\n".join(table(run) for run in runs)
    results: dict[str, Any] = {"quick": args.quick, "runs": runs}
    if not args.no_speed:
        results["speed"] = step_times(*SPEED[1 if args.quick else 0])
        print(speed_table(results["speed"]))
        tables += "\n\n" + speed_table(results["speed"])
    path = write_results("profile_training", results, tables, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
