"""Figures for reports and `compare`: PNGs sized for a wiki page (800 px wide), Agg backend.

matplotlib is an extra: it is imported only when a figure is drawn, and `available()`
says beforehand whether it can be.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bisect_runs.escaping import terminal
from bisect_runs.report.record import SearchRecord, label_set
from bisect_runs.report.reproduce import decisive_labels
from bisect_runs.report.rows import factor_label
from bisect_runs.report.units import Unit

History = list[tuple[int, float]]
WIDTH_IN, DPI = 8.0, 100  # 800 px: a wiki column
FIGURES_DIR = "figures"
NO_MATPLOTLIB = "Figures skipped: matplotlib is not installed (`pip install 'bisect-runs[report]'`)."
COLORS = {"A": "#1b7837", "B": "#b2182b"}  # good green, bad red; variants take the cycle
AT_A = "#d9f0d3"  # pale green: a factor at A's value in the decision matrix
DECISION_ROW_IN, MAX_DECISIONS_IN = 0.3, 14.0
CYCLE = ["#2166ac", "#e08214", "#762a83", "#35978f", "#8c510a", "#c51b7d", "#4d4d4d"]


def available() -> bool:
    """True when matplotlib can be imported (the `report` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 11, "axes.titlesize": 13, "axes.labelsize": 11, "legend.fontsize": 10,
            "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
            "svg.hashsalt": "bisect-runs", "path.simplify": True,
        }
    )  # fmt: skip
    return plt


def _save(fig: Any, path: Path) -> Path:
    """Save a PNG atomically, without timestamps in its metadata (same input, same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=DPI, format="png", metadata={"Software": None})
    tmp.replace(path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def color_for(label: str, index: int) -> str:
    """A for good (green), B for bad (red), variants from a colour-blind-safe cycle."""
    return COLORS.get(label.split(":")[0].strip(), CYCLE[index % len(CYCLE)])


def plot_overlay(
    path: Path, metric: str, curves: dict[str, History], diverge_at: int | None = None, mode: str | None = None,
    diverge_label: str | None = None,
) -> Path:
    """Two (or more) runs' histories of one metric by step; the divergence step marked.

    Runs compared are not good and bad, so they take neutral colours (blue, orange, ...).
    """
    plt = _pyplot()
    metric = terminal(metric)
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 4.2), layout="constrained")
    for i, (label, history) in enumerate(curves.items()):
        label = terminal(label)
        steps = [s for s, v in history if math.isfinite(v)]
        values = [v for s, v in history if math.isfinite(v)]
        ax.plot(steps, values, color=CYCLE[i % len(CYCLE)], lw=1.6, label=label,
                marker="o" if len(steps) < 30 else None, ms=3)  # fmt: skip
    if diverge_at is not None:
        label = terminal(diverge_label or f"diverge at step {diverge_at:,}")
        ax.axvline(diverge_at, color="#555555", ls="--", lw=1.2, label=label)
    better = {"min": " (lower is better)", "max": " (higher is better)"}.get(mode or "", "")
    ax.set_title(f"{metric}: A vs B by training step")
    ax.set_xlabel("training step")
    ax.set_ylabel(metric + better)
    _step_axis(ax)
    labels = ax.get_legend_handles_labels()[1]  # below the plot: run names are long and must not hide a curve
    ncols = len(labels) if sum(len(label) for label in labels) <= 60 else 1  # one row fits about 60 characters
    fig.legend(loc="outside lower center", ncols=ncols, frameon=False)
    return _save(fig, path)


@dataclass
class CurveGroup:
    """The learning curves of one variant over its seeds."""

    label: str
    histories: list[History]


def plot_learning_curves(path: Path, metric: str, groups: Sequence[CurveGroup], unit: str = "") -> Path:
    """Mean over seeds with a min-max band, one colour per variant (A, B and decisive variants)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 4.5), layout="constrained")
    for i, group in enumerate(groups):
        steps, mean, lo, hi = mean_band(group.histories)
        if not steps:
            continue
        color = color_for(group.label, i)
        n = len(group.histories)
        ax.plot(steps, mean, color=color, lw=1.8, label=f"{_short(group.label)} (n={n})")
        if n > 1:
            ax.fill_between(steps, lo, hi, color=color, alpha=0.15, lw=0)
    metric = terminal(metric)
    ax.set_title(f"Learning curves: {metric}, mean and range over seeds")
    ax.set_xlabel("training step")
    ax.set_ylabel(metric + (f" ({unit})" if unit else ""))
    _step_axis(ax)
    ax.legend(loc="best", frameon=False)
    return _save(fig, path)


def mean_band(histories: list[History]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Per step logged by every seed: mean, min and max of the finite values."""
    by_step: dict[int, list[float]] = {}
    for history in histories:
        for s, v in history:
            if math.isfinite(v):
                by_step.setdefault(s, []).append(v)
    full = max((len(v) for v in by_step.values()), default=0)
    steps = sorted(s for s, v in by_step.items() if len(v) >= max(1, full // 2))
    mean = [sum(by_step[s]) / len(by_step[s]) for s in steps]
    return steps, mean, [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps]


@dataclass
class EffectBar:
    """One effect with its 95 % interval, as drawn."""

    label: str
    effect: float
    ci_low: float
    ci_high: float
    culprit: bool = False


def plot_effects(path: Path, bars: Sequence[EffectBar], metric: str, unit: str = "", regression: EffectBar | None = None) -> Path:
    """Dot plot of measured effects with 95 % intervals; culprits in red, the B-vs-A gap as a band."""
    plt = _pyplot()
    rows = list(reversed(bars))
    height = 1.6 + 0.42 * max(1, len(rows))
    fig, ax = plt.subplots(figsize=(WIDTH_IN, min(height, 9.0)), layout="constrained")
    for y, bar in enumerate(rows):
        color = COLORS["B"] if bar.culprit else "#4d4d4d"
        ax.errorbar(bar.effect, y, xerr=[[bar.effect - bar.ci_low], [bar.ci_high - bar.effect]],
                    fmt="o", color=color, ecolor=color, elinewidth=2, capsize=4, ms=7)  # fmt: skip
    ax.axvline(0, color="#333333", lw=1)
    if regression is not None:
        ax.axvspan(regression.ci_low, regression.ci_high, color=COLORS["B"], alpha=0.08, lw=0)
        ax.axvline(regression.effect, color=COLORS["B"], ls="--", lw=1.2, label=f"B vs A gap ({regression.effect:.3g})")
        ax.legend(loc="lower right", frameon=False)
    ax.set_yticks(range(len(rows)), [_short(b.label, 38) for b in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(f"effect on {terminal(metric)}" + (f" ({unit})" if unit else "") + ", 95 % CI; positive = worse")
    ax.set_title("Measured effect of each difference (red: culprit)")
    ax.grid(axis="y", visible=False)
    return _save(fig, path)


@dataclass
class RoundCell:
    """One variant tested in one round: which factors were at B's value, how many trials, how many failed."""

    round: int
    label: str
    trials: int
    failed: int = 0
    at_b: frozenset[str] | None = None  # None when the label does not say (e.g. a commit)


def plot_decisions(path: Path, cells: Sequence[RoundCell], factors: Sequence[str]) -> Path:
    """The decision sequence as a design matrix: a row per variant and round, red = factor at B's value."""
    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    rows = list(cells)
    matrix = [[1.0 if cell.at_b is not None and f in cell.at_b else 0.0 for f in factors] for cell in rows]
    label_room = 0.07 * max((len(_short(f, 24)) for f in factors), default=0)  # rotated factor names
    height = min(2.2 + DECISION_ROW_IN * len(rows) + label_room, MAX_DECISIONS_IN)
    font = min(9.0, 0.8 * 72 * (height - 2.2 - label_room) / max(1, len(rows)))  # rows never overlap
    fig, ax = plt.subplots(figsize=(WIDTH_IN, height), layout="constrained")
    ax.imshow(matrix, cmap=ListedColormap([AT_A, COLORS["B"]]), vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(factors)), [_short(f, 24) for f in factors], rotation=35, ha="right")
    ax.set_yticks(range(len(rows)), [f"R{c.round}  {variant_name(c.label)}" for c in rows], fontsize=font)
    ax.tick_params(axis="x", labelsize=9)
    counts = ax.secondary_yaxis("right")  # trial counts as tick labels: the layout makes room for them
    counts.set_yticks(range(len(rows)), [_trial_note(c) for c in rows], fontsize=font)
    counts.tick_params(length=0)
    counts.spines["right"].set_visible(False)
    counts.set_ylabel("trials run (failed)", fontsize=9)
    for y in range(1, len(rows)):
        if rows[y].round != rows[y - 1].round:
            ax.axhline(y - 0.5, color="black", lw=1.5)
    ax.set_xticks([x - 0.5 for x in range(1, len(factors))], minor=True)
    ax.grid(which="minor", color="white", lw=1)
    ax.grid(which="major", visible=False)
    ax.tick_params(which="minor", length=0)
    ax.set_title("Decision sequence: variants tested per round")
    handles = [Patch(color=COLORS["B"], label="factor at B's value"), Patch(color=AT_A, label="at A's value")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    fig.get_layout_engine().set(w_pad=0.08, h_pad=0.08)
    return _save(fig, path)


def variant_name(label: str, width: int = 28) -> str:
    """A variant label for an axis: `A + {f, g, h}` too long to read becomes `A + 3 factors`."""
    label = terminal(label)
    if len(label) <= width:
        return label
    match = re.fullmatch(r"\s*([AB])\s*([-+])\s*\{(.*)\}\s*", label)
    if match is None:
        return _short(label, width)
    n = len([part for part in match.group(3).split(",") if part.strip()])
    return f"{match.group(1)} {match.group(2)} {n} factor{'s' if n != 1 else ''}"


def _trial_note(cell: RoundCell) -> str:
    return f"{cell.trials}×" + (f" ({cell.failed} failed)" if cell.failed else "")


def plot_rounds(path: Path, cells: Sequence[RoundCell], rounds: int) -> Path:
    """Fallback when variants are not factor sets: a dot per (round, variant), size = trials."""
    plt = _pyplot()
    labels: list[str] = []
    for cell in cells:
        if cell.label not in labels:
            labels.append(cell.label)
    fig, ax = plt.subplots(figsize=(WIDTH_IN, min(1.6 + 0.36 * len(labels), 10.0)), layout="constrained")
    y_of = {label: len(labels) - 1 - i for i, label in enumerate(labels)}
    for cell in cells:
        color = color_for(cell.label, labels.index(cell.label))
        ax.scatter(cell.round, y_of[cell.label], s=40 + 30 * cell.trials, color=color, alpha=0.85, zorder=3)
        note = f"{cell.trials}" + (f" ({cell.failed} failed)" if cell.failed else "")
        ax.annotate(note, (cell.round, y_of[cell.label]), xytext=(9, -4), textcoords="offset points", fontsize=9)
    ax.set_yticks(range(len(labels)), [_short(label, 38) for label in reversed(labels)])
    ax.set_xticks(range(1, rounds + 1))
    ax.set_xlim(0.5, rounds + 0.5 + 0.2 * rounds)  # room right of the last round for its count
    ax.set_xlabel("round (trials in a round run in parallel)")
    ax.set_title("Decision sequence: variants tested per round")
    ax.grid(axis="y", visible=False)
    return _save(fig, path)


def _step_axis(ax: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    def label(x: float, _: Any) -> str:  # all ticks in k once the axis reaches 10k: 2.5k, 5k, 7.5k, 10k
        return f"{x / 1000:g}k" if x and max(abs(v) for v in ax.get_xlim()) >= 10_000 else f"{x:g}"

    ax.xaxis.set_major_formatter(FuncFormatter(label))


def _short(label: str, width: int = 48) -> str:
    """A config-derived label with its control characters spelled out, cut to `width` characters."""
    label = terminal(label)
    return label if len(label) <= width else label[: width - 1] + "…"


# -- the report's figures, from its content ---------------------------------------------


def draw_figures(record: SearchRecord, content: dict[str, Any]) -> tuple[list[dict[str, str]], str | None]:
    """Effects, learning curves and decision sequence as PNGs; a one-line note when impossible."""
    if not available():
        return [], NO_MATPLOTLIB
    out = record.out_dir / FIGURES_DIR
    unit = Unit(content["unit"]["scale"])
    drawn = [
        _effects_figure(out, content, unit),
        _curves_figure(out, record, content, unit),
        _decisions_figure(out, content, record),
    ]
    made = [d for d in drawn if d is not None]
    return made, None if made else "No figures: too few trials have finished to draw any."


def _effects_figure(out: Path, c: dict[str, Any], unit: Unit) -> dict[str, str] | None:
    bars = [
        EffectBar(factor_label(r), r["effect"] * unit.scale, r["ci_low"] * unit.scale,
                      r["ci_high"] * unit.scale, r["measured"] == "culprit")
        for r in c["differences"] if _finite(r["effect"], r["ci_low"], r["ci_high"])
    ]  # fmt: skip
    single = {tuple(sorted(r["keys"])) for r in c["differences"]}
    for cul in c["culprits"]:  # a culprit set of several factors, measured together
        if tuple(sorted(cul["keys"])) not in single and _finite(cul["effect"], cul["ci_low"], cul["ci_high"]):
            label = " + ".join(cul["keys"]) + " (together)"
            bars.append(EffectBar(label, cul["effect"] * unit.scale, cul["ci_low"] * unit.scale, cul["ci_high"] * unit.scale, True))
    if not bars:
        return None
    reg = c.get("regression") or {}
    band = None
    if _finite(reg.get("effect"), reg.get("ci_low"), reg.get("ci_high")):
        band = EffectBar("B vs A", reg["effect"] * unit.scale, reg["ci_low"] * unit.scale, reg["ci_high"] * unit.scale)
    unit_label = _unit_label(c)
    path = plot_effects(out / "effects.png", bars, c["metric"], unit_label, band)
    return _entry(path, out, "Measured effects with 95 % intervals",
                  f"Effect of each difference on {c['metric']} ({unit_label or 'metric units'}; positive = worse). "
                  "Red: culprit. The shaded band is the B-vs-A gap with its 95 % interval.")  # fmt: skip


def _curves_figure(out: Path, record: SearchRecord, c: dict[str, Any], unit: Unit) -> dict[str, str] | None:
    labels = [label for label in ("A", "B") if any(t.label == label for t in record.trials)]
    labels += decisive_labels(record, record.summary or {})
    groups = []
    for label in labels:
        histories = [_scaled(t.history, unit.scale) for t in record.trials if t.label == label and t.history]
        if histories:
            groups.append(CurveGroup(label, histories))
    if not groups:
        return None
    path = plot_learning_curves(out / "learning_curves.png", c["metric"], groups, _unit_label(c, value=True))
    return _entry(path, out, "Learning curves",
                  f"{c['metric']} by training step: mean over seeds (line) and range (band) for A, B "
                  "and the variants that toggle exactly a culprit.")  # fmt: skip


def _decisions_figure(out: Path, c: dict[str, Any], record: SearchRecord) -> dict[str, str] | None:
    factors = [str(f.get("name")) for f in (record.summary or {}).get("factors") or []]
    cells = [
        RoundCell(r["round"], v["variant"], v["trials"], v["failed"], factors_at_b(v["variant"], factors))
        for r in c["rounds"] for v in r["variants"]
    ]  # fmt: skip
    if not cells:
        return None
    if factors and all(cell.at_b is not None for cell in cells):
        path = plot_decisions(out / "decisions.png", cells, factors)
    else:
        path = plot_rounds(out / "decisions.png", cells, max(r["round"] for r in c["rounds"]))
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
