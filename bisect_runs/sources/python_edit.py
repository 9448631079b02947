"""Rewriting a Python config file of assignments: only the changed values' expressions are replaced."""

from __future__ import annotations

import math
from typing import Any

from bisect_runs.errors import ConfigError
from bisect_runs.sources.loaded import SourceProblem
from bisect_runs.sources.python import Assignment, parse_python_config
from bisect_runs.sources.yaml_edit import same_value


def python_literal(value: Any) -> str:
    """Source text that reads back (with ast) as exactly `value`."""
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "(1e999 - 1e999)"  # NaN, still readable without running code
        return "1e999" if value > 0 else "-1e999"
    if isinstance(value, list):
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{python_literal(k)}: {python_literal(v)}" for k, v in value.items())
            + "}"
        )
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    raise ConfigError(f"cannot write a {type(value).__name__} into a Python config")


def edit_python(text: str, new: dict[str, Any], *, where: str) -> str:
    """`text` with assignments changed, removed or appended so that it reads back as `new`."""
    for key in new:
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(f"{where}: {key!r} cannot be a name in a Python config file")
    try:
        parsed = parse_python_config(text)
        result = _splice(text, parsed.data, parsed.assignments, new)
        # A derived name the variant leaves alone keeps its expression: its value follows its inputs.
        following = {k for k in parsed.derived if k in new and same_value(parsed.data[k], new[k])}
        back = parse_python_config(result).data
        if same_value(_without(back, following), _without(new, following)) and following <= back.keys():
            return result
    except SourceProblem:
        pass
    return "".join(f"{key} = {python_literal(value)}\n" for key, value in new.items())


def _without(data: dict[str, Any], names: set[str]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in names}


def _splice(
    text: str, old: dict[str, Any], where: dict[str, Assignment], new: dict[str, Any]
) -> str:
    """Replace changed value expressions, drop removed statements, append added names."""
    lines = text.splitlines(keepends=True)
    edits: list[
        tuple[int, int, int, int, str]
    ] = []  # (line, col, end_line, end_col, text), 0-based lines
    for key, spot in where.items():
        if key not in new:
            edits.append((spot.stmt_line - 1, 0, spot.stmt_end_line, 0, ""))
        elif not same_value(old[key], new[key]):
            edits.append(
                (spot.line - 1, spot.col, spot.end_line - 1, spot.end_col, python_literal(new[key]))
            )
    for line, col, end_line, end_col, replacement in sorted(edits, reverse=True):
        lines = _replace(lines, line, col, end_line, end_col, replacement)
    out = "".join(lines)
    added = [key for key in new if key not in old]
    if added and out and not out.endswith("\n"):
        out += "\n"
    return out + "".join(f"{key} = {python_literal(new[key])}\n" for key in added)


def _replace(
    lines: list[str], line: int, col: int, end_line: int, end_col: int, text: str
) -> list[str]:
    """Replace a span given in ast's (line, UTF-8 byte column) positions."""
    head = lines[line].encode("utf-8")[:col].decode("utf-8") if line < len(lines) else ""
    if end_line < len(lines):
        tail = lines[end_line].encode("utf-8")[end_col:].decode("utf-8")
    else:
        tail = ""
    return (
        lines[:line] + ([head + text + tail] if head + text + tail else []) + lines[end_line + 1 :]
    )
