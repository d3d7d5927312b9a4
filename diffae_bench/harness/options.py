"""Typed config overrides: `--set task.field=value` strings converted to the config dataclass's field types.

A task's Config is a frozen dataclass whose annotations say what each field
holds (int, float, bool, str, a Literal of choices, a tuple of those, or a
nested config dataclass). Overrides arrive either as command-line strings or
as Python values (demo.py, tests); both go through `coerce`, so
`reconstruction.lpips=False` is the bool False (not the truthy string "False"),
`reconstruction.n_images=abc` is a one-line error naming the option, and
`reconstruction.steps=10,20` is the tuple (10, 20). Everything fails here,
before any model is loaded or file written.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal

from ..errors import BenchError

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_NONE = ("none", "null")


def _describe(tp: Any) -> str:
    """What a type expects, in words, for error messages."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"comma-separated values, each {_describe(args[0])}"
        return f"{len(args)} comma-separated values"
    if origin in (typing.Union, types.UnionType):
        return " or ".join("none" if a is type(None) else _describe(a) for a in args)
    return getattr(tp, "__name__", str(tp))


def _scalar(value: Any, tp: Any) -> Any:
    """value as the scalar type tp; ValueError when it does not fit."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        for c in choices:
            if value == c or (isinstance(value, str) and value.strip() == str(c)):
                return c
        raise ValueError
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError
    if tp is int:
        if isinstance(value, bool):  # True is an int in Python, never a count
            raise ValueError
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            return int(value.strip())  # "1.5" and "abc" raise
        raise ValueError
    if tp is float:
        if isinstance(value, bool):
            raise ValueError
        v = float(value.strip()) if isinstance(value, str) else float(value) if isinstance(value, (int, float)) else None
        if v is None or not math.isfinite(v):  # nan / inf are never a setting
            raise ValueError
        return v
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError
    return value  # an annotation we do not know: passed through as given


def coerce(value: Any, tp: Any, what: str) -> Any:
    """value (a command-line string or a Python value) as type tp; a BenchError naming `what` when it does not fit."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    try:
        if origin in (typing.Union, types.UnionType):
            if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
                if type(None) in args:
                    return None
                raise ValueError
            for a in (a for a in args if a is not type(None)):
                try:
                    return coerce(value, a, what)
                except BenchError:
                    continue
            raise ValueError
        if origin is tuple:
            if isinstance(value, str):
                items = [v for v in value.split(",") if v.strip() != ""]  # "" is the empty tuple
            elif isinstance(value, (list, tuple)):
                items = list(value)
            else:
                items = [value]  # "--set task.steps=10" gives one value where the field holds a tuple
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_scalar(v, args[0]) for v in items)
            if len(items) != len(args):
                raise ValueError
            return tuple(_scalar(v, a) for v, a in zip(items, args))
        return _scalar(value, tp)
    except (ValueError, TypeError):
        raise BenchError(f"{what} expects {_describe(tp)}, got {value!r}") from None


def _numbers(value: Any):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value
    elif isinstance(value, tuple):
        for v in value:
            yield from _numbers(v)


def replace_typed(obj: Any, overrides: dict[str, Any], where: str, non_negative: bool = False,
                  _prefix: str = "") -> Any:
    """dataclasses.replace(obj, ...) with every override converted to its field's type.

    Keys are field names, or "outer.inner" for a field of a nested config
    dataclass. Unknown names are an error with a suggestion. `where` names the
    config in messages ("task reconstruction"). non_negative: refuse negative
    numbers (task configs: every number counts images, steps, epochs or
    draws, seeds a generator, or is a rate).
    """
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    direct: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        name, _, inner = key.partition(".")
        option = f"{where} option '{_prefix}{name}'"
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean '{_prefix}{close[0]}'?" if close else ""
            group = f" of {_prefix[:-1]}" if _prefix else ""
            raise BenchError(f"{where} has no option '{_prefix}{name}'{hint} (options{group}: {', '.join(names)})")
        is_group = dataclasses.is_dataclass(getattr(obj, name))
        if inner:
            if not is_group:
                raise BenchError(f"{option} has no fields; set it as {_prefix}{name}=value")
            nested.setdefault(name, {})[inner] = value
        elif is_group and not isinstance(value, type(getattr(obj, name))):
            raise BenchError(f"{option} is a group of options; set its fields as {_prefix}{name}.FIELD=value")
        else:
            direct[name] = coerce(value, hints[name], option)
            if non_negative and any(v < 0 for v in _numbers(direct[name])):
                raise BenchError(f"{option} must not be negative, got {value!r}")
    for name, inner in nested.items():
        direct[name] = replace_typed(direct.get(name, getattr(obj, name)), inner, where, non_negative,
                                     _prefix=f"{_prefix}{name}.")
    return dataclasses.replace(obj, **direct)
