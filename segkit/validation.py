"""Validating a config against the schema and the component signatures, and resolving it.

One walk does both: it collects every problem (unknown key, unknown component, missing or
unexpected argument, wrong type, a value outside its range) with its file:line and a suggestion,
and builds the resolved config, in which every default is written out, so that the run
directory's ``config.yaml`` can be run again as is and shows exactly what was used. Then the
rules that tie keys together are checked: ``model.num_classes`` against the classes a dataset
declares, a sliding-window mode against its window, and iteration counts that cannot exceed the
run (a warmup), which are shortened to it with a note. Every check a config gets is here, so
``segkit config --check`` refuses exactly what ``segkit train`` would.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import os
import sys
import typing
from collections.abc import Iterable
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from segkit import typecheck
from segkit.components import CORE_ARGUMENTS, Registry
from segkit.config import ConfigSource, KeyPath, apply_overrides, dotted, read_config_files
from segkit.constraints import ClassIndices, OnePerClass, UpToRunLength
from segkit.errors import ConfigError, SegkitError, UnknownComponentError
from segkit.inputs import backbone_channels
from segkit.schema import ConfigSchema, Slot, is_section

_PLAIN_TYPES = (type(None), bool, int, float, str)


def load_config(
    path: str | os.PathLike,
    overrides: Iterable[str] = (),
    *,
    check_val_classes: bool = True,
    check_channels: bool = True,
) -> dict:
    """Read, override, validate and resolve a config; raise one ConfigError listing all problems.
    ``check_val_classes=False`` where ``data.val`` is not scored with the model's classes:
    labelled in merged classes (``segkit eval --merge``), or not read at all (``predict``).
    ``check_channels=False`` where ``data.mean``/``data.std`` are not used but measured
    (``segkit data stats``, which a new channel count needs before it has its values)."""
    return _resolved(read_config_files(path), overrides, check_val_classes, check_channels)


def load_stored_config(
    data: dict,
    where: str | os.PathLike,
    overrides: Iterable[str] = (),
    *,
    check_val_classes: bool = True,
) -> dict:
    """:func:`load_config` of a config that is already data, as a checkpoint stores it;
    problems name ``where`` (e.g. ``last.pt (its stored config)``) instead of a file:line. The
    stored config went through validation when it was saved, but the plugins installed now, or
    the overrides, may not fit it."""
    source = ConfigSource(copy.deepcopy(data), {}, Path(where))
    return _resolved(source, overrides, check_val_classes)


def _resolved(
    source: ConfigSource,
    overrides: Iterable[str],
    check_val_classes: bool,
    check_channels: bool = True,
) -> dict:
    from segkit.plugins import get_plugins

    registry = get_plugins().registry
    apply_overrides(
        source,
        overrides,
        lambda src, key_path: known_keys(src, key_path, registry),
        lambda key_path: schema_default(key_path, registry),
        lambda key_path, new_type: keys_for_type(key_path, new_type, registry),
    )
    resolved = Validator(source, registry, check_val_classes, check_channels).resolve()
    if source.problems:
        raise ConfigError(source.problems)
    if os.environ.get("RANK", "0") == "0":  # once per run, also under torchrun
        for note in source.notes:
            print(f"segkit: note: {note}", file=sys.stderr)
    return resolved


def known_keys(source: ConfigSource, key_path: KeyPath, registry: Registry) -> list[str]:
    """The keys a container at ``key_path`` may hold: written ones plus the schema's."""
    quiet = ConfigSource(source.data, source.origins, source.path)
    resolved = Validator(quiet, registry).resolve()
    keys: set[str] = set()
    for tree in (source.data, resolved):
        node: Any = tree
        for part in key_path:
            node = (
                node.get(part)
                if isinstance(node, dict)
                else (
                    node[part]
                    if isinstance(node, list) and isinstance(part, int) and part < len(node)
                    else None
                )
            )
        if isinstance(node, dict):
            keys.update(str(k) for k in node)
    return sorted(keys)


def schema_default(key_path: KeyPath, registry: Registry | None = None) -> Any:
    """The default the schema itself gives at ``key_path`` (a deep copy), or None. Only the
    sections and the component slots' default specs are walked, not component signatures.
    With ``registry``, a default list of components keeps only those it has (:func:`available`)."""
    node: Any = ConfigSchema
    for part in key_path:
        if is_section(node):
            field = next((f for f in fields(node) if f.name == part), None)
            if field is None:
                return None
            if is_section(typing.get_type_hints(node, include_extras=True)[field.name]):
                node = typing.get_type_hints(node, include_extras=True)[field.name]
            elif field.default is not MISSING:
                node = copy.deepcopy(field.default)
            elif field.default_factory is not MISSING:
                node = field.default_factory()
                if registry is not None:
                    node = available(node, field.metadata.get("slot"), registry)
            else:
                return None
        elif (
            isinstance(node, dict)
            and part in node
            or isinstance(node, list)
            and isinstance(part, int)
            and part < len(node)
        ):
            node = node[part]
        else:
            return None
    return None if is_section(node) else node


def keys_for_type(key_path: KeyPath, new_type: Any, registry: Registry) -> set[str] | None:
    """The keys a component spec at ``key_path`` may keep when its type becomes ``new_type``:
    the new type's arguments and the slot's core keys (``in_index``, ``transforms``,
    ``lr_mult``, ...); None where the schema puts no component or the new type takes anything."""
    slot = slot_at(key_path)
    if slot is None or not isinstance(new_type, str):
        return None
    try:
        component = registry.get(slot.kind, new_type)
        if component.accepts_any_keyword():
            return None
        arguments = {p.name for p in component.parameters()}
    except SegkitError:
        return None  # an unknown type is reported by the validation
    return arguments | ({f.name for f in fields(slot.extras)} if slot.extras else set())


def slot_at(key_path: KeyPath) -> Slot | None:
    """The slot of the component spec at ``key_path``, or None where the schema puts none."""
    schema: Any = ConfigSchema
    slot: Slot | None = None
    want_item = False
    for part in key_path:
        if want_item:
            if not isinstance(part, int):
                return None
            want_item = False
            continue
        owner = slot.extras if slot is not None else schema
        if owner is None or not is_section(owner):
            return None
        field = next((f for f in fields(owner) if f.name == part), None)
        if field is None:
            return None
        if field.metadata.get("slot") is not None:
            slot = field.metadata["slot"]
            want_item = slot.many == "yes"
        elif slot is None and is_section(typing.get_type_hints(owner)[part]):
            schema = typing.get_type_hints(owner)[part]
        else:
            return None
    return None if want_item else slot


def available(default: Any, slot: Slot | None, registry: Registry) -> Any:
    """A schema default that is a list of components (``logging.loggers``) keeps only those some
    loaded plugin provides: disabling or uninstalling a plugin then removes its default logger
    and nothing else. A component the config writes itself is never dropped: if no plugin
    provides it, validation says so."""
    if slot is None or slot.many != "yes" or not isinstance(default, list):
        return default
    return [spec for spec in default if registry.provides(slot.kind, spec["type"])]


def _unknown(what: str, key: Any, candidates: list[str]) -> str:
    """'unknown key in section 'train'; did you mean 'max_iters'?' or a list of what is allowed."""
    close = difflib.get_close_matches(str(key), candidates, n=3)
    if close:
        return f"unknown {what}; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    if not candidates:
        return f"unknown {what} (none are accepted here)"
    return f"unknown {what} (accepted: {', '.join(candidates)})"


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN_TYPES):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _plain(value: Any) -> Any:
    """Tuples become lists, as YAML would read them back."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class Validator:
    def __init__(
        self,
        source: ConfigSource,
        registry: Registry,
        check_val_classes: bool = True,
        check_channels: bool = True,
    ):
        self.source = source
        self.registry = registry
        self.check_val_classes = check_val_classes
        self.check_channel_counts = check_channels
        self.up_to_run_length: list[KeyPath] = []
        self.per_class: list[tuple[KeyPath, Any, type]] = []  # (key, value, constraint kind)

    def report(self, key_path: KeyPath, message: str) -> None:
        self.source.report(key_path, message)

    def resolve(self) -> dict:
        resolved = self.section(self.source.data, ConfigSchema, ())
        self.shorten_to_run(resolved)
        self.check_declared_classes(resolved)
        self.check_window(resolved)
        self.check_per_class(resolved)
        if self.check_channel_counts:
            self.check_channels(resolved)
        return resolved

    # ---- rules between keys ----------------------------------------------------------------

    def shorten_to_run(self, resolved: dict) -> None:
        max_iters = resolved.get("train", {}).get("max_iters")
        if not isinstance(max_iters, int) or max_iters < 1:
            return
        for key_path in self.up_to_run_length:
            container = resolved
            for part in key_path[:-1]:
                container = container[part]
            value = container.get(key_path[-1])
            if isinstance(value, int) and value > max_iters:
                container[key_path[-1]] = max_iters
                self.source.notes.append(
                    f"{dotted(key_path)} {value} is longer than the run (train.max_iters "
                    f"{max_iters}); shortened to {max_iters}"
                )

    def check_declared_classes(self, resolved: dict) -> None:
        """A dataset class that knows its classes without its files (``classes`` on the class,
        as ADE20K and Cityscapes have) is checked against the model here; the classes read from
        files (a folder's list) are checked when the data is opened."""
        num_classes = resolved.get("model", {}).get("num_classes")
        if not isinstance(num_classes, int):
            return
        disagree = {}
        for split in ("train", "val") if self.check_val_classes else ("train",):
            spec = resolved.get("data", {}).get(split)
            if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
                continue
            try:
                factory = self.registry.get("dataset", spec["type"]).load()
            except SegkitError:
                continue  # already reported
            declared = vars(factory).get("classes") if isinstance(factory, type) else None
            if isinstance(declared, (list, tuple)) and len(declared) != num_classes:
                disagree[f"data.{split} ({spec['type']})"] = len(declared)
        if disagree:
            which = " and ".join(disagree)
            counts = sorted(set(disagree.values()))
            self.report(
                ("model", "num_classes"),
                f"is {num_classes} but {which} {'have' if len(disagree) > 1 else 'has'} "
                f"{' or '.join(map(str, counts))} classes; "
                f"set model.num_classes: {counts[0]}"
                + (
                    "; to score a model on merged classes, use segkit eval --merge"
                    if min(counts) < num_classes
                    else ""
                ),
            )

    def check_per_class(self, resolved: dict) -> None:
        """Per-class values (``OnePerClass``) and class indices (``ClassIndices``) against
        ``model.num_classes``: a loss would otherwise fail at its first batch, mid-run."""
        num_classes = resolved.get("model", {}).get("num_classes")
        if not isinstance(num_classes, int):
            return
        for key_path, value, kind in self.per_class:
            if not isinstance(value, (list, tuple)):
                continue
            if kind is OnePerClass and len(value) != num_classes:
                self.report(
                    key_path,
                    f"has {len(value)} value(s) but model.num_classes is {num_classes}: "
                    f"give one value per class",
                )
            elif kind is ClassIndices and any(
                isinstance(v, int) and v >= num_classes for v in value
            ):
                self.report(
                    key_path,
                    f"{value} names classes beyond model.num_classes {num_classes}: use "
                    f"indices 0..{num_classes - 1}",
                )

    def check_window(self, resolved: dict) -> None:
        section = resolved.get("eval", {})
        if section.get("mode") == "slide" and section.get("crop") is None:
            self.report(
                ("eval", "mode"),
                "slide needs the window size: set eval.crop: [height, width]",
            )

    def check_channels(self, resolved: dict) -> None:
        """One data.mean and data.std value per channel the backbone takes: a 4-channel model
        with ImageNet's three RGB values would otherwise fail at the first batch, or a
        3-channel one with four values normalise nothing it was meant to."""
        backbone = resolved.get("model", {}).get("backbone")
        data = resolved.get("data", {})
        if not isinstance(backbone, dict) or not isinstance(backbone.get("type"), str):
            return
        channels = backbone_channels(backbone)
        has_option = "in_channels" in backbone
        for key in ("mean", "std"):
            values = data.get(key)
            if not isinstance(values, list) or len(values) == channels:
                continue
            if has_option:
                why = f"model.backbone.in_channels is {channels}"
                fix = f"give {channels} values, or set in_channels: {len(values)}"
            else:
                why = f"backbone '{backbone['type']}' takes {channels} (RGB; it has no in_channels option)"
                fix = f"give {channels} values, or use a backbone with an in_channels option"
            self.report(
                ("data", key),
                f"has {len(values)} value(s) but {why}: one value per input channel, in the "
                f"images' units; {fix} (`segkit data stats CONFIG` measures them)",
            )

    # ---- sections --------------------------------------------------------------------------

    def section(self, value: Any, schema: type, key_path: KeyPath) -> dict:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.report(
                key_path, f"expected a mapping of keys, got {typecheck.describe_value(value)}"
            )
            return {}
        hints = typing.get_type_hints(schema, include_extras=True)
        known = [f.name for f in fields(schema)]
        for key in value:
            if key not in known:
                where = f"section '{key_path[-1]}'" if key_path else "the config"
                self.report((*key_path, key), _unknown(f"key in {where}", key, known))
        resolved = {}
        for f in fields(schema):
            slot: Slot | None = f.metadata.get("slot")
            child_path = (*key_path, f.name)
            if f.name in value:
                child = value[f.name]
            elif f.default is not MISSING:
                child = f.default
            elif f.default_factory is not MISSING:
                child = available(f.default_factory(), slot, self.registry)
            else:
                self.report(child_path, f"missing required key ({f.metadata.get('help', '')})")
                continue
            resolved[f.name] = self.value(child, hints[f.name], slot, child_path)
        return resolved

    def value(self, value: Any, hint: Any, slot: Slot | None, key_path: KeyPath) -> Any:
        if slot is not None:
            if value is None and typecheck.matches(None, hint):
                return None
            return self.slot(value, slot, key_path)
        if is_section(hint):
            return self.section(value, hint, key_path)
        if not typecheck.matches(value, hint):
            self.report(
                key_path,
                f"expected {typecheck.describe(hint)}, got {typecheck.describe_value(value)}",
            )
        return _plain(value)

    # ---- components ------------------------------------------------------------------------

    def slot(self, value: Any, slot: Slot, key_path: KeyPath) -> Any:
        if slot.many == "yes" or (slot.many == "either" and isinstance(value, list)):
            if not isinstance(value, list):
                self.report(key_path, f"expected a list of {slot.kind} specs ({{type: NAME, ...}})")
                return []
            if len(value) < slot.least:
                self.report(key_path, f"needs at least {slot.least} {slot.kind}, got an empty list")
            return [self.component(item, slot, (*key_path, i)) for i, item in enumerate(value)]
        return self.component(value, slot, key_path)

    def component(self, spec: Any, slot: Slot, key_path: KeyPath) -> Any:
        kind = slot.kind
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
            self.report(key_path, f"expected a {kind} spec {{type: NAME, ...}}, got {spec!r}")
            return spec
        try:
            component = self.registry.get(kind, spec["type"])
        except UnknownComponentError as error:
            self.report((*key_path, "type"), str(error))
            return _plain(spec)
        try:
            parameters = {p.name: p for p in component.parameters()}
            hints = component.type_hints()
            open_ended = component.accepts_any_keyword()
        except SegkitError as error:
            self.report((*key_path, "type"), str(error))
            return _plain(spec)
        extras = {f.name: f for f in fields(slot.extras)} if slot.extras else {}
        extra_hints = typing.get_type_hints(slot.extras, include_extras=True) if slot.extras else {}
        core = CORE_ARGUMENTS.get(kind, ())
        allowed = [*parameters, *extras]
        for key, value in spec.items():
            if key == "type":
                continue
            child_path = (*key_path, key)
            if key in core:
                self.report(
                    child_path, f"'{key}' is supplied by segkit for every {kind}; remove it"
                )
            elif key in parameters:
                hint = hints.get(key, inspect.Parameter.empty)
                if any(isinstance(c, UpToRunLength) for c in typecheck.constraints(hint)):
                    self.up_to_run_length.append(child_path)
                for rule in typecheck.constraints(hint):
                    if isinstance(rule, (OnePerClass, ClassIndices)):
                        self.per_class.append((child_path, value, type(rule)))
                if not typecheck.matches(value, hint):
                    self.report(
                        child_path,
                        f"{kind} '{component.name}' expects {typecheck.describe(hint)}, "
                        f"got {typecheck.describe_value(value)}",
                    )
            elif key not in extras and not open_ended:
                self.report(
                    child_path, _unknown(f"argument of {kind} '{component.name}'", key, allowed)
                )
        resolved: dict[str, Any] = {"type": spec["type"]}
        for name, parameter in parameters.items():
            if name in spec:
                resolved[name] = _plain(spec[name])
            elif parameter.default is inspect.Parameter.empty:
                self.report(
                    (*key_path, name),
                    f"missing required argument '{name}' of {kind} '{component.name}'",
                )
            elif _is_plain(parameter.default):
                resolved[name] = _plain(parameter.default)
        for name, extra in extras.items():
            sub_slot = extra.metadata.get("slot")
            if name in spec:
                value = spec[name]
            else:
                value = extra.default if extra.default is not MISSING else extra.default_factory()
            resolved[name] = self.value(value, extra_hints[name], sub_slot, (*key_path, name))
        if open_ended:
            resolved.update({k: _plain(v) for k, v in spec.items() if k not in resolved})
        return resolved
