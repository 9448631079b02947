"""Writing TOML: tomli_w when installed, else a small emitter for plain tables."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from bisect_runs.errors import ConfigError

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def dump_toml(data: dict[str, Any], *, where: str = "config") -> str:
    """TOML text of a mapping; refuses null values, which TOML cannot hold."""
    missing = _null_path(data, ())
    if missing is not None:
        raise ConfigError(
            f"{where}: TOML has no null value; cannot write {'.'.join(map(str, missing))} = null"
        )
    try:
        import tomli_w
    except ImportError:
        return emit_toml(data)
    return tomli_w.dumps(data)


def _null_path(value: Any, path: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Path of the first None inside value, if any."""
    if value is None:
        return path
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        found = _null_path(item, (*path, key))
        if found is not None:
            return found
    return None


def emit_toml(data: dict[str, Any]) -> str:
    """Plain TOML: scalars and arrays inline, nested mappings as [tables]."""
    lines: list[str] = []
    _emit_table(lines, data, ())
    return "\n".join(lines).lstrip("\n") + "\n"


def _emit_table(lines: list[str], table: dict[str, Any], prefix: tuple[str, ...]) -> None:
    """One table: its own keys first, then its sub-tables (TOML's order rule)."""
    simple = [(k, v) for k, v in table.items() if not isinstance(v, dict)]
    nested = [(k, v) for k, v in table.items() if isinstance(v, dict)]
    if prefix and (simple or not nested):
        lines.append("")
        lines.append("[" + ".".join(_key(k) for k in prefix) + "]")
    lines.extend(f"{_key(k)} = {_value(v)}" for k, v in simple)
    for key, value in nested:
        _emit_table(lines, value, (*prefix, str(key)))


def _key(key: Any) -> str:
    """A bare key where allowed, else a quoted one."""
    text = str(key)
    return text if _BARE_KEY.match(text) else _string(text)


def _string(text: str) -> str:
    """TOML basic string (JSON escapes are TOML escapes; DEL must be escaped too)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any) -> str:
    """Inline TOML for a scalar, array or inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write a {type(value).__name__} into TOML")
