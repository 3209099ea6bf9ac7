"""Loading configs: YAML with ``_base_`` inheritance, command-line overrides, and where each key
came from (file and line), so that every problem can point at the line to fix.

Rules: ``_base_`` is a path or a list of paths relative to the file; later bases and then the file
itself win; dicts merge deeply, lists replace, and a dict with ``_delete_: true`` replaces what it
would have merged into. An override ``a.b=v`` parses ``v`` as YAML and must name a key that exists
(written in the config or known to its schema); ``+a.b=v`` may add one.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from segkit.errors import ConfigError

KeyPath = tuple  # of str (dict keys) and int (list indices)
Origins = dict  # KeyPath -> "file:line"


class ConfigSource:
    """A merged config before validation, with the origin of every key."""

    def __init__(self, data: dict, origins: Origins, path: Path):
        self.data = data
        self.origins = origins
        self.path = path
        self.problems: list[str] = []
        self.notes: list[str] = []  # what validation changed, e.g. a warmup shortened to the run

    def where(self, key_path: KeyPath) -> str:
        """The file:line that set ``key_path``, or of its closest ancestor that has one."""
        for end in range(len(key_path), -1, -1):
            origin = self.origins.get(tuple(key_path[:end]))
            if origin:
                return origin
        return display_path(self.path)

    def report(self, key_path: KeyPath, message: str) -> None:
        self.problems.append(f"{self.where(key_path)}: {dotted(key_path)}: {message}")


def dotted(key_path: KeyPath) -> str:
    return ".".join(str(part) for part in key_path) or "<top level>"


def display_path(path: Path) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return str(path) if relative.startswith("..") else relative


# ---- YAML with line numbers --------------------------------------------------------------------


class ConfigLoader(yaml.SafeLoader):
    """Safe YAML that also reads ``1e-4`` as a number: YAML 1.1, which PyYAML follows, wants a
    dot in the mantissa (``1.0e-4``), and a learning rate written the usual way would otherwise
    be the string '1e-4'."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> tuple[Any, Origins]:
    """Parse one YAML file into plain data plus the line of every mapping key and list item."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{display_path(path)}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{display_path(path)}: is a folder, not a config file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{display_path(path)}: cannot read the config: {error}") from None
    return load_yaml_text(text, display_path(path))


# A config is a few hundred values a few levels deep. The bounds keep hostile YAML (an alias
# that expands to billions of values, nesting thousands of levels deep) from taking minutes and
# gigabytes before anything could be said about it.
MAX_VALUES = 100_000
MAX_DEPTH = 64


def load_yaml_text(text: str, file: str) -> tuple[Any, Origins]:
    """``text`` as plain data with origins, or one ConfigError that says what is wrong where."""
    loader = ConfigLoader(text)
    try:
        node = loader.get_single_node()
        origins: Origins = {}
        builder = _Builder(loader, origins, file)
        data = builder.build(node, ()) if node else {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark else file
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(
            f"{file}: nested more than {MAX_DEPTH} levels deep; a config is a few levels deep"
        ) from None
    finally:
        loader.dispose()
    return data, origins


class _Builder:
    """Plain data from composed YAML nodes, recording the line of every key and list item.

    Walking the nodes ourselves, rather than letting PyYAML build shared objects, gives each
    value its own origin; it also makes aliases count for what they expand to."""

    def __init__(self, loader: ConfigLoader, origins: Origins, file: str):
        self.loader, self.origins, self.file = loader, origins, file
        self.values = 0
        self.open: set[int] = set()  # the nodes being built, to find one that contains itself

    def where(self, node) -> str:
        return f"{self.file}:{node.start_mark.line + 1}"

    def build(self, node, key_path: KeyPath) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise ConfigError(
                f"{self.where(node)}: {dotted(key_path)}: the config expands to over "
                f"{MAX_VALUES} values (anchors and aliases that repeat each other?)"
            )
        if len(key_path) > MAX_DEPTH:
            raise ConfigError(
                f"{self.where(node)}: nested more than {MAX_DEPTH} levels deep; a config is a "
                "few levels deep"
            )
        if not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            return self.loader.construct_object(node, deep=True)
        if id(node) in self.open:
            raise ConfigError(
                f"{self.where(node)}: {dotted(key_path)}: an alias refers to the value that "
                "contains it, which would never end"
            )
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return self.sequence(node, key_path)
            return self.mapping(node, key_path)
        finally:
            self.open.discard(id(node))

    def sequence(self, node, key_path: KeyPath) -> list:
        result = []
        for index, item in enumerate(node.value):
            self.origins[(*key_path, index)] = self.where(item)
            result.append(self.build(item, (*key_path, index)))
        return result

    def mapping(self, node, key_path: KeyPath) -> dict:
        self.refuse_complex_keys(node, key_path)
        _refuse_repeated_keys(self.loader, node, key_path, self.file)
        self.count_merged(node, key_path)
        self.loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
        self.refuse_complex_keys(node, key_path)  # merged in from elsewhere
        result = {}
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
            self.origins[(*key_path, key)] = self.where(key_node)
            result[key] = self.build(value_node, (*key_path, key))
        return result

    def refuse_complex_keys(self, node, key_path: KeyPath) -> None:
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(
                    f"{self.where(key_node)}: {dotted(key_path)}: a key must be a plain name or "
                    "number, not a list or mapping"
                )

    def count_merged(self, node, key_path: KeyPath) -> None:
        """Merge keys copy mappings into each other before any value is built, so what they
        would copy is counted first."""
        sizes: dict[int, int] = {}

        def size(mapping, depth: int) -> int:
            if id(mapping) in sizes:
                return sizes[id(mapping)]
            if depth > MAX_DEPTH:
                raise RecursionError
            sizes[id(mapping)] = 0  # a merge of itself adds nothing
            total = 0
            for key_node, value_node in mapping.value:
                if key_node.tag != "tag:yaml.org,2002:merge":
                    total += 1
                    continue
                merged = (
                    value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                )
                total += sum(size(m, depth + 1) for m in merged if isinstance(m, yaml.MappingNode))
            sizes[id(mapping)] = total
            return total

        if size(node, 0) + self.values > MAX_VALUES:
            raise ConfigError(
                f"{self.where(node)}: {dotted(key_path)}: merge keys (<<) expand to over "
                f"{MAX_VALUES} values"
            )


def _refuse_repeated_keys(loader, node: yaml.MappingNode, key_path: KeyPath, file: str) -> None:
    """YAML silently keeps the last of two equal keys; a config that writes one twice almost
    always meant to write both. Keys brought in by a merge key (``<<``) may be overridden."""
    first_lines: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in first_lines:
            raise ConfigError(
                f"{file}:{line}: {dotted((*key_path, key))}: written twice (first on line "
                f"{first_lines[key]}); YAML would keep only the last, so merge the two"
            )
        first_lines[key] = line


# ---- inheritance -------------------------------------------------------------------------------


def read_config_files(path: str | os.PathLike) -> ConfigSource:
    """Read a config and its ``_base_`` files, merged, with origins."""
    path = Path(path).resolve()
    data, origins = _read_with_bases(path, ())
    return ConfigSource(data, origins, path)


def _read_with_bases(path: Path, chain: tuple[Path, ...]) -> tuple[dict, Origins]:
    if path in chain:
        cycle = " -> ".join(display_path(p) for p in (*chain, path))
        raise ConfigError(f"{display_path(path)}: _base_ files include each other: {cycle}")
    data, origins = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{display_path(path)}: a config must be a mapping of sections")
    bases = data.pop("_base_", [])
    base_line = origins.get(("_base_",), display_path(path))
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{base_line}: _base_ must be a path or a list of paths")
    merged: dict = {}
    merged_origins: Origins = {}
    for base in bases:
        base_path = (path.parent / base).resolve()
        if base_path.is_dir():
            raise ConfigError(
                f"{base_line}: _base_ '{base}' is a folder ({base_path}); {_name_a_file(base, base_path)}"
            )
        if not base_path.is_file():
            raise ConfigError(
                f"{base_line}: _base_ file '{base}' not found (looked at {base_path})"
            )
        base_data, base_origins = _read_with_bases(base_path, (*chain, path))
        merged = merge(merged, base_data)
        merged_origins.update(base_origins)
    merged = merge(merged, data)
    merged_origins.update(origins)
    return merged, merged_origins


def _name_a_file(base: str, folder: Path) -> str:
    """What to write instead of a folder in ``_base_``: a YAML file in it, by name."""
    names = sorted(p.name for pattern in ("*.yaml", "*.yml") for p in folder.glob(pattern))
    if not names:
        return "_base_ must name a YAML file, and this folder holds none"
    return "_base_ must name a YAML file, e.g. " + ", ".join(
        f"{base.rstrip('/')}/{name}" for name in names[:3]
    )


def merge(base: Any, override: Any) -> Any:
    """Deep merge for dicts; anything else (lists included) is replaced by ``override``."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return _strip_delete(copy.deepcopy(override))
    if override.get("_delete_") is True:
        return _strip_delete(copy.deepcopy(override))
    result = copy.deepcopy(base)
    for key, value in override.items():
        if key in result:
            result[key] = merge(result[key], value)
        else:
            result[key] = _strip_delete(copy.deepcopy(value))
    return result


def _strip_delete(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_delete(v) for k, v in value.items() if k != "_delete_"}
    if isinstance(value, list):
        return [_strip_delete(v) for v in value]
    return value


# ---- overrides ---------------------------------------------------------------------------------


OVERRIDE = re.compile(r"\+?[A-Za-z_]\w*(\.\w+)*=")


def is_override(argument: str) -> bool:
    """Whether a command-line argument has the form of ``KEY=VALUE`` or ``+KEY=VALUE``."""
    return OVERRIDE.match(argument) is not None


def parse_override(text: str) -> tuple[KeyPath, Any, bool]:
    """``a.b.0.c=value`` -> (("a", "b", 0, "c"), parsed value, adds_key)."""
    key, sep, raw_value = text.partition("=")
    adds = key.startswith("+")
    key = key.lstrip("+").strip()
    if not sep or not key:
        raise ConfigError(f"override '{text}': expected KEY=VALUE, e.g. train.max_iters=2000")
    value, _ = load_yaml_text(raw_value, f"override '{text}'")
    if not raw_value.strip():
        value = None  # `key=` sets null, as YAML reads an empty value
    key_path = tuple(int(part) if part.isdigit() else part for part in key.split("."))
    return key_path, value, adds


# (source, key path of a container) -> the keys the schema allows in that container
KnownKeys = Callable[[ConfigSource, KeyPath], Iterable[str]]
# key path -> the schema's own default there (a fresh copy), or None where it has none
SchemaDefault = Callable[[KeyPath], Any]
# (key path of a component spec, its new type) -> the keys it may keep, or None to keep all
KeysForType = Callable[[KeyPath, Any], "set[str] | None"]


def apply_override(
    source: ConfigSource,
    text: str,
    known_keys: KnownKeys,
    schema_default: SchemaDefault,
    keys_for_type: KeysForType = lambda key_path, new_type: None,
) -> None:
    """Apply one override to ``source.data``; a missing key is recorded as a problem.

    A container the config does not write starts from the schema's default, so that
    ``loss.type=dice`` replaces the default loss rather than an empty spec. An override that
    changes a component's ``type`` keeps the options the files wrote that the new type accepts
    too, and drops the others with a note, instead of failing on them."""
    key_path, value, adds = parse_override(text)
    where = f"override '{text}'"
    container: Any = source.data
    for depth, part in enumerate(key_path[:-1]):
        child = _child(container, part)
        if child is _ABSENT and isinstance(container, list):
            source.problems.append(
                f"{where}: {dotted(key_path[: depth + 1])}: no such list item "
                f"(the list has {len(container)})"
            )
            return
        if child is _ABSENT:
            known = known_keys(source, key_path[:depth])
            if not adds and part not in known:
                source.problems.append(
                    f"{where}: {dotted(key_path[: depth + 1])}: "
                    + _missing_key_message(part, known)
                )
                return
            if not isinstance(container, dict):
                source.problems.append(f"{where}: {dotted(key_path[: depth + 1])}: not a mapping")
                return
            default = schema_default(key_path[: depth + 1])
            container[part] = child = default if isinstance(default, (dict, list)) else {}
            source.origins[key_path[: depth + 1]] = where
        container = child
    last = key_path[-1]
    if isinstance(container, list):
        if adds and last == len(container):  # `+list.N=value` appends
            container.append(None)
        elif not isinstance(last, int) or last >= len(container):
            source.problems.append(
                f"{where}: {dotted(key_path)}: no such list item"
                + (
                    f"; write +{dotted(key_path[:-1])}.{len(container)}=VALUE to append"
                    if isinstance(last, int)
                    else ""
                )
            )
            return
    elif not isinstance(container, dict):
        source.problems.append(f"{where}: {dotted(key_path[:-1])}: is not a mapping")
        return
    elif last not in container and not adds:
        known = known_keys(source, key_path[:-1])
        if last not in known:
            source.problems.append(
                f"{where}: {dotted(key_path)}: " + _missing_key_message(last, known)
            )
            return
    if (
        last == "type"
        and isinstance(container, dict)
        and container.get("type") not in (None, value)
    ):
        _drop_options(source, key_path[:-1], container, keys_for_type(key_path[:-1], value), value)
    container[last] = value
    source.origins = {
        path: origin for path, origin in source.origins.items() if path[: len(key_path)] != key_path
    }
    source.origins[key_path] = where


_ABSENT = object()


def _drop_options(
    source: ConfigSource, spec_path: KeyPath, spec: dict, kept: set[str] | None, new_type: Any
) -> None:
    if kept is None:
        return
    dropped = [key for key in spec if key != "type" and key not in kept]
    for key in dropped:
        del spec[key]
    if dropped:
        source.notes.append(
            f"{dotted(spec_path)}: type {spec['type']} -> {new_type}: dropped "
            f"{', '.join(dropped)}, which {new_type} does not take"
        )


def _child(container: Any, part: Any) -> Any:
    if isinstance(container, dict):
        return container.get(part, _ABSENT)
    if isinstance(container, list) and isinstance(part, int) and part < len(container):
        return container[part]
    return _ABSENT


def _missing_key_message(key: Any, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=3)
    hint = (
        "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
        if close
        else "; write +KEY=VALUE to add a new key"
    )
    return f"no such key '{key}'{hint}"


def apply_overrides(
    source: ConfigSource,
    overrides: Iterable[str],
    known_keys: KnownKeys,
    schema_default: SchemaDefault,
    keys_for_type: KeysForType = lambda key_path, new_type: None,
) -> None:
    for text in overrides:
        try:
            apply_override(source, text, known_keys, schema_default, keys_for_type)
        except ConfigError as error:
            source.problems.extend(error.problems)


def dump_config(config: dict) -> str:
    """YAML in the section order of the schema; loads back to the same config. Sections and
    components are blocks; lists of plain values, and small specs (up to four keys) inside lists,
    such as transforms and loggers, are written on one line."""
    return yaml.dump(_styled(config), Dumper=_ConfigDumper, sort_keys=False, width=100)


def flatten_config(config: dict) -> dict[str, Any]:
    """The config as ``dotted.key -> value`` pairs, list items by index
    (``data.train.transforms.0.type``): the shape trackers that store flat parameters (MLflow, a
    CSV file) compare runs by. A plain list of scalars stays one value, as it reads in YAML."""
    flat: dict[str, Any] = {}

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(item, f"{prefix}.{key}" if prefix else str(key))
        elif isinstance(value, (list, tuple)) and not all(_is_scalar(v) for v in value):
            for index, item in enumerate(value):
                walk(item, f"{prefix}.{index}")
        else:
            flat[prefix] = list(value) if isinstance(value, tuple) else value

    walk(config, "")
    return flat


class _FlowList(list):
    pass


class _FlowDict(dict):
    pass


class _ConfigDumper(yaml.SafeDumper):
    pass


_ConfigDumper.add_representer(
    _FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True)
)
_ConfigDumper.add_representer(
    _FlowDict, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=True)
)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (dict, list, tuple))


def _styled(value: Any, in_list: bool = False) -> Any:
    if isinstance(value, dict):
        styled = {k: _styled(v) for k, v in value.items()}
        flat = all(_is_scalar(v) or isinstance(v, _FlowList) for v in styled.values())
        return _FlowDict(styled) if in_list and flat and len(styled) <= 4 else styled
    if isinstance(value, (list, tuple)):
        if all(_is_scalar(v) for v in value):
            return _FlowList(value)
        return [_styled(v, in_list=True) for v in value]
    return value
