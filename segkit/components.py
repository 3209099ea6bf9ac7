"""The component registry: which plugin provides which backbone, head, dataset, loss, ...

Plain data: a mapping of (kind, name) to the components that claim that name. A name claimed by
two plugins is a conflict that only ``plugin:name`` resolves. Factories may be registered as
``"module:attribute"`` strings so that listing never imports model code; they are imported when a
component is built or its signature is needed.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import functools
import importlib
import importlib.util
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segkit.errors import SegkitError, UnknownComponentError

# The component kinds, each with the plural its registration hook is named after
# (``segkit_register_<plural>``); everything else that lists kinds derives from this table.
KIND_PLURALS = {
    "backbone": "backbones",
    "head": "heads",
    "dataset": "datasets",
    "loss": "losses",
    "lr_scheduler": "lr_schedulers",
    "optimizer": "optimizers",
    "transform": "transforms",
    "logger": "loggers",
}
KINDS = tuple(KIND_PLURALS)

# Arguments the core passes to a factory itself; configs never write them.
CORE_ARGUMENTS = {
    "head": ("in_channels", "num_classes"),
    "loss": ("ignore_index",),
    "optimizer": ("params",),
    "lr_scheduler": ("optimizer", "max_iters"),
}

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]*\Z")


def normalize_kind(kind: str) -> str:
    """Accept ``backbones``, ``lr-scheduler`` and friends for ``backbone``, ``lr_scheduler``."""
    candidate = kind.strip().lower().replace("-", "_")
    singular = {plural: kind for kind, plural in KIND_PLURALS.items()}
    candidate = singular.get(candidate, candidate)
    if candidate not in KINDS:
        close = difflib.get_close_matches(candidate, [*KINDS, *KIND_PLURALS.values()], n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise SegkitError(
            f"unknown component kind '{kind}'; {hint}the kinds are: {', '.join(KINDS)} "
            "(plurals work too)"
        )
    return candidate


@dataclass(frozen=True)
class Provider:
    """Who provided a component: the plugin's entry-point name and its distribution."""

    plugin: str
    distribution: str | None = None
    version: str | None = None

    def describe(self) -> str:
        if self.distribution is None:
            return self.plugin
        return f"{self.plugin} ({self.distribution} {self.version})"


@dataclass
class Component:
    kind: str
    name: str
    factory: Callable[..., Any] | str
    provider: Provider
    aliases: tuple[str, ...] = ()
    help: str | None = None
    _loaded: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    @property
    def qualified_name(self) -> str:
        return f"{self.provider.plugin}:{self.name}"

    def load(self) -> Callable[..., Any]:
        """The factory itself, importing it first if it was registered as a string."""
        if self._loaded is None:
            self._loaded = self.factory if callable(self.factory) else self._import()
        return self._loaded

    def _import(self) -> Callable[..., Any]:
        module_name, _, attribute = str(self.factory).partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as error:
            raise SegkitError(
                f"plugin '{self.provider.plugin}' registered {self.kind} '{self.name}' as "
                f"'{self.factory}', which cannot be imported: {error}"
            ) from error
        return target

    def parameters(self) -> list[inspect.Parameter]:
        """The parameters a config may set: the signature minus core-supplied arguments."""
        hidden = CORE_ARGUMENTS.get(self.kind, ())
        try:
            signature = inspect.signature(self.load())
        except (TypeError, ValueError):
            return []
        return [
            parameter
            for parameter in signature.parameters.values()
            if parameter.name not in hidden
            and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        ]

    def accepts_any_keyword(self) -> bool:
        try:
            signature = inspect.signature(self.load())
        except (TypeError, ValueError):
            return True
        return any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())

    def type_hints(self) -> dict[str, Any]:
        factory = self.load()
        target = factory.__init__ if inspect.isclass(factory) else factory
        try:
            return typing.get_type_hints(target, include_extras=True)
        except Exception:  # hints that cannot be evaluated are simply not checked
            return {}

    def summary(self) -> str:
        """The one-line help: ``help`` if registered, else the first line of the factory's
        docstring, read from the module's source for a factory not imported yet, so that
        listing never imports model code."""
        if self.help:
            return self.help
        if callable(self.factory) or self._loaded is not None:
            return first_doc_line(self.load())
        return source_doc_line(str(self.factory))


def first_doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def source_doc_line(factory: str) -> str:
    """The first docstring line of the class or function ``"module:attribute"`` names, found in
    the module's source without running it; "" where the source does not show one (a factory
    made at import time, a module that is not a plain file)."""
    module_name, _, attribute = factory.partition(":")
    node: Any = _module_source_tree(module_name)
    for part in attribute.split("."):
        body = getattr(node, "body", [])
        node = next((n for n in body if isinstance(n, _DEFINITIONS) and n.name == part), None)
        if node is None:
            return ""
    doc = ast.get_docstring(node) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


_DEFINITIONS = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


@functools.cache
def _module_source_tree(module_name: str) -> ast.Module | None:
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    try:
        return ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


class Registry:
    """All components of all loaded plugins, and the record of plugins that failed."""

    def __init__(self) -> None:
        self._claims: dict[str, dict[str, list[Component]]] = {kind: {} for kind in KINDS}
        self.failed_plugins: list[str] = []
        self.disabled_plugins: list[str] = []  # by SEGKIT_DISABLE_PLUGINS

    def add(self, component: Component) -> None:
        for name in (component.name, *component.aliases):
            self._claims[component.kind].setdefault(name, []).append(component)

    def remove_plugin(self, plugin: str) -> None:
        for claims in self._claims.values():
            for name in list(claims):
                kept = [c for c in claims[name] if c.provider.plugin != plugin]
                if kept:
                    claims[name] = kept
                else:
                    del claims[name]

    def get(self, kind: str, name: str) -> Component:
        """Look a component up by name, alias or ``plugin:name``."""
        kind = normalize_kind(kind)
        plugin, _, bare = name.rpartition(":")
        candidates = self._claims[kind].get(bare, [])
        if plugin:
            candidates = [c for c in candidates if c.provider.plugin == plugin]
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            providers = " and ".join(f"'{c.qualified_name}'" for c in candidates)
            raise UnknownComponentError(
                f"{kind} '{name}' is provided by more than one plugin; write {providers} to choose"
            )
        raise UnknownComponentError(self._unknown_message(kind, name))

    def provides(self, kind: str, name: str) -> bool:
        """Whether ``name`` (or ``plugin:name``) names exactly one component of ``kind``."""
        try:
            self.get(kind, name)
        except UnknownComponentError:
            return False
        return True

    def _unknown_message(self, kind: str, name: str) -> str:
        message = f"unknown {kind} '{name}'"
        close = difflib.get_close_matches(name.rpartition(":")[2], self._claims[kind], n=3)
        if close:
            message += "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
        else:
            message += f"; see `segkit list {kind}`"
        if self.failed_plugins:
            message += (
                f" (plugins that failed to load: {', '.join(self.failed_plugins)}; "
                "see `segkit plugins`)"
            )
        if self.disabled_plugins:
            message += (
                f" (SEGKIT_DISABLE_PLUGINS disables {', '.join(self.disabled_plugins)}: enable "
                f"the plugin that provides '{name}', or take it out of the config)"
            )
        return message

    def names(self, kind: str) -> list[str]:
        """Every name and alias of one kind, for suggestions."""
        return sorted(self._claims[normalize_kind(kind)])

    def list(self, kind: str | None = None, pattern: str | None = None) -> list[Component]:
        """Components (each once, aliases folded) sorted by kind and name, filtered by a
        shell-style pattern on the name."""
        kinds = KINDS if kind is None else (normalize_kind(kind),)
        found: dict[tuple[str, str, str], Component] = {}
        for k in kinds:
            for components in self._claims[k].values():
                for component in components:
                    if pattern is None or fnmatch.fnmatchcase(component.name, pattern):
                        found[(k, component.name, component.provider.plugin)] = component
        return sorted(found.values(), key=lambda c: (KINDS.index(c.kind), c.name))

    def build(self, kind: str, spec: dict[str, Any], **core_arguments: Any) -> Any:
        """Call the factory named by ``spec['type']`` with the rest of ``spec`` as arguments."""
        options = dict(spec)
        name = options.pop("type", None)
        if not isinstance(name, str):
            raise SegkitError(f"a {kind} spec needs 'type: NAME', got {spec!r}")
        return self.get(kind, name).load()(**core_arguments, **options)
