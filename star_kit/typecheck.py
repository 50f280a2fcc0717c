"""Does a value fit a type annotation, and how to name the annotation in a one-line error: the one check of a
config file's keys, a plugin option's value (``star_kit.config``) and a ``metrics.jsonl`` row's fields
(``star_kit.records``)."""

from __future__ import annotations

import enum
import types
import typing
from pathlib import PurePath
from typing import Any


def union_members(hint: Any) -> tuple:
    """The members of a union annotation (``int | None``, ``Optional[Path]``), or ``(hint,)``."""
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as YAML or JSON gives it) fits the annotation ``hint``: a bool is no int, an int is a
    float, an Enum or Literal takes its values, containers are checked entry by entry (a dict's keys and values,
    a list's items); an annotation this cannot check (a TypeVar) lets anything through."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(type_ok(value, a) for a in args)
    if hint is Any:
        return True
    if isinstance(hint, type) and issubclass(hint, enum.Enum):  # a member, or a member's value (as YAML has it)
        return isinstance(value, hint) or any(same(value, m.value) for m in hint)
    if hint is type(None):
        return value is None
    if isinstance(hint, type) and issubclass(hint, PurePath):  # a path is given as text
        return isinstance(value, (str, PurePath))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is dict:
        return isinstance(value, dict) and (len(args) != 2 or all(type_ok(k, args[0]) and type_ok(v, args[1])
                                                                  for k, v in value.items()))
    if origin is list:
        return isinstance(value, list) and (not args or all(type_ok(v, args[0]) for v in value))
    if origin is tuple:  # YAML and the command line give lists
        return isinstance(value, (list, tuple))
    if origin is typing.Literal:
        return any(same(value, a) for a in args)
    if origin is not None:  # Sequence[str], tuple[int, ...], Callable ...: the container's type only
        hint = origin
    try:
        return isinstance(value, hint)
    except TypeError:  # not a class (a TypeVar, a string annotation ...): nothing to check
        return True


def same(value: Any, allowed: Any) -> bool:
    """``value == allowed`` of the same type (True is not 1, 1.0 is not 1)."""
    return type(value) is type(allowed) and value == allowed


def type_name(hint: Any) -> str:
    """``hint`` in words, for an error: "an integer or null", "'fast' or 'slow'", "a list of strings"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return " or ".join(repr(m.value) for m in hint)
    if origin is dict:
        return "a mapping of names to values"
    if origin is list:
        return "a list of strings" if args == (str,) else f"a list of ({type_name(args[0])})" if args else "a list"
    if origin is tuple:
        return "a list"
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in args)
    if origin is not None:
        return f"a {getattr(origin, '__name__', origin)}"
    if isinstance(hint, type) and issubclass(hint, PurePath):
        return "a path"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            type(None): "null"}.get(hint, getattr(hint, "__name__", str(hint)))


def kind_of(value: Any) -> str:
    """What ``value`` is, in words ("a boolean", "a mapping")."""
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping", type(None): "null"}.get(type(value), type(value).__name__)
