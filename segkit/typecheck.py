"""Checking YAML values against type hints, the way a config author thinks of types.

YAML gives lists where Python code often hints tuples, and ints where it hints floats; both are
accepted. Hints this module does not understand accept everything: a config check should never
reject what the component itself would take. ``Annotated[hint, constraint, ...]`` adds the
constraints of :mod:`segkit.constraints` to the type.
"""

from __future__ import annotations

import collections.abc
import inspect
import os
import types
import typing
from typing import Any

from segkit.constraints import Constraint

_PLAIN = {bool: "bool", int: "int", float: "float", str: "str", type(None): "null"}


def matches(value: Any, hint: Any) -> bool:
    if hint is Any or hint is inspect.Parameter.empty or isinstance(hint, (str, typing.TypeVar)):
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return matches(value, hint.__origin__) and all(c.allows(value) for c in constraints(hint))
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (str, os.PathLike) or _is_path(hint):
        return isinstance(value, str)
    if hint is type(None) or hint is None:
        return value is None
    if origin in (list, tuple) or hint in (list, tuple):
        return _matches_sequence(value, origin or hint, args)
    if origin in (collections.abc.Sequence, collections.abc.Iterable):
        return _matches_sequence(value, list, args)
    if origin in (dict, collections.abc.Mapping) or hint is dict:
        if not isinstance(value, dict):
            return False
        if len(args) == 2:
            return all(matches(k, args[0]) and matches(v, args[1]) for k, v in value.items())
        return True
    return True


def _matches_sequence(value: Any, container: Any, args: tuple) -> bool:
    if not isinstance(value, (list, tuple)):
        return False
    if not args:
        return True
    if container is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args))
    return all(matches(v, args[0]) for v in value)


def _is_path(hint: Any) -> bool:
    return getattr(hint, "__name__", "") in ("Path", "PurePath")


def constraints(hint: Any) -> list[Constraint]:
    return [c for c in getattr(hint, "__metadata__", ()) if isinstance(c, Constraint)]


def describe(hint: Any) -> str:
    """A short, readable name for a hint: ``int``, ``list[int]``, ``'whole' or 'slide'``,
    ``int at least 1``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        rules = ", ".join(c.describe() for c in constraints(hint))
        return f"{describe(hint.__origin__)} {rules}".strip()
    if hint in _PLAIN:
        return _PLAIN[hint]
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(arg) for arg in args)
    if origin is typing.Literal:
        return " or ".join(repr(arg) for arg in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        if args:
            inner = ", ".join("..." if a is Ellipsis else describe(a) for a in args)
            return f"{name}[{inner}]"
        return name
    return getattr(hint, "__name__", str(hint))


def describe_value(value: Any) -> str:
    return f"{_PLAIN.get(type(value), type(value).__name__)} {value!r}"
