"""``segkit list``: kinds by singular or plural, and each component's one-line help, read from
its source so that listing imports no model code."""

from __future__ import annotations

import json

from conftest import make_distribution, run_segkit

PLUGIN = """
    import segkit

    @segkit.hookimpl
    def segkit_register_backbones(register):
        register("heavy_net", "heavy_models:HeavyNet")
        register("made_net", "heavy_models:made_net")
        register("told_net", "heavy_models:made_net", help="Says so at registration.")
"""
MODELS = '''
    raise SystemExit("heavy_models was imported by a listing")

    class HeavyNet:
        """A backbone whose module must not be imported to list it.

        Second paragraph, not shown."""

    made_net = HeavyNet  # made at import time: its help cannot be read from the source
'''


def install(tmp_path):
    return make_distribution(
        tmp_path / "site",
        "heavy-plugin",
        {"heavy": "heavy_plugin"},
        {"heavy_plugin": PLUGIN, "heavy_models": MODELS},
    )


def test_list_takes_plural_kinds_and_shows_each_first_docstring_line(tmp_path):
    site = install(tmp_path)
    plural = run_segkit("list", "backbones", "*_net", pythonpath=site)
    singular = run_segkit("list", "backbone", "*_net", pythonpath=site)
    assert plural.returncode == 0, plural.stderr
    assert plural.stdout == singular.stdout and "imported by a listing" not in plural.stderr
    header, _, *rows = plural.stdout.splitlines()
    assert header.split() == [
        "KIND",
        "NAME",
        "ALIASES",
        "PLUGIN",
        "DISTRIBUTION",
        "VERSION",
        "HELP",
    ]
    by_name = {row.split()[1]: row for row in rows}
    help_column = header.index("HELP")
    assert (
        by_name["heavy_net"][help_column:]
        == "A backbone whose module must not be imported to list it."
    )
    assert by_name["told_net"][help_column:] == "Says so at registration."
    assert by_name["made_net"].split() == ["backbone", "made_net", "heavy", "heavy-plugin", "1.0"]


def test_list_json_carries_the_help_and_a_misspelt_kind_gets_a_suggestion(tmp_path):
    site = install(tmp_path)
    listed = run_segkit("list", "lr-schedulers", "--json", pythonpath=site)
    assert listed.returncode == 0, listed.stderr
    poly = next(item for item in json.loads(listed.stdout) if item["name"] == "poly")
    assert poly["kind"] == "lr_scheduler" and poly["help"].startswith("Polynomial decay")
    wrong = run_segkit("list", "bakcbones", pythonpath=site)
    assert wrong.returncode == 2 and "did you mean 'backbones'?" in wrong.stderr
