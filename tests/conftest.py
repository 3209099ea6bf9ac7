"""Shared fixtures: an isolated plugin set, and config files written in the test."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import segkit.plugins
from segkit.registry import Provider


@pytest.fixture
def use_plugins(monkeypatch):
    """Replace the process-wide plugins with the given plugin objects (name -> object)."""

    def install(plugins: dict[str, object], load_entry_points: bool = False) -> segkit.plugins.Plugins:
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
def write_config(tmp_path):
    """Write dedented YAML to tmp_path/name and return its path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write
