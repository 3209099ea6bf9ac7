"""Training speed: segkit's trainer against a minimal hand-written PyTorch loop (the overhead),
and the matrix fp32/bf16 x NCHW/channels-last x torch.compile off/on (images/s, peak memory).

Both loops train the same model of a shipped config on the same in-memory batches (random
images and labels, so that decoding plays no part), with the same optimizer (the fused
implementation, which segkit picks), schedule, loss weights and precision; the trainer runs
exactly as ``segkit train`` does (data loader, sampler, device normalisation, loss terms,
schedule, logging, TensorBoard and progress bar). Rounds alternate which loop runs first, and
each step's time is taken in steady state. A second figure alternates the two step by step on
one model instance, which isolates what the trainer's step itself adds.

Each cell of the matrix runs in its own process, so that its peak memory is its own and compiled
code does not carry over. On the CPU it is the growth of the process's peak resident memory
during training (model, optimizer state, activations, compiled code; Linux); on CUDA, the peak
memory allocated on the GPU.

The "segmentation retention" relates PSPNet-R50-D8's gain from ``precision: auto`` to what bf16
gives a plain ResNet-50 classifier on the same machine in the same run (see ``retention``).

    python benchmarks/training.py                       # about 20 minutes on a 2-core CPU
    python benchmarks/training.py --quick               # a minute: tiny inputs, no compile
    python benchmarks/training.py --parts retention     # the retention alone (make bench-retention)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import format_table, median, write_results  # noqa: E402

import segkit  # noqa: E402
from segkit.components import Provider  # noqa: E402
from segkit.engine.parts import TrainingParts, build_training_parts, train_loader  # noqa: E402
from segkit.engine.precision import resolve_device, resolve_precision  # noqa: E402
from segkit.engine.runtime import Runtime  # noqa: E402
from segkit.engine.step import train_step  # noqa: E402
from segkit.engine.watch import LogWindow, NonFiniteWatch  # noqa: E402
from segkit.plugins import get_plugins  # noqa: E402
from segkit_plugins.losses.upsampled_ce import upsampled_cross_entropy_sum  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# model -> (config, (input size, batch, steps, compile in the matrix) at full scale, the same
# at --quick scale). PSPNet's cells leave torch.compile out by default: compiling it takes
# minutes per cell on a 2-core CPU (--compile-all puts it in).
MODELS = {
    "quickstart": ("configs/quickstart.yaml", (128, 8, 24, True), (64, 2, 4, False)),
    "pspnet_r50d8": ("configs/pspnet_r50_ade20k.yaml", (192, 2, 10, False), (64, 2, 4, False)),
}


class InMemory(Dataset):
    """Fixed random samples: the same bytes for both loops, no decoding, no augmentation."""

    def __init__(self, num_classes: int, size: list[int], length: int = 8, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randint(
            0, 256, (length, 3, *size), dtype=torch.uint8, generator=generator
        )
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
    """The model's config, trained on in-memory batches for ``steps`` iterations, logging as
    ``segkit train`` does."""
    return in_memory_config(
        MODELS[model][0],
        (size, size),
        batch,
        steps,
        ["logging.loggers=[{type: progress}, {type: tensorboard}, {type: bench_clock}]"],
    )


def in_memory_config(
    path: str, size: tuple[int, int], batch: int, steps: int, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """The shipped config at ``path`` (relative to the repository), its training data replaced
    by in-memory samples of ``size`` (height, width), no validation, no warm-up."""
    plugins = get_plugins()
    if "bench_memory" not in plugins.registry.names("dataset"):
        plugins.add(BenchmarkComponents, Provider("benchmarks"))
    classes = segkit.load_config(REPO / path)["model"]["num_classes"]
    height, width = size
    return segkit.load_config(
        REPO / path,
        [
            f"data.train={{type: bench_memory, num_classes: {classes}, size: [{height}, {width}]}}",
            "data.val=null",
            f"data.batch_size={batch}",
            "data.workers=0",
            f"train.max_iters={steps}",
            "train.eval_interval=0",
            "lr_scheduler.warmup_iters=0",
            *overrides,
        ],
    )


def trainer_step(config: dict[str, Any]) -> tuple[Callable[[int], None], TrainingParts]:
    """``step(number)`` running the very ``train_step`` the trainer runs, on the parts it
    builds from ``config`` and its data loader, and those parts."""
    runtime = Runtime.resolve(config["train"])
    parts = build_training_parts(config, runtime)
    window, watch = LogWindow(runtime.device), NonFiniteWatch(runtime.device, 0)
    parts.model.train()
    loader, _ = train_loader(config, parts)
    data = iter(loader)

    def step(number: int) -> None:
        train_step(
            parts,
            data,
            number,
            accumulate=config["train"]["accumulate"],
            grad_clip=config["train"]["grad_clip"],
            window=window,
            watch=watch,
        )

    return step, parts


def steady(times: list[float], warmup: int) -> list[float]:
    """Per-step durations after the warm-up steps."""
    return [b - a for a, b in zip(times[warmup:], times[warmup + 1 :])]


def segkit_steps(config: dict[str, Any], warmup: int) -> list[float]:
    from segkit.engine.trainer import Trainer

    CLOCK.times.clear()
    with tempfile.TemporaryDirectory() as work_dir:
        status = Trainer(config, work_dir, overwrite=True).fit().status
    if status != 0:
        raise SystemExit(f"segkit's trainer stopped with status {status}")
    return steady(CLOCK.times, warmup)


def hand_written_loop(
    config: dict[str, Any],
    precision: str,
    channels_last: bool,
    compile_model: bool = False,
    model: torch.nn.Module | None = None,
):
    """The loop one writes by hand: model, optimizer, schedule, autocast, loss, step. Returns
    ``step(number)``; ``model`` trains an existing model instead of building one."""
    device = resolve_device(config["train"]["device"])
    torch.manual_seed(config["train"]["seed"])
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if model is None:
        model = segkit.build_model(config).to(device, memory_format=memory_format).train()
    forward = torch.compile(model) if compile_model else model
    spec = config["optimizer"]
    fused = device.type in ("cpu", "cuda")  # the implementation segkit's optimizers pick
    if spec["type"] == "sgd":
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=spec["lr"],
            momentum=spec["momentum"],
            weight_decay=spec["weight_decay"],
            fused=fused,
        )
    else:
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=spec["lr"], weight_decay=spec["weight_decay"], fused=fused
        )
    schedule = torch.optim.lr_scheduler.PolynomialLR(
        optimizer, config["train"]["max_iters"], power=0.9
    )
    aux_weights = [aux["loss_weight"] for aux in config["model"]["aux_heads"]]
    dataset = InMemory(config["model"]["num_classes"], config["data"]["train"]["size"])
    batch = config["data"]["batch_size"]
    batches = [
        (
            torch.stack([dataset[(i * batch + j) % len(dataset)]["image"] for j in range(batch)]),
            torch.stack([dataset[(i * batch + j) % len(dataset)]["mask"] for j in range(batch)]),
        )
        for i in range(len(dataset))
    ]
    mean = torch.tensor(config["data"]["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(config["data"]["std"], device=device).view(1, 3, 1, 1)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def cross_entropy(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """segkit's banded upsample + cross-entropy, called directly: the loss is the same
        computation in both loops, so that the overhead is the trainer's own."""
        total = upsampled_cross_entropy_sum(
            logits, masks, weight=None, ignore_index=255, label_smoothing=0.0, align_corners=False
        )
        return total / (masks != 255).sum().clamp(min=1)

    def step(number: int) -> None:
        images, masks = batches[number % len(batches)]
        images = ((images.to(device).float() - mean) / std).contiguous(memory_format=memory_format)
        masks = masks.to(device)
        with autocast:  # the heads' resolution, scored as the trainer scores it (see below)
            outputs = forward(images, resize=False)
        loss = cross_entropy(outputs["main"], masks)
        for weight, name in zip(aux_weights, sorted(k for k in outputs if k.startswith("aux"))):
            loss = loss + weight * cross_entropy(outputs[name], masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step


def hand_written_steps(
    config: dict[str, Any],
    warmup: int,
    precision: str,
    channels_last: bool,
    compile_model: bool = False,
) -> list[float]:
    step = hand_written_loop(config, precision, channels_last, compile_model)
    times = []
    for number in range(config["train"]["max_iters"]):
        step(number)
        times.append(time.perf_counter())
    return steady(times, warmup)


def interleaved_step_overhead(config: dict[str, Any], warmup: int) -> float:
    """The trainer's training step against the hand-written one on the same model instance,
    alternating step by step: what the trainer's step itself adds (data loader, device
    normalisation, loss terms, logging window, gradient scaler, schedule), free of the
    machine's drift and of the memory placement of two separate models."""
    step, parts = trainer_step(config)
    hand = hand_written_loop(
        config, parts.runtime.precision.name, parts.runtime.channels_last, model=parts.model
    )
    ratios = []
    for number in range(config["train"]["max_iters"]):
        started = time.perf_counter()
        step(number)
        middle = time.perf_counter()
        hand(number)
        if number >= warmup:
            ratios.append((middle - started) / (time.perf_counter() - middle))
    return median(ratios) - 1.0


def overhead(model: str, size: int, batch: int, steps: int, warmup: int, rounds: int) -> dict:
    """The trainer's time per step over the hand-written loop's, as the median of the per-round
    ratios; rounds alternate which loop runs first, so that neither always finds the machine
    warmer."""
    config = load(model, size, batch, steps)
    device = resolve_device(config["train"]["device"])
    precision = resolve_precision(config["train"]["precision"], device).name
    channels_last = config["train"]["channels_last"]
    segkit_times: list[float] = []
    hand_times: list[float] = []
    ratios = []
    for number in range(rounds):
        runs = {
            "segkit": lambda: segkit_steps(config, warmup),
            "hand": lambda: hand_written_steps(config, warmup, precision, channels_last),
        }
        order = ("segkit", "hand") if number % 2 == 0 else ("hand", "segkit")
        measured = {name: runs[name]() for name in order}
        segkit_times += measured["segkit"]
        hand_times += measured["hand"]
        ratios.append(median(measured["segkit"]) / median(measured["hand"]))
    return {
        "model": model,
        "input": [batch, 3, size, size],
        "precision": precision,
        "channels_last": channels_last,
        "rounds": rounds,
        "steps_timed": len(segkit_times),
        "segkit_s_per_step": median(segkit_times),
        "hand_s_per_step": median(hand_times),
        "round_ratios": ratios,
        "overhead": median(ratios) - 1.0,
        "interleaved_step_overhead": interleaved_step_overhead(config, warmup),
    }


def classifier_step(precision: str, batch: int = 8, size: int = 224) -> Callable[[int], None]:
    """``step(number)`` of a plain torchvision ResNet-50 ImageNet classifier: the reference for
    what bf16 gains on this machine when nothing but convolutions and matrix products is in the
    way. fp32 runs NCHW (PyTorch's default), bf16 autocast with channels-last."""
    import torchvision

    torch.manual_seed(0)
    channels_last = precision == "bf16"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = torchvision.models.resnet50().to(memory_format=memory_format).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4, fused=True
    )
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=generator)
    images = images.contiguous(memory_format=memory_format)
    labels = torch.randint(0, 1000, (batch,), generator=generator)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def step(number: int) -> None:
        with autocast:
            logits = model(images)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def retention(size: int, batch: int, steps: int, rounds: int, classifier_size: int = 224) -> dict:
    """The "segmentation retention": PSPNet-R50-D8's training-step speed-up of ``precision:
    auto`` (segkit's defaults) over fp32 NCHW, divided by a ResNet-50 classifier's speed-up of
    bf16 + channels-last over fp32 NCHW. The classifier's figure says what this machine's bf16
    can give; the ratio says how much of it segmentation keeps, whatever the machine. The four
    loops live side by side in this process and take turns in every round (the order reversed
    every other round), so that the machine's drift hits all of them alike. Measured on the CPU,
    whose bf16 instructions (AVX512-BF16, AMX) it is about; GPUs have benchmarks/gpu.py."""
    path = MODELS["pspnet_r50d8"][0]
    loops: dict[str, Callable[[int], None]] = {}
    precisions = {}
    for name, overrides in (
        ("pspnet fp32", ["train.precision=fp32", "train.channels_last=false"]),
        ("pspnet auto", []),
    ):
        config = in_memory_config(
            path,
            (size, size),
            batch,
            steps * (rounds + 1),
            [*overrides, "train.device=cpu", "logging.loggers=[]"],
        )
        loops[name], parts = trainer_step(config)
        precisions[name] = parts.runtime.precision.name
    for precision in ("fp32", "bf16"):
        loops[f"resnet50 {precision}"] = classifier_step(precision, 8, classifier_size)
    done = {name: 0 for name in loops}

    def run(name: str, count: int) -> dict[str, float]:
        """Median wall-clock and process CPU seconds of ``count`` steps of loop ``name``."""
        wall, cpu = [], []
        for _ in range(count):
            started, started_cpu = time.perf_counter(), time.process_time()
            loops[name](done[name])
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
            done[name] += 1
        return {"wall": median(wall), "cpu": median(cpu)}

    for name in loops:  # warm-up: first-call allocations, oneDNN kernel selection
        run(name, 1)
    per_round: list[dict[str, dict[str, float]]] = []
    for number in range(rounds):
        order = list(loops) if number % 2 == 0 else list(reversed(loops))
        per_round.append({name: run(name, steps) for name in order})
    result: dict[str, Any] = {
        "pspnet_input": [batch, 3, size, size],
        "pspnet_auto_precision": precisions["pspnet auto"],
        "classifier_input": [8, 3, classifier_size, classifier_size],
        "rounds": rounds,
        "steps_per_round": steps,
    }
    # Wall-clock time is the figure; the process's CPU time is a check that is less sensitive
    # to other jobs taking the cores (though not to their sharing the caches and memory).
    for clock, suffix in (("wall", ""), ("cpu", "_cpu_time")):
        times = [{name: r[name][clock] for name in loops} for r in per_round]
        pspnet = [r["pspnet fp32"] / r["pspnet auto"] for r in times]
        classifier = [r["resnet50 fp32"] / r["resnet50 bf16"] for r in times]
        result |= {
            f"s_per_step{suffix}": {name: median([r[name] for r in times]) for name in loops},
            f"pspnet_speedup{suffix}": median(pspnet),
            f"classifier_speedup{suffix}": median(classifier),
            f"retention{suffix}": median(pspnet) / median(classifier),
            f"round_retention{suffix}": [a / b for a, b in zip(pspnet, classifier)],
        }
    return result


def matrix_cell(
    model: str,
    size: int,
    batch: int,
    steps: int,
    warmup: int,
    precision: str,
    channels_last: bool,
    compile_model: bool,
) -> dict:
    """One setting of the matrix; meant to run in a process of its own."""
    config = load(model, size, batch, steps)
    device = resolve_device(config["train"]["device"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        times = hand_written_steps(config, warmup, precision, channels_last, compile_model)
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        baseline = reset_peak_rss()
        times = hand_written_steps(config, warmup, precision, channels_last, compile_model)
        peak_mb = (peak_rss() - baseline) / 2**20
    return {"imgs_per_s": batch / median(times), "peak_mb": peak_mb}


def reset_peak_rss() -> int:
    """Restart the process's peak-resident-memory count (Linux: /proc/self/clear_refs) and
    return the resident memory now, so that the peak reached by training alone can be read:
    importing PyTorch maps more memory than a small model ever uses."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_bytes("VmRSS")


def peak_rss() -> int:
    return _status_bytes("VmHWM")


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def run_matrix(
    model: str, size: int, batch: int, steps: int, warmup: int, compile_too: bool
) -> list:
    rows = []
    for compile_model in (False, True) if compile_too else (False,):
        for precision in ("fp32", "bf16"):
            for channels_last in (False, True):
                command = [
                    sys.executable,
                    __file__,
                    "--cell",
                    model,
                    str(size),
                    str(batch),
                    str(steps),
                    str(warmup),
                    precision,
                    str(int(channels_last)),
                    str(int(compile_model)),
                    "--threads",
                    str(torch.get_num_threads()),
                ]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"matrix cell {command[3:]} failed:\n{done.stderr[-2000:]}")
                cell = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append(
                    {
                        "model": model,
                        "precision": precision,
                        "memory_format": "channels_last" if channels_last else "NCHW",
                        "compile": compile_model,
                        **cell,
                    }
                )
    reference = next(
        r["imgs_per_s"]
        for r in rows
        if r["precision"] == "fp32" and r["memory_format"] == "NCHW" and not r["compile"]
    )
    for row in rows:
        row["speedup_vs_fp32_nchw"] = row["imgs_per_s"] / reference
    return rows


# The retention run at full and at --quick scale: PSPNet's (input side, batch), steps per loop
# per round, rounds, the classifier's input side (the reference figure is at 224). PSPNet at
# 256x256 keeps the run to a few minutes on 2 cores; 512x512 (--retention-size 512 2) takes
# about twice as long, with a peak of 7 GB.
RETENTION = {"full": ((256, 2), 2, 5, 224), "quick": ((64, 2), 1, 1, 64)}
PARTS = ("overhead", "matrix", "retention")


def overhead_table(overheads: list[dict]) -> str:
    return "\n".join(
        [
            "Trainer overhead (segkit's trainer vs a hand-written loop, same model and batches)\n",
            format_table(
                (
                    "model",
                    "input",
                    "precision",
                    "segkit s/step",
                    "hand-written s/step",
                    "overhead, whole runs (median of rounds)",
                    "rounds",
                    "overhead, step by step",
                ),
                [
                    (
                        o["model"],
                        "x".join(map(str, o["input"])),
                        o["precision"],
                        o["segkit_s_per_step"],
                        o["hand_s_per_step"],
                        f"{o['overhead']:+.1%}",
                        " ".join(f"{r - 1:+.1%}" for r in o["round_ratios"]),
                        f"{o['interleaved_step_overhead']:+.1%}",
                    )
                    for o in overheads
                ],
            ),
        ]
    )


def matrix_table(matrix: list[dict]) -> str:
    return "\n".join(
        [
            "Precision x memory format x torch.compile (hand-written loop)\n",
            format_table(
                (
                    "model",
                    "precision",
                    "memory format",
                    "compile",
                    "images/s",
                    "peak MB",
                    "vs fp32 NCHW",
                ),
                [
                    (
                        r["model"],
                        r["precision"],
                        r["memory_format"],
                        r["compile"],
                        r["imgs_per_s"],
                        r["peak_mb"],
                        f"{r['speedup_vs_fp32_nchw']:.2f}x",
                    )
                    for r in matrix
                ],
            ),
        ]
    )


def retention_table(result: dict) -> str:
    seconds, cpu = result["s_per_step"], result["s_per_step_cpu_time"]
    psp = "x".join(map(str, result["pspnet_input"]))
    classifier = "x".join(map(str, result["classifier_input"]))
    return "\n".join(
        [
            "Segmentation retention (PSPNet-R50-D8 through segkit's train_step vs a torchvision "
            "ResNet-50 classifier, interleaved rounds)\n",
            format_table(
                (
                    "model",
                    "input",
                    "fp32 NCHW s/step",
                    "fast setting",
                    "s/step",
                    "speed-up",
                    "CPU s/step, fp32 / fast",
                    "speed-up, CPU time",
                ),
                [
                    (
                        "PSPNet-R50-D8",
                        psp,
                        seconds["pspnet fp32"],
                        f"precision: auto ({result['pspnet_auto_precision']}), channels-last",
                        seconds["pspnet auto"],
                        f"{result['pspnet_speedup']:.2f}x",
                        f"{cpu['pspnet fp32']:.3g} / {cpu['pspnet auto']:.3g}",
                        f"{result['pspnet_speedup_cpu_time']:.2f}x",
                    ),
                    (
                        "ResNet-50 classifier",
                        classifier,
                        seconds["resnet50 fp32"],
                        "bf16, channels-last",
                        seconds["resnet50 bf16"],
                        f"{result['classifier_speedup']:.2f}x",
                        f"{cpu['resnet50 fp32']:.3g} / {cpu['resnet50 bf16']:.3g}",
                        f"{result['classifier_speedup_cpu_time']:.2f}x",
                    ),
                ],
            ),
            f"\nretention: {result['retention']:.2f} (per round: "
            + " ".join(f"{r:.2f}" for r in result["round_retention"])
            + f"); {result['rounds']} rounds of {result['steps_per_round']} step(s) per loop; "
            f"from CPU time: {result['retention_cpu_time']:.2f} (per round: "
            + " ".join(f"{r:.2f}" for r in result["round_retention_cpu_time"])
            + ")",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds: tiny inputs, no compile")
    parser.add_argument(
        "--parts", nargs="+", default=list(PARTS), choices=PARTS, help="what to measure"
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per run (default: per model)"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="overhead rounds (default 6; quick 1)"
    )
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out")
    parser.add_argument("--compile-all", action="store_true", help="compile every model's cells")
    parser.add_argument(
        "--retention-size",
        type=int,
        nargs=2,
        metavar=("SIDE", "BATCH"),
        default=None,
        help="PSPNet's input side and batch in the retention run (default 256 2)",
    )
    parser.add_argument(
        "--retention-rounds", type=int, default=None, help="retention rounds (default 5)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="PyTorch threads (default: PyTorch's); 1 keeps the process CPU time meaningful on "
        "a machine whose cores other jobs share",
    )
    parser.add_argument(
        "--out", default=None, help="JSON path (default benchmarks/results/training.json)"
    )
    parser.add_argument("--cell", nargs=8, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cell:
        model, size, batch, steps, warmup, precision, channels_last, compile_model = args.cell
        print(
            json.dumps(
                matrix_cell(
                    model,
                    int(size),
                    int(batch),
                    int(steps),
                    int(warmup),
                    precision,
                    channels_last == "1",
                    compile_model == "1",
                )
            )
        )
        return 0
    rounds = args.rounds or (1 if args.quick else 6)
    warmup = 1 if args.quick else 2
    results: dict[str, Any] = {"quick": args.quick}
    tables = []
    if "overhead" in args.parts or "matrix" in args.parts:
        overheads, matrix = [], []
        for model in args.models:
            size, batch, steps, compile_too = MODELS[model][2] if args.quick else MODELS[model][1]
            steps = args.steps or steps
            compile_too = (compile_too or args.compile_all) and not args.no_compile
            if "overhead" in args.parts:
                overheads.append(overhead(model, size, batch, steps, warmup, rounds))
            if "matrix" in args.parts:
                matrix += run_matrix(model, size, batch, steps, warmup, compile_too)
        if "overhead" in args.parts:
            results["overhead"] = overheads
            tables.append(overhead_table(overheads))
        if "matrix" in args.parts:
            results["matrix"] = matrix
            tables.append(matrix_table(matrix))
    if "retention" in args.parts:
        (side, batch), steps, retention_rounds, classifier_side = RETENTION[
            "quick" if args.quick else "full"
        ]
        side, batch = args.retention_size or (side, batch)
        results["retention"] = retention(
            side, batch, steps, args.retention_rounds or retention_rounds, classifier_side
        )
        tables.append(retention_table(results["retention"]))
    text = "\n\n".join(tables)
    print(text)
    path = write_results("training", results, text, args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
