"""What strategies see and say: rounds of (point, seed) requests in, observations back.

A point is the set of factor indices set to the bad config's value: frozenset() is the
good config A, frozenset(range(n)) is the bad config B. A strategy is a generator that
yields one round (a list of requests, all independent, run concurrently) at a time and
receives the observations of that round in the same order; it returns a `Decision`.
The same generator is driven by real trials (`bisect_runs.search`) and by the in-process
simulator of `benchmarks/search_suite.py`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

Point = frozenset[int]

# Observation statuses. "infra" = a crash that did not repeat on retry: not judged.
OK, DIVERGED, CRASHED, TIMEOUT, INFRA = "ok", "diverged", "crashed", "timeout", "infra"
FAILED = frozenset({DIVERGED, CRASHED, TIMEOUT})


@dataclass(frozen=True)
class Request:
    point: Point
    seed: int
    full: bool = False  # run the whole budget even in an exploring round (a verdict's numbers come from it)


@dataclass(frozen=True)
class Observation:
    point: Point
    seed: int
    status: str
    value: float | None  # the reduced metric; None unless status == "ok"
    attempts: int = 1  # runs of this trial, retries included
    crashed_attempts: int = 0  # of them crashed (a crashed status counts one even when left 0)
    projected: bool = False  # stopped early: `value` is its projection to the full budget


@dataclass
class Effect:
    """A measured effect of reverting/applying a set of factors, in metric units (positive = worse)."""

    factors: tuple[int, ...]
    effect: float
    ci_low: float
    ci_high: float
    explained_fraction: float | None = None
    p_value: float | None = None
    n: int = 0


@dataclass
class Decision:
    reproduced: bool
    culprits: list[list[int]]  # each inner list: one minimal set of factor indices
    effects: list[Effect]
    verdict: str
    regression: Effect | None = None  # B vs A
    details: dict[str, Any] = field(default_factory=dict)  # classification, masking, divergence rates, rounds


@dataclass
class SearchContext:
    """What a strategy knows about the problem and its budgets."""

    n_factors: int
    factor_names: list[str]
    mode: str = "min"  # "min": lower metric is better; "max": higher is better
    min_effect: float = 0.0  # smallest regression (metric units) worth reporting
    parallel: int = 4
    max_runs: int | None = None
    alpha: float = 0.05
    failure_value: float | None = None  # metric value a diverged/crashed run counts as
    prior_scores: list[float] = field(default_factory=list)  # impact scores, same order as factors
    seeds: int | None = None  # seeds per arm for oat/ddmin and the first calibration look (--seeds)
    seed_base: int = 0
    runs_used: int = 0  # maintained by the driver
    out_of_time: bool = False  # set by the driver when --max-hours is exhausted

    def budget_left(self) -> int | None:
        return None if self.max_runs is None else max(0, self.max_runs - self.runs_used)


Strategy = Generator[list[Request], list[Observation], Decision]
