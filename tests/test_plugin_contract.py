"""The plugin contract: hooks are what pluggy knows (the marker, ``specname``), everything else
named like a hook is reported, and no exception a plugin raises reaches the user as a traceback."""

from __future__ import annotations

import json

import pytest
from conftest import make_distribution, run_segkit

import segkit
from segkit.components import KIND_PLURALS, KINDS, Provider, normalize_kind
from segkit.errors import PluginError
from segkit.plugins import REGISTRATION_HOOKS, Plugins, check_logger

SPECNAME = """
import segkit

@segkit.hookimpl(specname="segkit_register_backbones")
def backbones(register):
    register("renamed_backbone", "renamed_mod:make", help="registered through specname")

def make():
    return None
"""
UNMARKED = """
def segkit_register_backbones(register):
    register("unmarked_backbone", "unmarked_mod:make")
"""
MISSPELT_ARGUMENT = """
import segkit

@segkit.hookimpl
def segkit_on_eval_end(run, step, metric):
    pass
"""
RAISES_AT_IMPORT = """
import {module}
raise {module}.{error}({argument})
"""
RAISES_AT_REGISTRATION = """
import segkit

@segkit.hookimpl
def segkit_register_heads(register):
    raise {error}()
"""
MULTILINE_ERROR = """
raise RuntimeError("first line\\n  second line\\n\\nthird line")
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    plugins = {
        "renamed": SPECNAME,
        "unmarked": UNMARKED,
        "misspelt": MISSPELT_ARGUMENT,
        "exits": RAISES_AT_IMPORT.format(module="sys", error="exit", argument="3"),
        "interrupts": RAISES_AT_IMPORT.format(
            module="builtins", error="KeyboardInterrupt", argument=""
        ),
        "generator": RAISES_AT_IMPORT.format(module="builtins", error="GeneratorExit", argument=""),
        "exits_registering": RAISES_AT_REGISTRATION.format(error="SystemExit"),
        "interrupts_registering": RAISES_AT_REGISTRATION.format(error="KeyboardInterrupt"),
        "multiline": MULTILINE_ERROR,
    }
    for name, source in plugins.items():
        make_distribution(root, f"{name}-dist", {name: f"{name}_mod"}, {f"{name}_mod": source})
    return root


@pytest.fixture(scope="module")
def records(site):
    result = run_segkit("plugins", "--json", pythonpath=site)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return {r["name"]: r for r in json.loads(result.stdout)}


def test_a_hookimpl_with_specname_registers_its_components(site, records):
    assert records["renamed"]["status"] == "active"
    assert records["renamed"]["hooks"] == ["segkit_register_backbones"]
    listed = run_segkit("list", "backbone", "--json", pythonpath=site)
    assert "renamed_backbone" in {c["name"] for c in json.loads(listed.stdout)}


def test_a_hook_named_function_without_the_marker_is_a_problem_of_its_plugin(site, records):
    assert records["unmarked"]["status"] == "error"
    assert records["unmarked"]["error"] == (
        "function 'segkit_register_backbones' named like a hook but not marked with "
        "@segkit.hookimpl; decorate it (or rename it)"
    )
    listed = run_segkit("list", "backbone", "--json", pythonpath=site)
    assert "unmarked_backbone" not in {c["name"] for c in json.loads(listed.stdout)}


def test_a_misspelt_argument_gets_one_line_with_a_suggestion(records):
    error = records["misspelt"]["error"]
    assert records["misspelt"]["status"] == "error"
    assert "'metric' (did you mean 'metrics'?)" in error and "\n" not in error


@pytest.mark.parametrize(
    "plugin, error",
    [
        ("exits", "SystemExit: 3"),
        ("interrupts", "KeyboardInterrupt"),
        ("generator", "GeneratorExit"),
        ("exits_registering", "SystemExit"),
        ("interrupts_registering", "KeyboardInterrupt"),
    ],
)
def test_any_base_exception_from_a_plugin_is_isolated(records, plugin, error):
    assert records[plugin]["status"] == "error"
    assert error in records[plugin]["error"]
    assert records["renamed"]["status"] == "active"  # the others load all the same


def test_the_plugins_table_keeps_one_row_per_plugin(site):
    result = run_segkit("plugins", pythonpath=site)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if "-dist" in line]
    assert len(rows) == 9, result.stdout
    multiline = next(row for row in rows if row.startswith("multiline"))
    assert "first line second line third line" in multiline


class MarkedLogger:
    @segkit.hookimpl
    def segkit_on_train_start(self, run):
        pass


class HalfMarkedLogger(MarkedLogger):
    def segkit_on_eval_end(self, run, step, metrics):
        pass


class MisspeltLogger:
    @segkit.hookimpl
    def segkit_on_train_iter_end(self, run, step, log):
        pass


class UnknownHookLogger:
    @segkit.hookimpl
    def segkit_on_eval_ended(self, run, step, metrics):
        pass


def test_a_marked_logger_passes_silently(capsys):
    check_logger(MarkedLogger(), "logger mine", "my_plugin")
    assert capsys.readouterr().err == ""


def test_an_unmarked_logger_method_gets_one_warning_naming_plugin_method_and_fix(capsys):
    check_logger(HalfMarkedLogger(), "logger mine", "my_plugin")
    warning = capsys.readouterr().err
    assert warning.count("\n") == 1
    assert "plugin 'my_plugin'" in warning and "'segkit_on_eval_end'" in warning
    assert "not marked with @segkit.hookimpl" in warning and "decorate it" in warning


def test_a_logger_with_a_misspelt_argument_is_refused_before_the_run():
    with pytest.raises(PluginError, match=r"'log' \(did you mean 'logs'\?\)"):
        check_logger(MisspeltLogger(), "logger mine", "my_plugin")


def test_a_logger_with_an_unknown_hook_is_refused_with_a_suggestion():
    with pytest.raises(PluginError, match=r"did you mean 'segkit_on_eval_end'"):
        check_logger(UnknownHookLogger(), "logger mine", "my_plugin")


def test_registration_goes_through_pluggy_not_attribute_lookup():
    class Plugin:
        @segkit.hookimpl(specname="segkit_register_losses")
        def my_losses(self, register):
            register("through_pluggy", lambda ignore_index: None)

    plugins = Plugins()
    record = plugins.add(Plugin(), Provider("mine"))
    assert record.status == "active"
    assert plugins.registry.get("loss", "through_pluggy").provider.plugin == "mine"


def test_component_kinds_are_written_once():
    registration_specs = {
        name
        for name in dir(segkit.hookspecs)
        if name.startswith("segkit_register_") and name != "segkit_register_commands"
    }
    assert set(REGISTRATION_HOOKS) == registration_specs
    assert tuple(KIND_PLURALS) == KINDS
    for kind, plural in KIND_PLURALS.items():
        assert normalize_kind(plural) == kind == normalize_kind(kind)
