"""Continuing a run from its training checkpoint: what may differ, and restoring the parts.

A resumed run continues the run it resumes. Its config is compared with the checkpoint's first,
before anything is built, so that a refused resume costs nothing; the optimizer and schedule
kinds are compared before their states are loaded, since torch loads another kind's state
without complaint and fails (or silently does something else) later. The format of the state
itself is :mod:`segkit.engine.checkpoint`'s.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from segkit.engine.checkpoint import ResumeState, config_changes, describe_changes, restore_rng
from segkit.engine.distributed import World, rank_seed
from segkit.engine.parts import TrainingParts, seed_everything
from segkit.errors import CheckpointError
from segkit.validation import schema_default
from segkit.weights import load_into


def check_changes(
    state: ResumeState,
    config: dict[str, Any],
    run_dir: Path,
    *,
    allow_changes: bool,
    announce: bool = True,
) -> None:
    """Values that differ from the checkpoint's config (a bigger batch, more iterations) are
    refused unless asked for, since silently training on with them makes the run's results mean
    something else; ``announce`` prints the accepted changes (rank 0 only, under torchrun)."""
    changed = [
        key
        for key in config_changes(state.config, config)
        if not _added_at_its_default(state.config, config, key)
    ]
    if not changed or {"optimizer.type", "lr_scheduler.type"} & set(changed):
        return  # refused with its own reason in resume_parts
    listed = describe_changes(state.config, config, changed)
    if not allow_changes:
        raise CheckpointError(
            f"{state.path}: the config differs from the one the run was trained with: "
            f"{listed}. Resume with the run's own config (segkit train --resume "
            f"{run_dir}), or add --allow-changes to go on with these values"
        )
    if announce:
        print(f"segkit: note: resuming with changed values: {listed}", file=sys.stderr)


def _added_at_its_default(old: dict[str, Any], new: dict[str, Any], dotted_key: str) -> bool:
    """A key the checkpoint's config lacks (a newer segkit added it, as ``train.ema``) whose
    value is the schema's default: the run was trained as that default says, so it is no change."""
    parts = dotted_key.split(".")
    node: Any = old
    for part in parts:
        if not isinstance(node, dict):
            return False
        if part not in node:
            break
        node = node[part]
    else:
        return False  # present in the checkpoint's config: a real difference
    value: Any = new
    for part in parts:
        value = value[part]
    return _is_default(tuple(parts), value)


def _is_default(key_path: tuple[str, ...], value: Any) -> bool:
    if isinstance(value, dict):
        return all(_is_default((*key_path, k), v) for k, v in value.items())
    return value == schema_default(key_path)


def resume_parts(
    state: ResumeState, parts: TrainingParts, config: dict[str, Any], world: World
) -> None:
    """Load the model, optimizer, schedule and scaler states and every process's random
    streams from ``state``. The model gets the trained weights, which a checkpoint with a
    weight average keeps apart (its ``model`` is the average)."""
    trained = state.raw_model if state.raw_model is not None else state.model
    load_into(parts.model, trained, state.path)
    _check_same_optimizer(state, parts.optimizer, config)
    _check_same_schedule(state, config)
    try:
        parts.optimizer.load_state_dict(state.optimizer)
        parts.scheduler.load_state_dict(state.scheduler)
    except (ValueError, KeyError, RuntimeError) as error:
        raise CheckpointError(
            f"{state.path}: the optimizer or LR-scheduler state does not fit this config "
            f"(was optimizer, lr_mult or lr_scheduler changed?): {error}"
        ) from None
    if state.scaler and parts.scaler.is_enabled():
        parts.scaler.load_state_dict(state.scaler)
    _restore_rank_rng(state, world, config["train"]["seed"])
    if world.is_main and state.sampler_size != len(parts.train_set):
        print(
            f"segkit: warning: the training set has {len(parts.train_set)} samples, the "
            f"checkpoint's had {state.sampler_size}: the data order differs "
            "from the interrupted run's",
            file=sys.stderr,
        )


def _restore_rank_rng(state: ResumeState, world: World, seed: int) -> None:
    """Every process continues its own random stream. A checkpoint of another number of
    processes gives the streams of its rank 0 to a single process, and fresh ones, seeded
    from the seed, rank and iteration, to several; the data stream continues at the same
    position either way."""
    states = state.rng_per_rank
    if len(states) == world.size:
        restore_rng(states[world.rank])
    elif world.size == 1:
        restore_rng(states[0])
    else:
        seed_everything(rank_seed(seed, world.rank, state.step))
        if world.is_main:
            print(
                f"segkit: note: the checkpoint was written by {len(states)} process(es), this "
                f"run has {world.size}: the data continue where they were, the model's "
                "random numbers (dropout) are drawn afresh",
                file=sys.stderr,
            )


def _check_same_optimizer(
    state: ResumeState, optimizer: torch.optim.Optimizer, config: dict[str, Any]
) -> None:
    """An optimizer of another kind loads another's state without complaint and fails inside
    torch at the first step (``KeyError: 'momentum'``); refuse it here, saying what changed."""
    before = (state.config.get("optimizer") or {}).get("type")
    now = config["optimizer"]["type"]
    if before is None:  # a checkpoint without its config: compare the settings torch keeps
        saved = set((state.optimizer.get("param_groups") or [{}])[0]) - {"params"}
        if saved == set(optimizer.param_groups[0]) - {"params"}:
            return
        before = "another optimizer"
    elif before == now:
        return
    raise CheckpointError(
        f"{state.path}: the run was trained with optimizer '{before}', the config asks for "
        f"'{now}', whose state cannot continue the other's. Resume with optimizer.type={before}, "
        f"or start a new run from these weights (model.pretrained={state.path} and another "
        "work dir)"
    )


def _check_same_schedule(state: ResumeState, config: dict[str, Any]) -> None:
    """A scheduler loads another kind's state without complaint (``load_state_dict`` copies
    attributes), and the run would go on with a schedule that is neither; refuse it."""
    before = (state.config.get("lr_scheduler") or {}).get("type")
    now = config["lr_scheduler"]["type"]
    if before is not None and before != now:
        raise CheckpointError(
            f"{state.path}: the run was trained with lr_scheduler '{before}', the config asks "
            f"for '{now}', whose state cannot continue the other's. Resume with "
            f"lr_scheduler.type={before}, or start a new run from these weights "
            f"(model.pretrained={state.path} and another work dir)"
        )
