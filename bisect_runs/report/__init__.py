"""Reports of searches: `report.md` (or `report.json`) and `figures/*.png` in OUT_DIR.

`write_report(out_dir)` reads what a search left (summary.json, journal.jsonl, trial
directories), draws the figures when matplotlib is installed, and writes the page
atomically. A search without summary.json, or with `complete: false`, gives a partial
report marked as such. Nothing is rerun.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bisect_runs.atomic import finite, write_atomic, write_json
from bisect_runs.errors import SettingsError
from bisect_runs.report.content import build_content
from bisect_runs.report.environment import load_or_collect
from bisect_runs.report.figures import FIGURES_DIR, draw_figures
from bisect_runs.report.markdown import render_markdown
from bisect_runs.report.record import load_search

FORMATS = ("markdown", "json")
REPORT_FILES = {"markdown": "report.md", "json": "report.json"}

__all__ = ["FIGURES_DIR", "FORMATS", "REPORT_FILES", "build_report", "write_report"]


def build_report(
    out_dir: str | Path,
    environment: dict[str, Any] | None = None,
    figures: bool = True,
) -> dict[str, Any]:
    """The report's content as a dict; draws figures into OUT_DIR/figures when asked and possible."""
    record = load_search(out_dir)
    env = environment if environment is not None else load_or_collect(record.out_dir, save=record.summary is not None)
    content = build_content(record, env)
    content["figures"], content["figures_note"] = [], None
    if figures:
        content["figures"], content["figures_note"] = draw_figures(record, content)
    return _json_safe(content)


def write_report(
    out_dir: str | Path,
    fmt: str = "markdown",
    environment: dict[str, Any] | None = None,
    figures: bool = True,
) -> Path:
    """Write OUT_DIR/report.md (or report.json for fmt="json"); return its path."""
    if fmt not in FORMATS:
        raise SettingsError(f"unknown report format {fmt!r}; valid: {', '.join(FORMATS)}")
    content = build_report(out_dir, environment=environment, figures=figures)
    path = Path(out_dir) / REPORT_FILES[fmt]
    if fmt == "json":
        return write_json(path, content)
    return write_atomic(path, render_markdown(content))


def _json_safe(value: Any) -> Any:
    """NaN/inf to None and tuples to lists, so report.json is strict JSON."""
    return finite(json.loads(json.dumps(value, default=str, allow_nan=True)))
