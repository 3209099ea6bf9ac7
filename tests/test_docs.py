"""The reference documentation keeps up with the code it describes."""

import typing
from dataclasses import fields
from pathlib import Path

from segkit import hookspecs, schema

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


def test_plugin_guide_documents_every_hook():
    text = (DOCS / "plugins.md").read_text()
    hooks = [name for name in vars(hookspecs) if name.startswith("segkit_")]
    missing = [hook for hook in hooks if f"`{hook}(" not in text]
    assert not missing, f"docs/plugins.md does not document: {missing}"
