"""The plugin manager: hook specs, entry-point loading with per-plugin error isolation.

pluggy's own ``load_setuptools_entrypoints`` stops at the first plugin that fails to import; a
toolkit whose users install plugins from many authors cannot let one broken package take the
others down. So segkit walks the ``segkit`` entry points itself: a plugin that fails to import,
implements a hook that does not exist, or raises while registering is unregistered and recorded,
and every other plugin keeps working.
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from segkit import hookspecs
from segkit.components import KIND_PLURALS, NAME_PATTERN, Component, Provider, Registry
from segkit.errors import PluginError

ENTRY_POINT_GROUP = "segkit"

# The stable surface of segkit for plugins: the modules a plugin may import and the names it may
# take from each. Anything else is internal and may change without notice. docs/plugins.md ("What
# a plugin may import") lists exactly these, and tests/test_core_boundary.py holds the built-in
# plugins and the example plugin to them.
PLUGIN_API: dict[str, tuple[str, ...]] = {
    "segkit": (
        "hookimpl",
        "SegkitError",
        "ConfigError",
        "build",
        "build_model",
        "registry",
        "load_config",
    ),
    "segkit.constraints": (
        "Constraint",
        "AtLeast",
        "Above",
        "Below",
        "Between",
        "Length",
        "OneOf",
        "UpToRunLength",
        "OnePerClass",
        "ClassIndices",
    ),
    "segkit.errors": ("SegkitError", "ConfigError", "DataError", "SampleError", "CheckpointError"),
    "segkit.layers": (
        "Norm",
        "NORMS",
        "check_norm",
        "check_in_channels",
        "norm_layer",
        "ConvNormReLU",
        "check_bins",
        "PyramidPooling",
    ),
    "segkit.weights": (
        "read_checkpoint",
        "state_dict_of",
        "load_into",
        "adapt_input_conv",
        "fit_problems",
    ),
    "segkit.label_map": ("IGNORE_INDEX", "LabelMap"),
    "segkit.maskformat": ("ColourDecoder", "is_grey_rgb"),
    "segkit.imagefiles": (
        "EncodedImage",
        "FileDataset",
        "IMAGE_SUFFIXES",
        "Pair",
        "pair_files",
        "missing_data",
    ),
    "segkit.config": ("dump_config", "flatten_config"),
    "segkit.files": ("remove_dead_writers", "append_line", "atomic_write_text"),
    "segkit.engine.checkpoint": ("atomic_save",),
    "segkit.engine.run": ("Run", "validation_scalars"),
    "segkit.engine.progress": ("ProgressBar",),
    "segkit.engine.visualize": ("default_palette", "panel"),
    # for a plugin's tests (docs/plugins.md, "Testing a plugin")
    "segkit.plugins": ("Plugins",),
    "segkit.components": ("Provider",),
}

REGISTRATION_HOOKS = {f"segkit_register_{plural}": kind for kind, plural in KIND_PLURALS.items()}
HOOK_NAMES = sorted(name for name in vars(hookspecs) if name.startswith("segkit_"))
UNMARKED = "named like a hook but not marked with @segkit.hookimpl"


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
            except BaseException as error:  # noqa: BLE001  (SystemExit from a plugin too)
                self._record(provider, "error", error=f"import failed: {_describe(error)}")
                continue
            self.add(plugin, provider)
        self.unknown_disabled = sorted(disabled - seen)
        self._check_strict()

    def add(self, plugin: object, provider: Provider) -> PluginRecord:
        """Register one plugin object and its components; a failure unregisters it."""
        unmarked = unmarked_hooks(plugin)
        if unmarked:
            return self._record(provider, "error", error=_unmarked_message(unmarked))
        try:
            self.manager.register(plugin, name=provider.plugin)
        except pluggy.PluginValidationError as error:
            return self._record(provider, "error", error=validation_message(error))
        except BaseException as error:  # noqa: BLE001
            return self._record(provider, "error", error=_describe(error))
        hooks = sorted(hc.name for hc in self.manager.get_hookcallers(plugin) or ())
        unknown = [name for name in hooks if name not in HOOK_NAMES]
        if unknown:
            self.manager.unregister(plugin)
            return self._record(provider, "error", hooks, _unknown_hooks_message(unknown))
        try:
            components = self._collect_components(plugin, provider)
        except BaseException as error:  # noqa: BLE001  (SystemExit from a plugin too)
            self.manager.unregister(plugin)
            return self._record(
                provider, "error", hooks, f"registration failed: {_describe(error)}"
            )
        for component in components:
            self.registry.add(component)
        return self._record(provider, "active", hooks)

    def _collect_components(self, plugin: object, provider: Provider) -> list[Component]:
        """Call the registration hooks pluggy knows for this plugin (whatever their function is
        called, ``specname`` included); nothing reaches the registry unless all succeed."""
        components: list[Component] = []
        for caller in self.manager.get_hookcallers(plugin) or ():
            kind = REGISTRATION_HOOKS.get(caller.name)
            if kind is None:
                continue
            taken = {c.name for c in components if c.kind == kind}

            def register(name, factory, *, aliases=(), help=None, _kind=kind, _taken=taken):
                component = _make_component(_kind, name, factory, provider, aliases, help)
                for claimed in (component.name, *component.aliases):
                    if claimed in _taken:
                        raise PluginRegistrationError(f"{_kind} '{claimed}' registered twice")
                    _taken.add(claimed)
                components.append(component)

            for implementation in caller.get_hookimpls():
                if implementation.plugin is plugin:
                    implementation.function(register=register)
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
                self._fail(
                    implementation.plugin_name, f"adding commands failed: {_describe(error)}"
                )
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
        elif status == "disabled":
            self.registry.disabled_plugins.append(provider.plugin)
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
            print(
                f"segkit: warning: plugin '{record.name}' failed: {record.error}", file=sys.stderr
            )
        self.warn_about_unknown_disabled()

    def warn_about_unknown_disabled(self) -> None:
        if self.unknown_disabled:
            installed = ", ".join(r.name for r in self.records)
            print(
                f"segkit: warning: SEGKIT_DISABLE_PLUGINS names no installed plugin: "
                f"{', '.join(self.unknown_disabled)} (installed: {installed})",
                file=sys.stderr,
            )


def check_logger(logger: object, label: str, plugin: str) -> None:
    """Check a logger object the way ``add`` checks a plugin, before the run starts: a misspelt
    argument or an unknown hook name stops the run now (it would otherwise fail at the first
    event or never be called); a hook-named method without the marker is a warning, since the
    logger's marked methods still work."""
    unmarked = unmarked_hooks(logger)
    if unmarked:
        names = ", ".join(f"'{name}'" for name in unmarked)
        print(
            f"segkit: warning: plugin '{plugin}', {label}: method {names} {UNMARKED}, so it "
            f"will not be called; decorate it",
            file=sys.stderr,
        )
    trial = pluggy.PluginManager("segkit")
    trial.add_hookspecs(hookspecs)
    try:
        trial.register(logger)
    except pluggy.PluginValidationError as error:
        raise PluginError(f"plugin '{plugin}', {label}: {validation_message(error)}") from None
    unknown = [c.name for c in trial.get_hookcallers(logger) or () if c.name not in HOOK_NAMES]
    if unknown:
        raise PluginError(f"plugin '{plugin}', {label}: {_unknown_hooks_message(unknown)}")


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
    """One line, whatever the exception's text: ``segkit plugins`` shows it in a table cell."""
    text = " ".join(str(error).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def unmarked_hooks(plugin: object) -> list[str]:
    """The functions or methods of ``plugin`` named like a segkit hook that pluggy would pass
    over because they lack the ``@segkit.hookimpl`` marker: a silent no-op is the worst way
    for a plugin to fail, so these are reported instead."""
    names = []
    for name in dir(plugin):
        if name in HOOK_NAMES or name.startswith(("segkit_register_", "segkit_on_")):
            value = getattr(plugin, name, None)
            if callable(value) and not hasattr(value, "segkit_impl"):
                names.append(name)
    return names


def _implementation_of(plugin: object, hook_name: str) -> Any:
    for name in dir(plugin):
        value = getattr(plugin, name, None)
        options = getattr(value, "segkit_impl", None)
        if isinstance(options, dict) and (options.get("specname") or name) == hook_name:
            return value
    return None


def _unmarked_message(names: list[str]) -> str:
    listed = ", ".join(f"'{name}'" for name in names)
    return f"function {listed} {UNMARKED}; decorate it (or rename it)"


def validation_message(error: pluggy.PluginValidationError) -> str:
    """pluggy's complaint about an implementation's arguments, as one line with a suggestion:
    an argument the hook does not pass is almost always a typo of one it does."""
    named = re.search(r"for hook '(\w+)'", str(error))
    hook_name = named.group(1) if named else ""
    function = _implementation_of(getattr(error, "plugin", None), hook_name)
    spec = getattr(hookspecs, hook_name, None)
    if function is None or spec is None:
        return _describe(error)
    offered = list(inspect.signature(spec).parameters)
    wanted = [name for name in inspect.signature(function).parameters if name != "self"]
    extra = [name for name in wanted if name not in offered]
    if not extra:
        return _describe(error)
    parts = []
    for name in extra:
        close = difflib.get_close_matches(name, offered, n=1)
        parts.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    return (
        f"{hook_name} asks for argument {', '.join(parts)}, which the hook does not pass; "
        f"it passes: {', '.join(offered)}"
    )


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
