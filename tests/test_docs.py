"""The reference documentation keeps up with the code it describes."""

import re
import shlex
import typing
from dataclasses import fields
from pathlib import Path

import pytest

from segkit import ConfigError, hookspecs, load_config, schema
from segkit.typecheck import describe

DOCS = Path(__file__).resolve().parents[1] / "docs"


def schema_keys(section: type, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(section)
    for field in fields(section):
        if schema.is_section(hints[field.name]):
            keys += schema_keys(hints[field.name], f"{prefix}{field.name}.")
        else:
            keys.append(prefix + field.name)
        slot = field.metadata.get("slot")
        if slot is not None and slot.extras is not None:
            keys += [extra.name for extra in fields(slot.extras)]
    return keys


def test_configuration_reference_documents_every_key():
    text = (DOCS / "configuration.md").read_text()
    missing = [key for key in schema_keys(schema.ConfigSchema) if f"`{key}`" not in text]
    assert not missing, f"docs/configuration.md does not document: {missing}"


def test_configuration_reference_states_the_range_of_every_constrained_key():
    """The type column is what the validator checks: ``segkit.typecheck.describe`` of the
    Annotated hint, constraints included."""
    text = (DOCS / "configuration.md").read_text()
    wrong = {}
    for name, section in typing.get_type_hints(schema.ConfigSchema, include_extras=True).items():
        if not schema.is_section(section):
            continue
        for key, hint in typing.get_type_hints(section, include_extras=True).items():
            if typing.get_origin(hint) is not typing.Annotated and "Annotated" not in repr(hint):
                continue
            row = re.search(rf"^\| `{name}\.{key}` \| ([^|]+) \|", text, re.M)
            if row is None or row.group(1) != describe(hint):
                wrong[f"{name}.{key}"] = describe(hint)
    assert not wrong, f"docs/configuration.md: type column should read: {wrong}"


def test_plugin_guide_documents_every_hook():
    text = (DOCS / "plugins.md").read_text()
    hooks = [name for name in vars(hookspecs) if name.startswith("segkit_")]
    missing = [hook for hook in hooks if f"`{hook}(" not in text]
    assert not missing, f"docs/plugins.md does not document: {missing}"


def plugin_guide_section(title: str) -> str:
    text = (DOCS / "plugins.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_plugin_guide_lists_exactly_the_stable_surface():
    from segkit.plugins import PLUGIN_API

    rows = re.findall(
        r"^\| `(segkit[\w.]*)` \| (.*) \|$", plugin_guide_section("What a plugin may import"), re.M
    )
    documented = {module: set(re.findall(r"`(\w+)`", names)) for module, names in rows}
    assert documented == {module: set(names) for module, names in PLUGIN_API.items()}


# Names the core looks up on objects that are not plugin components.
NOT_COMPONENT_ATTRIBUTES = {
    "DistError",
    "__dataclass_fields__",
    "__metadata__",
    "__name__",
    "_workers",
    "body",
    "data",
    "dist",
    "filename",
    "isatty",
    "more_positionals",
    "mps",
    "overrides",
    "parts",
    "plugin",
    "problem",
    "problem_mark",
    "sched_getaffinity",
    "segkit_impl",
    "warn_plugins",
}


def test_plugin_guide_documents_every_attribute_the_core_reads_from_components():
    import ast

    looked_up = {"out_channels", "strides", "lr_mult"}  # read without getattr
    for path in (DOCS.parent / "segkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
            ):
                looked_up.add(node.args[1].value)
    section = plugin_guide_section("What the engine reads from components")
    missing = sorted(
        name for name in looked_up - NOT_COMPONENT_ATTRIBUTES if f"`{name}" not in section
    )
    assert not missing, f"docs/plugins.md does not say what segkit reads as: {missing}"


def test_plugin_guide_documents_what_the_run_events_receive():
    import inspect

    from segkit.engine.run import Run

    section = plugin_guide_section("Hook reference")
    fields_and_properties = [f.name for f in fields(Run)] + [
        name for name, value in vars(Run).items() if isinstance(value, property)
    ]
    missing = [f"run.{name}" for name in fields_and_properties if f"`run.{name}`" not in section]
    for name in ("segkit_on_train_iter_end", "segkit_on_eval_end", "segkit_on_checkpoint"):
        missing += [
            f"{name}: {arg}"
            for arg in inspect.signature(getattr(hookspecs, name)).parameters
            if f"`{arg}`" not in section
        ]
    missing += [
        key
        for key in ('metrics["samples"]', 'metrics["IoU"]', 'metrics["Acc"]')
        if f"`{key}`" not in section
    ]
    assert not missing, f"docs/plugins.md does not document: {missing}"


def documented_commands() -> list[tuple[str, str]]:
    """(file, command line) for every `segkit`/`torchrun` line of the docs' and README's shell
    blocks that names a shipped config; continued lines are joined."""
    found = []
    for page in [*sorted(DOCS.glob("*.md")), DOCS.parent / "README.md"]:
        text = page.read_text(encoding="utf-8")
        for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip()
                if re.match(r"(srun )?(segkit|torchrun) ", line) and "configs/" in line:
                    found.append((page.name, line))
    return found


@pytest.mark.parametrize("page, line", documented_commands(), ids=lambda v: v[:70])
def test_documented_command_names_a_valid_config_and_overrides(page, line):
    """Each documented command's config and overrides validate (running them is the README
    test's job); a line marked '# misspelled' must be refused with a suggestion."""
    command, _, comment = line.partition(" #")
    arguments = shlex.split(command)
    config = next(a for a in arguments if a.startswith("configs/") and a.endswith(".yaml"))
    overrides = [a for a in arguments if "=" in a and not a.startswith("-") and "$" not in a]
    if "misspelled" in comment:
        with pytest.raises(ConfigError, match="did you mean"):
            load_config(DOCS.parent / config, overrides)
    else:
        scored = "train" in arguments or ("eval" in arguments and "--merge" not in arguments)
        load_config(DOCS.parent / config, overrides, check_val_classes=scored)
