"""Statistics that judge numbers: Welch tests, least-squares effects, Holm, intervals, ratios.

Pure numpy/scipy on small arrays. Nothing here knows about configs, trials or strategies;
`docs/search.md` explains how the search uses each piece.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

ALTERNATIVES = ("two-sided", "greater", "less")
Values = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class TestResult:
    """A difference `b - a` with its standard error, Welch degrees of freedom, t, p and CI."""

    diff: float
    se: float
    df: float
    t: float
    p: float
    ci_low: float
    ci_high: float
    n_a: int
    n_b: int


@dataclass(frozen=True)
class Fit:
    """A least-squares fit: coefficients, their covariance and the residual noise estimate."""

    coef: np.ndarray
    cov: np.ndarray
    sigma: float
    df: int
    rank: int
    projector: np.ndarray  # pinv(X) @ X: a contrast c is estimable iff c @ projector == c

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))

    def contrast(self, c: np.ndarray) -> tuple[float, float]:
        """Estimate and standard error of `c @ coef`; se is inf when `c` is not estimable."""
        c = np.asarray(c, dtype=float)
        if not np.allclose(c @ self.projector, c, atol=1e-8):
            return float(c @ self.coef), math.inf
        return float(c @ self.coef), float(math.sqrt(max(c @ self.cov @ c, 0.0)))

    def covariance(self, c1: np.ndarray, c2: np.ndarray) -> float:
        """Covariance of two contrasts of the coefficients."""
        return float(np.asarray(c1) @ self.cov @ np.asarray(c2))


def t_quantile(level: float, df: float) -> float:
    """Two-sided critical t value for a `level` interval (normal when df is infinite)."""
    if not math.isfinite(df) or df > 1e6:
        return float(special.ndtri(0.5 + level / 2))
    return float(special.stdtrit(max(df, 1e-9), 0.5 + level / 2))


def t_interval(value: float, se: float, df: float, level: float = 0.95) -> tuple[float, float]:
    """The t-based confidence interval `value ± t * se`."""
    if not math.isfinite(se):
        return -math.inf, math.inf
    half = t_quantile(level, df) * se
    return value - half, value + half


def t_p_value(t: float, df: float, alternative: str = "two-sided") -> float:
    """p-value of a t statistic; `greater` tests for a positive true value."""
    _check_alternative(alternative)
    if math.isnan(t):
        return 1.0
    if alternative == "greater":
        return _cdf(-t, df)
    if alternative == "less":
        return _cdf(t, df)
    return float(min(1.0, 2 * _cdf(-abs(t), df)))


def _cdf(t: float, df: float) -> float:
    """Student t (normal when df is infinite) distribution function."""
    if not math.isfinite(df) or df > 1e6:
        return float(special.ndtr(t))
    return float(special.stdtr(max(df, 1e-9), t))


def welch(a: Values, b: Values, alternative: str = "two-sided", level: float = 0.95) -> TestResult:
    """Welch's unequal-variance t-test of mean(b) - mean(a); `greater` asks whether b is larger."""
    _check_alternative(alternative)
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(xa) < 2 or len(xb) < 2:
        raise ValueError("welch needs at least two values in each sample")
    va, vb = float(xa.var(ddof=1)) / len(xa), float(xb.var(ddof=1)) / len(xb)
    diff = float(xb.mean() - xa.mean())
    se = math.sqrt(va + vb)
    if se == 0.0:
        t = math.copysign(math.inf, diff) if diff else math.nan
        df = float(len(xa) + len(xb) - 2)
    else:
        t = diff / se
        df = float((va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1)))
    low, high = t_interval(diff, se, df, level) if se > 0 else (diff, diff)
    return TestResult(diff, se, df, t, t_p_value(t, df, alternative), low, high, len(xa), len(xb))


def holm(p_values: Values) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error control, in the input order)."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def least_squares(X: np.ndarray, y: np.ndarray) -> Fit:
    """Ordinary least squares with coefficient covariance; works when X is rank deficient."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    pinv = np.linalg.pinv(X)
    coef = pinv @ y
    rank = int(np.linalg.matrix_rank(X))
    df = len(y) - rank
    resid = y - X @ coef
    sigma = math.sqrt(float(resid @ resid) / df) if df > 0 else math.nan
    cov = (sigma**2 if df > 0 else math.inf) * (pinv @ pinv.T)
    return Fit(coef, cov, sigma, df, rank, pinv @ X)


def ratio_ci(
    num: float, den: float, var_num: float, var_den: float, cov: float, df: float, level: float = 0.95
) -> tuple[float, float, float]:
    """Ratio num/den with Fieller's interval; (-inf, inf) when den is not clearly nonzero."""
    ratio = num / den if den else math.nan
    if not (math.isfinite(var_num) and math.isfinite(var_den)):
        return ratio, -math.inf, math.inf
    t2 = t_quantile(level, df) ** 2
    a = den**2 - t2 * var_den
    if a <= 0:  # the denominator's interval contains zero: the ratio is unbounded
        return ratio, -math.inf, math.inf
    b = -2 * (num * den - t2 * cov)
    c = num**2 - t2 * var_num
    disc = b * b - 4 * a * c
    if disc < 0:
        return ratio, -math.inf, math.inf
    root = math.sqrt(disc)
    return ratio, (-b - root) / (2 * a), (-b + root) / (2 * a)


def pooled_sd(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """Pooled within-group standard deviation and its degrees of freedom (groups of one add nothing)."""
    ss, df = 0.0, 0
    for group in groups:
        x = np.asarray(group, dtype=float)
        if len(x) >= 2:
            ss += float(((x - x.mean()) ** 2).sum())
            df += len(x) - 1
    return (math.sqrt(ss / df) if df else math.nan), df


def _check_alternative(alternative: str) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {', '.join(ALTERNATIVES)}, not {alternative!r}")
