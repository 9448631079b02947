"""Effects of factors and factor sets, from one least-squares model fitted on every run.

The model has an intercept, a main effect per factor (coded -1 = A, +1 = B) and the
two-factor interactions among the candidate factors. Any quantity the search needs
("how much worse is A + T than A", "how much of the regression does reverting T repair")
is a linear contrast of it, so all runs, screening and confirmation alike, inform it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from bisect_runs.stats import Fit, holm, least_squares, ratio_ci, t_interval, t_p_value
from bisect_runs.strategies.base import Point


@dataclass(frozen=True)
class Contrast:
    """An estimated difference f(to) - f(from) in loss units, with se and df."""

    value: float
    se: float
    df: float

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        return t_interval(self.value, self.se, self.df, level)

    @property
    def p(self) -> float:
        return t_p_value(self.value / self.se, self.df) if self.se > 0 and math.isfinite(self.se) else 1.0


@dataclass(frozen=True)
class Fraction:
    """A share of the regression (1.0 = all of B - A) with its Fieller interval."""

    value: float
    low: float
    high: float
    level: float = 0.95


class Model:
    """Main effects of all factors plus interactions among `candidates`, fitted on (point, loss) runs."""

    def __init__(self, n: int, candidates: list[int], points: list[Point], y: np.ndarray) -> None:
        self.n = n
        self.pairs = list(itertools.combinations(sorted(candidates), 2))
        self.fit: Fit = least_squares(np.array([self.row(p) for p in points]), y)

    def row(self, point: Point) -> np.ndarray:
        x = np.array([1.0 if i in point else -1.0 for i in range(self.n)])
        inter = [x[i] * x[j] for i, j in self.pairs]
        return np.concatenate([[1.0], x, inter])

    @property
    def sigma(self) -> float:
        return self.fit.sigma

    def contrast(self, start: Point, end: Point) -> Contrast:
        c = self.row(end) - self.row(start)
        value, se = self.fit.contrast(c)
        return Contrast(value, se, self.fit.df)

    def fraction(self, start: Point, end: Point, a: Point, b: Point, level: float = 0.95) -> Fraction:
        """(f(end) - f(start)) / (f(b) - f(a)) with a Fieller interval."""
        return self.ratio(self.row(end) - self.row(start), self.row(b) - self.row(a), level)

    def ratio(self, cn: np.ndarray, cd: np.ndarray, level: float = 0.95) -> Fraction:
        """The ratio of two contrasts of the fit, with a Fieller interval."""
        num, se_n = self.fit.contrast(cn)
        den, se_d = self.fit.contrast(cd)
        ratio, low, high = ratio_ci(num, den, se_n**2, se_d**2, self.fit.covariance(cn, cd), self.fit.df, level)
        return Fraction(ratio, low, high, level)

    def estimable(self) -> bool:
        """Whether every main effect can be estimated from the runs so far (with residual df)."""
        k = self.n + 1
        block = self.fit.projector[:k, :k]
        return self.fit.df > 0 and bool(np.allclose(block, np.eye(k), atol=1e-8))

    def main_effects(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per factor: effect of switching it A -> B averaged over the rest, its se and Holm-adjusted p."""
        coef, se = self.fit.coef[1 : self.n + 1] * 2, self.fit.se[1 : self.n + 1] * 2
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(se > 0, coef / se, 0.0)
        raw = [t_p_value(float(v), self.fit.df) if self.fit.df > 0 else 1.0 for v in t]
        return coef, se, np.asarray(holm(raw))

    def interaction_vector(self, i: int, j: int) -> np.ndarray:
        """The synergy of i and j, f(A+ij) - f(A+i) - f(A+j) + f(A), as a contrast vector."""
        a: Point = frozenset()
        return self.row(frozenset({i, j})) - self.row(frozenset({i})) - self.row(frozenset({j})) + self.row(a)

    def synergy(self, i: int, j: int, level: float = 0.95) -> Fraction:
        """The interaction of i and j as a share of the regression (AND ~ +1, additive ~ 0, OR ~ -1)."""
        a: Point = frozenset()
        b: Point = frozenset(range(self.n))
        return self.ratio(self.interaction_vector(i, j), self.row(b) - self.row(a), level)
