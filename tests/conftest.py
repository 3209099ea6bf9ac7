"""Shared fixtures: an isolated plugin set, and config files written in the test."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import segkit.plugins
from segkit.components import Provider


@pytest.fixture
def use_plugins(monkeypatch):
    """Replace the process-wide plugins with the given plugin objects (name -> object)."""

    def install(
        plugins: dict[str, object], load_entry_points: bool = False
    ) -> segkit.plugins.Plugins:
        loaded = segkit.plugins.Plugins()
        if load_entry_points:
            loaded.load_entry_points()
        for name, plugin in plugins.items():
            loaded.add(plugin, Provider(name, "test-plugins", "0.0"))
        monkeypatch.setattr(segkit.plugins, "_loaded", loaded)
        return loaded

    yield install
    segkit.plugins.reset()


@pytest.fixture
def toys(use_plugins):
    """The installed plugins plus the tiny engine components of tests/engine_toys.py."""
    import engine_toys

    return use_plugins({"toys": engine_toys}, load_entry_points=True)


@pytest.fixture
def data_plugins(use_plugins):
    """The installed plugins (datasets, transforms) plus the model, loss and optimizer stubs of
    tests/test_data_fixtures.py."""
    from test_data_fixtures import StubPlugin

    return use_plugins({"data_test_stubs": StubPlugin()}, load_entry_points=True)


@pytest.fixture
def write_config(tmp_path):
    """Write dedented YAML to tmp_path/name and return its path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


def make_distribution(
    root: Path,
    name: str,
    entry_points: dict[str, str],
    modules: dict[str, str],
    version: str = "1.0",
) -> Path:
    """A minimal installed distribution (dist-info with METADATA and entry_points.txt, plus its
    modules) under ``root``, to put on PYTHONPATH. For plugins that are broken on purpose."""
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    dist_info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (dist_info / "entry_points.txt").write_text(f"[segkit]\n{lines}", encoding="utf-8")
    return root


def run_segkit(
    *args: str, pythonpath: Path | None = None, env: dict | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run the real ``segkit`` command in a fresh interpreter (entry points are read anew)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SEGKIT_")}
    if pythonpath is not None:
        environment["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(pythonpath), environment.get("PYTHONPATH", "")) if p
        )
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "segkit", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=300,
    )
