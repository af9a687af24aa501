"""Strict loading: YAML in, checked ``Config`` out; dotted overrides; the resolved config written back.

An unknown key is an error with a "did you mean", a wrong type names the expected type, and CLI overrides
(``train.lr=1e-4``) go through the same checks.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from tuneforge.config.methods import DEFAULT_METHOD, METHOD_CONFIGS, MethodConfig
from tuneforge.config.schema import SECTION_TYPES, Config
from tuneforge.errors import ConfigError


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply ``key=value`` overrides.

    Raises:
        ConfigError: naming the file, the key path and what is wrong.
    """
    raw: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        source = str(path)
        raw = _read_yaml(Path(path))
    return config_from_dict(apply_overrides(raw, overrides or []), source)


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    """Build a checked ``Config`` from plain data (missing keys take their defaults)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(raw).__name__}")
    raw = dict(raw)
    method_raw = raw.pop("method", None) or {}
    config = _build(Config, raw, source, prefix="")
    config.method = _build_method(method_raw, source)
    config.check(source)
    return config


def save_config(config: Config, path: Path) -> None:
    """Write the fully resolved config; it loads back with ``load_config`` unchanged."""
    text = "# Fully resolved tuneforge config: re-run with `tuneforge train <this file>`\n"
    text += yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)
    path.write_text(text, encoding="utf-8")


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(error, 'problem', error)})") from None
    return data if data is not None else {}


# --------------------------------------------------------------------------- dotted keys


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``raw`` with each ``key.path=value`` applied (values parsed as YAML); ``raw`` itself is untouched."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        _apply_override(raw, item)
    return raw


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{item}': expected KEY=VALUE, e.g. train.lr=1e-4")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{item}': '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = parsed


def flatten(tree: dict, prefix: str = "") -> dict:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``: the dotted keys users write as overrides."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# --------------------------------------------------------------------------- building and type checks


def _build_method(raw: Any, source: str) -> MethodConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: 'method' must be a mapping with at least 'name', got {raw!r}")
    name = raw.get("name", DEFAULT_METHOD)
    if name not in METHOD_CONFIGS:
        raise ConfigError(f"{source}: method.name: unknown method '{name}'{_suggest(str(name), METHOD_CONFIGS)}")
    return _build(METHOD_CONFIGS[name], raw, source, prefix="method.")


def _build(cls: type, raw: Any, source: str, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: '{prefix.rstrip('.')}' must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            owner = f" for method '{raw.get('name')}'" if prefix == "method." else ""
            raise ConfigError(f"{source}: unknown key '{prefix}{key}'{owner}{_suggest(str(key), fields)}")
    values = {}
    for key, value in raw.items():
        section = SECTION_TYPES.get(key) if cls is Config else hints[key]
        if dataclasses.is_dataclass(section):
            values[key] = _build(section, value if value is not None else {}, source, f"{prefix}{key}.")
        else:
            values[key] = _coerce(value, hints[key], f"{prefix}{key}", source)
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``hint``; convert only lossless cases (int->float, '1e-4')."""
    ok, converted = _match(value, hint)
    if ok:
        return converted
    raise ConfigError(f"{source}: {key}: expected {type_name(hint)}, got {value!r} ({type(value).__name__})")


def _match(value: Any, hint: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            ok, converted = _match(value, option)
            if ok:
                return True, converted
        return False, None
    if origin is Literal:
        return value in typing.get_args(hint), value
    if origin is list:
        if not isinstance(value, list):
            return False, None
        (item_hint,) = typing.get_args(hint)
        items = [_match(v, item_hint) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if origin is dict:
        if not isinstance(value, dict):
            return False, None
        key_hint, value_hint = typing.get_args(hint)
        pairs = [(_match(k, key_hint), _match(v, value_hint)) for k, v in value.items()]
        return all(k[0] and v[0] for k, v in pairs), {k[1]: v[1] for k, v in pairs}
    if hint is type(None):
        return value is None, None
    return _match_scalar(value, hint)


def _match_scalar(value: Any, hint: type) -> tuple[bool, Any]:
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):  # PyYAML reads "1e-4" (no dot) as a string
            try:
                return True, float(value)
            except ValueError:
                return False, None
        return False, None
    if hint is str:
        return isinstance(value, str), value
    return isinstance(value, hint), value


def type_name(hint: Any) -> str:
    """How a type annotation reads in messages and docs: ``int | None`` -> ``"an integer or null"``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is list:
        return f"a list of {type_name(typing.get_args(hint)[0])}"
    if origin is dict:
        key_hint, value_hint = typing.get_args(hint)
        return f"a mapping of {type_name(key_hint)} to {type_name(value_hint)}"
    if hint is type(None):
        return "null"
    return {"int": "an integer", "float": "a number", "str": "a string", "bool": "true/false"}.get(
        hint.__name__, hint.__name__
    )


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    close = close or [c for c in choices if word.startswith(c) or c.startswith(word)][:1]
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (valid: {', '.join(sorted(choices))})"
