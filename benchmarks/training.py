"""Training speed: segkit's trainer against a minimal hand-written PyTorch loop (the overhead),
and the matrix fp32/bf16 x NCHW/channels-last x torch.compile off/on (images/s, peak memory).

Both loops train the same model of a shipped config on the same in-memory batches (random
images and labels, so that decoding plays no part), with the same optimizer, schedule, loss
weights and precision; the trainer runs exactly as ``segkit train`` does (data loader, sampler,
device normalisation, loss terms, schedule, logging, TensorBoard and progress bar). Rounds
alternate between the two, and each step's time is taken in steady state.

Each cell of the matrix runs in its own process, so that its peak memory is its own and compiled
code does not carry over. On the CPU that is the process's peak resident memory (about 0.5 GB of
it is the Python and PyTorch runtime); on CUDA, the peak memory allocated on the GPU.

    python benchmarks/training.py                       # a few minutes on a 2-core CPU
    python benchmarks/training.py --quick               # seconds: tiny inputs, no compile
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import format_table, median, write_results  # noqa: E402

import segkit  # noqa: E402
from segkit.engine.precision import resolve_device, resolve_precision  # noqa: E402
from segkit.plugins import get_plugins  # noqa: E402
from segkit.registry import Provider  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# model -> (config, input size, batch) at full and at --quick scale
MODELS = {
    "quickstart": ("configs/quickstart.yaml", (128, 8), (64, 2)),
    "pspnet_r50d8": ("configs/pspnet_r50_ade20k.yaml", (256, 2), (64, 2)),
}


class InMemory(Dataset):
    """Fixed random samples: the same bytes for both loops, no decoding, no augmentation."""

    def __init__(self, num_classes: int, size: list[int], length: int = 8, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (length, 3, *size), dtype=torch.uint8, generator=generator)
        self.masks = torch.randint(0, num_classes, (length, *size), generator=generator)
        self.classes = [f"class{i}" for i in range(num_classes)]
        self.palette = [(i, i, i) for i in range(num_classes)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "mask": self.masks[index], "name": str(index)}


class StepClock:
    """A logger that notes when each training step ended."""

    def __init__(self):
        self.times: list[float] = []

    @segkit.hookimpl
    def segkit_on_train_iter_end(self, run, step, logs):
        self.times.append(time.perf_counter())


CLOCK = StepClock()


class BenchmarkComponents:
    @staticmethod
    @segkit.hookimpl
    def segkit_register_datasets(register):
        register("bench_memory", InMemory)

    @staticmethod
    @segkit.hookimpl
    def segkit_register_loggers(register):
        register("bench_clock", lambda: CLOCK)


def load(model: str, size: int, batch: int, steps: int) -> dict[str, Any]:
    """The model's config, trained on in-memory batches for ``steps`` iterations."""
    plugins = get_plugins()
    if "bench_memory" not in plugins.registry.names("dataset"):
        plugins.add(BenchmarkComponents, Provider("benchmarks"))
    path = REPO / MODELS[model][0]
    classes = segkit.load_config(path)["model"]["num_classes"]
    return segkit.load_config(path, [
        f"data.train={{type: bench_memory, num_classes: {classes}, size: [{size}, {size}]}}",
        "data.val=null",
        f"data.batch_size={batch}",
        "data.workers=0",
        f"train.max_iters={steps}",
        "train.eval_interval=0",
        "lr_scheduler.warmup_iters=0",
        "logging.loggers=[{type: progress}, {type: tensorboard}, {type: bench_clock}]",
    ])


def steady(times: list[float], warmup: int) -> list[float]:
    """Per-step durations after the warm-up steps."""
    return [b - a for a, b in zip(times[warmup:], times[warmup + 1:])]


def segkit_steps(config: dict[str, Any], warmup: int) -> list[float]:
    from segkit.engine.trainer import Trainer

    CLOCK.times.clear()
    with tempfile.TemporaryDirectory() as work_dir:
        status = Trainer(config, work_dir, overwrite=True).fit()
    if status != 0:
        raise SystemExit(f"segkit's trainer stopped with status {status}")
    return steady(CLOCK.times, warmup)


def hand_written_steps(config: dict[str, Any], warmup: int, precision: str, channels_last: bool,
                       compile_model: bool = False) -> list[float]:
    """The loop one writes by hand: model, optimizer, schedule, autocast, loss, step."""
    device = resolve_device(config["train"]["device"])
    torch.manual_seed(config["train"]["seed"])
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = segkit.build_model(config).to(device, memory_format=memory_format).train()
    forward = torch.compile(model) if compile_model else model
    spec = config["optimizer"]
    if spec["type"] == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=spec["lr"], momentum=spec["momentum"],
                                    weight_decay=spec["weight_decay"])
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=spec["lr"],
                                      weight_decay=spec["weight_decay"])
    steps = config["train"]["max_iters"]
    schedule = torch.optim.lr_scheduler.PolynomialLR(optimizer, steps, power=0.9)
    aux_weights = [aux["loss_weight"] for aux in config["model"]["aux_heads"]]
    dataset = InMemory(config["model"]["num_classes"], config["data"]["train"]["size"])
    batch = config["data"]["batch_size"]
    batches = [
        (torch.stack([dataset[(i * batch + j) % len(dataset)]["image"] for j in range(batch)]),
         torch.stack([dataset[(i * batch + j) % len(dataset)]["mask"] for j in range(batch)]))
        for i in range(len(dataset))
    ]
    mean = torch.tensor(config["data"]["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(config["data"]["std"], device=device).view(1, 3, 1, 1)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    times = []
    for step in range(steps):
        images, masks = batches[step % len(batches)]
        images = ((images.to(device).float() - mean) / std).contiguous(memory_format=memory_format)
        masks = masks.to(device)
        with autocast:
            outputs = forward(images)
        loss = F.cross_entropy(outputs["main"].float(), masks, ignore_index=255)
        for weight, name in zip(aux_weights, sorted(k for k in outputs if k.startswith("aux"))):
            loss = loss + weight * F.cross_entropy(outputs[name].float(), masks, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter())
    return steady(times, warmup)


def overhead(model: str, size: int, batch: int, steps: int, warmup: int, rounds: int) -> dict:
    config = load(model, size, batch, steps)
    device = resolve_device(config["train"]["device"])
    precision = resolve_precision(config["train"]["precision"], device).name
    channels_last = config["train"]["channels_last"]
    segkit_times: list[float] = []
    hand_times: list[float] = []
    for _ in range(rounds):
        segkit_times += segkit_steps(config, warmup)
        hand_times += hand_written_steps(config, warmup, precision, channels_last)
    segkit_step, hand_step = median(segkit_times), median(hand_times)
    return {
        "model": model, "input": [batch, 3, size, size], "precision": precision,
        "channels_last": channels_last, "steps_timed": len(segkit_times),
        "segkit_s_per_step": segkit_step, "hand_s_per_step": hand_step,
        "overhead": segkit_step / hand_step - 1.0,
    }


def matrix_cell(model: str, size: int, batch: int, steps: int, warmup: int, precision: str,
                channels_last: bool, compile_model: bool) -> dict:
    """One setting of the matrix; meant to run in a process of its own."""
    config = load(model, size, batch, steps)
    device = resolve_device(config["train"]["device"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = hand_written_steps(config, warmup, precision, channels_last, compile_model)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:  # the process's peak resident memory, the Python and torch runtime included
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"imgs_per_s": batch / median(times), "peak_mb": peak_mb}


def run_matrix(model: str, size: int, batch: int, steps: int, warmup: int, compile_too: bool) -> list:
    rows = []
    for compile_model in ((False, True) if compile_too else (False,)):
        for precision in ("fp32", "bf16"):
            for channels_last in (False, True):
                command = [
                    sys.executable, __file__, "--cell", model, str(size), str(batch), str(steps),
                    str(warmup), precision, str(int(channels_last)), str(int(compile_model)),
                ]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"matrix cell {command[3:]} failed:\n{done.stderr[-2000:]}")
                cell = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append({"model": model, "precision": precision,
                             "memory_format": "channels_last" if channels_last else "NCHW",
                             "compile": compile_model, **cell})
    reference = next(r["imgs_per_s"] for r in rows if r["precision"] == "fp32"
                     and r["memory_format"] == "NCHW" and not r["compile"])
    for row in rows:
        row["speedup_vs_fp32_nchw"] = row["imgs_per_s"] / reference
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds: tiny inputs, no compile")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default 24; quick 4)")
    parser.add_argument("--rounds", type=int, default=None, help="overhead rounds (default 3; quick 1)")
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/training.json)")
    parser.add_argument("--cell", nargs=8, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:
        model, size, batch, steps, warmup, precision, channels_last, compile_model = args.cell
        print(json.dumps(matrix_cell(model, int(size), int(batch), int(steps), int(warmup),
                                     precision, channels_last == "1", compile_model == "1")))
        return 0
    steps = args.steps or (4 if args.quick else 24)
    rounds = args.rounds or (1 if args.quick else 3)
    warmup = 1 if args.quick else 4
    overheads, matrix = [], []
    for model in args.models:
        size, batch = MODELS[model][2] if args.quick else MODELS[model][1]
        overheads.append(overhead(model, size, batch, steps, warmup, rounds))
        matrix += run_matrix(model, size, batch, steps, warmup,
                             compile_too=not (args.quick or args.no_compile))
    tables = "\n".join([
        "Trainer overhead (segkit's trainer vs a hand-written loop, same model and batches)\n",
        format_table(
            ("model", "input", "precision", "segkit s/step", "hand-written s/step", "overhead"),
            [(o["model"], "x".join(map(str, o["input"])), o["precision"], o["segkit_s_per_step"],
              o["hand_s_per_step"], f"{o['overhead']:+.1%}") for o in overheads],
        ),
        "\nPrecision x memory format x torch.compile (hand-written loop)\n",
        format_table(
            ("model", "precision", "memory format", "compile", "images/s", "peak MB", "vs fp32 NCHW"),
            [(r["model"], r["precision"], r["memory_format"], r["compile"], r["imgs_per_s"],
              r["peak_mb"], f"{r['speedup_vs_fp32_nchw']:.2f}x") for r in matrix],
        ),
    ])
    print(tables)
    path = write_results("training", {"quick": args.quick, "overhead": overheads, "matrix": matrix},
                         tables, args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
