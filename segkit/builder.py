"""Turning a resolved config into objects: the model, the optimizer, the LR scheduler.

Factories raise ``ValueError`` for options they cannot honour (``depth: 77``); here such errors
gain the config key they came from, so the user sees which line to change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import MISSING, fields
from typing import Any

from segkit.components import Registry
from segkit.errors import ConfigError, SegkitError
from segkit.plugins import get_plugins
from segkit.schema import AuxHeadPlacement, HeadPlacement, OptimizerExtras, core_keys


def registry() -> Registry:
    """The registry of every loaded plugin's components."""
    return get_plugins().registry


@contextmanager
def explaining(key_path: str) -> Iterator[None]:
    """Prefix a factory's complaint with the config key that caused it."""
    try:
        yield
    except ConfigError:
        raise
    except (SegkitError, ValueError) as error:
        raise ConfigError(f"{key_path}: {error}") from error


def build(kind: str, spec: dict[str, Any], **core_arguments: Any) -> Any:
    """One component from ``{type: NAME, ...}``; core-supplied arguments go in as keywords.
    Core keys of a config slot (a head's ``in_index``, a loss's ``loss_weight``) are left out
    unless the factory itself takes them, so a spec from a resolved config can be passed as is."""
    if not isinstance(spec.get("type"), str):
        raise ConfigError(f"a {kind} spec needs 'type: NAME', got {spec!r}")
    with explaining(f"{kind} '{spec['type']}'"):
        component = registry().get(kind, spec["type"])
        own = {p.name for p in component.parameters()}
        options = {k: v for k, v in spec.items() if k in own or k not in core_keys(kind)}
        return registry().build(kind, options, **core_arguments)


def split_extras(spec: dict[str, Any], extras: type) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate the core keys of a slot (e.g. a head's ``in_index``) from the factory's arguments,
    filling the core keys' defaults."""
    names = {f.name for f in fields(extras)}
    values = {}
    for f in fields(extras):
        if f.name in spec:
            values[f.name] = spec[f.name]
        else:
            values[f.name] = f.default if f.default is not MISSING else f.default_factory()
    return {k: v for k, v in spec.items() if k not in names}, values


def build_model(config: dict[str, Any]):
    """The segmentor of ``config['model']``: backbone, head, auxiliary heads, pretrained weights."""
    from segkit.segmentor import Segmentor, check_backbone, stage_channels

    model = config["model"]
    num_classes = model["num_classes"]
    with explaining("model.backbone"):
        component = registry().get("backbone", model["backbone"]["type"])
        backbone = registry().build("backbone", model["backbone"])
        label = f"backbone '{component.name}' (plugin '{component.provider.plugin}')"
        if model["backbone"].get("num_classes") is not None:
            label += " with num_classes (which makes it an ImageNet classifier: leave it out)"
        check_backbone(backbone, label)

    def build_head(spec: dict, placement: type, key_path: str):
        head_spec, core = split_extras(spec, placement)
        with explaining(key_path):
            try:
                in_channels = stage_channels(backbone, core["in_index"])
            except IndexError:
                raise ConfigError(
                    f"{key_path}.in_index: {core['in_index']} is out of range; the backbone has "
                    f"{len(backbone.out_channels)} stages (indices 0..{len(backbone.out_channels) - 1})"
                ) from None
            head = registry().build(
                "head", head_spec, in_channels=in_channels, num_classes=num_classes
            )
        return head, core

    head, head_core = build_head(model["head"], HeadPlacement, "model.head")
    aux_heads, aux_indices = [], []
    for number, spec in enumerate(model.get("aux_heads") or []):
        aux, core = build_head(spec, AuxHeadPlacement, f"model.aux_heads.{number}")
        aux_heads.append(aux)
        aux_indices.append(core["in_index"])
    segmentor = Segmentor(backbone, head, head_core["in_index"], aux_heads, aux_indices)
    if model.get("pretrained"):
        from segkit.inputs import backbone_channels
        from segkit.weights import load_into, read_checkpoint, segmentor_state_dict

        path = model["pretrained"]
        state = segmentor_state_dict(read_checkpoint(path), path)
        load_into(segmentor, state, path, in_channels=backbone_channels(model["backbone"]))
    return segmentor


def parameter_groups(model, lr_mult: dict[str, float], decay_norm_and_bias: bool) -> list[dict]:
    """Trainable parameters grouped by learning-rate multiplier (longest matching name prefix)
    and by whether weight decay applies (1-D tensors are norm weights and biases)."""
    prefixes = sorted(lr_mult, key=len, reverse=True)
    groups: dict[tuple[str, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        prefix = next((p for p in prefixes if name == p or name.startswith(p + ".")), "")
        decays = decay_norm_and_bias or parameter.ndim > 1
        key = (prefix, decays)
        if key not in groups:
            groups[key] = {
                "params": [],
                "name": prefix or "default",
                "lr_mult": lr_mult.get(prefix, 1.0),
            }
            if not decays:
                groups[key]["weight_decay"] = 0.0
        groups[key]["params"].append(parameter)
    return list(groups.values())


def build_optimizer(config: dict[str, Any], model):
    spec, extras = split_extras(config["optimizer"], OptimizerExtras)
    names = [name for name, _ in model.named_parameters()]
    for prefix in extras["lr_mult"]:
        if not any(n == prefix or n.startswith(prefix + ".") for n in names):
            parts = sorted({n.split(".")[0] for n in names})
            raise ConfigError(
                f"optimizer.lr_mult: '{prefix}' matches no parameter name; "
                f"the model's parts are {', '.join(parts)}"
            )
    groups = parameter_groups(model, extras["lr_mult"], extras["decay_norm_and_bias"])
    with explaining("optimizer"):
        optimizer = registry().build("optimizer", spec, params=groups)
    for group in optimizer.param_groups:
        group["lr"] *= group.get("lr_mult", 1.0)
    return optimizer


def build_lr_scheduler(config: dict[str, Any], optimizer):
    with explaining("lr_scheduler"):
        return registry().build(
            "lr_scheduler",
            config["lr_scheduler"],
            optimizer=optimizer,
            max_iters=config["train"]["max_iters"],
        )
