"""The random-sweep baseline of the search benchmark: what its analyses name on planted culprits."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("optuna")

from benchmarks.sweep import (  # noqa: E402
    Answer,
    Noise,
    analyse,
    culprit_sets,
    draw_points,
    fanova_importance,
    run_sweep,
    sweep_data,
)
from bisect_runs.simulation import make_scenario  # noqa: E402
from bisect_runs.strategies.base import DIVERGED, OK, TIMEOUT, Observation  # noqa: E402


def sweep_of(kind: str, d: float, runs: int, seed: int):
    """A scenario with 12 factors and a sweep of it on fixed seeds."""
    sc = make_scenario(kind, 12, d, np.random.default_rng(seed))
    return sc, run_sweep(sc, runs, np.random.default_rng(seed + 100))


def test_points_start_with_a_and_b_then_mix_the_factors():
    points = draw_points(12, 40, np.random.default_rng(0))
    assert points[:2] == [frozenset(), frozenset(range(12))]
    share = np.mean([len(p) for p in points[2:]]) / 12
    assert 0.35 < share < 0.65


def test_forest_correlation_and_fanova_name_a_strong_single_culprit():
    sc, sw = sweep_of("single", 8, 24, seed=3)
    culprit = sc.truth[0][0]
    results = analyse(sw, 1, 24, Noise(8), seed=0, analyses=("forest", "correlation"))
    for name in ("forest", "correlation"):
        assert results[name] == (Answer(True, [[culprit]]), Answer(True, [[culprit]])), name
    assert int(np.argmax(fanova_importance(sw, seed=0))) == culprit


def test_ols_with_an_interaction_finds_an_and_pair_without_being_told():
    sc, sw = sweep_of("and2", 4, 40, seed=5)
    told, untold = analyse(sw, 2, 40, Noise(4), seed=0, analyses=("ols",))["ols"]
    assert told == untold == Answer(True, sc.truth)


def test_a_pair_is_one_and_set_only_when_its_product_carries_the_loss():
    and2, sw_and = sweep_of("and2", 4, 40, seed=7)
    or2, sw_or = sweep_of("or2", 4, 40, seed=7)
    add2, sw_add = sweep_of("additive2", 4, 40, seed=7)
    assert culprit_sets(sw_and, and2.truth[0]) == and2.truth
    for sc, sw in ((or2, sw_or), (add2, sw_add)):
        (i,), (j,) = sc.truth
        assert culprit_sets(sw, sorted((i, j))) == [[min(i, j)], [max(i, j)]], sc.kind


def test_no_regression_names_nothing_and_told_nothing_has_no_answer():
    _, sw = sweep_of("null", 4, 40, seed=13)  # uncorrected p < 0.05 would name 2, 1 and 1 factors here
    results = analyse(sw, 0, 40, Noise(4), seed=0, analyses=("correlation", "ols"))
    assert results == {"correlation": (None, Answer(False, [])), "ols": (None, Answer(False, []))}


def test_failed_runs_count_as_the_worst_loss_and_timeouts_give_no_number():
    observations = [
        Observation(frozenset(), 1, OK, 1.0),
        Observation(frozenset({0}), 2, OK, 2.5),
        Observation(frozenset({1}), 3, DIVERGED, None),
        Observation(frozenset({0, 1}), 4, TIMEOUT, None),
    ]
    sw = sweep_data(2, observations, "min")
    assert sw.X.tolist() == [[0, 0], [1, 0], [0, 1]]
    assert sw.y.tolist() == [1.0, 2.5, 2.5]
    assert sweep_data(2, observations[:2], "max").y.tolist() == [-1.0, -2.5]
