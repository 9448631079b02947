"""How the report shows numbers and config values: metric units, significant digits, `absent`."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bisect_runs.metric_direction import split_camel

RATE_WORDS = ("per", "wer", "cer", "acc", "accuracy", "error", "err", "top1", "top5", "f1")


@dataclass(frozen=True)
class Unit:
    """How to show a metric: rates logged in percent with one decimal, differences in points."""

    scale: float = 1.0
    suffix: str = ""  # after a value: " %"
    gap: str = ""  # after a difference: " points"

    def fmt(self, x: float) -> str:
        """A number in display units: one decimal for percent, else three significant digits."""
        return f"{x * self.scale:.1f}" if self.suffix else num(x * self.scale)

    def value(self, x: float | None) -> str:
        return "—" if x is None or not math.isfinite(x) else self.fmt(x) + self.suffix

    def diff(self, x: float | None, signed: bool = True, unit: bool = True) -> str:
        if x is None or not math.isfinite(x):
            return "—"
        text = self.fmt(x)
        if signed and not text.startswith("-") and x > 0:
            text = "+" + text
        return text + (self.gap if unit else "")

    def interval(self, lo: float | None, hi: float | None) -> str:
        """`6.7 to 7.6 points`: the unit once."""
        return f"{self.diff(lo, False, False)} to {self.diff(hi, False)}"


def metric_unit(metric: str, values: Iterable[float]) -> Unit:
    """Rates (PER, WER, accuracy, ...) logged in percent (0-100) read with `%` and `points`; every other
    metric, a rate logged in [0, 1] included, in its own units, as the terminal, summary.json and
    `compare` give it (never rescaled: one number means one thing everywhere)."""
    words = set(re.split(r"[^a-z0-9]+", split_camel(metric).lower()))
    if not words & set(RATE_WORDS):
        return Unit()
    finite_values = [v for v in values if math.isfinite(v)]
    if finite_values and all(0.0 <= v <= 1.0 for v in finite_values):
        return Unit()
    if finite_values and all(0.0 <= v <= 100.0 for v in finite_values):
        return Unit(1.0, " %", " points")
    return Unit()


def num(x: float) -> str:
    """A readable number: three significant digits, more for large values, no exponent near 1."""
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    if a >= 1e-3:
        return f"{x:.3g}"
    return f"{x:.2e}"


def mean_sd(m: dict[str, Any], unit: Unit) -> str:
    sd = "" if m.get("sd") is None else f" ± {unit.fmt(m['sd'])}"
    return f"{unit.fmt(m['mean'])}{sd}{unit.suffix}"


def value_text(v: Any) -> str:
    """A config value as people write it: null, true/false, 1e-05 -> 1e-05, lists in brackets."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str) and v.startswith("commit:"):
        return v[7:19]
    return str(v)


def side_text(d: dict[str, Any], side: str) -> str:
    """One side of a difference: `absent` where that side lacks the key, else its value (`null` too)."""
    if d.get(f"{side}_default"):
        return f"absent (default {value_text(d.get(side))})"
    lacks = "added" if side == "a" else "removed"
    return "absent" if d.get("kind") == lacks else value_text(d.get(side))
