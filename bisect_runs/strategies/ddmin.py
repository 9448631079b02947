"""Zeller's delta-debugging isolation (dd) over groups of factors, a fixed number of seeds per test: a baseline.

A test runs a variant on the same seeds as A and B and calls it failing when its mean is
closer to B's than to A's. dd narrows the difference between a passing and a failing
configuration until one group is left; groups follow the prior order (most suspect first).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from bisect_runs.strategies.base import (
    Decision,
    Observation,
    Point,
    Request,
    SearchContext,
    Strategy,
)
from bisect_runs.strategies.calibration import Calibration, a_point, b_point, judge
from bisect_runs.strategies.evidence import Evidence
from bisect_runs.strategies.rounds import ask, slots
from bisect_runs.strategies.verdicts import (
    base_details,
    json_safe,
    not_reproduced,
    regression_effect,
)

SEEDS = 3
PASS, FAIL = "pass", "fail"


def ddmin(ctx: SearchContext) -> Strategy:
    """Calibrate A and B, then run dd isolation with every test on the same seeds."""
    ev = Evidence(ctx)
    log: list[dict[str, Any]] = []
    n = ctx.n_factors
    seeds = [ev.fresh_seed() for _ in range(max(2, ctx.seeds or SEEDS))]
    outcome = yield from run_tests(ev, [a_point(), b_point(n)], seeds, log)
    cal = judge(ev, final=True, complete=outcome is not None) or Calibration(False, None, ev.noise_sd(), False)
    if not cal.reproduced:
        return not_reproduced(ev, cal, log)
    order = prior_order(ctx)
    passing, failing, granularity = a_point(), b_point(n), 2
    complete = True
    while len(failing - passing) > 1:
        parts = split([i for i in order if i in failing - passing], granularity)
        grown, shrunk = [passing | p for p in parts], [failing - p for p in parts]
        found = yield from run_tests(ev, grown, seeds, log)
        if found is not None and FAIL in found:
            failing, granularity = grown[found.index(FAIL)], 2
            continue
        lost = None if found is None else (yield from run_tests(ev, shrunk, seeds, log))
        if found is None or lost is None:  # out of budget
            complete = False
            break
        if PASS in lost:
            passing, granularity = shrunk[lost.index(PASS)], 2
        elif PASS in found:
            passing, granularity = grown[found.index(PASS)], max(granularity - 1, 2)
        elif FAIL in lost:
            failing, granularity = shrunk[lost.index(FAIL)], max(granularity - 1, 2)
        elif granularity < len(failing - passing):
            granularity = min(2 * granularity, len(failing - passing))
        else:
            break
    return judge_dd(ev, cal, sorted(failing - passing), log, complete)


def run_tests(
    ev: Evidence, points: list[Point], seeds: list[int], log: list[dict[str, Any]]
) -> Generator[list[Request], list[Observation], list[str] | None]:
    """Run each point on every seed (whole rounds) and call it pass or fail; None when out of budget."""
    todo = [ev.request(p, s) for p in points for s in seeds]
    while todo:
        got = yield from ask(ev, todo[: slots(ev.ctx)], "ddmin", log)
        if got is None:
            return None
        todo = todo[len(got) :]
    a, b = ev.losses(a_point()), ev.losses(b_point(ev.ctx.n_factors))
    middle = (np.mean(a) + np.mean(b)) / 2 if a and b else 0.0
    return [FAIL if ev.losses(p) and np.mean(ev.losses(p)) > middle else PASS for p in points]


def split(items: list[int], parts: int) -> list[frozenset[int]]:
    """`items` cut into `parts` contiguous, nearly equal groups."""
    return [frozenset(chunk.tolist()) for chunk in np.array_split(np.array(items, dtype=int), parts) if len(chunk)]


def prior_order(ctx: SearchContext) -> list[int]:
    """Factors most suspect first (impact scores from the diff), ties in factor order."""
    scores = list(ctx.prior_scores) + [0.0] * (ctx.n_factors - len(ctx.prior_scores))
    return sorted(range(ctx.n_factors), key=lambda i: -scores[i])


def judge_dd(ev: Evidence, cal: Calibration, culprit: list[int], log: list[dict[str, Any]], complete: bool) -> Decision:
    """dd's answer: the one group left between the passing and the failing configuration."""
    details = base_details(ev, cal, log)
    details.update(classification="single" if len(culprit) == 1 else "combination", complete=complete)
    names = ev.ctx.factor_names or [str(i) for i in range(ev.ctx.n_factors)]
    verdict = "Delta debugging isolated {" + ", ".join(names[i] for i in culprit) + "}."
    return Decision(True, [culprit] if culprit else [], [], verdict, regression_effect(cal, ev), json_safe(details))
