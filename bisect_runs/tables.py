"""Rendering a diff for people and programs: terminal table, wiki Markdown, JSON, CSV.

People read factors (keys that move together share one row); programs get one JSON/CSV
record per difference, as DESIGN.md fixes. Differences judged to have no effect are left
out unless `show_all`; the table and Markdown forms say how many were left out.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from bisect_runs.diff import Difference, DiffResult, Factor, json_value
from bisect_runs.escaping import markdown
from bisect_runs.normalize import value_text
from bisect_runs.sources import LoadedConfig

FORMATS = ("table", "markdown", "json", "csv")
CSV_FIELDS = ("key", "a", "b", "kind", "level", "score", "reason", "category", "factor", "key_a", "key_b", "a_default", "b_default")
_CELL_WIDTH = 40  # terminal table: longer values are cut with an ellipsis
_WHY_WIDTH = 160  # terminal table's last column and Markdown cells: a value of megabytes is not printed whole
_HIDDEN_NAMED = 8  # how many hidden keys the footer names
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets read as the start of a formula


@dataclass
class Row:
    """One row a person reads: a factor (or a lone difference) with its values and reason."""

    level: str
    keys: list[str]
    a: str
    b: str
    reason: str
    category: str
    score: float


def render(result: DiffResult, fmt: str = "table", *, show_all: bool = False, unchanged: bool = False) -> str:
    """The diff in one of FORMATS, ending with a newline; `unchanged` also lists keys equal on both sides."""
    renderers = {"table": render_table, "markdown": render_markdown, "json": render_json, "csv": render_csv}
    if fmt not in renderers:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    text = renderers[fmt](result, show_all=show_all)
    if unchanged:
        text = _with_unchanged(text, result, fmt)
    return text


def rows(result: DiffResult, *, show_all: bool = False) -> list[Row]:
    """Factors ranked, then (with show_all) lone no-effect differences, ranked by score."""
    out = [_factor_row(f) for f in result.factors if show_all or f.level != "none"]
    if show_all:
        grouped = {id(d) for f in result.factors for d in f.differences}
        out += [_difference_row(d) for d in result.differences if id(d) not in grouped]
    out.sort(key=lambda r: -r.score)
    return out


def hidden(result: DiffResult, *, show_all: bool = False) -> list[Difference]:
    """Differences left out of the output (level "none", unless show_all)."""
    if show_all:
        return []
    shown = {id(d) for f in result.factors if f.level != "none" for d in f.differences}
    return [d for d in result.differences if id(d) not in shown]


def side_text(d: Difference, side: str, max_len: int | None = None) -> str:
    """A's or B's value as a person reads it: the value, "absent", or "absent (default false)"."""
    key, value, default = (d.key_a, d.a, d.a_default) if side == "a" else (d.key_b, d.b, d.b_default)
    if key is None:
        return f"absent (default {value_text(value, max_len=max_len)})" if default else "absent"
    return value_text(value, max_len=max_len)


def _factor_row(f: Factor) -> Row:
    return Row(f.level, [d.key for d in f.differences], _joined(f.differences, "a"), _joined(f.differences, "b"), f.reason, f.category, f.score)


def _difference_row(d: Difference) -> Row:
    return Row(d.level, [d.key], side_text(d, "a"), side_text(d, "b"), d.reason, d.category, d.score)


def _joined(differences: list[Difference], side: str) -> str:
    """One cell for several keys: their shared value, or each value in key order."""
    return ", ".join(dict.fromkeys(side_text(d, side) for d in differences))


# -- terminal table ------------------------------------------------------------------------


def render_table(result: DiffResult, *, show_all: bool = False) -> str:
    """Aligned columns for a terminal, with both sources named above and hidden keys below."""
    lines = [
        f"A (good): {result.good.source}{source_note(result.good)}",
        f"B (bad):  {result.bad.source}{source_note(result.bad)}",
        "",
    ]
    table = [("level", "key(s)", "A", "B", "why")]
    table += [(r.level, _cut(", ".join(r.keys), _WHY_WIDTH), _cut(r.a), _cut(r.b), _cut(r.reason, _WHY_WIDTH)) for r in rows(result, show_all=show_all)]
    if len(table) == 1:
        lines.append("No differences." if result.identical else "No differences that change results.")
    else:
        widths = [max(len(row[i]) for row in table) for i in range(4)]
        for n, row in enumerate(table):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
            if n == 0:
                lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 3)
    footer = _hidden_note(hidden(result, show_all=show_all), "")
    return "\n".join(lines + ([""] + [footer] if footer else [])).rstrip() + "\n"


def source_note(loaded: LoadedConfig) -> str:
    """Where a config came from beyond its name: git commit, Hydra overrides, checkpoint entry."""
    notes = []
    prov = loaded.provenance
    if prov.get("git_commit"):
        notes.append(f"commit {str(prov['git_commit'])[:10]}")
    if prov.get("hydra_overrides"):
        notes.append("Hydra overrides: " + " ".join(map(str, prov["hydra_overrides"])))
    if prov.get("checkpoint_key"):
        notes.append(f"checkpoint entry '{prov['checkpoint_key']}'")
    if prov.get("absent_at_revision"):
        notes.append("absent at that revision; compared as empty")
    return f" ({'; '.join(notes)})" if notes else ""


def _cut(text: str, width: int = _CELL_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _hidden_note(left_out: list[Difference], quote: str) -> str:
    """'3 differences judged to have no effect are not shown (...); --all shows them.'"""
    if not left_out:
        return ""
    names = [f"{quote}{d.key}{quote}" for d in left_out[:_HIDDEN_NAMED]]
    more = ", …" if len(left_out) > _HIDDEN_NAMED else ""
    noun = "difference" if len(left_out) == 1 else "differences"
    verb, them = ("is", "it") if len(left_out) == 1 else ("are", "them")
    return f"{len(left_out)} {noun} judged to have no effect {verb} not shown ({', '.join(names)}{more}); --all shows {them}."


# -- Markdown ------------------------------------------------------------------------------


def render_markdown(result: DiffResult, *, show_all: bool = False) -> str:
    """A wiki-ready section: both sources named, one row per factor: level, key(s), A, B, why."""
    lines = [
        "## Config differences",
        "",
        f"- **A (good):** {_code(result.good.source)}{_escape(source_note(result.good))}",
        f"- **B (bad):** {_code(result.bad.source)}{_escape(source_note(result.bad))}",
        "",
    ]
    shown = rows(result, show_all=show_all)
    if shown:
        lines += ["| level | key(s) | A | B | why |", "|---|---|---|---|---|"]
        lines += [_markdown_row(r) for r in shown]
    else:
        lines.append("No differences." if result.identical else "No differences that change results.")
    footer = _hidden_note(hidden(result, show_all=show_all), "`")
    if footer:
        lines += ["", footer.replace("--all", "`--all`")]
    return markdown("\n".join(lines) + "\n")


def _markdown_row(r: Row) -> str:
    keys = ", ".join(" -> ".join(_code(part) for part in k.split(" -> ")) for k in r.keys)
    return "| " + " | ".join([r.level, keys, _value_cell(r.a), _value_cell(r.b), _escape(_cut(r.reason, _WHY_WIDTH))]) + " |"


def _value_cell(text: str) -> str:
    """Values in code spans; "absent ..." stays prose."""
    text = _cut(text, _WHY_WIDTH)
    return _escape(text) if text.startswith("absent") else _code(text)


def _code(text: str) -> str:
    return "`" + _escape(text.replace("`", "'")) + "`"


def _escape(text: str) -> str:
    """Make text safe inside a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


# -- JSON and CSV --------------------------------------------------------------------------


def render_json(result: DiffResult, *, show_all: bool = False) -> str:
    """A JSON list of difference objects, most impactful first."""
    items = [d.to_json() for d in result.differences if show_all or d.level != "none"]
    return json.dumps(items, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def render_csv(result: DiffResult, *, show_all: bool = False) -> str:
    """One CSV line per difference; values spelled as in the table (an absent side is empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for d in result.differences:
        if show_all or d.level != "none":
            item = d.to_json()
            item["a"] = "" if d.key_a is None and not d.a_default else value_text(d.a)
            item["b"] = "" if d.key_b is None and not d.b_default else value_text(d.b)
            writer.writerow({k: csv_cell(v) for k, v in item.items()})
    return buffer.getvalue()


def csv_cell(value: object) -> object:
    """A cell a spreadsheet will not run: text starting with = + - @ (or tab, CR) gets a leading `'`.
    Numbers (`-0.5`) stay numbers."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


# -- --unchanged: keys equal on both sides (as `dvc params diff --all` lists them) ----------


def unchanged_items(result: DiffResult) -> list[dict[str, object]]:
    """One JSON object per unchanged key: the value on both sides, kind `unchanged`, level none."""
    out: list[dict[str, object]] = []
    for key in result.unchanged:
        value = json_value(result.flat_a.values[key])
        out.append({"key": key, "a": value, "b": json_value(result.flat_b.values[key]), "kind": "unchanged",
                    "level": "none", "score": 0.0, "reason": "same on both sides", "category": "",
                    "key_a": key, "key_b": key, "factor": "", "a_default": False, "b_default": False})
    return out


def _keys(n: int) -> str:
    return f"{n} key" if n == 1 else f"{n} keys"


def _with_unchanged(text: str, result: DiffResult, fmt: str) -> str:
    """The rendered diff followed by (or, for JSON, extended with) the unchanged keys."""
    if fmt == "json":
        return json.dumps(json.loads(text) + unchanged_items(result), indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
        for item in unchanged_items(result):
            item["a"] = item["b"] = value_text(result.flat_a.values[str(item["key"])])
            writer.writerow({k: csv_cell(v) for k, v in item.items()})
        return text + buffer.getvalue()
    rows_ = [(key, value_text(result.flat_a.values[key], max_len=_CELL_WIDTH)) for key in result.unchanged]
    if fmt == "markdown":
        body = "\n".join(f"| {_code(k)} | {_value_cell(v)} |" for k, v in rows_)
        section = f"\n### Unchanged ({_keys(len(rows_))})\n\n| key | A = B |\n|---|---|\n{body}\n" if rows_ else ""
        return text + section
    width = max((len(k) for k, _ in rows_), default=0)
    lines = [f"Unchanged ({_keys(len(rows_))}):"] + [f"  {k.ljust(width)}  {v}" for k, v in rows_]
    return text + "\n" + "\n".join(lines) + "\n"
