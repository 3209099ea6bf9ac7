"""Plugin loading through entry points: isolation of broken plugins, strict mode, disabling."""

import json

import pytest
from conftest import make_distribution, run_segkit

import segkit
from segkit.components import Provider
from segkit.plugins import Plugins

GOOD = """
import segkit

@segkit.hookimpl
def segkit_register_losses(register):
    register("good_loss", "good_plugin_mod:make", help="a loss from a good plugin")

def make(ignore_index: int, scale: float = 1.0):
    return None
"""
IMPORT_FAILS = """
import segkit
raise RuntimeError("this plugin is broken on purpose")
"""
MISSPELLED_HOOK = """
import segkit

@segkit.hookimpl
def segkit_register_backbone(register):  # missing the final s
    register("never_seen", "x:y")
"""


@pytest.fixture
def site(tmp_path):
    """Three distributions: one good plugin, one that fails to import, one with a misspelled hook."""
    root = tmp_path / "site"
    make_distribution(root, "good-dist", {"good": "good_plugin_mod"}, {"good_plugin_mod": GOOD})
    make_distribution(
        root, "broken-dist", {"broken": "broken_plugin_mod"}, {"broken_plugin_mod": IMPORT_FAILS}
    )
    make_distribution(
        root, "typo-dist", {"typo": "typo_plugin_mod"}, {"typo_plugin_mod": MISSPELLED_HOOK}
    )
    return root


def test_broken_plugins_leave_the_others_working(site):
    result = run_segkit("list", "loss", "--json", pythonpath=site)
    assert result.returncode == 0, result.stderr
    listed = {(c["name"], c["plugin"], c["distribution"]) for c in json.loads(result.stdout)}
    assert ("good_loss", "good", "good-dist") in listed
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1, result.stderr
    assert "'broken'" in warnings[0] and "broken on purpose" in warnings[0]
    assert "'typo'" in warnings[0] and "segkit_register_backbone" in warnings[0]
    assert "segkit_register_backbones" in warnings[0]  # the suggestion


def test_plugins_command_reports_status_and_errors(site):
    result = run_segkit("plugins", "--json", pythonpath=site)
    assert result.returncode == 0, result.stderr
    records = {r["name"]: r for r in json.loads(result.stdout)}
    assert records["good"]["status"] == "active"
    assert records["good"]["hooks"] == ["segkit_register_losses"]
    assert records["good"]["distribution"] == "good-dist" and records["good"]["version"] == "1.0"
    assert records["broken"]["status"] == "error"
    assert "RuntimeError: this plugin is broken on purpose" in records["broken"]["error"]
    assert records["typo"]["status"] == "error"
    assert "unknown hook 'segkit_register_backbone'" in records["typo"]["error"]


def test_strict_mode_makes_plugin_failures_fatal(site):
    result = run_segkit("list", pythonpath=site, env={"SEGKIT_STRICT_PLUGINS": "1"})
    assert result.returncode == 2
    assert "broken on purpose" in result.stderr and "Traceback" not in result.stderr


def test_disabled_plugins_are_not_imported(site):
    result = run_segkit(
        "plugins", "--json", pythonpath=site, env={"SEGKIT_DISABLE_PLUGINS": "broken, typo"}
    )
    records = {r["name"]: r for r in json.loads(result.stdout)}
    assert records["broken"]["status"] == "disabled" and records["broken"]["error"] is None
    assert records["typo"]["status"] == "disabled"
    assert result.stderr == ""


def test_a_misspelled_name_to_disable_is_pointed_out(site):
    result = run_segkit("list", "loss", pythonpath=site, env={"SEGKIT_DISABLE_PLUGINS": "brokn"})
    assert result.returncode == 0
    assert "SEGKIT_DISABLE_PLUGINS names no installed plugin: brokn" in result.stderr
    assert "'broken'" in result.stderr  # still loaded, so still failing


def test_unknown_component_mentions_failed_plugins(site):
    result = run_segkit("show", "loss", "good_los", pythonpath=site)
    assert result.returncode == 2
    assert "did you mean 'good_loss'" in result.stderr
    assert "failed to load: broken, typo" in result.stderr


COMMAND_RAISES = """
import segkit

@segkit.hookimpl
def segkit_register_commands(subparsers):
    subparsers.add_parser("half-made", help="added before the failure")
    raise RuntimeError("no command today")
"""
COMMAND_CLAIMS_LIST = """
import segkit

@segkit.hookimpl
def segkit_register_commands(subparsers):
    subparsers.add_parser("list")
"""


def test_a_plugin_failing_to_add_commands_leaves_every_other_command_working(tmp_path):
    root = tmp_path / "site"
    make_distribution(root, "good-dist", {"good": "good_plugin_mod"}, {"good_plugin_mod": GOOD})
    make_distribution(
        root, "raising-dist", {"raising": "raising_mod"}, {"raising_mod": COMMAND_RAISES}
    )
    make_distribution(
        root, "clash-dist", {"clash": "clash_mod"}, {"clash_mod": COMMAND_CLAIMS_LIST}
    )
    listed = run_segkit("list", "loss", pythonpath=root)
    assert listed.returncode == 0, listed.stderr
    assert "good_loss" in listed.stdout and "Traceback" not in listed.stderr
    assert "'raising': adding commands failed: RuntimeError: no command today" in listed.stderr
    assert "'clash': adding commands failed: ArgumentError" in listed.stderr
    assert "conflicting subparser: list" in listed.stderr
    assert "half-made" not in run_segkit("--help", pythonpath=root).stdout
    strict = run_segkit("list", pythonpath=root, env={"SEGKIT_STRICT_PLUGINS": "1"})
    assert strict.returncode == 2 and "no command today" in strict.stderr


class RaisesWhileRegistering:
    @staticmethod
    @segkit.hookimpl
    def segkit_register_losses(register):
        register("half_registered", lambda ignore_index: None)
        raise KeyError("missing table")


class BadName:
    @staticmethod
    @segkit.hookimpl
    def segkit_register_heads(register):
        register("Bad Name!", lambda in_channels, num_classes: None)


def test_a_plugin_raising_while_registering_registers_nothing():
    plugins = Plugins()
    record = plugins.add(RaisesWhileRegistering, Provider("raiser"))
    assert record.status == "error" and "KeyError" in record.error
    assert plugins.registry.list("loss") == []
    assert not plugins.manager.is_registered(RaisesWhileRegistering)


def test_invalid_component_names_are_refused():
    plugins = Plugins()
    record = plugins.add(BadName, Provider("badname"))
    assert record.status == "error" and "'Bad Name!' is not valid" in record.error


def test_events_reach_active_plugins():
    seen = []

    class Listener:
        @staticmethod
        @segkit.hookimpl
        def segkit_on_checkpoint(run, path):
            seen.append(path)

    plugins = Plugins()
    plugins.add(Listener, Provider("listener"))
    plugins.hook.segkit_on_checkpoint(run=None, path="last.pt")
    assert seen == ["last.pt"]


def test_listing_imports_no_model_code():
    """`segkit list` stays fast because no built-in plugin imports torch (or a tracker) to register."""
    import subprocess
    import sys

    code = (
        "import sys; from segkit.cli import main; main(['list']); "
        "print(sorted(m for m in ('torch', 'numpy', 'PIL', 'mlflow', 'wandb') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
