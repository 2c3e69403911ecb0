"""Typed, frozen dataclass configs: parsing from dicts / CLI strings with clear errors, and JSON round trips.

A config is the *only* constructor argument of a model.  Values come from the CLI or from ``config.json`` and
are checked against the dataclass field types here, so an unknown key or a wrong type is rejected with a
message that says how to fix it.  Supported field types: ``int``, ``float``, ``bool``, ``str``,
``Literal[...]``, ``tuple[int, ...]``, ``X | None``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from .errors import ConfigError

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is tuple:
        return "comma-separated list of " + _type_name(get_args(tp)[0])
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (a JSON value or a CLI string) to ``tp`` or raise ConfigError."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"option '{key}': {value!r} is not a valid {_type_name(tp)}")
    if origin is Literal:
        choices = get_args(tp)
        if value in choices:
            return value
        # numbers given as strings on the command line
        for c in choices:
            if str(c) == str(value):
                return c
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"option '{key}': {value!r} is not one of {', '.join(map(repr, choices))}{hint}")
    if origin is tuple:
        (inner, *_rest) = get_args(tp)
        if isinstance(value, str):
            parts = [p for p in value.replace(" ", "").split(",") if p != ""]
        elif isinstance(value, (list, tuple)):
            parts = list(value)
        else:
            parts = [value]
        return tuple(_coerce(p, inner, key) for p in parts)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"option '{key}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"option '{key}': expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"option '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"option '{key}': expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"option '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"option '{key}': expected a string, got {value!r}")
    raise TypeError(f"unsupported config field type {tp!r} for {key}")  # programming error


def opt(default: Any, help: str, *, scope: str = "") -> Any:
    """A config field with its help text (shown by ``aekit train --help``) and, optionally, the condition under
    which it applies (``scope="--arch conv"``; which *models* it applies to follows from which config classes
    have the field).  Tuples and other immutable defaults only: configs are frozen."""
    return dataclasses.field(default=default, metadata={"help": help, "scope": scope})


def field_help(cls: type) -> dict[str, tuple[str, str]]:
    """``{field: (help, scope)}`` of a config dataclass (empty help where a field has none)."""
    return {f.name: (f.metadata.get("help", ""), f.metadata.get("scope", "")) for f in dataclasses.fields(cls)}


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def from_dict(cls: type[T], values: dict[str, Any], *, what: str | None = None) -> T:
    """Build ``cls`` from ``values``; unknown keys and wrong types raise ConfigError naming the fix."""
    types_ = field_types(cls)
    what = what or cls.__name__
    unknown = [k for k in values if k not in types_]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(k, list(types_), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"valid options: {', '.join(sorted(types_))}"
        raise ConfigError(f"unknown option '{k}' for {what}: {hint}")
    kwargs = {k: _coerce(v, types_[k], k) for k, v in values.items()}
    try:
        obj = cls(**kwargs)
    except TypeError as e:  # missing required field
        raise ConfigError(f"{what}: {e}") from None
    return obj


def to_dict(cfg: Any) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def check(cond: bool, message: str) -> None:
    """Config validation helper used in ``__post_init__``."""
    if not cond:
        raise ConfigError(message)
