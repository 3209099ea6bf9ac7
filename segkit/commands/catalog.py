"""``segkit list``, ``segkit show`` and ``segkit plugins``: what is installed and who provides it."""

from __future__ import annotations

import inspect
import json
import sys
from typing import Any

from segkit.commands.table import format_table
from segkit.components import CORE_ARGUMENTS, KINDS, normalize_kind
from segkit.plugins import get_plugins


def add_commands(subparsers) -> None:
    listing = subparsers.add_parser(
        "list", help="list installed components", description="List installed components."
    )
    listing.add_argument(
        "kind", nargs="?", help=f"one of: {', '.join(KINDS)} (or the plural: backbones, ...)"
    )
    listing.add_argument("pattern", nargs="?", help="shell-style name pattern, e.g. 'resnet*'")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=run_list, warn_plugins=False)

    show = subparsers.add_parser(
        "show", help="show a component's options", description="Show a component's config options."
    )
    show.add_argument("kind", help=f"one of: {', '.join(KINDS)} (or the plural: backbones, ...)")
    show.add_argument("name", help="component name, alias or plugin:name")
    show.set_defaults(handler=run_show)

    plugins = subparsers.add_parser(
        "plugins",
        help="list plugins and their status",
        description="List plugins and their status.",
    )
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(handler=run_plugins, warn_plugins=False)


def run_list(args) -> int:
    plugins = get_plugins()
    kind = args.kind
    pattern = args.pattern
    if kind is not None and pattern is None and any(ch in kind for ch in "*?["):
        kind, pattern = None, kind  # `segkit list 'resnet*'`
    if kind is not None:
        kind = normalize_kind(kind)  # `segkit list backbones`, as `segkit show` takes it
    components = plugins.registry.list(kind, pattern)
    if args.json:
        print(json.dumps([_listing(c) for c in components], indent=2))
    else:
        rows = [
            (
                c.kind,
                c.name,
                ", ".join(c.aliases),
                c.provider.plugin,
                c.provider.distribution,
                c.provider.version,
                c.summary(),
            )
            for c in components
        ]
        header = ("KIND", "NAME", "ALIASES", "PLUGIN", "DISTRIBUTION", "VERSION", "HELP")
        print(format_table(header, rows) if rows else "no components match")
    failed = plugins.failed()
    if failed:
        details = "; ".join(f"'{r.name}': {r.error}" for r in failed)
        print(
            f"warning: {len(failed)} plugin(s) failed to load: {details} (see `segkit plugins`)",
            file=sys.stderr,
        )
    plugins.warn_about_unknown_disabled()
    return 0


def _listing(component) -> dict[str, Any]:
    return {
        "kind": component.kind,
        "name": component.name,
        "aliases": list(component.aliases),
        "plugin": component.provider.plugin,
        "distribution": component.provider.distribution,
        "version": component.provider.version,
        "help": component.summary(),
    }


def run_show(args) -> int:
    kind = normalize_kind(args.kind)
    component = get_plugins().registry.get(kind, args.name)
    component.load()  # a factory registered as a string: import it, so its docstring shows
    print(f"{kind} '{component.name}'  from {component.provider.describe()}")
    if component.aliases:
        print(f"aliases: {', '.join(component.aliases)}")
    summary = component.summary()
    if summary:
        print(summary)
    details = _details(component.load())
    if details:
        print(f"\n{details}")
    hints = component.type_hints()
    rows = []
    for parameter in component.parameters():
        hint = hints.get(parameter.name, parameter.annotation)
        rows.append((parameter.name, _type_name(hint), _default(parameter)))
    print()
    print(format_table(("OPTION", "TYPE", "DEFAULT"), rows) if rows else "no options")
    supplied = CORE_ARGUMENTS.get(kind)
    if supplied:
        print(f"\nsupplied by segkit (not written in configs): {', '.join(supplied)}")
    if component.accepts_any_keyword():
        print("also accepts further keyword options")
    return 0


def _details(factory: Any) -> str:
    """The factory's docstring after its first line: what the options mean, beyond the table."""
    doc = inspect.getdoc(factory) or ""
    return doc.partition("\n")[2].strip()


def _type_name(hint: Any) -> str:
    from segkit.typecheck import describe

    if hint is inspect.Parameter.empty:
        return "any"
    return describe(hint)


def _default(parameter: inspect.Parameter) -> str:
    if parameter.default is inspect.Parameter.empty:
        return "(required)"
    return repr(parameter.default)


def run_plugins(args) -> int:
    get_plugins().warn_about_unknown_disabled()
    records = get_plugins().records
    if args.json:
        print(json.dumps([r.as_dict() for r in records], indent=2))
        return 0
    rows = [
        (
            r.name,
            r.distribution,
            r.version,
            r.status,
            ", ".join(h.removeprefix("segkit_") for h in r.hooks)
            if r.status != "error"
            else r.error,
        )
        for r in records
    ]
    print(
        format_table(("PLUGIN", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS / ERROR"), rows)
        if rows
        else "no plugins installed"
    )
    return 0
