"""Strict loading: YAML in, checked ``Config`` out; dotted overrides; the resolved config written back.

An unknown key is an error with a "did you mean", a wrong type names the expected type, and CLI overrides
(``train.lr=1e-4``) go through the same checks. A mistake is blamed where it was made: an override's key or value
on the command line, the rest on the file; an empty file is refused rather than read as "all defaults".
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

COMMAND_LINE = "command line"  # where overrides come from, in messages
OVERRIDE_FORM = ("expected KEY=VALUE with a dotted key, e.g. train.lr=1e-4 method.r=16 (`tuneforge config` lists "
                 "every key)")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply ``key=value`` overrides.

    Raises:
        ConfigError: naming the file (or the command line, for an override), the key path and what is wrong.
    """
    overrides = overrides or []
    if path is None:
        return config_from_dict(apply_overrides({}, overrides), COMMAND_LINE)
    raw = _read_yaml(Path(path))
    merged = apply_overrides(raw, overrides)  # each override's key and type are checked here
    try:
        return config_from_dict(merged, str(path))
    except ConfigError:
        if overrides and _is_valid(raw, str(path)):
            # The file alone is fine, so an override made the value that cannot work: the same check again,
            # naming the command line.
            return config_from_dict(merged, COMMAND_LINE)
        raise


def _is_valid(raw: dict[str, Any], source: str) -> bool:
    try:
        config_from_dict(raw, source)
    except ConfigError:
        return False
    return True


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
    if path.is_dir():
        inside = path / "config.yaml"
        hint = f"; did you mean {inside}?" if inside.is_file() else ""
        raise ConfigError(f"{path}: a folder, not a config file{hint}")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.load(_config_text(path), Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or error
        if isinstance(error, DuplicateKeyError):
            raise ConfigError(f"{path}{where}: {problem}") from None
        raise ConfigError(f"{path}{where}: invalid YAML ({problem})") from None
    if data is None or data == {}:  # 0 bytes, only comments, `{}` or `null`: not "every default"
        raise ConfigError(f"{path} is empty (only blanks or comments), so every setting would be a default: the "
                          "built-in movie-review quickstart; name at least your data, e.g. `data: {train_file: "
                          "reviews.csv}` (`tuneforge init --data FILE` writes a commented config; configs/ holds "
                          "examples)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (task:, data:, model:, train:...), "
                          f"got {_kind(data)}")
    return data


def _config_text(path: Path) -> str:
    """The file as text: UTF-8 (a byte-order mark allowed) or UTF-16 with its mark (Windows Notepad's "Unicode")."""
    data = path.read_bytes()
    encoding = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise ConfigError(f"{path}, line {line}: not UTF-8 text (saved as GBK/Big5 or another code page?); save the "
                          "config as UTF-8 and run again") from None


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one mapping."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error: PyYAML would keep the
    last silently, so a second ``train:`` section would quietly drop the first."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: its keys may be overridden here
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise DuplicateKeyError(None, None, f"'{key}' is given twice (lines {seen[key]} and "
                                        f"{key_node.start_mark.line + 1}) and only the second would count; merge "
                                        "them into one", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _kind(value: Any) -> str:
    """What a YAML value is, in words: ``a list``, ``the text 'hello'``."""
    if isinstance(value, list):
        return "a list (lines starting with '-')"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    return f"{value!r} ({type(value).__name__})"


# --------------------------------------------------------------------------- dotted keys


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``raw`` with each ``key.path=value`` applied (values parsed as YAML); ``raw`` itself is untouched.

    Raises:
        ConfigError: naming the command line, for a malformed override, an unknown key or a value of the wrong type.
    """
    raw = copy.deepcopy(raw)
    parsed = [_parse_override(item) for item in overrides]
    for item, parts, value in parsed:
        _set(raw, item, parts, value)
    method = _method_class(raw)
    for item, parts, value in parsed:
        _check_override(item, parts, value, method)
    return raw


def _parse_override(item: str) -> tuple[str, list[str], Any]:
    key, sep, value = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(part.strip() for part in parts):
        hint = ""
        if not sep and ":" in item:  # YAML habit: train.lr:1e-4
            hint = f" (write {item.replace(':', '=', 1).replace(' ', '')})"
        elif not sep and all(parts):
            hint = f" (write {item}=VALUE)"
        raise ConfigError(f"{COMMAND_LINE}: '{item}' is not an override{hint}; {OVERRIDE_FORM}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return item, [part.strip() for part in parts], parsed


def _set(raw: dict[str, Any], item: str, parts: list[str], value: Any) -> None:
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):  # the config (or an earlier override) gave it a value
            raise ConfigError(f"{COMMAND_LINE}: {item}: {'.'.join(parts[:depth + 1])} is already the value "
                              f"{child!r}, not a section")
        node = child
    node[parts[-1]] = value


def _method_class(raw: dict[str, Any]) -> type | None:
    """The method config the merged settings choose (None for an unknown name: the override check names it)."""
    method = raw.get("method")
    name = method.get("name", DEFAULT_METHOD) if isinstance(method, dict) else DEFAULT_METHOD
    return METHOD_CONFIGS.get(name) if isinstance(name, str) else None


def _check_override(item: str, parts: list[str], value: Any, method: type | None) -> None:
    """One override against the schema: its key exists (for the chosen method) and its value has the right type."""
    if parts == ["method", "name"] and not (isinstance(value, str) and value in METHOD_CONFIGS):
        suggestion = _suggest(str(value), METHOD_CONFIGS)
        raise ConfigError(f"{COMMAND_LINE}: method.name: unknown method '{value}'{suggestion}")
    if parts[0] == "method" and method is None:
        return  # the file names an unknown method: building the config says so, naming the file
    cls: type = Config
    for depth, part in enumerate(parts):
        fields = _field_types(cls, method)
        if part not in fields:
            raise ConfigError(_unknown_override(item, parts, depth, fields, method))
        target = fields[part]
        key = ".".join(parts[:depth + 1])
        if not dataclasses.is_dataclass(target):
            if depth < len(parts) - 1:
                raise ConfigError(f"{COMMAND_LINE}: {item}: {key} is a value, not a section")
            _coerce(value, target, key, COMMAND_LINE)
            return
        cls = target
    if cls in METHOD_CONFIGS.values():  # the whole method section: method={name: lora, r: 8}
        _build_method(value if value is not None else {}, COMMAND_LINE)
    else:
        _build(cls, value if value is not None else {}, COMMAND_LINE, prefix=".".join(parts) + ".")


def _field_types(cls: type, method: type | None) -> dict[str, Any]:
    """Field name -> its type: a section's class, the chosen method's config, or a value's annotation."""
    hints = typing.get_type_hints(cls)
    found = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    if cls is Config:
        found.update(SECTION_TYPES)
        found["method"] = method or METHOD_CONFIGS[DEFAULT_METHOD]
    return found


def _unknown_override(item: str, parts: list[str], depth: int, fields: dict, method: type | None) -> str:
    """``command line: unknown key 'train.lr_rate' in train.lr_rate=1e-3 (did you mean 'lr': train.lr=1e-3?)``."""
    key, wrong = ".".join(parts[:depth + 1]), parts[depth]
    owner = ""
    if parts[0] == "method" and depth == 1:
        owner = f" for method '{_method_name(method)}'"
    close = _closest(wrong, fields)
    if close is None:
        return f"{COMMAND_LINE}: unknown key '{key}'{owner} in {item} (valid: {', '.join(sorted(fields))})"
    fixed = ".".join([*parts[:depth], close, *parts[depth + 1:]]) + "=" + item.partition("=")[2]
    return f"{COMMAND_LINE}: unknown key '{key}'{owner} in {item} (did you mean '{close}': {fixed}?)"


def _method_name(method: type | None) -> str:
    return next((name for name, cls in METHOD_CONFIGS.items() if cls is method), DEFAULT_METHOD)


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
            owner = f" for method '{raw.get('name') or DEFAULT_METHOD}'" if prefix == "method." else ""
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
    close = _closest(word, choices)
    if close is not None:
        return f" (did you mean '{close}'?)"
    return f" (valid: {', '.join(sorted(choices))})"


def _closest(word: str, choices: Any) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    close = close or [c for c in choices if word.startswith(c) or c.startswith(word)][:1]
    return close[0] if close else None
