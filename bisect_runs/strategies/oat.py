"""One factor at a time, both directions (A + {i} and B - {i}), a fixed number of seeds: a baseline.

Every variant runs on the same seeds as A and B (paired). A factor that both reproduces
and repairs 70 % of the regression is a culprit; factors that only repair (each needs
the others) form one AND set; factors that only reproduce (each is enough) are OR culprits.
"""

from __future__ import annotations

from typing import Any

from bisect_runs.stats import welch
from bisect_runs.strategies.base import Decision, Effect, Request, SearchContext, Strategy
from bisect_runs.strategies.calibration import Calibration, a_point, b_point, judge
from bisect_runs.strategies.evidence import Evidence
from bisect_runs.strategies.rounds import ask, slots
from bisect_runs.strategies.verdicts import (
    SHARE,
    base_details,
    json_safe,
    not_reproduced,
    regression_effect,
)

SEEDS = 3


def oat(ctx: SearchContext) -> Strategy:
    """Run A, B and every single-factor variant in both directions on the same seeds, then judge."""
    ev = Evidence(ctx)
    log: list[dict[str, Any]] = []
    n = ctx.n_factors
    a, b = a_point(), b_point(n)
    seeds = [ev.fresh_seed() for _ in range(max(2, ctx.seeds or SEEDS))]
    points = [a, b] + [frozenset({i}) for i in range(n)] + [b - {i} for i in range(n)]
    todo: list[Request] = [ev.request(p, s) for p in dict.fromkeys(points) for s in seeds]
    complete = True
    while todo:
        got = yield from ask(ev, todo[: slots(ctx)], "oat", log)
        if got is None:
            complete = False
            break
        todo = todo[len(got) :]
    cal = judge(ev, final=True, complete=complete) or Calibration(False, None, ev.noise_sd(), complete)
    if not cal.reproduced:
        return not_reproduced(ev, cal, log)
    return judge_oat(ev, cal, log, complete)


def judge_oat(ev: Evidence, cal: Calibration, log: list[dict[str, Any]], complete: bool) -> Decision:
    """Classify each factor by its reproduce and repair shares (Welch tests against A and B)."""
    n = ev.ctx.n_factors
    a, b = a_point(), b_point(n)
    la, lb = ev.losses(a), ev.losses(b)
    delta = cal.test.diff if cal.test else 0.0
    both, repair_only, reproduce_only, effects = [], [], [], []
    for i in range(n):
        up, down = ev.losses(frozenset({i})), ev.losses(b - {i})
        if len(up) < 2 or len(down) < 2:
            continue
        r, q = welch(la, up, "greater"), welch(down, lb, "greater")
        effects.append(Effect((i,), q.diff, q.ci_low, q.ci_high, q.diff / delta if delta else None, q.p, len(down)))
        reproduces = r.p < ev.ctx.alpha and r.diff >= SHARE * delta
        repairs = q.p < ev.ctx.alpha and q.diff >= SHARE * delta
        if reproduces and repairs:
            both.append([i])
        elif repairs:
            repair_only.append(i)
        elif reproduces:
            reproduce_only.append(i)
    culprits = both
    kind = "single" if len(both) == 1 else "additive"
    note = ""
    if not culprits and len(repair_only) >= 2:
        culprits, kind = [sorted(repair_only)], "AND"
    elif not culprits and len(repair_only) == 1:  # reverting it repairs; alone it needs something else
        culprits, kind = [repair_only], "single"
        note = "; reverting it repairs the regression, applying it to A alone does not reproduce it"
    elif not culprits and len(reproduce_only) >= 2:
        culprits, kind = [[i] for i in reproduce_only], "OR"
    elif not culprits and len(reproduce_only) == 1:
        culprits, kind = [reproduce_only], "single"
        note = "; applying it to A reproduces the regression, reverting it alone does not repair it"
    details = base_details(ev, cal, log)
    details.update(classification=kind if culprits else "unresolved", complete=complete)
    names = ev.ctx.factor_names or [str(i) for i in range(n)]
    found = ", ".join("{" + ", ".join(names[i] for i in c) + "}" for c in culprits)
    verdict = (
        f"One factor at a time: {found} ({kind}{note})." if culprits else
        "One factor at a time found no culprit: no single difference reproduces or repairs 70 % of the "
        "regression (a diffuse regression, or an interaction one factor at a time cannot see)."
    )
    effects.sort(key=lambda e: -e.effect)
    return Decision(True, culprits, effects, verdict, regression_effect(cal, ev), json_safe(details))
