"""The early-stop rule and the projection on fixed learning curves (bisect_runs.curves)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bisect_runs.curves import MIN_CURVES, reference
from bisect_runs.simulation import SimulatedTrials, make_scenario
from bisect_runs.strategies import drive, make_strategy
from bisect_runs.strategies.base import SearchContext

STEPS = (50, 100, 150, 200)
# The demo's calibration curves of val_per (min): A learns, B (25x lower learning rate) barely does.
A_RUNS = [([(50, 0.987), (100, 0.793), (150, 0.614), (200, 0.483)], 0.483),
          ([(50, 0.978), (100, 0.772), (150, 0.597), (200, 0.481)], 0.481)]  # fmt: skip
B_RUNS = [([(50, 1.022), (100, 0.983), (150, 0.981), (200, 0.989)], 0.989),
          ([(50, 1.019), (100, 0.991), (150, 0.963), (200, 0.963)], 0.963)]  # fmt: skip


def curve(values: list[float]) -> list[tuple[int, float]]:
    return list(zip(STEPS, values, strict=True))


def test_the_regression_is_judged_once_most_of_it_has_appeared() -> None:
    ref = reference(A_RUNS, B_RUNS, "min", 200)
    assert ref is not None
    # at step 50 B - A is 8 sds but 7 % of the final gap: trials there are all near chance level
    assert ref.start == 100
    assert ref.a[1] == pytest.approx(0.7825) and ref.b[1] == pytest.approx(0.987)


def test_a_trial_near_b_stops_at_the_first_judged_step_and_projects_near_b() -> None:
    ref = reference(A_RUNS, B_RUNS, "min", 200)
    assert ref is not None
    stop = ref.judge(curve([1.06, 0.996, 0.991, 0.998]))
    assert stop is not None
    assert (stop.step, stop.like) == (100, "B")
    assert stop.t == pytest.approx((0.996 - 0.7825) / (0.987 - 0.7825))
    assert 0.96 < stop.value < 1.0  # B's final mean is 0.976


def test_a_trial_near_a_projects_from_its_deviation_in_noise_units() -> None:
    ref = reference(A_RUNS, B_RUNS, "min", 200)
    assert ref is not None
    stop = ref.judge(curve([0.985, 0.78, 0.6, 0.48]))
    assert stop is not None and stop.like == "A" and stop.step == 100
    expected = ref.a_final + (0.78 - ref.a[1]) * ref.sd_final / ref.sd[1]
    assert stop.value == pytest.approx(expected)


def test_a_trial_far_beyond_a_runs_its_full_budget() -> None:
    """A helpful change (the demo's LayerNorm) is measured in full: its size matters."""
    ref = reference(A_RUNS, B_RUNS, "min", 200)
    assert ref is not None
    assert ref.judge(curve([0.778, 0.53, 0.472, 0.429])) is None


def test_a_trial_between_a_and_b_runs_on() -> None:
    ref = reference(A_RUNS, B_RUNS, "min", 200)
    assert ref is not None
    assert ref.judge(curve([1.0, 0.88, 0.8, 0.73])) is None


def test_only_the_last_logged_step_is_never_judged() -> None:
    ref = reference(A_RUNS, B_RUNS, "min", 200)
    assert ref is not None
    assert ref.judge([(200, 0.483)]) is None


def test_late_regression_keeps_trials_full_until_it_appears() -> None:
    """The effect switches on at 60 % of the budget: nothing is judged before it shows."""
    steps = range(10, 101, 10)
    a = [[(s, 1.0 / s + 0.01 * k) for s in steps] for k in (0, 1)]
    b = [[(s, 1.0 / s + 0.01 * k + (0.5 if s >= 60 else 0.0)) for s in steps] for k in (0, 1)]
    ref = reference([(h, h[-1][1]) for h in a], [(h, h[-1][1]) for h in b], "min", 100)
    assert ref is not None and ref.start == 60
    # a culprit trial looks like A until step 60; it is judged B-like only there
    stop = ref.judge(b[0])
    assert stop is not None and (stop.step, stop.like) == (60, "B")


def test_no_reference_without_enough_full_curves_or_a_visible_regression() -> None:
    assert reference(A_RUNS[: MIN_CURVES - 1], B_RUNS, "min", 200) is None
    same = reference(A_RUNS, A_RUNS, "min", 200)
    assert same is not None and same.start is None and same.judge(A_RUNS[0][0]) is None
    no_steps = reference([([(200, 0.48)], 0.48)] * 2, [([(200, 0.98)], 0.98)] * 2, "min", 200)
    assert no_steps is not None and no_steps.start is None  # only the last step: nothing to stop on


def test_mode_max_mirrors_mode_min() -> None:
    flip = [([(s, -v) for s, v in h], -v) for h, v in A_RUNS], [([(s, -v) for s, v in h], -v) for h, v in B_RUNS]
    ref = reference(*flip, "max", 200)
    assert ref is not None and ref.start == 100
    stop = ref.judge([(s, -v) for s, v in curve([1.06, 0.996, 0.991, 0.998])])
    assert stop is not None and stop.like == "B" and -1.0 < stop.value < -0.96


def test_non_finite_points_are_never_judged() -> None:
    ref = reference(A_RUNS, B_RUNS, "min", 200)
    assert ref is not None
    assert ref.judge(curve([1.0, math.nan, math.inf, 0.9])) is None


@pytest.mark.parametrize(("kind", "earliest"), [("single", 20), ("late", 120)])
def test_simulated_search_stops_trials_early_and_finds_the_culprit(kind: str, earliest: int) -> None:
    """The benchmark's trials on fixed seeds, by the same rule as a real search: a late effect is judged late."""
    sc = make_scenario(kind, 12, 8.0, np.random.default_rng([3, 14]), prior="uniform")
    ctx = SearchContext(n_factors=12, factor_names=[f"f{i}" for i in range(12)], min_effect=0.25, prior_scores=sc.priors)
    trials = SimulatedTrials(sc, steps=200, evals=10)
    decision, runs, _ = drive(make_strategy("auto", ctx), trials.evaluate, ctx)
    assert sc.correct(decision.reproduced, decision.culprits)
    assert trials.stops and trials.trial_steps < runs * 200
    assert min(trials.stops) >= earliest  # 60 % of 200 steps for the late effect
