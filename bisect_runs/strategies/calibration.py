"""Calibrate: is B worse than A at this budget, by how much, and how noisy are the runs?

A and B run on paired seeds, a full round at a time. After each round a one-sided Welch
test decides: reproduced when B is worse than A by more than `min_effect` with
p < alpha/2 (a per-look level that keeps repeated looks near alpha overall); not reproduced when
the upper confidence bound falls below `min_effect` (after at least 4 pairs) or the seed cap is
reached (a promising difference, one that exceeds min_effect / 2 with p < 0.2, gets up to twice
as many seeds).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from bisect_runs.stats import TestResult, t_p_value, t_quantile, welch
from bisect_runs.strategies.base import Observation, Point, Request
from bisect_runs.strategies.evidence import Evidence
from bisect_runs.strategies.rounds import ask, slots

AS_GIVEN = "A (as given)"  # trial label of the good config exactly as given, held differences included
MAX_SEEDS = 10  # per arm, unless --seeds asks for more
FIRST_SEEDS = 2  # per arm in the first look
FUTILITY_SEEDS = 4  # per arm before a small upper bound may end calibration as not reproduced
SHIFT = 1.0  # reproduced: B - A > min_effect, significantly (and the estimate itself at least min_effect)
EXTEND, PROMISING_P = 2.0, 0.2  # past the cap, up to twice the seeds while promising
PROMISING_SHIFT = 0.5  # promising: p < PROMISING_P that B - A exceeds half of min_effect


@dataclass
class Calibration:
    """What calibration found: the Welch test of B vs A, the noise sd and d = effect / sd."""

    reproduced: bool
    test: TestResult | None
    sd: float
    complete: bool = True  # False when the budget ran out before a decision

    @property
    def d(self) -> float:
        if self.test is None or not self.sd or not math.isfinite(self.sd):
            return math.inf if self.test is not None and self.test.diff > 0 else 0.0
        return self.test.diff / self.sd


def a_point() -> Point:
    return frozenset()


def b_point(n: int) -> Point:
    return frozenset(range(n))


def calibrate(
    ev: Evidence, log: list[dict[str, Any]], first: int | None = None, cap: int | None = None
) -> Generator[list[Request], list[Observation], Calibration]:
    """Run A and B on paired seeds until the Welch test decides (or the cap or budget is hit)."""
    ctx = ev.ctx
    first = max(2, first or FIRST_SEEDS)
    cap = max(cap or MAX_SEEDS, first)
    a, b = a_point(), b_point(ctx.n_factors)
    pending: list[Request] = []
    while True:
        while len(pending) < slots(ctx):
            seed = ev.fresh_seed()
            pending += [ev.request(a, seed), ev.request(b, seed)]
        requests, pending = pending[: slots(ctx)], pending[slots(ctx) :]
        got = yield from ask(ev, requests, "calibrate", log)
        if got is None:
            return judge(ev, final=True, complete=False) or Calibration(False, None, ev.noise_sd(), False)
        pairs = min(ev.count(a), ev.count(b))
        if pairs < first:
            continue
        result = judge(ev, final=pairs >= cap and not (pairs < EXTEND * cap and promising(ev)))
        if result is not None:
            return result


def replicate(ev: Evidence, log: list[dict[str, Any]]) -> Generator[list[Request], list[Observation], Calibration]:
    """Re-test B vs A on fresh paired seeds alone, by the calibration's rule.

    A first look that called B worse is selected by its own noise; when the search then finds
    nothing that explains the regression, only an independent sample can tell a real but
    diffuse regression from a false alarm.
    """
    ctx = ev.ctx
    a, b = a_point(), b_point(ctx.n_factors)
    fresh: set[int] = set()
    while True:
        requests: list[Request] = []
        while len(requests) < slots(ctx):
            seed = ev.fresh_seed()
            fresh.add(seed)
            requests += [ev.request(a, seed), ev.request(b, seed)]
        got = yield from ask(ev, requests[: slots(ctx)], "replicate", log)
        if got is None:
            return judge(ev, final=True, complete=False, seeds=fresh) or Calibration(False, None, ev.noise_sd(), False)
        pairs = min(len(ev.losses(a, fresh)), len(ev.losses(b, fresh)))
        if pairs < FIRST_SEEDS:
            continue
        result = judge(ev, final=pairs >= MAX_SEEDS, seeds=fresh)
        if result is not None:
            return result


def promising(ev: Evidence) -> bool:
    """Whether B looks worse but not yet significantly: worth a few more seeds past the cap."""
    la, lb = ev.losses(a_point()), ev.losses(b_point(ev.ctx.n_factors))
    if len(la) < 2 or len(lb) < 2:
        return False
    test = welch(la, lb, alternative="greater")
    return beyond_min_effect(test, ev.ctx.min_effect, PROMISING_SHIFT) < PROMISING_P


def judge(ev: Evidence, final: bool, complete: bool = True, seeds: set[int] | None = None) -> Calibration | None:
    """The calibration decision from the A and B runs so far (on `seeds` only when given); None while undecided."""
    ctx = ev.ctx
    la, lb = ev.losses(a_point(), seeds), ev.losses(b_point(ctx.n_factors), seeds)
    sd = ev.noise_sd()
    if len(la) < 2 or len(lb) < 2:
        return Calibration(False, None, sd, complete) if final else None
    test = welch(la, lb, alternative="greater")
    if beyond_min_effect(test, ctx.min_effect) < ctx.alpha / 2:
        return Calibration(True, test, sd, complete)
    upper = test.diff + t_quantile(1 - 2 * ctx.alpha, test.df) * test.se
    # two pairs are too few to call futility: their sd is itself a guess
    futile = ctx.min_effect > 0 and upper < ctx.min_effect and min(len(la), len(lb)) >= FUTILITY_SEEDS
    if final or futile:
        return Calibration(False, test, sd, complete)
    return None


def beyond_min_effect(test: TestResult, min_effect: float, shift: float | None = None) -> float:
    """One-sided p-value that B - A exceeds shift * min_effect, given an estimate of at least min_effect.

    Testing against the minimum effect itself (shift 1) keeps a sum of many tiny differences
    that is real but smaller than worth reporting from passing as a regression.
    """
    shift = SHIFT if shift is None else shift
    if min_effect <= 0:
        return test.p
    if test.se == 0:
        return 0.0 if test.diff > min_effect else 1.0
    return t_p_value((test.diff - shift * min_effect) / test.se, test.df, "greater") if test.diff >= min_effect else 1.0
