"""YAML, JSON and TOML text: parsed to a top-level mapping with one-line, located errors."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from yaml.nodes import Node

from bisect_runs.normalize import type_word
from bisect_runs.sources.loaded import SourceProblem
from bisect_runs.sources.yaml_safe import load_yaml_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def require_mapping(data: Any) -> dict[str, Any]:
    """Refuse a document whose top level is not a mapping of keys."""
    if data is None:
        raise SourceProblem("empty config (no keys)")
    if not isinstance(data, dict):
        raise SourceProblem(f"top level is a {type_word(data)}, expected a mapping of keys")
    return data


def parse_yaml(text: str) -> tuple[dict[str, Any], Node | None]:
    """YAML text to a mapping (and its node tree, kept for comment-preserving writes)."""
    data, node = load_yaml_text(text)
    return require_mapping(data), node


def parse_json(text: str) -> dict[str, Any]:
    """JSON text (NaN/Infinity allowed) to a mapping; duplicate keys refused with both lines."""
    try:
        data = json.loads(text, object_pairs_hook=lambda pairs: _unique_pairs(pairs, text))
    except json.JSONDecodeError as exc:
        raise SourceProblem(f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    return require_mapping(data)


def _unique_pairs(pairs: list[tuple[str, Any]], text: str) -> dict[str, Any]:
    """Object hook for json: build a dict, refusing repeated keys."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            lines = _key_lines(text, key)
            where = f"line {lines[1]}: " if len(lines) > 1 else ""
            first = f" (first at line {lines[0]})" if len(lines) > 1 else ""
            raise SourceProblem(f"{where}duplicate key {key!r}{first}")
        out[key] = value
    return out


def _key_lines(text: str, key: str) -> list[int]:
    """Line numbers where `"key":` appears (json gives no positions to its hooks)."""
    pattern = re.compile(re.escape(json.dumps(key)) + r"\s*:")
    return [text.count("\n", 0, m.start()) + 1 for m in pattern.finditer(text)]


_TOML_AT = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def parse_toml(text: str) -> dict[str, Any]:
    """TOML text to a mapping (TOML itself refuses duplicate keys)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = " ".join(str(exc).split())
        match = _TOML_AT.match(message)
        if match:
            message = f"line {match['line']}, column {match['col']}: {match['msg']}"
            key = _toml_key_at(text, int(match["line"]))
            if key and match["msg"].startswith(("Cannot overwrite", "Cannot declare")):
                message += f" (duplicate key '{key}')"
        raise SourceProblem(message) from exc


_TOML_KEY = re.compile(r"^\s*(\[\[?\s*)?(?P<key>[\w.\-\"' ]+?)\s*(\]\]?|=)")


def _toml_key_at(text: str, line: int) -> str:
    """The key (or table name) defined on a line of TOML text, for naming a duplicate."""
    lines = text.splitlines()
    found = _TOML_KEY.match(lines[line - 1]) if 0 < line <= len(lines) else None
    return found["key"].strip() if found else ""
