"""The plugin manager: hook specs, entry-point loading with per-plugin error isolation.

pluggy's own ``load_setuptools_entrypoints`` stops at the first plugin that fails to import; a
toolkit whose users install plugins from many authors cannot let one broken package take the
others down. So segkit walks the ``segkit`` entry points itself: a plugin that fails to import,
implements a hook that does not exist, or raises while registering is unregistered and recorded,
and every other plugin keeps working.
"""

from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from segkit import hookspecs
from segkit.errors import PluginError
from segkit.components import NAME_PATTERN, Component, Provider, Registry

ENTRY_POINT_GROUP = "segkit"

# (registration hook, component kind)
REGISTRATION_HOOKS = {
    "segkit_register_backbones": "backbone",
    "segkit_register_heads": "head",
    "segkit_register_datasets": "dataset",
    "segkit_register_losses": "loss",
    "segkit_register_lr_schedulers": "lr_scheduler",
    "segkit_register_optimizers": "optimizer",
    "segkit_register_transforms": "transform",
    "segkit_register_loggers": "logger",
}
HOOK_NAMES = sorted(name for name in vars(hookspecs) if name.startswith("segkit_"))


@dataclass
class PluginRecord:
    """What ``segkit plugins`` shows about one plugin."""

    name: str
    distribution: str | None
    version: str | None
    status: str  # "active", "disabled" or "error"
    hooks: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "hooks": self.hooks,
            "error": self.error,
        }


class PluginRegistrationError(Exception):
    """Raised inside ``register`` for a bad call; turns the whole plugin into an error."""


class Plugins:
    """The loaded plugins: the pluggy manager (for run events and commands), the component
    registry they filled, and a record per plugin."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager("segkit")
        self.manager.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.records: list[PluginRecord] = []
        self.unknown_disabled: list[str] = []  # names in SEGKIT_DISABLE_PLUGINS nothing has

    @property
    def hook(self) -> Any:
        return self.manager.hook

    def failed(self) -> list[PluginRecord]:
        return [r for r in self.records if r.status == "error"]

    def load_entry_points(self) -> None:
        disabled = _names_in(os.environ.get("SEGKIT_DISABLE_PLUGINS", ""))
        seen: set[str] = set()
        for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if entry_point.name in seen:  # the same distribution found twice on sys.path
                continue
            seen.add(entry_point.name)
            dist = getattr(entry_point, "dist", None)
            provider = Provider(
                entry_point.name,
                dist.name if dist else None,
                dist.version if dist else None,
            )
            if entry_point.name in disabled:
                self._record(provider, "disabled")
                continue
            try:
                plugin = entry_point.load()
            except Exception as error:  # any import failure is isolated to its plugin
                self._record(provider, "error", error=f"import failed: {_describe(error)}")
                continue
            self.add(plugin, provider)
        self.unknown_disabled = sorted(disabled - seen)
        self._check_strict()

    def add(self, plugin: object, provider: Provider) -> PluginRecord:
        """Register one plugin object and its components; a failure unregisters it."""
        try:
            self.manager.register(plugin, name=provider.plugin)
        except Exception as error:
            return self._record(provider, "error", error=_describe(error))
        hooks = sorted(hc.name for hc in self.manager.get_hookcallers(plugin) or ())
        unknown = [name for name in hooks if name not in HOOK_NAMES]
        if unknown:
            self.manager.unregister(plugin)
            return self._record(provider, "error", hooks, _unknown_hooks_message(unknown))
        try:
            components = self._collect_components(plugin, provider)
        except Exception as error:
            self.manager.unregister(plugin)
            return self._record(provider, "error", hooks, f"registration failed: {_describe(error)}")
        for component in components:
            self.registry.add(component)
        return self._record(provider, "active", hooks)

    def _collect_components(self, plugin: object, provider: Provider) -> list[Component]:
        """Call the plugin's registration hooks; nothing reaches the registry unless all succeed."""
        components: list[Component] = []
        for hook_name, kind in REGISTRATION_HOOKS.items():
            implementation = getattr(plugin, hook_name, None)
            if implementation is None:
                continue
            taken = {c.name for c in components if c.kind == kind}

            def register(name, factory, *, aliases=(), help=None, _kind=kind, _taken=taken):
                component = _make_component(_kind, name, factory, provider, aliases, help)
                for claimed in (component.name, *component.aliases):
                    if claimed in _taken:
                        raise PluginRegistrationError(f"{_kind} '{claimed}' registered twice")
                    _taken.add(claimed)
                components.append(component)

            implementation(register=register)
        return components

    def add_commands(self, subparsers: Any) -> None:
        """Let each plugin add its verbs; one that raises (or claims a verb already taken) is
        taken out like a plugin that failed to register, and the other commands keep working."""
        for implementation in self.hook.segkit_register_commands.get_hookimpls():
            verbs_before = set(subparsers.choices)
            try:
                implementation.function(subparsers=subparsers)
            except Exception as error:
                _drop_verbs(subparsers, set(subparsers.choices) - verbs_before)
                self._fail(implementation.plugin_name, f"adding commands failed: {_describe(error)}")
        self._check_strict()

    def _fail(self, plugin_name: str, error: str) -> None:
        self.manager.unregister(name=plugin_name)
        self.registry.remove_plugin(plugin_name)
        self.registry.failed_plugins.append(plugin_name)
        for record in self.records:
            if record.name == plugin_name:
                record.status, record.error = "error", error

    def _record(self, provider: Provider, status: str, hooks=(), error: str | None = None):
        record = PluginRecord(
            provider.plugin, provider.distribution, provider.version, status, list(hooks), error
        )
        self.records.append(record)
        if status == "error":
            self.registry.failed_plugins.append(provider.plugin)
        return record

    def _check_strict(self) -> None:
        if os.environ.get("SEGKIT_STRICT_PLUGINS", "") not in ("", "0"):
            failed = self.failed()
            if failed:
                raise PluginError(
                    "SEGKIT_STRICT_PLUGINS is set and plugins failed to load: "
                    + "; ".join(f"{r.name}: {r.error}" for r in failed)
                )

    def warn_about_failures(self) -> None:
        """One line per failed plugin on stderr, for commands other than ``segkit plugins``."""
        for record in self.failed():
            print(f"segkit: warning: plugin '{record.name}' failed: {record.error}", file=sys.stderr)
        self.warn_about_unknown_disabled()

    def warn_about_unknown_disabled(self) -> None:
        if self.unknown_disabled:
            installed = ", ".join(r.name for r in self.records)
            print(
                f"segkit: warning: SEGKIT_DISABLE_PLUGINS names no installed plugin: "
                f"{', '.join(self.unknown_disabled)} (installed: {installed})",
                file=sys.stderr,
            )


def _drop_verbs(subparsers: Any, verbs: set[str]) -> None:
    """Remove verbs a failing plugin added before it raised. argparse has no public way to take
    a sub-parser back, so this edits the two places ``add_parser`` writes to."""
    for verb in verbs:
        del subparsers.choices[verb]
    subparsers._choices_actions[:] = [a for a in subparsers._choices_actions if a.dest not in verbs]


def _make_component(kind, name, factory, provider, aliases, help) -> Component:
    aliases = (aliases,) if isinstance(aliases, str) else tuple(aliases)
    for claimed in (name, *aliases):
        if not isinstance(claimed, str) or not NAME_PATTERN.match(claimed):
            raise PluginRegistrationError(
                f"{kind} name {claimed!r} is not valid (lower case letters, digits, '_', '.', '-')"
            )
    if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
        raise PluginRegistrationError(
            f"{kind} '{name}': factory must be callable or a 'module:attribute' string, "
            f"got {factory!r}"
        )
    return Component(kind, name, factory, provider, aliases, help)


def _unknown_hooks_message(unknown: list[str]) -> str:
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, HOOK_NAMES, n=1)
        parts.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    return "implements unknown hook " + ", ".join(parts)


def _names_in(text: str) -> set[str]:
    return {name.strip() for name in text.split(",") if name.strip()}


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


_loaded: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugins, loaded from entry points on first use."""
    global _loaded
    if _loaded is None:
        plugins = Plugins()
        plugins.load_entry_points()
        _loaded = plugins
    return _loaded


def reset() -> None:
    """Forget the loaded plugins so that the next use loads them again (tests, notebooks)."""
    global _loaded
    _loaded = None
