"""The parts a training run is made of, built from a resolved config.

:func:`build_training_parts` is the one place that turns a config into the objects the loop
uses; the trainer, the benchmarks and the tests take the same parts, so a benchmark measures the
step that training runs. Building is this process's own work: no communication, no files.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader, Dataset

from segkit.builder import build_lr_scheduler, build_model, build_optimizer, explaining, registry
from segkit.data import build_dataset, collate, leave_stop_signals_to_the_main_process
from segkit.engine.distributed import World, rank_seed
from segkit.engine.evaluator import Evaluator, bootstrap_settings, validation_loader
from segkit.engine.inference import InferenceSettings, InputNormalizer
from segkit.engine.losses import Criterion, build_criterion
from segkit.engine.runtime import Runtime
from segkit.engine.sampler import InfiniteSampler
from segkit.engine.sync_bn import synchronize_batch_norms
from segkit.engine.visualize import default_palette
from segkit.errors import ConfigError
from segkit.labeltraps import warn_about_traps
from segkit.plugins import check_logger


@dataclass
class TrainingParts:
    """Everything a training step and its validation touch. ``model`` is the segmentor;
    ``train_model`` is what the loop calls: the model itself, or its DistributedDataParallel
    wrapper with several processes."""

    train_set: Dataset
    val_set: Dataset | None
    classes: list[str]
    palette: list[tuple[int, int, int]]
    model: nn.Module
    train_model: nn.Module
    synced_norms: int
    criterion: Criterion
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    normalizer: InputNormalizer
    evaluator: Evaluator
    loggers: dict[str, object]
    runtime: Runtime


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_training_parts(
    config: dict[str, Any], runtime: Runtime, world: World | None = None
) -> TrainingParts:
    """Datasets, model, loss, optimizer, schedule, scaler, evaluator and loggers of ``config``,
    seeded by ``train.seed`` so that every process starts from the same weights."""
    world = world or World()
    train_cfg, data_cfg = config["train"], config["data"]
    seed_everything(train_cfg["seed"])

    train_set = build_dataset(config, "train")
    val_set = build_dataset(config, "val") if data_cfg.get("val") else None
    if len(train_set) == 0:
        raise ConfigError("data.train: the training dataset is empty")
    classes = list(train_set.classes)
    palette = list(getattr(train_set, "palette", None) or default_palette(len(classes)))
    _check_classes(config["model"]["num_classes"], train_set, val_set)
    if world.is_main:
        warn_about_traps(train_set.dataset)

    model = runtime.place(build_model(config))
    synced_norms = _synchronize_batch_norms(model, train_cfg["sync_bn"], runtime.device, world)
    if world.size > 1:
        # Same initial weights everywhere, then each process its own dropout masks.
        seed_everything(rank_seed(train_cfg["seed"], world.rank))
    criterion = build_criterion(config).to(runtime.device)
    optimizer = build_optimizer(config, model)
    normalizer = runtime.normalizer(data_cfg["mean"], data_cfg["std"])
    eval_cfg = config["eval"]
    return TrainingParts(
        train_set=train_set,
        val_set=val_set,
        classes=classes,
        palette=palette,
        model=model,
        train_model=_distributed(model, runtime.device, world),
        synced_norms=synced_norms,
        criterion=criterion,
        optimizer=optimizer,
        scheduler=build_lr_scheduler(config, optimizer),
        scaler=torch.amp.GradScaler(
            runtime.device.type, enabled=runtime.precision.needs_grad_scaler
        ),
        normalizer=normalizer,
        evaluator=Evaluator(
            InferenceSettings.from_config(eval_cfg),
            classes,
            normalizer,
            runtime.precision,
            panels=eval_cfg["panels"],
            world=world,
            ci=bootstrap_settings(eval_cfg) if eval_cfg.get("ci") else None,
        ),
        loggers=build_loggers(config),
        runtime=runtime,
    )


def build_loggers(config: dict[str, Any]) -> dict[str, object]:
    """The objects of ``logging.loggers`` by a name for messages (the logger's type, numbered
    when a type is used twice); the trainer registers them for its run only."""
    loggers: dict[str, object] = {}
    for number, spec in enumerate(config["logging"]["loggers"]):
        with explaining(f"logging.loggers.{number}"):
            name = f"logger {spec['type']}"
            if name in loggers:
                name = f"{name} #{number}"
            logger = registry().build("logger", spec)
            check_logger(logger, name, registry().get("logger", spec["type"]).provider.plugin)
            loggers[name] = logger
    return loggers


def train_loader(
    config: dict[str, Any], parts: TrainingParts, position: int = 0, world: World | None = None
) -> tuple[DataLoader, InfiniteSampler]:
    """The endless training stream from sample ``position`` on, and its sampler (which the
    checkpoint records)."""
    world = world or World()
    seed, data_cfg = config["train"]["seed"], config["data"]
    sampler = InfiniteSampler(
        len(parts.train_set), seed=seed, start=position, rank=world.rank, world_size=world.size
    )
    loader = DataLoader(
        parts.train_set,
        batch_size=data_cfg["batch_size"],
        sampler=sampler,
        num_workers=data_cfg["workers"],
        collate_fn=collate,
        worker_init_fn=leave_stop_signals_to_the_main_process,
        pin_memory=pin_memory(data_cfg["pin_memory"], parts.runtime.device),
        # The base seed of the workers comes from this generator, not from the global RNG,
        # so that creating the loader does not shift the model's random stream.
        generator=torch.Generator().manual_seed(seed),
    )
    return loader, sampler


def val_loader(
    config: dict[str, Any], parts: TrainingParts, world: World | None = None
) -> DataLoader | None:
    """This process's share of the validation set, or None without one."""
    if parts.val_set is None:
        return None
    world = world or World()
    data_cfg = config["data"]
    return validation_loader(
        parts.val_set,
        data_cfg["val_batch_size"],
        data_cfg["workers"],
        pin_memory(data_cfg["pin_memory"], parts.runtime.device),
        data_cfg["persistent_workers"],
        config["train"]["seed"],
        world.rank,
        world.size,
    )


def pin_memory(setting: bool | None, device: torch.device) -> bool:
    """``data.pin_memory``: pinned host memory speeds copies to a CUDA device and nothing else."""
    return device.type == "cuda" if setting is None else bool(setting)


def _check_classes(num_classes: int, train_set: Dataset, val_set: Dataset | None) -> None:
    """The dataset's classes as read from its files (a classes CSV, a label map) against the
    model; the validator checks the classes a dataset declares without data."""
    for split, dataset in (("train", train_set), ("val", val_set)):
        if dataset is not None and len(dataset.classes) != num_classes:
            raise ConfigError(
                f"model.num_classes is {num_classes} but data.{split} has "
                f"{len(dataset.classes)} classes"
            )


def _synchronize_batch_norms(
    model: nn.Module, setting: bool | str, device: torch.device, world: World
) -> int:
    """With several processes, batch norm over the global batch where ``train.sync_bn`` says
    (auto: the components built with ``norm: syncbn``); returns how many layers."""
    if world.size == 1 or setting is False:
        return 0
    scope = "all" if setting is True else "marked"
    count = synchronize_batch_norms(model, scope, device)
    norms = sum(isinstance(module, _BatchNorm) for module in model.modules())
    if norms > count and world.is_main:
        print(
            f"segkit: note: {norms - count} batch norm layer(s) normalise over each "
            "process's own images (built with norm: bn); norm: syncbn or "
            "train.sync_bn=true uses the global batch",
            file=sys.stderr,
        )
    return count


def _distributed(model: nn.Module, device: torch.device, world: World) -> nn.Module:
    """Wrapped in DistributedDataParallel with several processes (which averages the
    gradients), the model itself with one."""
    if world.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        gradient_as_bucket_view=True,
    )
