"""``segkit config CONFIG [overrides] [--check]``: the resolved config, or just its validation."""

from __future__ import annotations

from segkit.config import dump_config
from segkit.validation import load_config


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser(
        "config",
        help="validate a config and print it resolved",
        description="Validate a config (all problems at once) and print it with every default "
        "filled in, as the run directory will store it.",
    )
    parser.add_argument("config", help="path to a YAML config")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE or +KEY=VALUE overrides")
    parser.add_argument(
        "--check",
        action="store_true",
        help="only validate: print 'CONFIG: OK' or every problem (exit status 2)",
    )
    parser.set_defaults(handler=run_config)


def run_config(args) -> int:
    resolved = load_config(args.config, args.overrides)
    if args.check:
        print(f"{args.config}: OK")
    else:
        print(dump_config(resolved), end="")
    return 0
