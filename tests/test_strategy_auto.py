"""The default strategy on simulated regressions: every scenario the search must decide."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bisect_runs.simulation import Scenario, make_scenario
from bisect_runs.strategies import drive, make_strategy
from bisect_runs.strategies.base import Decision, Observation, Request, SearchContext

N = 12


def context(sc: Scenario, **overrides: object) -> SearchContext:
    settings: dict[str, object] = dict(
        n_factors=sc.n,
        factor_names=[f"key{i}" for i in range(sc.n)],
        parallel=4,
        min_effect=0.25,
        prior_scores=sc.priors,
        mode=sc.mode,
    )
    settings.update(overrides)
    return SearchContext(**settings)  # type: ignore[arg-type]


def solve(sc: Scenario, strategy: str = "auto", **overrides: object) -> tuple[Decision, int, int, SearchContext]:
    ctx = context(sc, **overrides)
    decision, runs, rounds = drive(make_strategy(strategy, ctx), sc.evaluate, ctx)
    return decision, runs, rounds, ctx


def scenario(kind: str, d: float, seed: int, n: int = N, **kw: object) -> Scenario:
    return make_scenario(kind, n, d, np.random.default_rng(seed), **kw)  # type: ignore[arg-type]


def culprit_sets(decision: Decision) -> set[frozenset[int]]:
    return {frozenset(c) for c in decision.culprits}


@pytest.mark.parametrize("kind", ["single", "additive2", "and2", "or2", "mask", "nan_and"])
@pytest.mark.parametrize("d", [30.0, 4.0])
def test_finds_the_culprits(kind: str, d: float) -> None:
    """Near-deterministic (d=30) and noisy (d=4) objectives, fixed seeds."""
    for seed in (1, 2, 3):
        sc = scenario(kind, d, seed)
        decision, runs, rounds, _ = solve(sc)
        assert sc.correct(decision.reproduced, decision.culprits), (seed, sc.truth, decision.verdict)
        assert runs <= 140 and rounds <= 35


@pytest.mark.parametrize(
    ("kind", "classification"),
    [("single", "single"), ("additive2", "additive"), ("and2", "AND"), ("or2", "OR"), ("nan_and", "AND")],
)
def test_classifies_the_pair(kind: str, classification: str) -> None:
    decision, *_ = solve(scenario(kind, 30.0, 11))
    assert decision.details["classification"] == classification


def test_reports_masking_with_its_effect() -> None:
    sc = scenario("mask", 30.0, 4)
    decision, *_ = solve(sc)
    helper = int(np.argmin(sc.main))
    masking = decision.details["masking"]
    assert [m["factor"] for m in masking] == [helper]
    assert masking[0]["effect"] == pytest.approx(-0.5, abs=0.1)
    assert "Masking" in decision.verdict


def test_reports_divergence_rates() -> None:
    sc = scenario("nan_and", 8.0, 5)
    decision, *_ = solve(sc)
    rates = decision.details["divergence_rates"]
    assert rates["A"] == 0.0
    assert 0.4 <= rates["B"] <= 1.0
    assert decision.details["failure_loss"] > sc.mean(frozenset(range(N)))


def test_no_regression_abstains_with_the_measured_difference() -> None:
    for seed in (1, 2, 3):
        decision, runs, rounds, _ = solve(scenario("null", 4.0, seed))
        assert not decision.reproduced and decision.culprits == []
        assert decision.regression is not None
        assert decision.regression.ci_low <= decision.regression.effect <= decision.regression.ci_high
        assert "raise --steps" in decision.details["hint"] and "did not reproduce" in decision.verdict
        assert runs <= 24 and rounds <= 6


def test_no_regression_without_min_effect_still_abstains() -> None:
    decision, *_ = solve(scenario("null", 4.0, 8), min_effect=0.0)
    assert not decision.reproduced


def test_diffuse_regression_is_called_diffuse() -> None:
    for seed in (1, 2):
        decision, *_ = solve(scenario("diffuse", 8.0, seed))
        assert decision.reproduced and decision.culprits == []
        assert decision.details["classification"] == "diffuse" and "diffuse" in decision.verdict


def test_consistently_crashing_bystander_counts_as_failure_not_culprit() -> None:
    sc = scenario("crash", 8.0, 3)
    decision, *_ = solve(sc)
    assert culprit_sets(decision) == {frozenset(sc.truth[0])}
    assert any(rate == 1.0 for rate in decision.details["divergence_rates"].values())


def test_infrastructure_failures_are_not_judged() -> None:
    sc = scenario("single", 8.0, 6)
    sc.infra = 0.15
    decision, *_ = solve(sc)
    assert culprit_sets(decision) == {frozenset(sc.truth[0])}
    assert decision.details["infra_failures"] > 0


def test_max_mode_and_metric_units() -> None:
    sc = scenario("single", 8.0, 7, mode="max")
    decision, *_ = solve(sc)
    assert culprit_sets(decision) == {frozenset(sc.truth[0])}
    assert decision.regression is not None and decision.regression.effect == pytest.approx(1.0, abs=0.3)


def test_given_failure_value_is_used() -> None:
    sc = scenario("nan_and", 8.0, 2)
    decision, *_ = solve(sc, failure_value=50.0)
    assert decision.details["failure_loss"] == 50.0
    assert sc.correct(decision.reproduced, decision.culprits)


def test_paired_seeds_start_at_seed_base_and_rounds_fill_every_slot() -> None:
    sc = scenario("and2", 8.0, 9)
    decision, runs, rounds, ctx = solve(sc, seed_base=1000, parallel=3)
    log = decision.details["rounds"]
    assert len(log) == rounds and sum(len(r["points"]) for r in log) == runs == ctx.runs_used
    assert all(len(r["points"]) == 3 for r in log)
    first = log[0]
    assert min(first["seeds"]) == 1000 and first["points"][0] == [] and first["points"][1] == list(range(N))
    assert first["seeds"][0] == first["seeds"][1]  # A and B paired
    assert {r["phase"] for r in log} >= {"calibrate", "screen", "confirm"}


def test_run_budget_returns_the_best_current_answer() -> None:
    sc = scenario("single", 4.0, 1)
    decision, runs, _, _ = solve(sc, max_runs=10)
    assert runs <= 10
    assert decision.details["complete"] is False


def test_time_budget_stops_the_search() -> None:
    sc = scenario("single", 4.0, 1)
    ctx = context(sc)
    rounds = 0

    def evaluate(requests):  # type: ignore[no-untyped-def]
        nonlocal rounds
        rounds += 1
        ctx.out_of_time = rounds >= 3
        return sc.evaluate(requests)

    decision, runs, n_rounds = drive(make_strategy("auto", ctx), evaluate, ctx)
    assert n_rounds == 3 and decision.details["complete"] is False


def test_effects_have_intervals_and_explained_fractions() -> None:
    sc = scenario("additive2", 30.0, 3)
    decision, *_ = solve(sc)
    first = decision.effects[0]
    assert first.ci_low <= first.effect <= first.ci_high
    assert first.explained_fraction == pytest.approx(0.5, abs=0.15)
    joint = [e for e in decision.effects if len(e.factors) == 2]
    assert joint and joint[0].explained_fraction == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_few_factors(n: int) -> None:
    main = np.zeros(n)
    main[n - 1] = 1.0
    sc = Scenario(n, main, 0.1, key=3, truth=[[n - 1]])
    decision, *_ = solve(sc)
    assert culprit_sets(decision) == {frozenset({n - 1})}


def test_screen_strategy_forces_the_design_for_two_factors() -> None:
    sc = Scenario(2, np.array([0.0, 1.0]), 0.1, key=3, truth=[[1]])
    decision, *_ = solve(sc, "screen")
    assert "screen" in {r["phase"] for r in decision.details["rounds"]}
    assert culprit_sets(decision) == {frozenset({1})}


def test_wrong_priors_do_not_change_the_answer() -> None:
    sc = scenario("single", 4.0, 12, prior="misleading")
    decision, *_ = solve(sc)
    assert culprit_sets(decision) == {frozenset(sc.truth[0])}


def test_details_are_strict_json() -> None:
    import json

    for kind in ("single", "null", "nan_and", "diffuse"):
        decision, *_ = solve(scenario(kind, 30.0, 2))
        json.dumps(decision.details, allow_nan=False)
        assert {"classification", "divergence_rates", "rounds", "noise_sd", "d"} <= set(decision.details)


def test_a_single_culprit_beside_an_and_pair_is_called_mixed() -> None:
    """0.4 of the regression from key0 alone, 0.6 only from key1 and key2 together: two culprit sets."""
    n = 6
    for key in (1, 2, 3):
        sc = Scenario(n, np.zeros(n), 1.0 / 30.0, interactions={(1, 2): 0.6}, key=key, truth=[[0], [1, 2]])
        sc.main[0] = 0.4
        sc.priors = [1.0] * n
        decision, *_ = solve(sc)
        assert sc.correct(decision.reproduced, decision.culprits), (key, decision.verdict)
        assert decision.details["classification"] == "mixed"
        assert "{key0} and {key1, key2} each cause part of the regression (a set of several acts only together)" in decision.verdict


def test_a_first_look_that_nothing_explains_is_replicated_on_fresh_seeds() -> None:
    """B is worse only on the calibration's first seeds (a false alarm): the fresh replication says so."""
    sc = scenario("null", 8.0, 3)
    b = frozenset(range(sc.n))
    lucky = set(range(4))  # the seeds of the first look

    def evaluate(requests: list[Request]) -> list[Observation]:
        out = sc.evaluate(requests)
        return [replace(o, value=o.value + 1.0) if o.point == b and o.seed in lucky else o for o in out]

    ctx = context(sc, seeds=4)
    decision, _, _ = drive(make_strategy("auto", ctx), evaluate, ctx)
    assert decision.reproduced is False and decision.culprits == []
    assert decision.verdict.startswith("The regression did not reproduce at this budget: B looked worse at first")
    replication = decision.details["replication"]
    assert replication["ci_low"] <= 0.0 <= replication["ci_high"] < 1.0  # the first look's +1 is not in the fresh runs
    phases = [entry["phase"] for entry in decision.details["rounds"]]
    assert "replicate" in phases and phases.index("replicate") > phases.index("calibrate")
    fresh = {s for e in decision.details["rounds"] if e["phase"] == "replicate" for s in e["seeds"]}
    assert fresh and not fresh & lucky
