"""`compare`: two finished runs' metric histories side by side, aligned by step.

For every metric both runs logged: first, last and best value (with its step), the
difference at the last shared step, which run is better for the metric's direction, and
the first step from which the runs differ beyond noise (`divergence`); the direction comes
from `metric_direction`.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bisect_runs.atomic import finite
from bisect_runs.compare_context import RunContext, run_context, run_title
from bisect_runs.divergence import Divergence, SeriesStats, align, find_divergence, series_stats
from bisect_runs.errors import SettingsError
from bisect_runs.escaping import markdown
from bisect_runs.metric_direction import metric_mode
from bisect_runs.runs import History, Run, read_run

FORMATS = ("table", "markdown", "json")


@dataclass(frozen=True)
class StepWindow:
    """An inclusive range of steps; None leaves a side open."""

    lo: int | None = None
    hi: int | None = None

    def __contains__(self, step: int) -> bool:
        return (self.lo is None or step >= self.lo) and (self.hi is None or step <= self.hi)

    def __str__(self) -> str:
        return f"{'' if self.lo is None else self.lo}:{'' if self.hi is None else self.hi}"


@dataclass
class MetricComparison:
    """One shared metric of two runs."""

    name: str
    mode: str | None  # "min", "max", or None when unknown (no "better" then)
    mode_from: str  # "flag", "name" or "unknown"
    a: SeriesStats
    b: SeriesStats
    common_step: int | None  # the last step both runs cover
    delta: float | None  # B - A at common_step (interpolated where B logged other steps)
    better: str | None  # "A", "B", "tie" (within noise) or None (direction unknown or no overlap)
    divergence: Divergence


@dataclass
class Comparison:
    """Everything `compare` found; `to_json` is its machine-readable form."""

    run_a: str
    run_b: str
    kind_a: str
    kind_b: str
    steps_a: tuple[int, int] | None
    steps_b: tuple[int, int] | None
    window: str
    k: float
    smooth: int
    metrics: list[MetricComparison] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    plots: dict[str, str] = field(default_factory=dict)  # metric -> PNG path
    problems: list[str] = field(default_factory=list)  # lines of the runs' files that were skipped
    name_a: str = ""  # how headings name the runs (directory or tracker run name)
    name_b: str = ""
    context: RunContext | None = None  # config and environment differences the runs recorded

    def to_json(self) -> dict[str, Any]:
        return finite(asdict(self))


def compare_runs(
    run_a: str | Path | Run,
    run_b: str | Path | Run,
    modes: dict[str, str] | None = None,
    steps: StepWindow | None = None,
    k: float = 3.0,
    smooth: int = 5,
    shift_b: int = 0,
) -> Comparison:
    """Compare every metric two runs share; `modes` maps a metric (or "*") to min/max."""
    a = run_a if isinstance(run_a, Run) else read_run(run_a)
    b = run_b if isinstance(run_b, Run) else read_run(run_b)
    window = steps or StepWindow()
    b = b.shifted(shift_b)
    shared, only_a, only_b = _match_names(a.series, b.series)
    result = Comparison(
        run_a=str(a.path), run_b=str(b.path), kind_a=a.kind, kind_b=b.kind,
        steps_a=a.steps(), steps_b=b.steps(), window=str(window), k=k, smooth=smooth,
        only_a=only_a, only_b=only_b,
        problems=[f"Run {side}: {problem}" for side, run in (("A", a), ("B", b)) for problem in run.problems],
        name_a=run_title(str(run_a if not isinstance(run_a, Run) else a.path), a.title),
        name_b=run_title(str(run_b if not isinstance(run_b, Run) else b.path), b.title),
        context=run_context(str(a.path), str(b.path)),
    )  # fmt: skip
    for name_a, name_b in shared:
        ha = [(s, v) for s, v in a.series[name_a] if s in window]
        hb = [(s, v) for s, v in b.series[name_b] if s in window]
        if ha and hb:
            result.metrics.append(compare_metric(name_a, ha, hb, metric_mode(name_a, modes), k, smooth))
    if not result.metrics:
        raise SettingsError(_nothing_shared(a, b, window, bool(shared)))
    compared = {m.name for m in result.metrics} | {nb for na, nb in shared}
    unmatched = sorted(name for name in modes or {} if name != "*" and name not in compared)
    if unmatched:
        names = ", ".join(m.name for m in result.metrics)
        raise SettingsError(f"--mode {', '.join(unmatched)}: no such metric in both runs (compared: {names})")
    return result


def compare_metric(
    name: str, ha: History, hb: History, mode: tuple[str | None, str], k: float = 3.0, smooth: int = 5
) -> MetricComparison:
    """Stats of both histories, the difference at the last shared step, and the divergence step."""
    direction, source = mode
    grid, da, db = align(ha, hb)
    divergence = find_divergence(grid, db - da, k, smooth)
    common = int(grid[-1]) if len(grid) else None
    delta = float(db[-1] - da[-1]) if len(grid) else None
    return MetricComparison(
        name=name, mode=direction, mode_from=source,
        a=series_stats(ha, direction), b=series_stats(hb, direction),
        common_step=common, delta=delta,
        better=_better(delta, direction, divergence), divergence=divergence,
    )  # fmt: skip


def parse_window(text: str | None) -> StepWindow:
    """`15000:45000`, `15k:45k`, `15000:` or `:45000` -> StepWindow."""
    if text is None or text.strip() in ("", ":"):
        return StepWindow()
    lo, colon, hi = text.partition(":")
    if not colon:
        raise SettingsError(f"--steps {text!r}: expected START:END, e.g. 15000:45000 (either side may be empty)")
    window = StepWindow(_step_number(lo, text), _step_number(hi, text))
    if window.lo is not None and window.hi is not None and window.lo > window.hi:
        raise SettingsError(f"--steps {text!r}: START is after END")
    return window


HEADERS = ["metric", "goal", "A first", "A last", "A best (step)", "B first", "B last", "B best (step)", "Δ B−A", "better", "diverge at"]  # fmt: skip


def table_rows(cmp: Comparison) -> list[list[str]]:
    """One row per shared metric, numbers formatted for reading."""
    rows = []
    for m in cmp.metrics:
        rows.append([
            m.name, m.mode or "?",
            fmt_value(m.a.first), _last(m.a), _best(m.a),
            fmt_value(m.b.first), _last(m.b), _best(m.b),
            "—" if m.delta is None else fmt_value(m.delta, signed=True) + f" @{fmt_step(m.common_step)}",
            m.better or "—", _diverge(m.divergence),
        ])  # fmt: skip
    return rows


def render(cmp: Comparison, fmt: str = "table", base: Path | None = None) -> str:
    """The comparison as a terminal table, a Markdown section or JSON."""
    if fmt == "json":
        return json.dumps(cmp.to_json(), indent=2, allow_nan=False) + "\n"
    if fmt not in FORMATS:
        raise SettingsError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    from tabulate import tabulate

    if fmt == "table":
        metrics = tabulate(table_rows(cmp), headers=HEADERS, tablefmt="simple", disable_numparse=True) + "\n" + _footer(cmp)
        return _sections(cmp, "table", metrics)
    return render_markdown(cmp, base)


def _sections(cmp: Comparison, tablefmt: str, metrics: str) -> str:
    """Config differences first, then the metrics, then environment differences, each under a heading."""
    from tabulate import tabulate

    mark = "### " if tablefmt == "github" else ""
    names = f"{cmp.name_a} (A) vs {cmp.name_b} (B)"
    out: list[str] = []
    ctx = cmp.context
    if ctx is not None and ctx.differences:
        rows = [[d["key"], _cell(d.get("a")), _cell(d.get("b")), d["level"], d["reason"]] for d in ctx.differences]
        out += [f"{mark}Config differences, {names}, most impactful first", "",
                tabulate(rows, headers=["key", "A", "B", "level", "why"], tablefmt=tablefmt, disable_numparse=True), ""]  # fmt: skip
    elif ctx is not None and any(ctx.config_found):
        missing = cmp.name_b if ctx.config_found[0] else cmp.name_a
        out += [f"{mark}Config differences: none found" + ("" if all(ctx.config_found) else f" ({missing} recorded no config)"), ""]
    out += [f"{mark}Metrics, {names}", "", metrics.rstrip("\n"), ""]
    if ctx is not None and ctx.environment:
        rows = [list(row) for row in ctx.environment]
        out += [f"{mark}Environment differences, {names}", "",
                tabulate(rows, headers=["what", "A", "B"], tablefmt=tablefmt, disable_numparse=True), ""]  # fmt: skip
    return "\n".join(out).rstrip("\n") + "\n"


def _cell(value: Any) -> str:
    return "Not present" if value is None else str(value)


def render_markdown(cmp: Comparison, base: Path | None = None) -> str:
    """A wiki section: both runs named with their step ranges, the table, divergence, plots."""
    from tabulate import tabulate

    lines = [
        f"## Run comparison: `{cmp.name_a or Path(cmp.run_a).name}` (A) vs `{cmp.name_b or Path(cmp.run_b).name}` (B)",
        "",
        f"- **A**: `{cmp.run_a}` ({cmp.kind_a}, steps {_range(cmp.steps_a)})",
        f"- **B**: `{cmp.run_b}` ({cmp.kind_b}, steps {_range(cmp.steps_b)})",
    ]
    if cmp.window != ":":
        lines.append(f"- Compared over steps {cmp.window.replace(':', '–')} only.")
    table = tabulate([[_md(c) for c in row] for row in table_rows(cmp)], headers=HEADERS, tablefmt="github", disable_numparse=True)
    footer = "\n".join(_md_footer_line(line) for line in _footer(cmp).splitlines())
    lines += ["", _sections(cmp, "github", table + "\n\n" + footer).rstrip("\n")]
    if cmp.plots:
        lines += ["", "### Overlays", ""]
        for name, png in cmp.plots.items():
            rel = _relative(Path(png), base)
            lines += [f"![{name}: A vs B by step]({rel})", ""]
    return markdown("\n".join(lines).rstrip() + "\n")


def _footer(cmp: Comparison) -> str:
    notes = [
        f"Δ = B − A at the last step both runs cover; divergence: first step after which the trailing "
        f"{cmp.smooth}-point mean of B − A stays beyond {cmp.k:g}σ/√{cmp.smooth} (σ: step-to-step noise of "
        "B − A); 'better': the run ahead once they diverge, 'tie' when they never do."
    ]
    unknown = [m.name for m in cmp.metrics if m.mode is None]
    if unknown:
        notes.append(f"Direction unknown (set --mode NAME=min|max): {', '.join(unknown)}.")
    for m in cmp.metrics:
        for run, stats in (("A", m.a), ("B", m.b)):
            if stats.nonfinite_step is not None:
                notes.append(f"{m.name}: run {run} logged a non-finite value at step {stats.nonfinite_step}.")
    shown = 3
    notes += [f"{p}." for p in cmp.problems[:shown]]
    if len(cmp.problems) > shown:
        notes.append(f"... and {len(cmp.problems) - shown} more skipped lines.")
    if cmp.only_a:
        notes.append(f"Only in A: {', '.join(cmp.only_a)}.")
    if cmp.only_b:
        notes.append(f"Only in B: {', '.join(cmp.only_b)}.")
    return "\n".join(notes) + "\n"


def plot_comparison(cmp: Comparison, run_a: Run, run_b: Run, out_dir: Path, window: StepWindow | None = None) -> dict[str, str]:
    """One overlay PNG per shared metric (A and B by step, divergence marked); metric -> path."""
    from bisect_runs.report.figures import plot_overlay

    window = window or StepWindow()
    plots: dict[str, str] = {}
    shared, _, _ = _match_names(run_a.series, run_b.series)
    names = {m.name: m for m in cmp.metrics}
    for name_a, name_b in shared:
        m = names.get(name_a)
        if m is None:
            continue
        ha = [(s, v) for s, v in run_a.series[name_a] if s in window]
        hb = [(s, v) for s, v in run_b.series[name_b] if s in window]
        path = out_dir / f"{_slug(name_a)}.png"
        step = m.divergence.step
        label = None if step is None or not m.divergence.note else f"apart from the first shared step ({step:,})"
        plot_overlay(path, name_a, {"A: " + run_a.name: ha, "B: " + run_b.name: hb}, step, m.mode, label)
        plots[name_a] = str(path)
    cmp.plots = plots
    return plots


def fmt_value(x: float | None, signed: bool = False) -> str:
    """Four significant digits, no exponent for everyday magnitudes."""
    if x is None:
        return "—"
    if not math.isfinite(x):
        return str(x)
    text = f"{x:+.4g}" if signed else f"{x:.4g}"
    return text.replace("+", "+" if signed else "")


def fmt_step(step: int | None) -> str:
    """15000 -> 15k, 14750 -> 14.75k, 1500 -> 1500, 2500000 -> 2.5M, 12345 -> 12,345."""
    if step is None:
        return "—"
    if abs(step) >= 1_000_000 and step % 10_000 == 0:
        return f"{step / 1_000_000:g}M"
    if abs(step) >= 10_000 and step % 10 == 0:
        return f"{step / 1000:g}k"
    if abs(step) >= 10_000:
        return f"{step:,}"
    return str(step)


def _last(s: SeriesStats) -> str:
    return fmt_value(s.last) + ("" if s.nonfinite_step is None else " (NaN)")


def _best(s: SeriesStats) -> str:
    return "—" if s.best is None else f"{fmt_value(s.best)} ({fmt_step(s.best_step)})"


def _diverge(d: Divergence) -> str:
    if d.step is not None:
        return fmt_step(d.step) + (" (start)" if d.note.startswith("apart") else "")
    return "never" if d.note.startswith("within") else "—"


def _better(delta: float | None, mode: str | None, d: Divergence) -> str | None:
    """The run ahead once the runs diverge; a tie when they stay within noise to the end.

    With too few shared steps to measure noise, the sign of the last difference decides.
    """
    if delta is None or mode is None:
        return None
    if d.step is None and d.note.startswith("within"):
        return "tie"
    gap = d.gap if d.gap is not None else delta
    if gap == 0:
        return "tie"
    worse_b = gap > 0 if mode == "min" else gap < 0
    return "A" if worse_b else "B"


def _match_names(sa: dict[str, History], sb: dict[str, History]) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """Shared metrics by name; `val.per` and `val/per` are the same metric."""
    norm_b = {n.replace(".", "/"): n for n in sb}
    shared = [(n, norm_b[n.replace(".", "/")]) for n in sa if n.replace(".", "/") in norm_b]
    taken_b = {nb for _, nb in shared}
    return shared, [n for n in sa if n not in dict(shared)], [n for n in sb if n not in taken_b]


def _nothing_shared(a: Run, b: Run, window: StepWindow, any_shared: bool) -> str:
    if any_shared:
        return f"no shared metric has steps inside {window} in both runs (A: {_range(a.steps())}, B: {_range(b.steps())})"
    return f"{a.path} and {b.path} share no metric (A: {_names(a)}; B: {_names(b)})"


def _names(run: Run) -> str:
    names = sorted(run.series)
    return ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")


def _step_number(text: str, whole: str) -> int | None:
    text = text.strip().lower().replace("_", "")
    if not text:
        return None
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    try:
        return int(float(text[:-1] if scale > 1 else text) * scale)
    except ValueError:
        raise SettingsError(f"--steps {whole!r}: {text!r} is not a step number") from None


def _range(steps: tuple[int, int] | None) -> str:
    return "—" if steps is None else f"{fmt_step(steps[0])}–{fmt_step(steps[1])}"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "metric"


def _md(cell: str) -> str:
    return cell.replace("|", "\\|")


def _md_footer_line(line: str) -> str:
    return f"- {line}" if line else line


def _relative(path: Path, base: Path | None) -> str:
    if base is None:
        return path.as_posix()
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
