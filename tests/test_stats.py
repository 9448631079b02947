"""Statistics checked against scipy and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bisect_runs.stats import (
    holm,
    least_squares,
    pooled_sd,
    ratio_ci,
    t_interval,
    t_p_value,
    t_quantile,
    welch,
)

RNG = np.random.default_rng(1234)
A = RNG.normal(0.0, 1.0, 7)
B = RNG.normal(1.0, 2.0, 5)


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_welch_matches_scipy(alternative: str) -> None:
    ours = welch(A, B, alternative)
    ref = stats.ttest_ind(B, A, equal_var=False, alternative=alternative)
    assert ours.t == pytest.approx(ref.statistic)
    assert ours.p == pytest.approx(ref.pvalue)
    assert ours.df == pytest.approx(ref.df)
    assert ours.diff == pytest.approx(B.mean() - A.mean())


def test_welch_interval_matches_scipy() -> None:
    ours = welch(A, B)
    ci = stats.ttest_ind(B, A, equal_var=False).confidence_interval(0.95)
    assert (ours.ci_low, ours.ci_high) == pytest.approx((ci.low, ci.high))


def test_welch_needs_two_values_and_handles_zero_variance() -> None:
    with pytest.raises(ValueError, match="at least two"):
        welch([1.0], [2.0, 3.0])
    flat = welch([1.0, 1.0], [2.0, 2.0], "greater")
    assert flat.p == 0.0 and flat.diff == 1.0


def test_t_helpers_match_scipy() -> None:
    assert t_quantile(0.95, 4.5) == pytest.approx(stats.t.ppf(0.975, 4.5))
    assert t_quantile(0.9, math.inf) == pytest.approx(stats.norm.ppf(0.95))
    assert t_p_value(2.2, 6) == pytest.approx(2 * stats.t.sf(2.2, 6))
    assert t_p_value(2.2, 6, "greater") == pytest.approx(stats.t.sf(2.2, 6))
    assert t_p_value(2.2, 6, "less") == pytest.approx(stats.t.cdf(2.2, 6))
    low, high = t_interval(1.0, 0.5, 10)
    assert high - 1.0 == pytest.approx(0.5 * stats.t.ppf(0.975, 10))
    assert t_interval(1.0, math.inf, 3) == (-math.inf, math.inf)
    with pytest.raises(ValueError, match="alternative"):
        t_p_value(1.0, 3, "bigger")


def test_holm_matches_hand_computed_values() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_least_squares_matches_linregress() -> None:
    x = np.arange(12, dtype=float)
    y = 2.0 + 0.5 * x + np.random.default_rng(5).normal(0, 1, 12)
    fit = least_squares(np.column_stack([np.ones(12), x]), y)
    ref = stats.linregress(x, y)
    assert fit.coef == pytest.approx([ref.intercept, ref.slope])
    assert fit.se[1] == pytest.approx(ref.stderr)
    assert fit.se[0] == pytest.approx(ref.intercept_stderr)
    assert fit.df == 10 and fit.rank == 2


def test_least_squares_flags_contrasts_it_cannot_estimate() -> None:
    x = np.array([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [1.0, -1.0, -1.0]])  # columns 1, 2 aliased
    fit = least_squares(x, np.array([1.0, 0.0, 1.2, 0.1]))
    assert fit.rank == 2
    value, se = fit.contrast(np.array([0.0, 1.0, 1.0]))  # their sum is estimable
    assert math.isfinite(se) and value == pytest.approx(0.525)
    assert fit.contrast(np.array([0.0, 1.0, -1.0]))[1] == math.inf


def test_fieller_reduces_to_scaled_interval_when_the_denominator_is_exact() -> None:
    ratio, low, high = ratio_ci(2.0, 4.0, 0.25, 0.0, 0.0, 20)
    half = stats.t.ppf(0.975, 20) * 0.5
    assert ratio == 0.5
    assert (low, high) == pytest.approx(((2.0 - half) / 4.0, (2.0 + half) / 4.0))


def test_fieller_is_unbounded_when_the_denominator_may_be_zero() -> None:
    assert ratio_ci(1.0, 0.5, 0.1, 1.0, 0.0, 10)[1:] == (-math.inf, math.inf)


def test_fieller_covers_the_true_ratio_about_95_percent() -> None:
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(2000):
        num, den = rng.normal(0.6, 0.1), rng.normal(1.0, 0.1)
        _, low, high = ratio_ci(num, den, 0.01, 0.01, 0.0, math.inf)
        hits += low <= 0.6 <= high
    assert 0.93 < hits / 2000 < 0.97


def test_pooled_sd() -> None:
    groups = [[1.0, 2.0, 3.0], [4.0, 6.0], [9.0]]
    sd, df = pooled_sd(groups)
    assert df == 3
    assert sd == pytest.approx(math.sqrt((2.0 + 2.0) / 3))
    assert math.isnan(pooled_sd([[1.0]])[0])
