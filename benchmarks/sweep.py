"""A random-sweep baseline: random A/B points at the search's budget, analysed the way users rank sweeps.

Each run sets every factor to A's or B's value with probability 1/2 (A and B themselves are the
first two runs, as a user has them already), on a fresh seed, through the same simulator as the
search. Four analyses name the culprits: random-forest impurity importance (scikit-learn, as
W&B's parameter importance), absolute Pearson correlation with the loss, Optuna's fANOVA, and
ordinary least squares with main effects and one pairwise interaction at a time. Each answers
"told the count" (its top k factors, k = the true number of culprit factors) and "not told"
(a selection rule at a 5 % family-wise level: Bonferroni for correlation and OLS, a simulated
null threshold for the importances). Named factors become culprit sets by one rule for every
analysis (`culprit_sets`); docs/search.md, "Against a random sweep", has the figures.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.importance import FanovaImportanceEvaluator
from sklearn.ensemble import RandomForestRegressor

from bisect_runs.simulation import Scenario, make_scenario
from bisect_runs.stats import least_squares, t_p_value
from bisect_runs.strategies.base import CRASHED, DIVERGED, OK, Observation, Point, Request

ANALYSES = ("forest", "correlation", "fanova", "ols")
ALPHA = 0.05  # family-wise error of every "not told" rule
NULL_SWEEPS = round(1 / ALPHA) - 1  # a top importance above all 19 null ones has chance 1/20 under no regression
FRESH_SEED = 1_000_000  # sweep seeds start here, far from any seed a strategy draws
FOREST_TREES = 50
FANOVA_TREES = 16  # Optuna's default is 64; 16 keep a benchmark cell within minutes

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Sweep:
    """A finished sweep: X[r, i] = 1 when run r had factor i at B's value, y[r] its loss (lower is better)."""

    X: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class Answer:
    """What an analysis says: did B regress, and which sets of factors cause it."""

    reproduced: bool
    culprits: list[list[int]]


@dataclass(frozen=True)
class Noise:
    """The simulator settings of a benchmark cell, for the null sweeps that calibrate a threshold."""

    d: float
    innocent_sd: float = 0.03
    shared: float = 0.0
    timeout: float = 0.0
    tails: float = 0.0


def draw_points(n: int, runs: int, rng: np.random.Generator) -> list[Point]:
    """A, B, then random points with each factor at B's value with probability 1/2."""
    points = [frozenset(), frozenset(range(n))]
    points += [frozenset(np.flatnonzero(rng.random(n) < 0.5).tolist()) for _ in range(runs - 2)]
    return points[:runs]


def run_sweep(sc: Scenario, runs: int, rng: np.random.Generator) -> Sweep:
    """Run `runs` sweep points through the scenario's simulator, one fresh seed each."""
    requests = [Request(p, FRESH_SEED + k) for k, p in enumerate(draw_points(sc.n, runs, rng))]
    return sweep_data(sc.n, sc.evaluate(requests), sc.mode)


def sweep_data(n: int, observations: Sequence[Observation], mode: str) -> Sweep:
    """Design and losses: diverged or crashed runs count as the worst loss seen, timeouts give no number."""
    sign = 1.0 if mode == "min" else -1.0
    finished = [sign * float(o.value) for o in observations if o.status == OK and o.value is not None]
    worst = max(finished, default=0.0)
    rows, y = [], []
    for o in observations:
        if o.status == OK and o.value is not None:
            y.append(sign * float(o.value))
        elif o.status in (DIVERGED, CRASHED):
            y.append(worst)
        else:
            continue
        rows.append([1.0 if i in o.point else 0.0 for i in range(n)])
    return Sweep(np.array(rows, dtype=float).reshape(len(rows), n), np.array(y, dtype=float))


def forest_importance(sw: Sweep, seed: int) -> np.ndarray:
    """Impurity importance of each factor in a random forest fitted to the loss."""
    if len(sw.y) < 2:
        return np.zeros(sw.X.shape[1])
    forest = RandomForestRegressor(n_estimators=FOREST_TREES, random_state=seed).fit(sw.X, sw.y)
    return np.asarray(forest.feature_importances_, dtype=float)


def fanova_importance(sw: Sweep, seed: int) -> np.ndarray:
    """Optuna's fANOVA importance of each factor, from a study of the sweep's runs (categorical A/B)."""
    n = sw.X.shape[1]
    if len(sw.y) < 2:
        return np.zeros(n)
    names = [f"f{i}" for i in range(n)]
    space: dict[str, BaseDistribution] = {name: CategoricalDistribution(["A", "B"]) for name in names}
    study = optuna.create_study()
    study.add_trials([
        optuna.trial.create_trial(
            params={name: "AB"[int(x)] for name, x in zip(names, row, strict=True)}, distributions=space, value=float(v)
        )
        for row, v in zip(sw.X, sw.y, strict=True)
    ])
    importance = FanovaImportanceEvaluator(n_trees=FANOVA_TREES, seed=seed).evaluate(study)
    return np.array([importance[name] for name in names], dtype=float)


def correlation(sw: Sweep) -> tuple[np.ndarray, np.ndarray]:
    """Absolute Pearson correlation of each factor with the loss, and its two-sided p-value."""
    m, n = sw.X.shape
    r, p = np.zeros(n), np.ones(n)
    if m < 3 or np.std(sw.y) == 0:
        return r, p
    for i in range(n):
        if np.std(sw.X[:, i]) > 0:
            r[i] = abs(float(np.corrcoef(sw.X[:, i], sw.y)[0, 1]))
            t = r[i] * np.sqrt((m - 2) / max(1 - r[i] ** 2, 1e-12))
            p[i] = t_p_value(float(t), m - 2)
    return r, p


def coefficients(design: np.ndarray, y: np.ndarray, columns: Sequence[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """OLS estimates, |t| of the given columns (0 where not estimable) and the residual df."""
    fit = least_squares(design, y)
    est, t = fit.coef[list(columns)].astype(float), np.zeros(len(columns))
    if fit.df <= 0:  # as many coefficients as runs: estimates, but no noise to judge them by
        return est, t, fit.df
    for k, c in enumerate(columns):
        e = np.zeros(design.shape[1])
        e[c] = 1.0
        est[k], se = fit.contrast(e)
        if np.isfinite(se) and se > 0:
            t[k] = abs(est[k]) / se
    return est, t, fit.df


def two_sided_p(t: np.ndarray, df: int) -> np.ndarray:
    """Two-sided p-values of |t| statistics (1 where t = 0)."""
    return np.array([t_p_value(float(x), df) if x > 0 and df > 0 else 1.0 for x in t])


def ols_mains(sw: Sweep) -> tuple[np.ndarray, np.ndarray]:
    """|t| and two-sided p-value of each factor's main effect in loss ~ 1 + every factor."""
    n = sw.X.shape[1]
    _, t, df = coefficients(np.column_stack([np.ones(len(sw.y)), sw.X]), sw.y, range(1, n + 1))
    return t, two_sided_p(t, df)


def pair_design(sw: Sweep, pair: tuple[int, int]) -> np.ndarray:
    """loss ~ 1 + every factor + the product of the pair's two factors."""
    i, j = pair
    return np.column_stack([np.ones(len(sw.y)), sw.X, sw.X[:, i] * sw.X[:, j]])


def interaction_p(sw: Sweep) -> dict[tuple[int, int], float]:
    """Two-sided p-value of each pair's interaction term, one OLS fit per pair."""
    n = sw.X.shape[1]
    out = {}
    for pair in ((i, j) for i in range(n) for j in range(i + 1, n)):
        _, t, df = coefficients(pair_design(sw, pair), sw.y, [n + 1])
        out[pair] = float(two_sided_p(t, df)[0])
    return out


def and_pair(sw: Sweep, pair: tuple[int, int]) -> bool:
    """A pair acts as one AND set when its product term outweighs both of its main effects."""
    i, j = pair
    n = sw.X.shape[1]
    est, _, _ = coefficients(pair_design(sw, pair), sw.y, [1 + i, 1 + j, n + 1])
    return bool(est[2] > max(est[0], est[1]))


def culprit_sets(sw: Sweep, named: Sequence[int]) -> list[list[int]]:
    """Named factors as culprit sets: factors joined by AND pairs form one set, the rest stand alone."""
    group = {i: {i} for i in named}
    for a, b in ((a, b) for a in named for b in named if a < b):
        if group[a] is not group[b] and and_pair(sw, (a, b)):
            merged = group[a] | group[b]
            for f in merged:
                group[f] = merged
    return [list(s) for s in sorted({tuple(sorted(g)) for g in group.values()})]


def top(scores: np.ndarray, k: int) -> list[int]:
    """The k highest-scoring factors (lower index first on ties)."""
    return sorted(int(i) for i in np.argsort(-scores, kind="stable")[:k])


@functools.cache
def null_threshold(analysis: str, n: int, runs: int, noise: Noise) -> float:
    """The largest top importance over NULL_SWEEPS sweeps of the null scenario of this size and noise."""
    tops = []
    for k in range(NULL_SWEEPS):
        rng = np.random.default_rng([k, n, runs, 0x5EED])
        sc = make_scenario(
            "null", n, noise.d, rng, innocent_sd=noise.innocent_sd, shared=noise.shared,
            timeout=noise.timeout, tails=noise.tails,
        )
        tops.append(float(importance(analysis, run_sweep(sc, runs, rng), k).max(initial=0.0)))
    return max(tops)


def importance(analysis: str, sw: Sweep, seed: int) -> np.ndarray:
    """An importance analysis's score per factor (higher = more likely a culprit)."""
    if analysis == "forest":
        return forest_importance(sw, seed)
    if analysis == "fanova":
        return fanova_importance(sw, seed)
    raise ValueError(f"{analysis!r} is not an importance analysis; valid: forest, fanova")


def selection(name: str, sw: Sweep, runs: int, noise: Noise, seed: int) -> tuple[np.ndarray, list[int]]:
    """An analysis's score per factor (its ranking) and the factors its "not told" rule names."""
    n = sw.X.shape[1]
    if name in ("forest", "fanova"):
        scores = importance(name, sw, seed)
        return scores, [i for i in range(n) if scores[i] > null_threshold(name, n, runs, noise)]
    if name == "correlation":
        r, p = correlation(sw)
        return r, [i for i in range(n) if p[i] < ALPHA / n]
    if name == "ols":  # one family: n main effects and n(n-1)/2 interactions
        t, p_main = ols_mains(sw)
        pairs = interaction_p(sw)
        tests = n + len(pairs)
        named = {i for i in range(n) if p_main[i] < ALPHA / tests}
        named |= {f for pair, q in pairs.items() if q < ALPHA / tests for f in pair}
        return t, sorted(named)
    raise ValueError(f"unknown analysis {name!r}; valid: {', '.join(ANALYSES)}")


def analyse(
    sw: Sweep, k: int, runs: int, noise: Noise, seed: int, analyses: Sequence[str] = ANALYSES
) -> dict[str, tuple[Answer | None, Answer]]:
    """Each analysis's answer told the count k (None when k = 0) and not told it."""
    out: dict[str, tuple[Answer | None, Answer]] = {}
    for name in analyses:
        scores, named = selection(name, sw, runs, noise, seed)
        out[name] = (told(sw, scores, k), answer(sw, named))
    return out


def told(sw: Sweep, scores: np.ndarray, k: int) -> Answer | None:
    """The answer naming the top k factors; None when there is nothing to name."""
    return Answer(True, culprit_sets(sw, top(scores, k))) if k else None


def answer(sw: Sweep, named: Sequence[int]) -> Answer:
    """The answer naming these factors: B regressed when any factor is named."""
    return Answer(bool(named), culprit_sets(sw, named))


def score_sweep(
    sc: Scenario, runs: int, rng: np.random.Generator, noise: Noise, seed: int = 0
) -> dict[str, tuple[bool | None, bool]]:
    """Per analysis: is the told answer right (None when the truth names no factor), is the untold one."""
    k = len({f for c in sc.truth for f in c})
    results = analyse(run_sweep(sc, runs, rng), k, runs, noise, seed)
    return {
        name: (None if t is None else sc.correct(t.reproduced, t.culprits), sc.correct(u.reproduced, u.culprits))
        for name, (t, u) in results.items()
    }
