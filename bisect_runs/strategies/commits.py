"""Bisect code commits under seed noise: which commit between a good and a bad revision regressed.

Commits are factors in the strategy protocol of `bisect_runs.strategies.base`: factor i is
the i-th commit after the good revision (oldest first), and position k (the code at the
k-th commit) is the point `frozenset(range(k))`; position 0 is the good revision, position
n the bad one. `bisect_commits` is a strategy generator like the config strategies, so
the same driving code runs it on real trials or on a simulated objective. See docs/commits.md.
"""
from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from bisect_runs import stats
from bisect_runs.strategies.base import (
    CRASHED,
    DIVERGED,
    INFRA,
    OK,
    TIMEOUT,
    Decision,
    Effect,
    Observation,
    Point,
    Request,
    SearchContext,
    Strategy,
)
from bisect_runs.strategies.evidence import FAILURE_MARGIN_SD
from bisect_runs.strategies.rounds import budget_exhausted

GOOD, BAD, SKIP, UNDECIDED = "good", "bad", "skip", "undecided"
_UNRUNNABLE = frozenset({CRASHED, TIMEOUT})


def point_at(position: int) -> Point:
    """The point of the code at `position`: every commit up to it applied."""
    return frozenset(range(position))


def position_of(point: Point) -> int:
    """Inverse of `point_at`."""
    return len(point)


@dataclass
class BisectOptions:
    """Seeds per commit: how many to start with, how many at most before calling it undecided."""

    seeds: int = 2
    calibration_seeds: int = 3
    max_seeds: int = 8
    verify_seeds: int = 4  # runs at each of the two commits around the boundary before concluding


@dataclass
class Verdict:
    """How one commit compares with the good and the bad revision."""

    status: str  # good | bad | skip | undecided
    p_worse: float = 1.0  # one-sided t-test p: worse than the good side
    p_better: float = 1.0  # one-sided t-test p: better than the bad side


@dataclass
class Measurements:
    """Everything measured at one position, in badness units (higher = worse)."""

    values: list[float] = field(default_factory=list)  # ok runs
    failed: list[str] = field(default_factory=list)  # statuses of diverged/crashed/timeout runs
    next_seed: int = 0
    verdict: Verdict | None = None

    @property
    def runs(self) -> int:
        return len(self.values) + len(self.failed)

    def unrunnable(self) -> bool:
        """No run gave a metric and none diverged: the trainer does not start or crashes every time."""
        return not self.values and bool(self.failed) and all(s in _UNRUNNABLE for s in self.failed)


class CommitBisection:
    """State of a noise-aware k-section over positions 0..n (0 good, n bad)."""

    def __init__(self, ctx: SearchContext, options: BisectOptions) -> None:
        self.ctx = ctx
        self.options = options
        self.n = ctx.n_factors
        self.data: dict[int, Measurements] = {}
        self.crash_is_bad = False  # the bad revision itself never runs: look for where it stopped running
        self.rounds = 0

    # -- measurements ---------------------------------------------------------------------

    def at(self, position: int) -> Measurements:
        return self.data.setdefault(position, Measurements())

    def requests(self, position: int, count: int) -> list[Request]:
        """`count` fresh seeds at `position`; the same seed list at every commit (paired design)."""
        m = self.at(position)
        seeds = range(m.next_seed, m.next_seed + count)
        m.next_seed += count
        return [Request(point_at(position), self.ctx.seed_base + s) for s in seeds]

    def record(self, observations: list[Observation]) -> None:
        for obs in observations:
            m = self.at(position_of(obs.point))
            value = obs.value if obs.value is not None and math.isfinite(obs.value) else None
            if obs.status in (OK, INFRA) and value is not None:  # INFRA with a value: the retry ran fine
                m.values.append(self.badness(value))
            elif obs.status != INFRA:  # an INFRA crash that did not repeat is not the code's doing
                m.failed.append(obs.status if obs.status != OK else DIVERGED)

    def badness(self, value: float) -> float:
        return value if self.ctx.mode == "min" else -value

    def sample(self, position: int) -> list[float]:
        """Values for statistics: failed runs count as the failure value (the worst outcome)."""
        m = self.at(position)
        counted = [s for s in m.failed if s == DIVERGED or self.crash_is_bad or m.values]
        return m.values + [self.failure_badness()] * len(counted)

    def failure_badness(self) -> float:
        """The configured failure value, else the worst finished run plus three noise sd (as in config search)."""
        if self.ctx.failure_value is not None:
            return self.badness(self.ctx.failure_value)
        seen = [v for m in self.data.values() for v in m.values]
        if not seen:
            return 1.0
        sd = stats.pooled_sd([m.values for m in self.data.values()])[0]
        if not math.isfinite(sd) or sd == 0.0:
            sd = (max(seen) - min(seen)) or abs(max(seen)) or 1.0
        return max(seen) + FAILURE_MARGIN_SD * sd

    # -- decisions --------------------------------------------------------------------------

    def noise(self) -> tuple[float, int]:
        """Seed noise sd pooled over every position measured, and its degrees of freedom."""
        return stats.pooled_sd([self.sample(k) for k in self.data])

    def compare(self, worse: list[float], better: list[float]) -> Comparison:
        return compare(worse, better, *self.noise())

    def regression(self) -> Comparison:
        """Bad vs good, in badness units."""
        return self.compare(self.sample(self.n), self.sample(0))

    def judge(self, position: int) -> Verdict:
        """Bad only if significantly worse than the good side; good only if better than the bad side."""
        m = self.at(position)
        if m.unrunnable() and not self.crash_is_bad:
            return Verdict(SKIP)
        values = self.sample(position)
        good, bad = self.reference(GOOD), self.reference(BAD)
        p_worse, p_better = self.compare(values, good).p, self.compare(bad, values).p
        alpha = self.decision_alpha()
        worse = p_worse < alpha and average(values) - average(good) >= self.ctx.min_effect
        better = p_better < alpha
        if worse and (not better or p_worse <= p_better):
            return Verdict(BAD, p_worse, p_better)
        if better:
            return Verdict(GOOD, p_worse, p_better)
        return Verdict(UNDECIDED, p_worse, p_better)

    def decision_alpha(self) -> float:
        """Per-commit level: about log2(n) decisions lie on a bisection path (Bonferroni over them)."""
        return self.ctx.alpha / max(1, math.ceil(math.log2(self.n + 1)))

    def reference(self, side: str) -> list[float]:
        """All runs at positions already judged `side` beyond the interval (monotone model), ends included."""
        lo, hi = self.interval()
        if side == GOOD:
            keep = [k for k in self.data if k == 0 or k <= lo and self._is(k, GOOD)]
        else:
            keep = [k for k in self.data if k == self.n or k >= hi and self._is(k, BAD)]
        return [v for k in sorted(keep) for v in self.sample(k)]

    def _is(self, position: int, status: str) -> bool:
        verdict = self.data[position].verdict
        return verdict is not None and verdict.status == status

    def interval(self) -> tuple[int, int]:
        """(last good position, first bad position) under the monotone model."""
        bad = [k for k, m in self.data.items() if m.verdict and m.verdict.status == BAD]
        hi = min(bad + [self.n])
        good = [k for k, m in self.data.items() if m.verdict and m.verdict.status == GOOD and k < hi]
        return max(good + [0]), hi

    def open_positions(self) -> tuple[list[int], list[int]]:
        """Inside the interval: (never measured, measured but still undecided with seeds left)."""
        lo, hi = self.interval()
        fresh, pending = [], []
        for k in range(lo + 1, hi):
            m = self.data.get(k)
            if m is None or m.runs == 0 and m.verdict is None:
                fresh.append(k)
            elif m.verdict and m.verdict.status == UNDECIDED and m.runs < self.options.max_seeds:
                pending.append(k)
        return fresh, pending

    def plan(self, slots: int | None = None) -> list[Request]:
        """One round: more seeds for undecided commits, then new commits k-secting the interval."""
        fresh, pending = self.open_positions()
        slots = max(1, self.ctx.parallel) if slots is None else slots
        requests: list[Request] = []
        for k in pending:
            requests += self.requests(k, min(self.options.seeds, self.options.max_seeds - self.at(k).runs))
        spare = slots - len(requests)
        if fresh and (spare >= self.options.seeds or not requests):
            count = max(1, spare // self.options.seeds)
            chosen = k_section(fresh, *self.interval(), count)
            per = max(self.options.seeds, spare // len(chosen))
            for k in chosen:
                requests += self.requests(k, min(per, self.options.max_seeds))
        return requests or self.verification()

    def verification(self) -> list[Request]:
        """Once the interval has closed: top up both boundary commits, so one unlucky verdict cannot stand."""
        lo, hi = self.interval()
        requests: list[Request] = []
        for k in (lo, hi):
            if 0 < k < self.n and self.at(k).runs < self.options.verify_seeds:
                requests += self.requests(k, self.options.verify_seeds - self.at(k).runs)
        return requests

    def settle(self) -> None:
        """(Re)judge every measured commit: references and the noise estimate grow each round."""
        for k in sorted(self.data):
            if 0 < k < self.n:
                self.at(k).verdict = self.judge(k)  # undecided at max seeds: treated like a skip


@dataclass(frozen=True)
class Comparison:
    """average(worse) - average(better) with a one-sided p (is it really worse?) and a 95% interval."""

    diff: float
    p: float
    ci_low: float
    ci_high: float


def compare(worse: list[float], better: list[float], sd: float, df: int) -> Comparison:
    """A t-test of `worse` against `better` using the noise sd pooled over every commit measured.

    Seed noise is the trainer's, the same at every commit, so pooling it gives the test far
    more degrees of freedom than a two-run Welch test would have.
    """
    if not worse or not better:
        return Comparison(math.nan, 1.0, -math.inf, math.inf)
    diff = average(worse) - average(better)
    if df <= 0 or not math.isfinite(sd):
        return Comparison(diff, 1.0, -math.inf, math.inf)
    se = sd * math.sqrt(1 / len(worse) + 1 / len(better))
    if se == 0.0:  # a deterministic trainer: any difference is certain
        return Comparison(diff, 0.0 if diff > 0 else 1.0, diff, diff)
    low, high = stats.t_interval(diff, se, df)
    return Comparison(diff, stats.t_p_value(diff / se, df, "greater"), low, high)


def average(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def k_section(candidates: list[int], lo: int, hi: int, count: int) -> list[int]:
    """Up to `count` candidates nearest the points splitting (lo, hi) into equal parts."""
    chosen: list[int] = []
    left = sorted(candidates)
    for i in range(1, count + 1):
        if not left:
            break
        target = lo + (hi - lo) * i / (count + 1)
        best = min(left, key=lambda k: (abs(k - target), k))
        chosen.append(best)
        left.remove(best)
    return sorted(chosen)


def bisect_commits(ctx: SearchContext, options: BisectOptions | None = None) -> Strategy:
    """Strategy generator: calibrate good vs bad, then k-sect the commits with adaptive seeds."""
    state = CommitBisection(ctx, options or BisectOptions())
    reproduced = yield from _calibrate(state)
    if reproduced is not None:
        return reproduced
    state.settle()
    while not budget_exhausted(state.ctx):
        requests = state.plan()
        if not requests:
            break
        observations = yield requests
        state.rounds += 1
        state.record(observations)
        state.settle()
    return conclude(state)


def _calibrate(state: CommitBisection) -> Generator[list[Request], list[Observation], Decision | None]:
    """Measure both ends until bad is significantly worse than good, or max seeds say it is not."""
    opts, n = state.options, state.n
    count = max(opts.calibration_seeds, 2)
    while True:
        requests = state.requests(0, count - state.at(0).runs) + state.requests(n, count - state.at(n).runs)
        if state.rounds == 0 and state.ctx.parallel - len(requests) >= opts.seeds:
            requests += state.plan(state.ctx.parallel - len(requests))  # idle slots start the k-section
        observations = yield requests
        state.rounds += 1
        state.record(observations)
        failed = _calibration_failure(state)
        if failed is not None:
            return failed
        regression = state.regression()
        if regression.p < state.ctx.alpha and regression.diff >= state.ctx.min_effect:
            return None
        if count >= opts.max_seeds or budget_exhausted(state.ctx):
            return not_reproduced(state)
        count = min(opts.max_seeds, count * 2)


def _calibration_failure(state: CommitBisection) -> Decision | None:
    good, bad = state.at(0), state.at(state.n)
    if good.unrunnable():
        verdict = "The good revision does not run (every trial crashed); nothing to compare against."
        return Decision(False, [], [], verdict, details=_details(state))
    if bad.unrunnable():
        state.crash_is_bad = True  # the regression is "it stopped running": crashing commits are bad
    return None


def not_reproduced(state: CommitBisection) -> Decision:
    regression = _effect(state, tuple(range(state.n)), 0, state.n)
    verdict = (
        f"The regression did not reproduce at this budget: bad - good = {regression.effect:+.4g} "
        f"(95% CI {regression.ci_low:+.4g} to {regression.ci_high:+.4g}, p = {regression.p_value:.3g}); "
        "try more steps or seeds."
    )
    return Decision(False, [], [], verdict, regression=regression, details=_details(state))


def conclude(state: CommitBisection) -> Decision:
    """The first bad commit if the interval closed on one, else the candidates left."""
    lo, hi = state.interval()
    regression = _effect(state, tuple(range(state.n)), 0, state.n)
    candidates = list(range(lo + 1, hi + 1))
    details = _details(state)
    details["candidates"] = [k - 1 for k in candidates]
    if len(candidates) == 1:
        culprit = _effect(state, (hi - 1,), lo, hi)
        if regression.effect:
            culprit.explained_fraction = culprit.effect / regression.effect
        verdict = f"Commit {state.ctx.factor_names[hi - 1]} is the first bad commit."
        if state.crash_is_bad:
            verdict = f"Commit {state.ctx.factor_names[hi - 1]} is the first commit at which the trainer no longer runs."
        return Decision(True, [[hi - 1]], [culprit], verdict, regression=regression, details=details)
    names = ", ".join(state.ctx.factor_names[k - 1] for k in candidates)
    why = "the budget ran out" if budget_exhausted(state.ctx) else "the commits between could not be tested or decided"
    verdict = f"The first bad commit is one of {len(candidates)}: {names} ({why})."
    return Decision(True, [], [], verdict, regression=regression, details=details)


def _effect(state: CommitBisection, factors: tuple[int, ...], lo: int, hi: int) -> Effect:
    """Effect of going from position lo to hi, in badness units, with a Welch 95% interval."""
    before, after = state.sample(lo), state.sample(hi)
    c = state.compare(after, before)
    return Effect(factors, c.diff, c.ci_low, c.ci_high, p_value=c.p, n=len(before) + len(after))


def _details(state: CommitBisection) -> dict[str, Any]:
    tested = []
    for k in sorted(state.data):
        m = state.data[k]
        values = state.sample(k)
        tested.append(
            {
                "position": k,
                "commit": state.ctx.factor_names[k - 1] if k else "good",
                "status": GOOD if k == 0 else BAD if k == state.n else (m.verdict.status if m.verdict else None),
                "mean": state.badness(average(values)) if values else None,  # back in metric units
                "runs": m.runs,
                "failed": len(m.failed),
                "p_worse_than_good": m.verdict.p_worse if m.verdict else None,
                "p_better_than_bad": m.verdict.p_better if m.verdict else None,
            }
        )
    return {"method": "commit k-section", "positions": tested, "crash_is_bad": state.crash_is_bad}
