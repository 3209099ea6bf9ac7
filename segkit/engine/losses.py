"""The training objective: loss terms applied to every model output, weighted and summed.

``loss`` in a config is one loss spec or a list of specs, each with a ``weight``; every output of
the segmentor (``main``, ``aux0``, ``aux1``, ...) gets that same weighted sum of terms. The main
output counts once; an auxiliary head counts with its ``loss_weight`` alpha_0, decayed linearly
over training when its ``loss_decay`` is set: alpha_t = alpha_0 * (1 - t / max_iters).

The logs name each output's loss before the output weight is applied: ``loss_main``,
``loss_aux0``, ...; with several loss terms also each term, e.g. ``loss_main.dice``.

The model's outputs arrive at the heads' resolution. A loss whose ``takes_head_logits`` is true
gets them so, in the autocast dtype, and scores them as if upsampled to the label size
(cross-entropy does it band by band, never holding the full-resolution logits); the others get
the logits upsampled once per output, shared by all of them, in fp32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from segkit.builder import explaining, registry, split_extras
from segkit.label_map import IGNORE_INDEX
from segkit.schema import AuxHeadPlacement, LossTerm
from segkit.segmentor import resize_logits

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class WeightedLoss:
    name: str
    weight: float
    function: LossFunction


@dataclass
class OutputWeight:
    initial: float
    decay: bool

    def at(self, step: int, max_iters: int) -> float:
        if not self.decay:
            return self.initial
        return self.initial * max(0.0, 1.0 - step / max_iters)


class Criterion:
    """``criterion(outputs, target, step) -> (total, logs)``; ``logs`` holds detached tensors so
    that the training loop reads them only when it logs."""

    def __init__(self, terms: list[WeightedLoss], outputs: dict[str, OutputWeight], max_iters: int):
        self.terms = terms
        self.outputs = outputs
        self.max_iters = max_iters

    def to(self, device: torch.device) -> Criterion:
        for term in self.terms:
            if isinstance(term.function, nn.Module):
                term.function.to(device)
        return self

    def __call__(
        self, outputs: dict[str, torch.Tensor], target: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total = None
        logs: dict[str, torch.Tensor] = {}
        for output_name, logits in outputs.items():
            full_size = None
            output_loss = None
            for term in self.terms:
                if getattr(term.function, "takes_head_logits", False):
                    value = term.function(logits, target)
                else:
                    if full_size is None:  # losses in fp32, whatever the autocast dtype
                        full_size = resize_logits(logits, target.shape[-2:]).float()
                    value = term.function(full_size, target)
                if len(self.terms) > 1:
                    logs[f"loss_{output_name}.{term.name}"] = value.detach()
                weighted = term.weight * value
                output_loss = weighted if output_loss is None else output_loss + weighted
            logs[f"loss_{output_name}"] = output_loss.detach()
            weight = self.output_weight(output_name, step)
            contribution = output_loss if weight == 1.0 else weight * output_loss
            total = contribution if total is None else total + contribution
        return total, logs

    def output_weight(self, output_name: str, step: int) -> float:
        if output_name not in self.outputs:
            raise KeyError(f"the model returned an output '{output_name}' that has no loss weight")
        return self.outputs[output_name].at(step, self.max_iters)


def build_criterion(config: dict[str, Any]) -> Criterion:
    if isinstance(config["loss"], list):
        specs, key_paths = config["loss"], [f"loss.{i}" for i in range(len(config["loss"]))]
    else:
        specs, key_paths = [config["loss"]], ["loss"]
    terms = []
    for spec, key_path in zip(specs, key_paths):
        loss_spec, extras = split_extras(spec, LossTerm)
        with explaining(key_path):
            function = registry().build("loss", loss_spec, ignore_index=IGNORE_INDEX)
        terms.append(
            WeightedLoss(loss_spec["type"].rpartition(":")[2], extras["loss_weight"], function)
        )
    _name_duplicates(terms)
    outputs = {"main": OutputWeight(1.0, False)}
    for number, aux_spec in enumerate(config["model"].get("aux_heads") or []):
        _, placement = split_extras(aux_spec, AuxHeadPlacement)
        outputs[f"aux{number}"] = OutputWeight(placement["loss_weight"], placement["loss_decay"])
    return Criterion(terms, outputs, config["train"]["max_iters"])


def _name_duplicates(terms: list[WeightedLoss]) -> None:
    """Two terms of the same type are logged as ``name`` and ``name_1``."""
    seen: dict[str, int] = {}
    for term in terms:
        count = seen.get(term.name, 0)
        seen[term.name] = count + 1
        if count:
            term.name = f"{term.name}_{count}"
