"""Reports of searches: `report.md` (or `report.json`) and `figures/*.png` in OUT_DIR.

`write_report(out_dir)` reads what a search left (summary.json, journal.jsonl, trial
directories), draws the figures when matplotlib is installed, and writes the page
atomically. A search without summary.json, or with `complete: false`, gives a partial
report marked as such. Nothing is rerun.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bisect_runs.atomic import finite, write_atomic, write_json
from bisect_runs.errors import SettingsError
from bisect_runs.report.content import Unit, build_content, decisive_labels, factor_label, label_set
from bisect_runs.report.environment import load_or_collect
from bisect_runs.report.markdown import render_markdown
from bisect_runs.report.record import SearchRecord, load_search

FORMATS = ("markdown", "json")
REPORT_FILES = {"markdown": "report.md", "json": "report.json"}
FIGURES_DIR = "figures"
NO_MATPLOTLIB = "Figures skipped: matplotlib is not installed (`pip install 'bisect-runs[report]'`)."

__all__ = ["FORMATS", "build_report", "write_report"]


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


def draw_figures(record: SearchRecord, content: dict[str, Any]) -> tuple[list[dict[str, str]], str | None]:
    """Effects, learning curves and decision sequence as PNGs; a one-line note when impossible."""
    from bisect_runs.report import figures as fig

    if not fig.available():
        return [], NO_MATPLOTLIB
    out = record.out_dir / FIGURES_DIR
    unit = Unit(content["unit"]["scale"])
    drawn = [
        _effects_figure(fig, out, content, unit),
        _curves_figure(fig, out, record, content, unit),
        _decisions_figure(fig, out, content, record),
    ]
    made = [d for d in drawn if d is not None]
    return made, None if made else "No figures: too few trials have finished to draw any."


def _effects_figure(fig: Any, out: Path, c: dict[str, Any], unit: Unit) -> dict[str, str] | None:
    bars = [
        fig.EffectBar(factor_label(r), r["effect"] * unit.scale, r["ci_low"] * unit.scale,
                      r["ci_high"] * unit.scale, r["measured"] == "culprit")
        for r in c["differences"] if _finite(r["effect"], r["ci_low"], r["ci_high"])
    ]  # fmt: skip
    single = {tuple(sorted(r["keys"])) for r in c["differences"]}
    for cul in c["culprits"]:  # a culprit set of several factors, measured together
        if tuple(sorted(cul["keys"])) not in single and _finite(cul["effect"], cul["ci_low"], cul["ci_high"]):
            label = " + ".join(cul["keys"]) + " (together)"
            bars.append(fig.EffectBar(label, cul["effect"] * unit.scale, cul["ci_low"] * unit.scale, cul["ci_high"] * unit.scale, True))
    if not bars:
        return None
    reg = c.get("regression") or {}
    band = None
    if _finite(reg.get("effect"), reg.get("ci_low"), reg.get("ci_high")):
        band = fig.EffectBar("B vs A", reg["effect"] * unit.scale, reg["ci_low"] * unit.scale, reg["ci_high"] * unit.scale)
    unit_label = _unit_label(c)
    path = fig.plot_effects(out / "effects.png", bars, c["metric"], unit_label, band)
    return _entry(path, out, "Measured effects with 95 % intervals",
                  f"Effect of each difference on {c['metric']} ({unit_label or 'metric units'}; positive = worse). "
                  "Red: culprit. The shaded band is the B-vs-A gap with its 95 % interval.")  # fmt: skip


def _curves_figure(fig: Any, out: Path, record: SearchRecord, c: dict[str, Any], unit: Unit) -> dict[str, str] | None:
    labels = [label for label in ("A", "B") if any(t.label == label for t in record.trials)]
    labels += decisive_labels(record, record.summary or {})
    groups = []
    for label in labels:
        histories = [_scaled(t.history, unit.scale) for t in record.trials if t.label == label and t.history]
        if histories:
            groups.append(fig.CurveGroup(label, histories))
    if not groups:
        return None
    path = fig.plot_learning_curves(out / "learning_curves.png", c["metric"], groups, _unit_label(c, value=True))
    return _entry(path, out, "Learning curves",
                  f"{c['metric']} by training step: mean over seeds (line) and range (band) for A, B "
                  "and the variants that toggle exactly a culprit.")  # fmt: skip


def _decisions_figure(fig: Any, out: Path, c: dict[str, Any], record: SearchRecord) -> dict[str, str] | None:
    factors = [str(f.get("name")) for f in (record.summary or {}).get("factors") or []]
    cells = [
        fig.RoundCell(r["round"], v["variant"], v["trials"], v["failed"], factors_at_b(v["variant"], factors))
        for r in c["rounds"] for v in r["variants"]
    ]  # fmt: skip
    if not cells:
        return None
    if factors and all(cell.at_b is not None for cell in cells):
        path = fig.plot_decisions(out / "decisions.png", cells, factors)
    else:
        path = fig.plot_rounds(out / "decisions.png", cells, max(r["round"] for r in c["rounds"]))
    return _entry(path, out, "Decision sequence",
                  "Which variants were tested in which round (R1, R2, ...), as factors at B's value (red) "
                  "or A's (green); on the right, trials run and how many failed.")  # fmt: skip


def factors_at_b(label: str, factors: list[str]) -> frozenset[str] | None:
    """The factors a variant label puts at B's value: A, B, `A + {f, g}`, `B - {f, g}`."""
    if label == "A":
        return frozenset()
    if label == "B":
        return frozenset(factors)
    inside = label_set(label)
    if inside is None or not inside <= set(factors):
        return None
    return frozenset(inside) if label.lstrip().startswith("A") else frozenset(factors) - inside


def _entry(path: Path, out: Path, title: str, caption: str) -> dict[str, str]:
    return {"file": f"{out.name}/{path.name}", "title": title, "caption": caption}


def _unit_label(c: dict[str, Any], value: bool = False) -> str:
    return c["unit"]["value_suffix"] if value else c["unit"]["difference"]


def _scaled(history: list[tuple[int, float]], scale: float) -> list[tuple[int, float]]:
    return [(s, v * scale) for s, v in history]


def _finite(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def _json_safe(value: Any) -> Any:
    """NaN/inf to None and tuples to lists, so report.json is strict JSON."""
    return finite(json.loads(json.dumps(value, default=str, allow_nan=True)))
