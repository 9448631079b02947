"""Statistics the report recomputes from the journal where summary.json does not give them."""

from __future__ import annotations

import math
import statistics
from typing import Any

from bisect_runs.report.record import TrialRecord, as_float, finite, summary_details
from bisect_runs.report.units import Unit
from bisect_runs.strategies.calibration import AS_GIVEN

SHARE_LEVEL = 0.90  # the interval level of summary.details.shares when an entry does not state one


def variant_groups(trials: list[TrialRecord]) -> dict[str, list[TrialRecord]]:
    """Trials by variant label: A, B first, then variants in the order they were first run."""
    groups: dict[str, list[TrialRecord]] = {}
    for label in ("A", AS_GIVEN, "B"):
        if any(t.label == label for t in trials):
            groups[label] = []
    for t in trials:
        groups.setdefault(t.label, []).append(t)
    return groups


def regression_section(s: dict[str, Any], groups: dict[str, list[TrialRecord]], mode: str, unit: Unit) -> dict[str, Any] | None:
    """The B-vs-A gap: the search's estimate (positive = B worse), and A's and B's mean ± sd.

    Where the held differences were searched too (the control beat B), A is the config as given."""
    control = summary_details(s).get("control")
    as_given = isinstance(control, dict) and bool(control.get("held_searched"))
    a = ok_values(groups.get(AS_GIVEN, []) if as_given else groups.get("A", []))
    b = ok_values(groups.get("B", []))
    reg = s.get("regression") if isinstance(s.get("regression"), dict) else None
    out: dict[str, Any] = {
        "a": moments(a), "b": moments(b), "from": "summary",
    }  # fmt: skip
    if reg is not None and finite(as_float(reg.get("effect"))):
        out.update({k: as_float(reg.get(k)) for k in ("effect", "ci_low", "ci_high", "p_value")})
        out["n"] = reg.get("n")
    elif len(a) >= 2 and len(b) >= 2:
        from bisect_runs.stats import welch

        test = welch(a, b)
        sign = -1.0 if mode == "max" else 1.0  # unknown direction: B - A as measured
        lo, hi = sorted((sign * test.ci_low, sign * test.ci_high))
        out.update({"effect": sign * test.diff, "ci_low": lo, "ci_high": hi, "p_value": test.p, "n": len(a) + len(b)})
        out["from"] = "journal"
    else:
        return out if a or b else None
    out["text"] = f"{unit.diff(out['effect'], signed=False)} (95 % CI {unit.interval(out['ci_low'], out['ci_high'])})"
    return out


def ok_values(trials: list[TrialRecord]) -> list[float]:
    return [t.value for t in trials if t.status == "ok" and not t.infra and t.value is not None and math.isfinite(t.value)]


def moments(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "mean": None, "sd": None}
    sd = statistics.stdev(values) if len(values) > 1 else None
    return {"n": len(values), "mean": statistics.fmean(values), "sd": sd}


def share_at_95(share: dict[str, Any]) -> tuple[float, float | None, float | None]:
    """A share with its interval at 95 %: the search decides at `level` (90 % unless it says),
    so each side's distance from the share is scaled by z(97.5 %) / z(upper quantile of level)."""
    value, lo, hi = float(share["share"]), as_float(share.get("low")), as_float(share.get("high"))
    level = as_float(share.get("level")) or SHARE_LEVEL
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return value, None, None
    z = statistics.NormalDist().inv_cdf
    widen = z(0.975) / z(0.5 + level / 2)
    return value, value - (value - lo) * widen, value + (hi - value) * widen


def finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def explained(effect: dict[str, Any] | None, regression: dict[str, Any] | None) -> tuple[float | None, float | None, float | None]:
    """Explained fraction with its interval: the search's if given, else Fieller from the two CIs."""
    if not effect:
        return None, None, None
    frac = as_float(effect.get("explained_fraction"))
    lo = as_float(effect.get("explained_ci_low", effect.get("explained_low")))
    hi = as_float(effect.get("explained_ci_high", effect.get("explained_high")))
    if lo is not None and hi is not None:
        return frac, lo, hi
    num_, den = as_float(effect.get("effect")), as_float((regression or {}).get("effect"))
    se_num, se_den = _se(effect), _se(regression or {})
    if num_ is None or not den or se_num is None or se_den is None:
        return frac, None, None
    from bisect_runs.stats import ratio_ci

    ratio, lo, hi = ratio_ci(num_, den, se_num**2, se_den**2, 0.0, df=math.inf)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return frac if frac is not None else ratio, None, None
    return (frac if frac is not None else ratio), lo, hi


def _se(e: dict[str, Any]) -> float | None:
    lo, hi = as_float(e.get("ci_low")), as_float(e.get("ci_high"))
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return (hi - lo) / (2 * 1.959964)
