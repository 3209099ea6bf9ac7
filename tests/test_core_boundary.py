"""The core names no plugin, and plugins meet only through segkit's stable surface.

Read from the source (no import), so a violation is found even in code no test runs: a lazy
``"module:attribute"`` factory string counts as an import of that module.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from segkit.plugins import PLUGIN_API

ROOT = Path(__file__).resolve().parents[1]


def plugin_packages() -> dict[str, Path]:
    """Package name -> folder of every built-in plugin (pyproject's entry points) and of the
    example third-party plugin."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {
        target: ROOT / "plugins" / target.split(".", 1)[1]
        for target in project["project"]["entry-points"]["segkit"].values()
    }
    packages["segkit_example"] = ROOT / "plugins" / "example-plugin" / "segkit_example"
    return packages


PACKAGES = plugin_packages()
PLUGIN_ROOTS = sorted({name.split(".")[0] for name in PACKAGES})  # segkit_example, segkit_plugins


def sources(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def imports(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, module, names taken from it) for every import in ``path``, relative ones resolved,
    plus the module of every ``"module:attribute"`` string."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = _package_of(path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append((node.lineno, module, tuple(alias.name for alias in node.names)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            head, colon, _ = node.value.partition(":")
            if colon and head.split(".")[0] in (*PLUGIN_ROOTS, "segkit"):
                found.append((node.lineno, head, ()))
    return found


def _package_of(path: Path) -> str:
    for name, folder in PACKAGES.items():
        if folder in path.parents:
            return name
    return "segkit"


def _owner(module: str) -> str | None:
    """The plugin package ``module`` belongs to, if any."""
    return next((p for p in PACKAGES if module == p or module.startswith(p + ".")), None)


def test_the_boundary_test_sees_every_plugin_and_the_core():
    assert {"segkit_plugins.tensorboard", "segkit_plugins.uper", "segkit_example"} <= set(PACKAGES)
    assert all(folder.is_dir() for folder in PACKAGES.values())
    assert len(sources(ROOT / "segkit")) > 30


def test_no_core_module_imports_or_names_a_plugin():
    found = []
    for path in sources(ROOT / "segkit"):
        text = path.read_text(encoding="utf-8")
        found += [
            f"{path.relative_to(ROOT)}:{line}: {module}"
            for line, module, _ in imports(path)
            if module.split(".")[0] in PLUGIN_ROOTS
        ]
        found += [
            f"{path.relative_to(ROOT)}: names '{root}'" for root in PLUGIN_ROOTS if root in text
        ]
    assert not found, "the core must not know any plugin:\n" + "\n".join(found)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_a_plugin_imports_no_other_plugin(package):
    found = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sources(PACKAGES[package])
        for line, module, _ in imports(path)
        if module.split(".")[0] in PLUGIN_ROOTS and _owner(module) != package
    ]
    assert not found, f"{package} reaches into another plugin:\n" + "\n".join(found)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_a_plugin_imports_only_the_stable_surface_of_segkit(package):
    found = []
    for path in sources(PACKAGES[package]):
        where = path.relative_to(ROOT)
        for line, module, names in imports(path):
            if module.split(".")[0] != "segkit":
                continue
            if module not in PLUGIN_API:
                found.append(f"{where}:{line}: module {module} is not stable")
            elif not names and module != "segkit":
                found.append(f"{where}:{line}: import {module}: take names with 'from ... import'")
            found += [
                f"{where}:{line}: {module}.{name} is not stable"
                for name in names
                if module in PLUGIN_API and name not in PLUGIN_API[module]
            ]
        found += [
            f"{where}:{node.lineno}: segkit.{node.attr} is not stable"
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "segkit"
            and node.attr not in PLUGIN_API["segkit"]
        ]
    assert not found, "\n".join(found) + "\n(the stable surface: segkit.plugins.PLUGIN_API)"


def test_every_stable_name_exists():
    import importlib

    missing = [
        f"{module}.{name}"
        for module, names in PLUGIN_API.items()
        for name in names
        if not hasattr(importlib.import_module(module), name)
    ]
    assert not missing


def test_the_checks_catch_what_they_are_for(tmp_path):
    """A core module importing a plugin, a plugin naming another's factory, an internal import."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import segkit\n"
        "from segkit.engine.trainer import Trainer\n"
        "from segkit_plugins.pspnet.ppm import PPMHead\n"
        "FACTORY = 'segkit_plugins.drn.model:DRN'\n"
        "segkit.plugins\n",
        encoding="utf-8",
    )
    found = imports(bad)
    assert (2, "segkit.engine.trainer", ("Trainer",)) in found
    assert (3, "segkit_plugins.pspnet.ppm", ("PPMHead",)) in found
    assert (4, "segkit_plugins.drn.model", ()) in found
    assert _owner("segkit_plugins.drn.model") == "segkit_plugins.drn"
