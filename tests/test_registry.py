"""The registry: lookups, aliases, conflicts, suggestions, lazy factories, signatures."""

import sys

import pytest

import segkit
from segkit.components import Provider
from segkit.errors import SegkitError, UnknownComponentError
from segkit.plugins import Plugins


def simple_head(in_channels: int, num_classes: int, dropout: float = 0.1, bins: tuple = (1, 2)):
    """A head for tests.

    Second paragraph, not shown in listings."""
    return ("head", in_channels, num_classes, dropout, bins)


class First:
    @staticmethod
    @segkit.hookimpl
    def segkit_register_heads(register):
        register("shared", simple_head, aliases=["common"])
        register("only_first", simple_head)


class Second:
    @staticmethod
    @segkit.hookimpl
    def segkit_register_heads(register):
        register("shared", simple_head)


class Lazy:
    @staticmethod
    @segkit.hookimpl
    def segkit_register_backbones(register):
        register("lazy_net", "segkit_test_lazy_module:build", help="never imported by listing")


@pytest.fixture
def registry():
    plugins = Plugins()
    plugins.add(First, Provider("first", "first-dist", "1.0"))
    plugins.add(Second, Provider("second", "second-dist", "2.0"))
    plugins.add(Lazy, Provider("lazy"))
    return plugins.registry


def test_name_claimed_by_two_plugins_names_both_providers(registry):
    with pytest.raises(UnknownComponentError) as error:
        registry.get("head", "shared")
    assert "'first:shared'" in str(error.value) and "'second:shared'" in str(error.value)


def test_plugin_qualified_name_resolves_a_conflict(registry):
    assert registry.get("head", "second:shared").provider.distribution == "second-dist"
    assert registry.get("head", "first:shared").provider.plugin == "first"


def test_alias_finds_the_component(registry):
    assert registry.get("head", "common").name == "shared"


def test_unknown_name_suggests_close_matches(registry):
    with pytest.raises(UnknownComponentError, match="did you mean 'only_first'"):
        registry.get("head", "only_frist")


def test_unknown_kind_lists_the_kinds(registry):
    with pytest.raises(SegkitError, match="the kinds are: backbone, head"):
        registry.list("headz")


def test_plural_kind_is_accepted(registry):
    assert [c.name for c in registry.list("heads", "only*")] == ["only_first"]


def test_wildcard_listing_folds_aliases(registry):
    names = [(c.name, c.provider.plugin) for c in registry.list("head")]
    assert names == [("only_first", "first"), ("shared", "first"), ("shared", "second")]
    assert [c.name for c in registry.list(pattern="*net")] == ["lazy_net"]


def test_listing_does_not_import_lazy_factories(registry):
    registry.list()
    assert registry.get("backbone", "lazy_net").summary() == "never imported by listing"
    assert "segkit_test_lazy_module" not in sys.modules


def test_lazy_factory_that_cannot_be_imported_is_a_clear_error(registry):
    with pytest.raises(SegkitError, match="plugin 'lazy' registered backbone 'lazy_net'"):
        registry.get("backbone", "lazy_net").load()


def test_signature_hides_core_supplied_arguments(registry):
    component = registry.get("head", "only_first")
    assert [p.name for p in component.parameters()] == ["dropout", "bins"]
    assert component.summary() == "A head for tests."


def test_build_passes_core_arguments_and_options(registry):
    built = registry.build(
        "head", {"type": "only_first", "dropout": 0.5}, in_channels=8, num_classes=3
    )
    assert built == ("head", 8, 3, 0.5, (1, 2))


def test_same_plugin_registering_a_name_twice_is_an_error():
    class Twice:
        @staticmethod
        @segkit.hookimpl
        def segkit_register_losses(register):
            register("dup", lambda ignore_index: None)
            register("dup", lambda ignore_index: None)

    plugins = Plugins()
    record = plugins.add(Twice, Provider("twice"))
    assert record.status == "error" and "registered twice" in record.error
