"""YAML -> frozen dataclasses, strictly.

Configuration stops at the boundary: a YAML file (optionally inheriting from base files through a ``_base_`` key)
plus ``key.sub=value`` overrides is merged into a plain mapping, then converted into a tree of small frozen
dataclasses by following their type hints. Unknown keys and wrong types raise :class:`ConfigError` naming the
key path and the file it came from; nothing downstream ever sees a raw dictionary.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import logging
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

logger = logging.getLogger(__name__)

T = TypeVar("T")
BASE_KEY = "_base_"
MAX_BASE_DEPTH = 8


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key and its source."""


def load_config(
    schema: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()
) -> T:
    """Load ``path`` (YAML), apply ``key.sub=value`` overrides and convert into ``schema``.

    With no path the schema's defaults are used, still subject to the overrides.
    """
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path is not None:
        raw = _read_with_bases(Path(path), depth=0)
        sources = _flatten_sources(raw, str(path))
    for override in overrides:
        key_path, value = parse_override(override)
        origin = f"override {override!r}"
        _set_path(raw, key_path, value, origin=origin)
        for depth in range(1, len(key_path)):  # sections the override brings (a misspelt one is its fault)
            sources.setdefault(".".join(key_path[:depth]), origin)
        sources[".".join(key_path)] = origin
    return from_dict(schema, raw, source=str(path) if path is not None else "<defaults>", sources=sources)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and a YAML-parsed value (``x=3`` -> 3, ``x=[1,2]`` -> list)."""
    key, sep, value_text = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    parts = key.split(".")
    if any(not part for part in parts):
        raise ConfigError(f"override {text!r} has an empty key segment")
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from None
    return parts, value


def to_dict(config: Any) -> Any:
    """A dataclass tree as plain YAML-friendly data (tuples become lists, enums their values)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(item) for item in config]
    if isinstance(config, Mapping):
        return {str(key): to_dict(value) for key, value in config.items()}
    if isinstance(config, enum.Enum):
        return config.value
    if isinstance(config, Path):
        return str(config)
    return config


def dump_yaml(config: Any) -> str:
    result: str = yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=False)
    return result


def from_dict(
    schema: type[T], data: Any, *, source: str = "<dict>", sources: Mapping[str, str] | None = None
) -> T:
    """Convert ``data`` into the dataclass ``schema``; errors name the dotted key and its source."""
    result: T = _Converter(source, dict(sources or {})).convert(schema, data, ())
    return result


# --------------------------------------------------------------------------- files and merging


def read_yaml(path: Path, what: str = "config file") -> Any:
    """The parsed YAML document of a file; a missing, unreadable or invalid file is one :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _read_with_bases(path: Path, depth: int) -> dict[str, Any]:
    if depth > MAX_BASE_DEPTH:
        raise ConfigError(f"{path}: {BASE_KEY} chain deeper than {MAX_BASE_DEPTH} (a cycle?)")
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY} must be a file name or a list of file names")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = _deep_merge(merged, _read_with_bases((path.parent / base).resolve(), depth + 1))
    return _deep_merge(merged, data)


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _flatten_sources(data: Mapping[str, Any], source: str, prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        out[dotted] = source
        if isinstance(value, Mapping):
            out.update(_flatten_sources(value, source, dotted + "."))
    return out


def _set_path(data: dict[str, Any], key_path: list[str], value: Any, origin: str) -> None:
    node = data
    for depth, key in enumerate(key_path[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            where = ".".join(key_path[: depth + 1])
            raise ConfigError(f"{origin}: {where!r} is a value, not a section")
        node = child
    node[key_path[-1]] = value


# --------------------------------------------------------------------------- typed conversion


class _Converter:
    def __init__(self, source: str, sources: dict[str, str]):
        self.source = source
        self.sources = sources

    def fail(self, key_path: tuple[str, ...], message: str, *, section: bool = False) -> typing.NoReturn:
        """Raise naming the key and where it came from; a ``section`` check (its values together) also names
        the overrides that set values in it."""
        dotted = ".".join(key_path) or "<top level>"
        origin = self.sources.get(dotted, self.source)
        if section:
            prefix = "" if not key_path else dotted + "."
            overrides = sorted({source for key, source in self.sources.items()
                                if key.startswith(prefix) and source.startswith("override ")})
            if overrides and origin not in overrides:
                origin = f"{origin} with {', '.join(overrides)}"
        raise ConfigError(f"{origin}: {dotted}: {message}")

    def convert(self, hint: Any, value: Any, key_path: tuple[str, ...]) -> Any:
        if dataclasses.is_dataclass(hint):
            return self.dataclass(hint, value, key_path)
        origin = typing.get_origin(hint)
        if origin is typing.Union or origin is types.UnionType:
            return self.union(hint, value, key_path)
        if origin is typing.Literal:
            if value not in typing.get_args(hint):
                choices = ", ".join(repr(choice) for choice in typing.get_args(hint))
                self.fail(key_path, f"must be one of {choices}, got {value!r}")
            return value
        if origin in (tuple, list, Sequence):
            return self.sequence(hint, value, key_path)
        if origin in (dict, Mapping):
            return self.mapping(hint, value, key_path)
        if hint is Any:
            return value
        return self.scalar(hint, value, key_path)

    def dataclass(self, schema: Any, value: Any, key_path: tuple[str, ...]) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            self.fail(key_path, f"must be a mapping (section {schema.__name__}), got {_describe(value)}")
        hints = typing.get_type_hints(schema)
        fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
        for key in value:
            if key not in fields:
                self.fail(key_path + (str(key),), _unknown_key_message(str(key), fields))
        kwargs = {name: self.convert(hints[name], value[name], key_path + (name,))
                  for name in fields if name in value}
        missing = [name for name, f in fields.items() if name not in kwargs and _is_required(f)]
        if missing:
            self.fail(key_path, f"missing required key(s): {', '.join(missing)}")
        try:
            return schema(**kwargs)
        except (TypeError, ValueError) as exc:
            self.fail(key_path, str(exc), section=True)

    def union(self, hint: Any, value: Any, key_path: tuple[str, ...]) -> Any:
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return self.convert(option, value, key_path)
            except ConfigError as exc:
                errors.append(str(exc).rsplit(": ", 1)[-1])
        self.fail(key_path, "; ".join(errors) or f"cannot be {value!r}")

    def sequence(self, hint: Any, value: Any, key_path: tuple[str, ...]) -> Any:
        if not isinstance(value, (list, tuple)):
            self.fail(key_path, f"must be a list, got {_describe(value)}")
        args = typing.get_args(hint)
        if typing.get_origin(hint) is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                self.fail(key_path, f"must have exactly {len(args)} items, got {len(value)}")
            item_hints = args
        else:
            item_hints = (args[0] if args else Any,) * len(value)
        items = [self.convert(h, v, key_path + (str(i),)) for i, (h, v) in enumerate(zip(item_hints, value))]
        return tuple(items) if typing.get_origin(hint) in (tuple, Sequence) else items

    def mapping(self, hint: Any, value: Any, key_path: tuple[str, ...]) -> Any:
        if not isinstance(value, Mapping):
            self.fail(key_path, f"must be a mapping, got {_describe(value)}")
        key_hint, value_hint = typing.get_args(hint) or (Any, Any)
        return types.MappingProxyType({
            self.convert(key_hint, k, key_path): self.convert(value_hint, v, key_path + (str(k),))
            for k, v in value.items()
        })

    def scalar(self, hint: Any, value: Any, key_path: tuple[str, ...]) -> Any:
        if hint is bool:
            if isinstance(value, bool):
                return value
        elif hint is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif hint is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif hint is str:
            if isinstance(value, str):
                return value
        elif hint is Path:
            if isinstance(value, str) and value:
                return Path(value)
        elif isinstance(hint, type) and issubclass(hint, enum.Enum):
            try:
                return hint(value)
            except ValueError:
                choices = ", ".join(repr(m.value) for m in hint)
                self.fail(key_path, f"must be one of {choices}, got {value!r}")
        else:
            self.fail(key_path, f"unsupported type {hint!r} in the schema")
        self.fail(key_path, f"must be {_type_name(hint)}, got {_describe(value)}")


def _is_required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _unknown_key_message(key: str, fields: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(fields), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    known = ", ".join(sorted(fields)) or "none"
    return f"unknown key {key!r}{hint}; known keys: {known}"


def _type_name(hint: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", Path: "a path"}
    return names.get(hint, getattr(hint, "__name__", repr(hint)))


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
