"""The ``segkit`` command: verbs from the core and from plugins, one error policy.

An error the user can fix (:class:`segkit.SegkitError`) prints one line and exits with status 2;
``SEGKIT_DEBUG=1`` adds the traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from segkit.config import is_override
from segkit.errors import SegkitError

CORE_COMMANDS = (
    "segkit.commands.catalog",
    "segkit.commands.config",
    "segkit.commands.model_info",
    "segkit.commands.train",
    "segkit.commands.eval",
    "segkit.commands.compare",
    "segkit.commands.predict",
    "segkit.commands.data",
    "segkit.commands.export",
    "segkit.commands.report",
)


def build_parser(plugins) -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="segkit", description="Train, evaluate and use semantic-segmentation networks."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in CORE_COMMANDS:
        importlib.import_module(module).add_commands(subparsers)
    plugins.add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    debug = os.environ.get("SEGKIT_DEBUG", "") not in ("", "0")
    try:
        from segkit.plugins import get_plugins

        plugins = get_plugins()
        parser = build_parser(plugins)
        args, extra = parser.parse_known_args(argv)
        # overrides (KEY=VALUE) may come after options such as --check; a command that takes
        # files among its positionals (predict) names the list that gathers the later ones
        more = getattr(args, "more_positionals", None)
        if extra and more and not any(e.startswith("-") for e in extra):
            setattr(args, more, [*getattr(args, more), *extra])
        elif extra and hasattr(args, "overrides") and all(is_override(e) for e in extra):
            args.overrides = [*args.overrides, *extra]
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.version:
            from importlib.metadata import version

            print(f"segkit {version('segkit')}")
            return 0
        if args.command is None:
            parser.print_help()
            return 2
        if getattr(args, "warn_plugins", True):
            plugins.warn_about_failures()
        return args.handler(args)
    except SegkitError as error:
        if debug:
            traceback.print_exc()
        print(f"segkit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("segkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `segkit list | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
