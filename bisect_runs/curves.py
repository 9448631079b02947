"""Learning curves: A's and B's reference curves, the early-stop rule and the projection to the full budget.

The calibration runs of A and B go the whole budget. From their curves, `reference` finds the
earliest logged step from which B is worse than A by at least `VISIBLE` seed-noise sds and by
`SHARE` of the final gap at every later step (None when that never holds: the regression is too
small, or appears too late, to judge early).
A later trial is stopped at the first logged step s past that point where it is within `NEAR`
sds of A's or B's mean curve (its outcome is then clear). Its value is projected from where it
sits against that curve at s, in seed-noise units: R_final + (x_s - R_s) * sd_final / sd_s for
R = A or B, so that a projection is as noisy as a full run (t = (x_s - A_s) / (B_s - A_s), where
it sits between A and B, is recorded beside it).
See docs/search.md ("Early stopping").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

History = Sequence[tuple[int, float]]

MIN_CURVES = 2  # full-length runs of each of A and B before any trial may stop early
VISIBLE = 6.0  # B - A at a step, in seed-noise sds, for that step to judge on
SHARE = 0.4  # ... and at least this share of the final B - A: the regression has mostly appeared
NEAR = 1.5  # a trial within this many sds of A's (or B's) curve at such a step is A-like (B-like)


@dataclass(frozen=True)
class EarlyStop:
    """Where a trial was stopped and what its full-budget value is projected to be."""

    step: int
    t: float  # where it sat between A (0) and B (1) at `step`
    value: float  # projected value at the full budget, in the metric's own direction
    like: str  # "A" or "B": the reference curve it was near

    def to_json(self) -> dict[str, float | int | str]:
        return {"step": self.step, "t": self.t, "projected": self.value, "like": self.like}


@dataclass(frozen=True)
class Reference:
    """Mean curves of A and B (as losses: higher is worse) at their common logged steps, and their noise."""

    steps: tuple[int, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]
    sd: tuple[float, ...]  # pooled seed sd of A and B at each step
    a_final: float  # mean reduced value of A's runs, as a loss
    b_final: float
    sd_final: float  # pooled seed sd of the reduced values
    start: int | None  # earliest step at which trials may be judged; None: every trial runs in full
    budget: int
    sign: float = 1.0  # +1 for mode min, -1 for mode max (losses are sign * value)

    def judge(self, history: History) -> EarlyStop | None:
        """The first logged step at which the run's outcome is clear, with its projection; None if none is."""
        if self.start is None:
            return None
        at = {step: i for i, step in enumerate(self.steps)}
        for step, value in history:
            i = at.get(step)
            if i is None or step < self.start or step >= self.budget or not math.isfinite(value):
                continue
            stop = self._clear(i, self.sign * value)
            if stop is not None:
                return stop
        return None

    def _clear(self, i: int, loss: float) -> EarlyStop | None:
        """The stop at the i-th reference step, when the run's loss there sits within NEAR sds of A or B."""
        gap = self.b[i] - self.a[i]
        t = (loss - self.a[i]) / gap
        near_a, near_b = abs(loss - self.a[i]), abs(loss - self.b[i])
        if min(near_a, near_b) > NEAR * self.sd[i]:
            return None  # between the bands or beyond them: not yet clear, or unusual enough to measure fully
        like_a = near_a <= near_b
        ref_s, ref_final = (self.a[i], self.a_final) if like_a else (self.b[i], self.b_final)
        projected = ref_final + (loss - ref_s) * self.sd_final / self.sd[i]
        return EarlyStop(self.steps[i], t, self.sign * projected, "A" if like_a else "B")



def reference(
    a_runs: Sequence[tuple[History, float]], b_runs: Sequence[tuple[History, float]], mode: str, budget: int
) -> Reference | None:
    """The reference of full-length A and B runs ((history, reduced value) each); None with too few curves."""
    if len(a_runs) < MIN_CURVES or len(b_runs) < MIN_CURVES:
        return None
    sign = 1.0 if mode == "min" else -1.0
    a_curves = [_as_losses(h, sign) for h, _ in a_runs]
    b_curves = [_as_losses(h, sign) for h, _ in b_runs]
    common = set.intersection(*(set(c) for c in a_curves + b_curves))
    steps = tuple(sorted(s for s in common if 0 < s <= budget))
    if not steps:
        return None
    a = tuple(statistics.fmean(c[s] for c in a_curves) for s in steps)
    b = tuple(statistics.fmean(c[s] for c in b_curves) for s in steps)
    sd = tuple(_pooled_sd([c[s] for c in a_curves], [c[s] for c in b_curves]) for s in steps)
    a_finals, b_finals = [sign * v for _, v in a_runs], [sign * v for _, v in b_runs]
    a_final, b_final = statistics.fmean(a_finals), statistics.fmean(b_finals)
    start = visible_from(steps, a, b, sd, b_final - a_final, budget)
    return Reference(steps, a, b, sd, a_final, b_final, _pooled_sd(a_finals, b_finals), start, budget, sign)


def visible_from(
    steps: Sequence[int], a: Sequence[float], b: Sequence[float], sd: Sequence[float], final_gap: float, budget: int
) -> int | None:
    """The earliest step (before the budget) from which B - A >= VISIBLE sds and >= SHARE of the
    final gap at every later logged step."""
    if not final_gap > 0:
        return None
    start = None
    for step, ai, bi, si in reversed(list(zip(steps, a, b, sd, strict=True))):
        gap = bi - ai
        separated = si > 0 and gap >= VISIBLE * si and gap >= SHARE * final_gap
        if not separated:
            break
        start = step
    if start is None or start >= budget:
        return None  # only visible at the very end: stopping there saves nothing
    return start


def _as_losses(history: History, sign: float) -> dict[int, float]:
    """A curve as {step: loss}, the last value of a step logged twice; non-finite points dropped."""
    return {int(s): sign * float(v) for s, v in history if math.isfinite(v)}


def _pooled_sd(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The seed sd of A and B at one step, pooled (each side's own mean removed)."""
    ss = sum((x - statistics.fmean(xs)) ** 2 for x in xs) + sum((y - statistics.fmean(ys)) ** 2 for y in ys)
    df = len(xs) + len(ys) - 2
    return math.sqrt(ss / df) if df > 0 else math.nan
