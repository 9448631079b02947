"""The report's content as one JSON-ready dict: verdict, differences, trials, rounds, costs.

Markdown (`markdown.py`) and `--format json` both render this dict, so the two never
disagree. Everything is computed from what the search left in OUT_DIR; nothing is rerun.
"""

from __future__ import annotations

import math
import re
import shlex
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bisect_runs.report.record import SearchRecord, TrialRecord, finite
from bisect_runs.strategies.base import SearchContext
from bisect_runs.strategies.calibration import AS_GIVEN

LEVELS = ("critical", "high", "medium", "low", "none")
ALPHA = SearchContext.alpha  # the search's significance level for calling an effect harmful or helpful
RATE_WORDS = ("per", "wer", "cer", "acc", "accuracy", "error", "err", "top1", "top5", "f1")
STATUSES = ("ok", "diverged", "crashed", "timeout")
SHARE_LEVEL = 0.90  # the interval level of summary.details.shares when an entry does not state one
STATISTICS = (
    "Calibration: Welch's t-test of B against A over paired seeds (95 % interval). "
    "Effects: least squares over all trials of the design, 95 % t intervals, Holm-corrected p-values. "
    "Explained fraction: the share of the B-vs-A gap a difference accounts for (for a culprit, the share that "
    "reverting it repairs: B against B without it), with a Fieller interval at 95 %. "
    "Diverged, crashed and timed-out trials count as the worst outcome for the metric's direction; "
    "a retried trial that finishes keeps its value, and a point's crashes count only when it crashes more often "
    "than the rest of the search explains (one-sided binomial test, 5 %); lost jobs are not judged."
)


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
    words = set(re.split(r"[^a-z0-9]+", re.sub(r"(?<=[a-z])(?=[A-Z])", "_", metric).lower()))
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


def build_content(record: SearchRecord, environment: dict[str, Any] | None) -> dict[str, Any]:
    """Everything the report says, as a dict (figures are added by the caller)."""
    s = record.summary or dict(record.settings)
    metric = str(s.get("metric") or "metric")
    mode = str(s.get("mode") or "")  # unknown without summary.json or a `search` journal event
    groups = variant_groups(record.trials)
    unit = metric_unit(metric, [t.value for t in record.trials if t.status == "ok" and t.value is not None])
    regression = regression_section(s, groups, mode, unit)
    factors = factor_rows(s, unit)
    return {
        "title": f"bisect-runs: why `{_name(s.get('bad')) or 'B'}` is worse than `{_name(s.get('good')) or 'A'}`",
        "status": "complete" if record.complete else "partial",
        "partial_reason": partial_reason(record),
        "good": s.get("good"),
        "bad": s.get("bad"),
        "metric": metric,
        "mode": mode or None,
        "steps": s.get("steps") or _most_common(t.steps for t in record.trials),
        "strategy": s.get("strategy"),
        "unit": {"scale": unit.scale, "value_suffix": unit.suffix.strip(), "difference": unit.gap.strip()},
        "verdict": {"sentence": s.get("verdict"), "paragraph": _verdict_so_far(record, s, regression, factors, unit)},
        "reproduced": s.get("reproduced"),
        "regression": regression,
        "culprits": culprit_rows(s, unit),
        "differences": factors,
        "not_searched": not_searched(s),
        "trials": trial_rows(groups, unit),
        "rounds": round_rows(record.rounds, record.trials),
        "details": _details(s),
        "reproduce": reproduce_section(record, environment),
        "costs": cost_section(record.trials),
        "environment": environment,
        "seeds": s.get("seeds"),
    }


# -- groups and regression ---------------------------------------------------------------


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
    control = _details(s).get("control")
    as_given = isinstance(control, dict) and bool(control.get("held_searched"))
    a = _ok_values(groups.get(AS_GIVEN, []) if as_given else groups.get("A", []))
    b = _ok_values(groups.get("B", []))
    reg = s.get("regression") if isinstance(s.get("regression"), dict) else None
    out: dict[str, Any] = {
        "a": _moments(a), "b": _moments(b), "from": "summary",
    }  # fmt: skip
    if reg is not None and finite(_f(reg.get("effect"))):
        out.update({k: _f(reg.get(k)) for k in ("effect", "ci_low", "ci_high", "p_value")})
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


def _ok_values(trials: list[TrialRecord]) -> list[float]:
    return [t.value for t in trials if t.status == "ok" and not t.infra and t.value is not None and math.isfinite(t.value)]


def _moments(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "mean": None, "sd": None}
    sd = statistics.stdev(values) if len(values) > 1 else None
    return {"n": len(values), "mean": statistics.fmean(values), "sd": sd}


# -- differences, effects, culprits --------------------------------------------------------


def factor_rows(s: dict[str, Any], unit: Unit) -> list[dict[str, Any]]:
    """One row per searched factor in prior-rank order, with its measured effect and a judgement."""
    diffs = _differences_by_key(s)
    culprit_keys = {k for c in s.get("culprits") or [] for k in c}
    rows = []
    for rank, factor in enumerate(_ranked_factors(s, diffs), 1):
        keys = [str(k) for k in factor.get("keys") or []]
        ds = [diffs[k] for k in keys if k in diffs]
        level = _top_level(ds)
        effect = _effect_for(s, factor.get("name"), keys)
        measured = _measured(effect, culprit=bool(set(keys) & culprit_keys))
        shown = _shown_keys(ds, keys)
        rows.append({
            "rank": rank,
            "factor": factor.get("name"),
            "keys": keys,
            "names": shown,
            "group": _group_name(factor, shown),
            "a": [d.get("a") for d in ds],
            "b": [d.get("b") for d in ds],
            "a_text": _side_text(ds, "a"),
            "b_text": _side_text(ds, "b"),
            "kinds": [d.get("kind") for d in ds],
            "level": level,
            "score": max((_f(d.get("score")) or 0.0 for d in ds), default=None),
            "reason": "; ".join(dict.fromkeys(str(d.get("reason")) for d in ds if d.get("reason")))
            or ("" if ds else str(factor.get("name") or "")),  # a commit: its short sha and subject
            "category": next((d.get("category") for d in ds if d.get("category")), None),
            "effect": _f(effect.get("effect")) if effect else None,
            "ci_low": _f(effect.get("ci_low")) if effect else None,
            "ci_high": _f(effect.get("ci_high")) if effect else None,
            "explained_fraction": _f(effect.get("explained_fraction")) if effect else None,
            "effect_text": _effect_text(effect, unit),
            "measured": measured,
            "prior": prior_agreement(level, measured),
        })  # fmt: skip
    return rows


def _shown_keys(ds: list[dict[str, Any]], keys: list[str]) -> list[str]:
    """A factor's keys as the diff names them (`l2_decay -> weight_decay` for a rename)."""
    return [str(d.get("key") or k) for d, k in zip(ds, keys, strict=True)] if len(ds) == len(keys) else [_short_key(k) for k in keys]


def _group_name(factor: dict[str, Any], shown: list[str]) -> str | None:
    """The name of a named group (`learning_rate` for lrStart, lrEnd): the one trial labels and
    figures use; None where the factor is named after its keys."""
    name = str(factor.get("name") or "")
    if not name or name in shown or name == "+".join(shown) or all(k.startswith("commit:") for k in shown):
        return None
    return name


def factor_label(row: dict[str, Any]) -> str:
    """How prose and figures name a factor row: its factor name (as trial labels do), else its keys."""
    return str(row.get("factor") or "/".join(row.get("names") or row.get("keys") or []))


def _short_key(key: str) -> str:
    """`commit:<40 hex>` as `commit:<12 hex>`; other keys unchanged."""
    return key[: len("commit:") + 12] if key.startswith("commit:") else key


def _side_text(ds: list[dict[str, Any]], side: str) -> str:
    """One side's values; a key that side lacks reads `absent (default false)`."""
    return ", ".join(dict.fromkeys(side_text(d, side) for d in ds)) or "—"


def _ranked_factors(s: dict[str, Any], diffs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Factors in the order of their best-ranked difference (the diff's order is by impact)."""
    factors = [f for f in s.get("factors") or [] if isinstance(f, dict)]
    order = {id(d): i for i, d in enumerate(s.get("differences") or [])}

    def rank(f: dict[str, Any]) -> int:
        return min((order.get(id(diffs[k]), 10**6) for k in f.get("keys") or [] if k in diffs), default=10**6)

    return sorted(factors, key=rank)


def _differences_by_key(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Difference rows by every name they go by (key, key_a, key_b)."""
    by_key: dict[str, dict[str, Any]] = {}
    for d in s.get("differences") or []:
        if isinstance(d, dict):
            for name in (d.get("key_b"), d.get("key_a"), d.get("key")):
                if name:
                    by_key.setdefault(str(name), d)
    return by_key


def _top_level(ds: list[dict[str, Any]]) -> str | None:
    levels = [str(d.get("level")) for d in ds if d.get("level") in LEVELS]
    return min(levels, key=LEVELS.index) if levels else None


def _effect_for(s: dict[str, Any], name: Any, keys: list[str]) -> dict[str, Any] | None:
    """The measured effect of exactly this factor (by factor name, else by its set of keys)."""
    for e in s.get("effects") or []:
        if isinstance(e, dict) and (e.get("factors") == [name] or sorted(e.get("keys") or []) == sorted(keys)):
            return e
    return None


def _measured(effect: dict[str, Any] | None, culprit: bool) -> str:
    """culprit | harmful | helpful | no effect | not measured (positive effects are harmful).

    An effect matters only where its Holm-corrected p-value in summary.json is below ALPHA: the
    rule the search's own verdict uses, so the report never calls harmful what the search did not."""
    if culprit:
        return "culprit"
    if effect is None:
        return "not measured"
    lo, hi = _f(effect.get("ci_low")), _f(effect.get("ci_high"))
    p = _f(effect.get("p_value"))  # Holm-corrected, as the decision judges it
    if p is not None and p >= ALPHA:
        return "no effect"
    if lo is not None and lo > 0:
        return "harmful"
    if hi is not None and hi < 0:
        return "helpful"
    return "no effect"


def prior_agreement(level: str | None, measured: str) -> str:
    """Was the prior impact level right? critical/high should matter; low/none should not."""
    if measured == "not measured" or level not in LEVELS:
        return "—"
    expects = {"critical": True, "high": True, "low": False, "none": False}.get(level)
    matters = measured in ("culprit", "harmful", "helpful")
    if expects is None:  # medium: no strong prior either way
        return "—"
    if expects and matters:
        return {"culprit": "right", "harmful": "partly (harmful, not the culprit)"}.get(measured, "wrong sign (it helps)")
    if expects:
        return "overrated"
    return "underrated" if matters else "right"


def _effect_text(effect: dict[str, Any] | None, unit: Unit) -> str:
    if not effect or _f(effect.get("effect")) is None:
        return "—"
    lo, hi = _f(effect.get("ci_low")), _f(effect.get("ci_high"))
    return f"{unit.diff(_f(effect.get('effect')), unit=False)} ({unit.diff(lo, False, False)} to {unit.diff(hi, False, False)})"


def culprit_rows(s: dict[str, Any], unit: Unit) -> list[dict[str, Any]]:
    """Each minimal culprit set: its keys, B -> A values, effect and explained fraction with CI."""
    diffs = _differences_by_key(s)
    regression = s.get("regression") if isinstance(s.get("regression"), dict) else {}
    rows = []
    for keys in s.get("culprits") or []:
        keys = [str(k) for k in keys]
        effect = next((e for e in s.get("effects") or [] if sorted(e.get("keys") or []) == sorted(keys)), None)
        frac, lo, hi = explained(effect, regression)
        share = _repair_share(s, keys)
        if share is not None:  # the search's own repair share, its interval brought to 95 %
            frac, lo, hi = share_at_95(share)
        rows.append({
            "keys": keys,
            "group": _culprit_group(s, keys),
            "changes": [{"key": k, "a": diffs.get(k, {}).get("a"), "b": diffs.get(k, {}).get("b"),
                         "kind": diffs.get(k, {}).get("kind")} for k in keys],
            "effect": None if effect is None else _f(effect.get("effect")),
            "ci_low": None if effect is None else _f(effect.get("ci_low")),
            "ci_high": None if effect is None else _f(effect.get("ci_high")),
            "effect_text": _effect_text(effect, unit),
            "explained_fraction": frac, "explained_ci_low": _finite_or_none(lo),
            "explained_ci_high": _finite_or_none(hi), "explained_ci_level": 95,
        })  # fmt: skip
    return rows


def _culprit_group(s: dict[str, Any], keys: list[str]) -> str | None:
    """The named group a culprit set is, when it is exactly one (`learning_rate`)."""
    diffs = _differences_by_key(s)
    for f in s.get("factors") or []:
        if isinstance(f, dict) and sorted(f.get("keys") or []) == sorted(keys):
            return _group_name(f, _shown_keys([diffs[k] for k in keys if k in diffs], keys))
    return None


def _repair_share(s: dict[str, Any], keys: list[str]) -> dict[str, Any] | None:
    """details.shares["{f, g}"]["repair"] for the factor set covering exactly these keys."""
    shares = (s.get("details") or {}).get("shares")
    if not isinstance(shares, dict):
        return None
    names = [str(f.get("name")) for f in s.get("factors") or [] if set(f.get("keys") or []) & set(keys)]
    covered = {k for f in s.get("factors") or [] if str(f.get("name")) in names for k in f.get("keys") or []}
    entry = shares.get("{" + ", ".join(names) + "}") if covered == set(keys) else None
    repair = entry.get("repair") if isinstance(entry, dict) else None
    return repair if isinstance(repair, dict) and _f(repair.get("share")) is not None else None


def share_at_95(share: dict[str, Any]) -> tuple[float, float | None, float | None]:
    """A share with its interval at 95 %: the search decides at `level` (90 % unless it says),
    so each side's distance from the share is scaled by z(97.5 %) / z(upper quantile of level)."""
    value, lo, hi = float(share["share"]), _f(share.get("low")), _f(share.get("high"))
    level = _f(share.get("level")) or SHARE_LEVEL
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return value, None, None
    z = statistics.NormalDist().inv_cdf
    widen = z(0.975) / z(0.5 + level / 2)
    return value, value - (value - lo) * widen, value + (hi - value) * widen


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def explained(effect: dict[str, Any] | None, regression: dict[str, Any] | None) -> tuple[float | None, float | None, float | None]:
    """Explained fraction with its interval: the search's if given, else Fieller from the two CIs."""
    if not effect:
        return None, None, None
    frac = _f(effect.get("explained_fraction"))
    lo = _f(effect.get("explained_ci_low", effect.get("explained_low")))
    hi = _f(effect.get("explained_ci_high", effect.get("explained_high")))
    if lo is not None and hi is not None:
        return frac, lo, hi
    num_, den = _f(effect.get("effect")), _f((regression or {}).get("effect"))
    se_num, se_den = _se(effect), _se(regression or {})
    if num_ is None or not den or se_num is None or se_den is None:
        return frac, None, None
    from bisect_runs.stats import ratio_ci

    ratio, lo, hi = ratio_ci(num_, den, se_num**2, se_den**2, 0.0, df=math.inf)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return frac if frac is not None else ratio, None, None
    return (frac if frac is not None else ratio), lo, hi


def _se(e: dict[str, Any]) -> float | None:
    lo, hi = _f(e.get("ci_low")), _f(e.get("ci_high"))
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return (hi - lo) / (2 * 1.959964)


def not_searched(s: dict[str, Any]) -> list[str]:
    """Differences outside every factor (judged to have no effect, e.g. paths and num_workers)."""
    in_factors = {str(k) for f in s.get("factors") or [] for k in f.get("keys") or []}
    names = []
    for d in s.get("differences") or []:
        aliases = {str(n) for n in (d.get("key"), d.get("key_a"), d.get("key_b")) if n}
        if aliases and not aliases & in_factors:
            names.append(str(d.get("key")))
    return names


# -- verdict ---------------------------------------------------------------------------


def verdict_paragraph(s: dict[str, Any], regression: dict[str, Any] | None, factors: list[dict[str, Any]], unit: Unit,
                      reverted: set[frozenset[str]] | None = None) -> str:
    """The verdict with numbers: the gap measured, the culprit(s) and how much they explain.

    `reverted` (a partial report): the factor sets some finished trial reverted from B; a culprit
    without one is named as the best guess so far, with no effect stated for runs that do not exist."""
    metric = str(s.get("metric") or "the metric")
    parts: list[str] = []
    if regression and regression.get("effect") is not None:
        parts.append(_gap_sentence(s, regression, metric, unit))
    culprits = culprit_rows(s, unit)
    for row in culprits:
        names = _factor_set(s, row["keys"])
        if reverted is not None and names not in reverted:
            parts.append(f"Best guess so far: {_culprit_what(row)}; no run of B with it reverted "
                         f"(`B - {{{', '.join(sorted(names))}}}`) has finished yet, so no effect of reverting it is stated.")
            continue
        parts.append(_culprit_sentence(s, row, regression, metric, unit))
    if not culprits and s.get("verdict"):  # diffuse, not reproduced, a commit: the search's own words
        parts.append(str(s["verdict"]).strip())
    masking = [f for f in factors if f["measured"] == "helpful"]
    if masking:
        shown = ", ".join(f"`{f['group'] or '/'.join(f['names'])}` ({unit.diff(f['effect'])}, 95 % CI {unit.interval(f['ci_low'], f['ci_high'])})" for f in masking)
        parts.append(f"Helpful changes that mask part of the gap: {shown}.")
    return " ".join(p for p in parts if p)


def _verdict_so_far(record: SearchRecord, s: dict[str, Any], regression: dict[str, Any] | None,
                    factors: list[dict[str, Any]], unit: Unit) -> str:
    """The verdict paragraph; a search stopped before deciding says that no culprit is known yet."""
    reverted = None if record.complete else _reverted_sets(record)
    paragraph = verdict_paragraph(s, regression, factors, unit, reverted)
    if record.summary is None or (not record.complete and not s.get("culprits") and not s.get("verdict")):
        paragraph += (" " if paragraph else "") + "No culprit has been decided yet: the search stopped before a verdict."
    return paragraph


def _gap_sentence(s: dict[str, Any], r: dict[str, Any], metric: str, unit: Unit) -> str:
    steps = s.get("steps")
    at = f"At {steps:,} steps, " if isinstance(steps, int) and steps else ""
    a, b = r["a"], r["b"]
    facts = []
    if a.get("mean") is not None and b.get("mean") is not None:
        facts.append(f"{metric} {_mean_sd(b, unit)} for B against {_mean_sd(a, unit)} for A, mean ± sd over {b['n']} and {a['n']} seeds")
    p = r.get("p_value")
    p_text = f", p = {p:.2g}" if isinstance(p, float) and math.isfinite(p) else ""
    facts.append(f"95 % CI {unit.interval(r['ci_low'], r['ci_high'])}{p_text}")
    why = "; ".join(facts)
    if s.get("reproduced") is False:
        return (
            f"{at}the regression did not reproduce: B − A = {unit.diff(r['effect'])} ({why}). "
            "A longer budget (`--steps`) may show it."
        )
    if not s.get("mode"):
        return f"{at}B − A = {unit.diff(r['effect'])} so far ({why}); the metric's direction is not recorded yet."
    if r["effect"] <= 0:
        return f"{at}B is not worse than A: B − A = {unit.diff(r['effect'])} ({why})."
    return f"{at}B is worse than A by {unit.diff(r['effect'], signed=False)} ({why})."


def _mean_sd(m: dict[str, Any], unit: Unit) -> str:
    sd = "" if m.get("sd") is None else f" ± {unit.fmt(m['sd'])}"
    return f"{unit.fmt(m['mean'])}{sd}{unit.suffix}"


def _culprit_sentence(
    s: dict[str, Any], row: dict[str, Any], regression: dict[str, Any] | None, metric: str, unit: Unit
) -> str:
    if all(k.startswith("commit:") for k in row["keys"]):
        return " ".join(_commit_sentence(_commit_record(s, k[len("commit:"):]), row, unit) for k in row["keys"])
    what = _culprit_what(row)
    alone = " alone" if len(row["changes"]) == 1 or _same_change(row["changes"]) else " together"
    frac = row["explained_fraction"]
    if frac is None:
        return f"Culprit: reverting {what}{alone} repairs the regression."
    ci = ""
    if row["explained_ci_low"] is not None and row["explained_ci_high"] is not None:
        ci = f" ({row['explained_ci_level']} % CI {row['explained_ci_low'] * 100:.0f}–{row['explained_ci_high'] * 100:.0f} %)"
    gap = ""
    if regression and regression.get("effect") is not None:
        gap = f" of the {unit.diff(regression['effect'], signed=False).replace(' points', '-point')} {metric} gap"
        if not unit.gap:
            gap = f" of the {unit.diff(regression['effect'], signed=False)} gap in {metric}"
    return f"Reverting {what}{alone} recovers {frac * 100:.0f} %{ci}{gap}."


def _culprit_what(row: dict[str, Any]) -> str:
    """A culprit set in prose: `lr` (0.0008 -> 0.02), or `learning_rate` (`lrStart/lrEnd`: ...)."""
    if row.get("group"):
        return f"`{row['group']}` ({_group_changes_text(row['changes'])})"
    return changes_text(row["changes"])


def _factor_set(s: dict[str, Any], keys: list[str]) -> frozenset[str]:
    """The names of the factors a set of keys belongs to, as trial labels write them."""
    wanted = set(keys)
    names = {str(f.get("name")) for f in s.get("factors") or [] if isinstance(f, dict) and set(f.get("keys") or []) & wanted}
    return frozenset(names or wanted)


def _reverted_sets(record: SearchRecord) -> set[frozenset[str]]:
    """Factor sets some finished (`ok`) trial reverted from B: labels `B - {f, g}`."""
    out: set[frozenset[str]] = set()
    for t in record.trials:
        inside = label_set(t.label) if t.status == "ok" and t.label.lstrip().startswith("B") else None
        if inside:
            out.add(frozenset(inside))
    return out


def _commit_record(s: dict[str, Any], sha: str) -> dict[str, Any]:
    """What the search recorded of a commit (details.code), else what its repository says."""
    code = (s.get("details") or {}).get("code") or {}
    known = [code.get("first_bad"), *(code.get("candidates") or [])]
    for info in known:
        if isinstance(info, dict) and str(info.get("sha", "")).startswith(sha):
            return info
    from bisect_runs.report.environment import commit_info

    return commit_info(sha, code.get("repo") or ".") or {"sha": sha}


def _commit_sentence(info: dict[str, Any], row: dict[str, Any], unit: Unit) -> str:
    """The first bad commit with its subject, author, date and files, when they are known."""
    effect = f", effect {row['effect_text']}" if row["effect_text"] != "—" else ""
    sha = str(info["sha"])
    if not info.get("subject"):
        return f"The first bad commit is `{sha[:12]}`{effect}."
    files = ", ".join(f"`{f}`" for f in (info.get("files") or [])[:6])
    return (
        f"The first bad commit is `{sha[:12]}` \"{info['subject']}\" by {info.get('author', '?')} "
        f"({str(info.get('date', ''))[:10]}; files: {files or 'none'}){effect}."
    )


def changes_text(changes: list[dict[str, Any]]) -> str:
    """`lrStart/lrEnd` (0.0008 -> 0.02): keys moving together shown once, B's value -> A's."""
    if _same_change(changes):
        keys = "/".join(c["key"] for c in changes)
        return f"`{keys}` ({side_text(changes[0], 'b')} -> {side_text(changes[0], 'a')})"
    return ", ".join(f"`{c['key']}` ({side_text(c, 'b')} -> {side_text(c, 'a')})" for c in changes)


def _group_changes_text(changes: list[dict[str, Any]]) -> str:
    """Inside a named group's parentheses: `lrStart/lrEnd`: 0.0008 -> 0.02."""
    if _same_change(changes):
        return f"`{'/'.join(c['key'] for c in changes)}`: {side_text(changes[0], 'b')} -> {side_text(changes[0], 'a')}"
    return ", ".join(f"`{c['key']}`: {side_text(c, 'b')} -> {side_text(c, 'a')}" for c in changes)


def side_text(d: dict[str, Any], side: str) -> str:
    """One side of a difference: `absent` where that side lacks the key, else its value (`null` too)."""
    if d.get(f"{side}_default"):
        return f"absent (default {value_text(d.get(side))})"
    lacks = "added" if side == "a" else "removed"
    return "absent" if d.get("kind") == lacks else value_text(d.get(side))


def _same_change(changes: list[dict[str, Any]]) -> bool:
    return len(changes) > 1 and all((c["a"], c["b"]) == (changes[0]["a"], changes[0]["b"]) for c in changes)


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


# -- trials, rounds, reproduction, cost -----------------------------------------------------


def trial_rows(groups: dict[str, list[TrialRecord]], unit: Unit) -> list[dict[str, Any]]:
    """Per variant: seeds, outcome counts, mean ± sd of ok values, throughput, memory, wall time."""
    rows = []
    for label, trials in groups.items():
        counts = {status: sum(t.status == status and not t.infra for t in trials) for status in STATUSES}
        values = _ok_values(trials)
        speeds = [t.steps_per_s for t in trials if t.steps_per_s is not None]
        mems = [t.peak_gpu_mem_mb for t in trials if t.peak_gpu_mem_mb is not None]
        m = _moments(values)
        rows.append({
            "variant": label,
            "seeds": sorted({t.seed for t in trials}),
            "trials": len(trials),
            **counts,
            "infra": sum(t.infra for t in trials),
            "interrupted": sum(t.status == "interrupted" for t in trials),
            "mean": m["mean"], "sd": m["sd"],
            "mean_text": "—" if m["mean"] is None else _mean_sd(m, unit),
            "steps_per_s": statistics.median(speeds) if speeds else None,
            "peak_gpu_mem_mb": max(mems) if mems else None,
            "wall_s": statistics.fmean(t.wall_s for t in trials) if trials else None,
        })  # fmt: skip
    return rows


def round_rows(rounds: list[dict[str, Any]], trials: list[TrialRecord]) -> list[dict[str, Any]]:
    """Per round: each variant tested, how many trials, how many failed (diverged/crashed/timeout)."""
    status = {t.id: t.status for t in trials}
    out = []
    for i, r in enumerate(rounds, 1):
        cells: dict[str, dict[str, Any]] = {}
        for item in r.get("trials") or []:
            label, trial_id = (str(item[0]), str(item[2])) if isinstance(item, list) and len(item) >= 3 else (str(item), "")
            cell = cells.setdefault(label, {"variant": label, "trials": 0, "failed": 0})
            cell["trials"] += 1
            cell["failed"] += status.get(trial_id) in ("diverged", "crashed", "timeout")
        out.append({"round": int(r.get("round", i)), "variants": list(cells.values())})
    return out


def _search_cwd(environment: dict[str, Any] | None) -> str | None:
    """The directory the search ran in, when the search itself recorded its environment."""
    if not environment or environment.get("collected_by") == "report":
        return None
    cwd = environment.get("cwd")
    return str(cwd) if cwd else None


def _relative_to(path: Path, base: object) -> str:
    """`path` relative to the directory the search ran in, when it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path(str(base)).resolve())) if base else str(path)
    except ValueError:
        return str(path)


def reproduce_section(record: SearchRecord, environment: dict[str, Any] | None = None) -> dict[str, Any]:
    """The search command, seeds and budget, and the exact command of one trial of each key variant."""
    s = record.summary or record.settings
    template = next((t.command for t in record.trials if t.command), []) or _split(s.get("command"))
    out_rel = _relative_to(record.out_dir, record.settings.get("invoked_in"))
    flags = [("--good", s.get("good")), ("--bad", s.get("bad")), ("--command", command_text(template) if template else None),
             ("--metric", s.get("metric")), ("--mode", s.get("mode")), ("--steps", s.get("steps")),
             ("--strategy", s.get("strategy")), ("--out", out_rel)]  # fmt: skip
    words = ["bisect-runs", "search"] + [w for flag, v in flags if v not in (None, "") for w in (flag, str(v))]
    full = command_text(words)  # every setting spelled out: runs without bisect.yaml
    invocation = record.settings.get("invocation")
    if isinstance(invocation, list) and invocation:  # the command line as typed: every flag, --project too
        words = [str(w) for w in invocation if w != "--resume"]
    examples = []
    for label in _key_labels(record, s):
        trial = next((t for t in record.trials if t.label == label), None)
        if trial is not None:
            examples.append({
                "variant": label, "seed": trial.seed, "trial": trial.id,
                "config": f"trials/{trial.id}/config/",
                "argv": trial.argv, "command": command_text(trial.argv) if trial.argv else None,
            })  # fmt: skip
    return {
        "search": command_text(words),
        "full": full,
        "report": command_text(["bisect-runs", "report", out_rel]),
        "resume": command_text([*(_without_budgets(words) if record.summary else words), "--resume"]),
        "budget_stop": record.summary is not None and not record.complete,
        "good": s.get("good"),
        "bad": s.get("bad"),
        "seeds": sorted({t.seed for t in record.trials}),
        "steps": s.get("steps") or _most_common(t.steps for t in record.trials),
        "strategy": s.get("strategy"),
        "cwd": next((t.cwd for t in record.trials if t.cwd), None) or record.settings.get("invoked_in")
        or _search_cwd(environment),
        "statistics": STATISTICS,
        "trials": examples,
    }


def _without_budgets(words: list[str]) -> list[str]:
    """The command without --max-runs/--max-hours: a search that used its budget up continues without it."""
    out: list[str] = []
    skip = False
    for w in words:
        if skip:
            skip = False
        elif w in ("--max-runs", "--max-hours"):
            skip = True
        elif not w.startswith(("--max-runs=", "--max-hours=")):
            out.append(w)
    return out


def _split(command: Any) -> list[str]:
    """A command template as recorded in the journal (a string or a list of words)."""
    if isinstance(command, list):
        return [str(w) for w in command]
    try:
        return shlex.split(command) if isinstance(command, str) else []
    except ValueError:
        return [command]


def command_text(words: list[str]) -> str:
    """A command line to paste into a shell: words quoted only where a shell needs it ({config} stays bare)."""
    return " ".join(w if _SHELL_SAFE.fullmatch(w) else shlex.quote(w) for w in words)


_SHELL_SAFE = re.compile(r"[\w@%+=:,./{}-]+")


def _key_labels(record: SearchRecord, s: dict[str, Any]) -> list[str]:
    labels = [label for label in ("A", "B") if any(t.label == label for t in record.trials)]
    return labels + decisive_labels(record, s)


def decisive_labels(record: SearchRecord, s: dict[str, Any], most: int = 3) -> list[str]:
    """Variants that toggle exactly a culprit set (A + {culprit}, B - {culprit}), as run."""
    names_by_key = {str(k): str(f.get("name")) for f in s.get("factors") or [] for k in f.get("keys") or []}
    wanted = [{names_by_key.get(k, k) for k in c} for c in s.get("culprits") or []]
    found: list[str] = []
    for t in record.trials:
        inside = label_set(t.label)
        if inside and inside in wanted and t.label not in found:
            found.append(t.label)
    return found[:most]


def label_set(label: str) -> set[str] | None:
    """The factor names inside `A + {...}` / `B - {...}`; None for other labels."""
    match = re.fullmatch(r"\s*[AB]\s*[-+]\s*\{(.*)\}\s*", label)
    return None if match is None else {part.strip() for part in match.group(1).split(",") if part.strip()}


def cost_section(trials: list[TrialRecord]) -> dict[str, Any]:
    """Trials run, wall hours, GPU-hours (wall × GPUs per trial) and CPU-only trial hours."""
    gpu_s = sum(t.wall_s * t.gpus for t in trials)
    cpu_s = sum(t.wall_s for t in trials if not t.gpus)
    return {
        "trials": len(trials),
        "trial_hours": round(sum(t.wall_s for t in trials) / 3600, 4),
        "gpu_hours": round(gpu_s / 3600, 4),
        "cpu_trial_hours": round(cpu_s / 3600, 4),
        "span_hours": _span_hours(trials),
    }


def _span_hours(trials: list[TrialRecord]) -> float | None:
    """Wall-clock from the first trial's start to the last trial's end, from journal times."""
    ends = [(t.time, t.wall_s) for t in trials if t.time is not None]
    if not ends:
        return None
    start = min(end - wall for end, wall in ends)
    return round((max(end for end, _ in ends) - start) / 3600, 4)


def partial_reason(record: SearchRecord) -> str | None:
    """Why the report is partial, in one sentence (None when the search finished)."""
    if record.complete:
        return None
    n = len(record.trials)
    if record.summary is None:
        return f"The search has not finished (no summary.json): this page is built from the {n} trials in the journal so far."
    return f"The search stopped early (interrupted or out of budget) after {n} trials: the verdict is its best answer so far."


def _details(s: dict[str, Any]) -> dict[str, Any]:
    details = s.get("details")
    if not isinstance(details, dict):
        return {}
    return {k: v for k, v in details.items() if k != "trial_rounds"}


def _f(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _name(spec: Any) -> str | None:
    if not spec:
        return None
    text = str(spec)
    return text if ":" in text and not text.startswith("/") else (Path(text).name or text)


def _most_common(values: Iterable[int]) -> int | None:
    values = list(values)
    return statistics.mode(values) if values else None
