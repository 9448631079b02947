"""Everything observed so far, in "loss" orientation (higher = worse), failures counted as the worst.

A failed run (diverged, crashed, timed out) is never dropped: it counts as the failure
value, `ctx.failure_value` when given, else the worst finished value seen so far plus the
largest of: three noise standard deviations, the spread of finished values, twice
`min_effect` (so that a failure always reads as clearly worse than any finished run). Infrastructure failures are kept aside, not judged.
So are the crashes of a point that crashes no more often than the rest of the search (a flaky
trainer or machine, see bisect_runs.crashes): only a point's own crashes count against it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from bisect_runs.crashes import crashes_are_the_points_own
from bisect_runs.stats import pooled_sd
from bisect_runs.strategies.base import (
    CRASHED,
    FAILED,
    INFRA,
    OK,
    Observation,
    Point,
    Request,
    SearchContext,
)

FAILURE_MARGIN_SD = 3.0  # how far beyond the worst finished run a failure lands, in noise sd


@dataclass
class Evidence:
    """The observation log of one search plus the seeds it has handed out."""

    ctx: SearchContext
    observations: list[Observation] = field(default_factory=list)
    infra: list[Observation] = field(default_factory=list)
    requested: set[tuple[Point, int]] = field(default_factory=set)
    next_seed: int = 0

    def __post_init__(self) -> None:
        self.next_seed = self.ctx.seed_base
        self.sign = 1.0 if self.ctx.mode == "min" else -1.0

    # -- seeds and requests --------------------------------------------------------------

    def fresh_seed(self) -> int:
        seed = self.next_seed
        self.next_seed += 1
        return seed

    def request(self, point: Point, seed: int | None = None, full: bool = False) -> Request:
        """A request for `point`; a fresh seed when `seed` is None or that (point, seed) was already run.
        full: it runs the whole budget, never stopped early."""
        if seed is None or (point, seed) in self.requested:
            seed = self.fresh_seed()
            while (point, seed) in self.requested:
                seed = self.fresh_seed()
        self.requested.add((point, seed))
        return Request(point, seed, full)

    def add(self, observations: list[Observation]) -> None:
        for o in observations:
            (self.infra if o.status == INFRA else self.observations).append(o)

    # -- values ------------------------------------------------------------------------

    def ok_losses(self) -> dict[Point, list[float]]:
        out: dict[Point, list[float]] = defaultdict(list)
        for o in self.observations:
            if o.status == OK and o.value is not None and math.isfinite(o.value):
                out[o.point].append(self.sign * o.value)
        return out

    def noise_sd(self) -> float:
        """Pooled within-point sd of finished runs (nan when nothing is replicated)."""
        return pooled_sd(list(self.ok_losses().values()))[0]

    def failure_loss(self) -> float:
        """The loss a failed run counts as (see the module docstring)."""
        if self.ctx.failure_value is not None:
            return self.sign * self.ctx.failure_value
        ok = [v for vs in self.ok_losses().values() for v in vs]
        if not ok:
            return 1.0
        sd = self.noise_sd()
        sd = sd if math.isfinite(sd) else 0.0
        margin = max(FAILURE_MARGIN_SD * sd, max(ok) - min(ok), 2 * self.ctx.min_effect)
        return max(ok) + (margin or abs(max(ok)) or 1.0)

    def is_failed(self, o: Observation) -> bool:
        return o.status in FAILED or o.value is None or not math.isfinite(o.value)

    def judged(self) -> list[Observation]:
        """The runs a verdict weighs: every one but the crashes a point shares with the whole search."""
        own = self.crashing_points()
        return [o for o in self.observations if o.status != CRASHED or o.point in own]

    def crashing_points(self) -> set[Point]:
        """Points that crash more often than the search's background rate explains (their crashes are theirs)."""
        counts: dict[Point, list[int]] = defaultdict(lambda: [0, 0])
        for o in self.observations:
            counts[o.point][0] += max(1, o.attempts)
            counts[o.point][1] += max(o.crashed_attempts, int(o.status == CRASHED))
        # a point that crashed at every attempt looks like a variant's crash: not part of the background
        background = [(a, c) for a, c in counts.values() if c < a]
        all_a, all_c = sum(a for a, _ in background), sum(c for _, c in background)
        own = set()
        for point, (a, c) in counts.items():
            bg_a, bg_c = (all_a - a, all_c - c) if c < a else (all_a, all_c)
            if crashes_are_the_points_own(c, a, bg_c, bg_a):
                own.add(point)
        return own

    def table(self) -> tuple[list[Point], np.ndarray]:
        """Every judged run as (point, loss), failures at the failure loss."""
        worst = self.failure_loss()
        judged = self.judged()
        points = [o.point for o in judged]
        y = [worst if self.is_failed(o) else self.sign * float(o.value) for o in judged]  # type: ignore[arg-type]
        return points, np.asarray(y, dtype=float)

    def grouped(self, measured: bool = False) -> dict[Point, list[float]]:
        """Judged losses (failures at the failure loss) per point.
        measured: a point that has runs of the whole budget keeps only those (no projections)."""
        judged = self.judged()
        full = {o.point for o in judged if not o.projected} if measured else set()
        out: dict[Point, list[float]] = defaultdict(list)
        for o, v in zip(judged, self.table()[1], strict=True):
            if not (o.projected and o.point in full):
                out[o.point].append(float(v))
        return out

    def losses(self, point: Point, seeds: set[int] | None = None) -> list[float]:
        """Judged losses at `point`, only those run on `seeds` when given."""
        points, y = self.table()
        judged = zip(points, y, self.judged(), strict=True)
        return [float(v) for p, v, o in judged if p == point and (seeds is None or o.seed in seeds)]

    def failure_rates(self) -> dict[Point, tuple[int, int]]:
        """Per point: (failed runs, judged runs)."""
        out: dict[Point, list[int]] = defaultdict(lambda: [0, 0])
        for o in self.judged():
            out[o.point][0] += self.is_failed(o)
            out[o.point][1] += 1
        return {p: (f, n) for p, (f, n) in out.items()}

    def count(self, point: Point, full: bool = False) -> int:
        """Judged runs at `point` (full: only those that ran the whole budget, no projection)."""
        return sum(1 for o in self.judged() if o.point == point and not (full and o.projected))

    # -- naming ------------------------------------------------------------------------

    def label(self, point: Point) -> str:
        """A human name: A, B, A + {x, y} or B - {z}."""
        n = self.ctx.n_factors
        names = self.ctx.factor_names or [str(i) for i in range(n)]
        if not point:
            return "A"
        if len(point) == n:
            return "B"
        if len(point) <= n / 2:
            return "A + {" + ", ".join(names[i] for i in sorted(point)) + "}"
        return "B - {" + ", ".join(names[i] for i in sorted(set(range(n)) - point)) + "}"
