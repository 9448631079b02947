"""Turning the `bayes` posterior into a Decision, in the same shape as the other strategies' decisions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special

from bisect_runs.stats import welch
from bisect_runs.strategies.base import Decision, Effect
from bisect_runs.strategies.calibration import Calibration, a_point, b_point
from bisect_runs.strategies.evidence import Evidence
from bisect_runs.strategies.explanations import Explanation
from bisect_runs.strategies.posterior import Posterior
from bisect_runs.strategies.verdicts import (
    HINT_DIFFUSE,
    _frac,
    _num,
    _pct,
    _set_name,
    base_details,
    direct_shares,
    json_safe,
    not_reproduced,
    regression_effect,
)

SHOWN = 5  # explanations listed with their posterior in details.posterior
Z95 = 1.959963984540054


def measured(ev: Evidence, reproduced: bool, complete: bool) -> Calibration:
    """B vs A from their runs, in the calibration's record (Welch test, noise sd)."""
    la, lb = ev.losses(a_point()), ev.losses(b_point(ev.ctx.n_factors))
    test = welch(la, lb, alternative="greater") if len(la) >= 2 and len(lb) >= 2 else None
    return Calibration(reproduced, test, ev.noise_sd(), complete)


def conclude(
    ev: Evidence, post: Posterior | None, log: list[dict[str, Any]], complete: bool, abstained: bool = False
) -> Decision:
    """The Decision: not reproduced (or abstained on A's and B's runs), diffuse, or the most probable explanation's culprits."""
    min_effect = ev.ctx.min_effect
    if abstained or post is None or post.p_reproduced(min_effect) < 0.5 or post.hyps[post.leading()[0]].kind == "null":
        cal = measured(ev, False, complete)
        decision = not_reproduced(ev, cal, log)
        decision.details.update(json_safe(model_details(post)))
        return decision
    cal = measured(ev, True, complete)
    k, mass = post.leading()
    h = post.hyps[k]
    details = base_details(ev, cal, log)
    details.update(model_details(post), classification=h.classification, complete=complete, answer_probability=mass)
    regression = regression_effect(cal, ev)
    if h.kind == "diffuse":
        details["hint"] = HINT_DIFFUSE
        verdict = (
            f"B is worse than A by {_num(regression.effect)}, and the most probable explanation "
            f"(posterior {mass:.2f}) is many small differences, no small set of them: the regression looks diffuse."
        )
        return Decision(True, [], [], verdict + incomplete(complete), regression, json_safe(details))
    names = ev.ctx.factor_names or [str(i) for i in range(ev.ctx.n_factors)]
    t = h.touched
    r, q = direct_shares(ev, t, level=0.95)
    details["shares"] = {_set_name(t, names): {"reproduce": _frac(r), "repair": _frac(q)}}
    details["masking"] = masking(post, k, names)
    effects = [set_effect(ev, post, k, frozenset(c)) for c in h.culprits]
    if len(h.culprits) > 1:
        effects.append(set_effect(ev, post, k, t))
    verdict = sentence(h, names, mass, r, q, regression) + incomplete(complete)
    return Decision(True, h.culprits, effects, verdict, regression, json_safe(details))


def model_details(post: Posterior | None) -> dict[str, Any]:
    """The leading explanations with their posterior, and the estimated shared seed noise."""
    if post is None:
        return {}
    order = np.argsort(-post.prob)[:SHOWN]
    shown = [{"kind": post.hyps[k].kind, "factors": list(post.hyps[k].factors), "probability": float(post.prob[k])} for k in order]
    return {"posterior": shown, "shared_noise": post.shared}


def set_effect(ev: Evidence, post: Posterior, k: int, t: frozenset[int]) -> Effect:
    """What reverting T from B repairs under explanation k, with a 95 % interval and its share of B - A."""
    n = ev.ctx.n_factors
    h = post.hyps[k]
    b = b_point(n)
    c = columns_at(h, b, n) - columns_at(h, b - t, n)
    value = float(c @ post.coef[k])
    se = math.sqrt(max(float(c @ post.cov[k] @ c), 0.0))
    p = float(2 * special.ndtr(-abs(value) / se)) if se > 0 else None
    share = value / post.gap[k] if post.gap[k] else None
    return Effect(tuple(sorted(t)), value, value - Z95 * se, value + Z95 * se, share, p, ev.count(b - t))


def columns_at(h: Explanation, point: frozenset[int], n: int) -> np.ndarray:
    x = np.zeros((1, n))
    x[0, list(point)] = 1.0
    return h.columns(x)[0]


def masking(post: Posterior, k: int, names: list[str]) -> list[dict[str, Any]]:
    """The helper of a masking explanation: its effect with a 95 % interval, (negative) share and the mask's posterior.

    Only when a mask leads its answer's explanations: the stop waits for the answer, not for the helper."""
    h = post.hyps[k]
    if h.kind != "mask":
        return []
    g = h.factors[1]
    value, se = float(post.coef[k][1]), math.sqrt(max(float(post.cov[k][1, 1]), 0.0))
    share = value / post.gap[k] if post.gap[k] else None
    return [{"factor": g, "name": names[g], "effect": value, "ci_low": value - Z95 * se, "ci_high": value + Z95 * se,
             "explained_fraction": share, "probability": float(post.prob[k])}]


def sentence(h: Explanation, names: list[str], prob: float, r: Any, q: Any, regression: Effect) -> str:
    """One sentence in the words of the other strategies' verdicts, with the posterior."""
    t = _set_name(h.touched, names)
    share = (
        f"reverting it repairs {_pct(q)} and applying it to A reproduces {_pct(r)} of B - A = {_num(regression.effect)}"
        f" (posterior probability {prob:.2f})"
    )
    text = {
        "single": f"{t} causes the regression: {share}.",
        "mask": f"{t} causes the regression: {share}.",
        "and": f"{t} cause the regression only together (AND): {share}.",
        "or": f"Either of {t} alone is enough to cause the regression (OR): {share}.",
        "additive": f"{t} each cause part of the regression (additive): {share}.",
        "and3": f"{t} cause the regression only together ({len(h.factors)} differences): {share}.",
    }[h.kind]
    if h.kind == "mask":
        text += f" Masking: {names[h.factors[1]]} helps and hides part of it."
    return text


def incomplete(complete: bool) -> str:
    return "" if complete else " (best answer when the budget ran out; intervals show how sure it is)"
