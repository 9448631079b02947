"""Flattening configs to dotted keys and comparing values by meaning, not by YAML spelling.

`flatten` turns nested data into `optim.lr`-style keys, lists of named dicts into
`callbacks[name=early_stop].patience`, and remembers each key's path for writing back.
`values_equal` says whether two values mean the same setting: `3 == 3.0`, integers exactly,
floats by value. Strings never equal numbers or booleans: whether `1e-5` or `yes` is a number or a
boolean is decided when the file is read, where quoting is known (sources/yaml_safe.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bisect_runs.errors import ConfigError

Path_ = tuple[str | int, ...]
ID_KEYS: tuple[str, ...] = ("name", "id", "type")

_EXACT_FLOAT_LIMIT = 2**53  # integer-valued floats up to here are exact
# Strings a reader would take for a number, boolean or null if shown bare: shown quoted ("3.10").
_LOOKS_TYPED = re.compile(
    r"^(?:[-+]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?\.inf|\.nan|true|false|yes|no|on|off|null|~)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class FlatConfig:
    """Dotted key -> canonical value (document order), and dotted key -> path into the source data."""

    values: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, Path_] = field(default_factory=dict)


def flatten(data: Mapping[str, Any]) -> FlatConfig:
    """Leaves of a nested config under dotted keys; lists of scalars stay one value."""
    flat = FlatConfig()
    _flatten_into(flat, data, "", ())
    return flat


def _flatten_into(flat: FlatConfig, value: Any, prefix: str, path: Path_) -> None:
    """Recursive step of flatten: mappings and lists holding mappings are expanded."""
    if not prefix and isinstance(value, Mapping) and not value:
        return  # `{}`: a config of no keys, not one key named "."
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            _flatten_into(flat, item, _join(prefix, str(key)), (*path, key))
    elif isinstance(value, (list, tuple)) and any(isinstance(v, Mapping) for v in value):
        ident = list_identity(value)
        for index, item in enumerate(value):
            label = f"{prefix}[{ident}={item[ident]}]" if ident else _join(prefix, str(index))
            _flatten_into(flat, item, label, (*path, index))
    else:
        key = prefix or "."
        if key in flat.values:
            raise ConfigError(
                f"key '{key}' is set twice: as a name with dots and as nested sections "
                f"({_path_text(flat.paths[key])} and {_path_text(path)})"
            )
        flat.values[key] = canonical(value)
        flat.paths[key] = path


def _path_text(path: Path_) -> str:
    """`("optim", "lr")` -> `optim: lr`, `("optim.lr",)` -> `'optim.lr'`: how the two spellings differ."""
    return " > ".join(repr(p) if isinstance(p, str) and "." in p else str(p) for p in path)


def _join(prefix: str, key: str) -> str:
    """`a` + `b` -> `a.b`."""
    return f"{prefix}.{key}" if prefix else key


def list_identity(items: list[Any] | tuple[Any, ...]) -> str | None:
    """The key (`name`, `id`, `type`) that names every dict of a list uniquely, if there is one."""
    if not items or not all(isinstance(item, Mapping) for item in items):
        return None
    for key in ID_KEYS:
        labels = [item.get(key) for item in items]
        if all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in labels):
            if len({str(x) for x in labels}) == len(labels):
                return key
    return None


def canonical(value: Any) -> Any:
    """One spelling per meaning: tuples -> lists; strings untouched (quoting decided their type)."""
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, Mapping):
        return {k: canonical(v) for k, v in value.items()}
    return value


def values_equal(a: Any, b: Any, *, strict_types: bool = False) -> bool:
    """Whether two values mean the same setting; with strict_types a type change also counts."""
    a, b = canonical(a), canonical(b)
    if strict_types:
        return _strict_equal(a, b)
    return _loose_equal(a, b)


def _strict_equal(a: Any, b: Any) -> bool:
    """Equal values of the same type (nested containers compared item by item)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_strict_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return _numbers_equal(a, b)
    return bool(a == b)


def _loose_equal(a: Any, b: Any) -> bool:
    """Equal by meaning: numbers by value (3 == 3.0), booleans and 0/1; a string only equals a string."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_loose_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_loose_equal(a[k], b[k]) for k in a)
    if isinstance(a, bool) or isinstance(b, bool):
        return _as_bool(a) is not None and _as_bool(a) == _as_bool(b)
    if _is_number(a) and _is_number(b):
        return _numbers_equal(a, b)
    if a is None or b is None:
        return a is None and b is None
    return type(a) is type(b) and bool(a == b)


def type_word(value: Any) -> str:
    """A user's word for a value's type: null, boolean, number, string, list, or the type's name."""
    if value is None:
        return "null"
    words = ((bool, "boolean"), ((int, float), "number"), (str, "string"), (list, "list"))
    return next((word for kind, word in words if isinstance(value, kind)), type(value).__name__)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_bool(value: Any) -> bool | None:
    """True/False for booleans and the numbers 0/1; None for anything else (strings included)."""
    if isinstance(value, bool):
        return value
    if _is_number(value) and value in (0, 1):
        return bool(value)
    return None


def _numbers_equal(a: float | int, b: float | int) -> bool:
    """Integers (and integer-valued floats up to 2**53) exactly; other floats within round-off;
    NaN equals NaN (the same setting written twice)."""
    if a == b:
        return True
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if _exact(a) or _exact(b):
        return False
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)


def _exact(value: float | int) -> bool:
    """Whether a number is an integer that must compare exactly (a seed, a count, a step)."""
    if isinstance(value, int):
        return True
    return value.is_integer() and abs(value) <= _EXACT_FLOAT_LIMIT


def value_text(value: Any, *, max_len: int | None = None) -> str:
    """Short human text of a value for tables: 1e-05, true, null, [1, 2], adamw."""
    text = _text(canonical(value))
    if max_len is not None and len(text) > max_len:
        return text[: max(max_len - 1, 1)] + "…"
    return text


def _float_text(value: float) -> str:
    """At most 12 significant digits, so arithmetic noise (`lr / 10` = 5.9999999999999995e-05)
    reads as people wrote it (6e-05); still visibly a float (0.0, not 0)."""
    text = repr(value)
    if len(text) > 12:
        text = f"{value:.12g}"
    if not any(c in text for c in ".einf"):
        text += ".0"
    return text


def _text(value: Any) -> str:
    """YAML-like spelling without quotes around plain strings."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, list):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        plain = value and value.strip() == value and "," not in value and not _LOOKS_TYPED.match(value)
        return value if plain else repr(value)
    return str(value)
