"""Turning what was measured into a Decision: culprits, effects with intervals, one-sentence verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bisect_runs.stats import pooled_sd, ratio_ci, t_interval, welch
from bisect_runs.strategies.base import Decision, Effect
from bisect_runs.strategies.calibration import Calibration, a_point, b_point
from bisect_runs.strategies.effects import Fraction, Model
from bisect_runs.strategies.evidence import Evidence

SHARE = 0.7  # a culprit set must both reproduce and repair this share of the regression
DECISION_LEVEL = 0.9  # interval level used to decide whether to keep confirming (one-sided 95 %)
SYNERGY = 0.5  # an interaction worth this share of the regression makes a pair one AND set
SPARSE = 4  # a smallest explaining set larger than this is a diffuse regression, not a culprit
HINT_STEPS = "raise --steps (the regression may only show later in training) or check that B really is worse"
HINT_DIFFUSE = "group related keys (groups: in bisect.yaml) or raise --steps; no small set of differences explains it"


@dataclass
class Finding:
    """Reproduce/repair shares of candidate subsets and the smallest qualifying sets."""

    model: Model
    candidates: list[int]
    shares: dict[frozenset[int], tuple[Fraction, Fraction]]  # T -> (reproduce A + T, repair B - T)
    minimal: list[frozenset[int]]
    notes: dict[str, Any] = field(default_factory=dict)
    complete: bool = True
    direct: dict[frozenset[int], tuple[Fraction, Fraction]] = field(default_factory=dict)  # model-free shares

    def model_shares(self, t: frozenset[int], level: float = 0.95) -> tuple[Fraction, Fraction]:
        """(reproduce, repair) shares of T from the model, with `level` intervals."""
        a, b = a_point(), b_point(self.model.n)
        return self.model.fraction(a, t, a, b, level), self.model.fraction(b - t, b, a, b, level)


def units(finding: Finding, best: frozenset[int]) -> tuple[list[list[int]], str]:
    """Split a minimal set into culprits: factors joined by a strong synergy form one AND set."""
    members = sorted(best)
    if len(members) == 1:
        return [members], "single"
    parent = {i: i for i in members}

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    synergies = []
    for k, i in enumerate(members):
        for j in members[k + 1 :]:
            s = finding.model.synergy(i, j).value
            synergies.append(s)
            if s >= SYNERGY:
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in members:
        groups.setdefault(root(i), []).append(i)
    culprits = sorted(groups.values())
    if len(culprits) == 1:
        return culprits, "AND" if len(members) == 2 else "combination"
    if all(s <= -SYNERGY for s in synergies):
        return [[i] for i in members], "OR"
    if all(len(c) == 1 for c in culprits):
        return culprits, "additive"
    return culprits, "mixed"


def decide(
    ev: Evidence, cal: Calibration, finding: Finding | None, log: list[dict[str, Any]], complete: bool
) -> Decision:
    """The Decision of a reproduced regression: culprits when a small set explains it, else diffuse."""
    names = _names(ev)
    details = base_details(ev, cal, log)
    details["complete"] = complete
    regression = regression_effect(cal, ev)
    if finding is None or not finding.minimal or len(finding.minimal[0]) > SPARSE:
        details["classification"] = "diffuse"
        details["hint"] = HINT_DIFFUSE
        effects: list[Effect] = []
        if finding is not None:
            effects = _factor_effects(finding.model, ev)
            details["partial"] = _partial(finding, names)
            details["masking"] = _masking(finding.model, ev)
        verdict = (
            f"B is worse than A by {_num(regression.effect)} ({_ci(regression)}), but no small set of "
            "differences both reproduces and repairs 70 % of it: the regression looks diffuse."
        )
        if not complete:
            verdict += " The budget ran out before a decision."
        return Decision(True, [], effects, verdict, regression, json_safe(details))
    best = finding.minimal[0]
    culprits, kind = units(finding, best)
    details["classification"] = kind
    details["masking"] = _masking(finding.model, ev)
    # decided at the search's one-sided level; reported, like every effect, with 95 % intervals
    details["shares"] = {
        _set_name(t, names): {"reproduce": _frac(r), "repair": _frac(q)}
        for t, (r, q) in ((t, reported_shares(finding, ev, t)) for t in finding.shares)
    }
    if len(best) == 2:
        i, j = sorted(best)
        s = finding.model.synergy(i, j)
        details["synergy"] = _frac(s)
    effects = [_set_effect(finding, frozenset(c), ev) for c in culprits]
    if len(culprits) > 1:
        effects.append(_set_effect(finding, best, ev))
    effects += [e for e in _factor_effects(finding.model, ev) if len(e.factors) == 1 and [e.factors[0]] not in culprits]
    verdict = _verdict(finding, ev, best, culprits, kind, names, details["masking"], regression)
    if not complete:
        verdict += " (best answer when the budget ran out; intervals show how sure it is)"
    return Decision(True, culprits, effects, verdict, regression, json_safe(details))


def not_reproduced(ev: Evidence, cal: Calibration, log: list[dict[str, Any]], replicated: bool = False) -> Decision:
    """The honest answer when B is not measurably worse than A at this budget.

    `replicated`: the first look called B worse, nothing explained it, and fresh paired
    seeds (`cal`) did not confirm it; the verdict quotes the fresh runs.
    """
    details = base_details(ev, cal, log)
    details.update(classification="not reproduced", hint=HINT_STEPS, complete=cal.complete)
    regression = regression_effect(cal, ev)
    if cal.test is None:
        verdict = "Not enough finished runs of A and B to tell whether B is worse; " + HINT_STEPS + "."
        return Decision(False, [], [], verdict, regression, json_safe(details))
    if replicated:
        t = cal.test
        details["replication"] = {"effect": t.diff, "ci_low": t.ci_low, "ci_high": t.ci_high, "p": t.p, "runs": t.n_a + t.n_b}
        verdict = (
            "The regression did not reproduce at this budget: B looked worse at first, no difference explained it, "
            f"and fresh paired seeds did not confirm it (B - A = {_num(t.diff)}, 95 % CI {_num(t.ci_low)} to "
            f"{_num(t.ci_high)}, p = {t.p:.2g}, {t.n_a} + {t.n_b} runs); {HINT_STEPS}."
        )
        return Decision(False, [], [], verdict, regression, json_safe(details))
    verdict = (
        f"The regression did not reproduce at this budget: B - A = {_num(regression.effect)} "
        f"({_ci(regression)}, p = {cal.test.p:.2g}, {cal.test.n_a} + {cal.test.n_b} runs); {HINT_STEPS}."
    )
    return Decision(False, [], [], verdict, regression, json_safe(details))


def direct_shares(ev: Evidence, t: frozenset[int], level: float = DECISION_LEVEL) -> tuple[Fraction, Fraction]:
    """Model-free reproduce/repair shares of T from the runs at A, B, A + T and B - T themselves.

    They guard against a model that misses an interaction: a set qualifies only if its own
    runs do not clearly contradict the model.
    """
    n = ev.ctx.n_factors
    a, b = a_point(), b_point(n)
    groups = ev.grouped(measured=True)
    sd, df = pooled_sd(list(groups.values()))
    unknown = Fraction(math.nan, -math.inf, math.inf)
    ya, yb, yt, yu = (groups.get(p, []) for p in (a, b, frozenset(t), b - t))
    if not (ya and yb) or not math.isfinite(sd) or df < 1:
        return unknown, unknown
    ma, mb, var = float(np.mean(ya)), float(np.mean(yb)), sd**2
    den, var_den = mb - ma, var * (1 / len(ya) + 1 / len(yb))

    def share(num: float, var_num: float, cov: float) -> Fraction:
        return Fraction(*ratio_ci(num, den, var_num, var_den, cov, df, level), level)

    r = share(float(np.mean(yt)) - ma, var * (1 / len(yt) + 1 / len(ya)), var / len(ya)) if yt else unknown
    q = share(mb - float(np.mean(yu)), var * (1 / len(yu) + 1 / len(yb)), var / len(yb)) if yu else unknown
    return r, q


def reported_shares(finding: Finding, ev: Evidence, t: frozenset[int]) -> tuple[Fraction, Fraction]:
    """Reproduce/repair shares of T as reported, with 95 % intervals: measured directly from the
    runs at A + T and B - T against A and B where they exist, else from the model (a variant
    that failed, counted at the failure value, can pull a linear model far from the runs)."""
    model = finding.model_shares(t)
    direct = direct_shares(ev, t, level=0.95)
    return tuple(d if math.isfinite(d.value) else m for d, m in zip(direct, model, strict=True))  # type: ignore[return-value]


# -- pieces ----------------------------------------------------------------------------------


def regression_effect(cal: Calibration, ev: Evidence) -> Effect:
    """B vs A from every run of A and B, failures at the final failure loss."""
    n = ev.ctx.n_factors
    la, lb = ev.losses(a_point()), ev.losses(b_point(n))
    if len(la) < 2 or len(lb) < 2:
        return Effect(tuple(range(n)), math.nan, -math.inf, math.inf, 1.0, None, len(la) + len(lb))
    t = welch(la, lb, "greater")
    return Effect(tuple(range(n)), t.diff, t.ci_low, t.ci_high, 1.0, t.p, t.n_a + t.n_b)


def json_safe(value: Any) -> Any:
    """Details as plain JSON: non-finite floats (unbounded intervals, d of a noiseless run) become None."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def base_details(ev: Evidence, cal: Calibration, log: list[dict[str, Any]]) -> dict[str, Any]:
    n = ev.ctx.n_factors
    rates = ev.failure_rates()
    shown = {p: fr for p, fr in rates.items() if fr[0] > 0 or p in (a_point(), b_point(n))}
    return {
        "noise_sd": cal.sd,
        "d": cal.d,
        "failure_loss": ev.failure_loss(),
        "divergence_rates": {ev.label(p): f / total for p, (f, total) in shown.items() if total},
        "rounds": log,
        "infra_failures": len(ev.infra),
    }


def _set_effect(finding: Finding, t: frozenset[int], ev: Evidence) -> Effect:
    """What reverting T from B repairs, with its 95 % interval and explained share."""
    b = b_point(ev.ctx.n_factors)
    c = finding.model.contrast(b - t, b)
    low, high = c.ci()
    q = reported_shares(finding, ev, t)[1]
    return Effect(tuple(sorted(t)), c.value, low, high, q.value, c.p, ev.count(b - t))


def _factor_effects(model: Model, ev: Evidence) -> list[Effect]:
    """Every factor's main effect (A -> B, averaged over the others), largest first."""
    effect, se, adjusted = model.main_effects()
    delta = _measured_gap(ev) or model.contrast(a_point(), b_point(ev.ctx.n_factors)).value
    out = []
    for i in range(ev.ctx.n_factors):
        low, high = t_interval(float(effect[i]), float(se[i]), model.fit.df)
        frac = float(effect[i] / delta) if delta else None
        out.append(Effect((i,), float(effect[i]), low, high, frac, float(adjusted[i]), 0))
    return sorted(out, key=lambda e: -e.effect)


def _measured_gap(ev: Evidence) -> float | None:
    """Mean of B's runs minus mean of A's: the gap the report shows, shares are of this."""
    la, lb = ev.losses(a_point()), ev.losses(b_point(ev.ctx.n_factors))
    return float(np.mean(lb) - np.mean(la)) if len(la) and len(lb) else None


def _masking(model: Model, ev: Evidence) -> list[dict[str, Any]]:
    """Helpful differences (significant negative effects) that hide part of the regression."""
    names = _names(ev)
    return [
        {"factor": e.factors[0], "name": names[e.factors[0]], "effect": e.effect, "ci_low": e.ci_low,
         "ci_high": e.ci_high, "explained_fraction": e.explained_fraction}
        for e in _factor_effects(model, ev)
        if e.effect < 0 and e.p_value is not None and e.p_value < ev.ctx.alpha
    ]


def _partial(finding: Finding, names: list[str]) -> dict[str, Any] | None:
    if not finding.shares:
        return None
    t, (r, q) = max(finding.shares.items(), key=lambda kv: min(kv[1][0].value, kv[1][1].value))
    return {"factors": sorted(t), "names": [names[i] for i in sorted(t)], "reproduce": _frac(r), "repair": _frac(q)}


def _verdict(
    finding: Finding,
    ev: Evidence,
    best: frozenset[int],
    culprits: list[list[int]],
    kind: str,
    names: list[str],
    masking: list[dict[str, Any]],
    regression: Effect,
) -> str:
    r, q = reported_shares(finding, ev, best)
    both = _set_name(best, names)
    share = f"reverting it repairs {_pct(q)} and applying it to A reproduces {_pct(r)} of B - A = {_num(regression.effect)}"
    if kind == "single":
        text = f"{both} causes the regression: {share}."
    elif kind == "AND":
        text = f"{both} cause the regression only together (AND): {share}."
    elif kind == "OR":
        text = f"Either of {both} alone is enough to cause the regression (OR): {share}."
    elif kind == "additive":
        text = f"{both} each cause part of the regression (additive): {share}."
    elif len(culprits) > 1:  # mixed: some culprits are single differences, some act only together
        parts = " and ".join(_set_name(frozenset(c), names) for c in culprits)
        text = f"{parts} each cause part of the regression (a set of several acts only together): {share}."
    else:
        text = f"{both} cause the regression only together ({len(best)} differences): {share}."
    if masking:
        helpers = ", ".join(f"{m['name']} ({_num(m['effect'])})" for m in masking)
        text += f" Masking: {helpers} helps and hides part of it."
    return text


def _names(ev: Evidence) -> list[str]:
    return list(ev.ctx.factor_names) or [str(i) for i in range(ev.ctx.n_factors)]


def _set_name(t: frozenset[int], names: list[str]) -> str:
    return "{" + ", ".join(names[i] for i in sorted(t)) + "}"


def _frac(f: Fraction) -> dict[str, float]:
    return {"share": f.value, "low": f.low, "high": f.high, "level": f.level}


def _pct(f: Fraction) -> str:
    if not math.isfinite(f.low) or not math.isfinite(f.high) or f.low == f.high:  # no interval, or none from noise-free runs
        return f"{f.value:.0%}"
    return f"{f.value:.0%} ({f.level:.0%} CI {f.low:.0%} to {f.high:.0%})"


def _num(x: float) -> str:
    return f"{x:.4g}"


def _ci(e: Effect) -> str:
    return f"95 % CI {_num(e.ci_low)} to {_num(e.ci_high)}"
