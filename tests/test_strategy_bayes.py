"""The `bayes` strategy on simulated regressions, fixed seeds: answers, costs, priors, noise it must cancel."""

from __future__ import annotations

import numpy as np
import pytest

from bisect_runs.simulation import Scenario, SimulatedTrials, make_scenario
from bisect_runs.strategies import drive, make_strategy
from bisect_runs.strategies.base import Decision, Observation, Request, SearchContext
from bisect_runs.strategies.explanations import Explanation, factor_weights, hypotheses, log_priors

N = 12


def solve(sc: Scenario, **overrides: object) -> tuple[Decision, int, int]:
    settings: dict[str, object] = dict(
        n_factors=sc.n, factor_names=[f"key{i}" for i in range(sc.n)], parallel=4, min_effect=0.25,
        prior_scores=sc.priors, mode=sc.mode,
    )
    settings.update(overrides)
    ctx = SearchContext(**settings)  # type: ignore[arg-type]
    return drive(make_strategy("bayes", ctx), sc.evaluate, ctx)


def scenario(kind: str, d: float, seed: int, n: int = N, **kw: object) -> Scenario:
    return make_scenario(kind, n, d, np.random.default_rng(seed), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["single", "additive2", "and2", "or2", "mask", "nan_and", "and3"])
def test_finds_the_culprits(kind: str) -> None:
    for seed in (1, 2, 3):
        sc = scenario(kind, 8.0, seed)
        decision, runs, _ = solve(sc)
        assert sc.correct(decision.reproduced, decision.culprits), (seed, sc.truth, decision.verdict)


@pytest.mark.parametrize(
    ("kind", "classification"),
    [("single", "single"), ("additive2", "additive"), ("and2", "AND"), ("or2", "OR"), ("and3", "combination")],
)
def test_classifies_and_reports_the_posterior(kind: str, classification: str) -> None:
    decision, *_ = solve(scenario(kind, 30.0, 11))
    assert decision.details["classification"] == classification
    assert decision.details["posterior"][0]["probability"] >= 0.95
    assert decision.details["complete"] is True


def test_masking_helper_is_reported_not_blamed() -> None:
    sc = scenario("mask", 8.0, 4)
    decision, *_ = solve(sc)
    assert decision.culprits == sc.truth
    helper = [i for i in range(N) if sc.main[i] == -0.5]
    assert [m["factor"] for m in decision.details["masking"]] == helper


def test_no_regression_abstains() -> None:
    for seed in (1, 2, 3):
        decision, runs, _ = solve(scenario("null", 4.0, seed))
        assert not decision.reproduced and decision.culprits == [], decision.verdict
        assert runs <= 40


def test_a_single_culprit_costs_logarithmically_in_n() -> None:
    """Halving groups: 8 times the factors costs a few rounds more, not 8 times the runs."""
    def mean_runs(n: int) -> float:
        return float(np.mean([solve(scenario("single", 8.0, s, n=n))[1] for s in (1, 2, 3, 4)]))

    assert mean_runs(96) <= mean_runs(12) + 16


def test_the_ranking_is_used_and_a_wrong_one_costs_little() -> None:
    """The same regressions with the culprit ranked first, at random, and last."""
    costs = {}
    for prior in ("informative", "uniform", "misleading"):
        runs = []
        for seed in range(1, 7):
            sc = scenario("single", 4.0, seed, prior=prior)
            if prior == "informative":
                sc.priors[sc.truth[0][0]] = 10.0  # ranked first
            decision, r, _ = solve(sc)
            assert sc.correct(decision.reproduced, decision.culprits), (prior, seed)
            runs.append(r)
        costs[prior] = float(np.mean(runs))
    assert costs["informative"] < costs["uniform"] <= 1.5 * costs["informative"] + 8
    assert costs["misleading"] <= 1.5 * costs["uniform"]


def test_shared_seed_noise_is_cancelled_by_blocking() -> None:
    """Half the noise variance shared by every variant at a seed costs no more runs."""
    plain = [solve(scenario("single", 4.0, s))[1] for s in range(1, 6)]
    shared = [solve(scenario("single", 4.0, s, shared=0.5))[1] for s in range(1, 6)]
    assert np.mean(shared) <= 1.2 * np.mean(plain)


def test_random_timeouts_are_not_blamed() -> None:
    for seed in (1, 2, 3):
        sc = scenario("single", 4.0, seed, timeout=0.07)
        decision, *_ = solve(sc)
        assert sc.correct(decision.reproduced, decision.culprits), decision.verdict


def test_the_answer_is_confirmed_by_runs_of_the_whole_budget() -> None:
    """With early stopping, exploring trials stop once clear, but the verdict's A + T and B - T run in full."""
    sc = scenario("single", 8.0, 8, n=24)
    trials = SimulatedTrials(sc, steps=200, evals=10, early_stop=True, phase="bayes")
    seen: list[Observation] = []

    def evaluate(requests: list[Request]) -> list[Observation]:
        out = trials.evaluate(requests)
        seen.extend(out)
        return out

    ctx = SearchContext(n_factors=sc.n, factor_names=None, parallel=4, min_effect=0.25, prior_scores=sc.priors)
    decision, runs, _ = drive(make_strategy("bayes", ctx), evaluate, ctx)
    assert sc.correct(decision.reproduced, decision.culprits)
    assert any(o.projected for o in seen) and trials.trial_steps < runs * 200
    t = frozenset(decision.culprits[0])
    for point in (t, frozenset(range(sc.n)) - t):
        assert any(o.point == point and not o.projected for o in seen), point


def test_a_spent_budget_gives_the_best_answer_so_far() -> None:
    decision, runs, _ = solve(scenario("single", 2.0, 1), max_runs=6)
    assert runs == 6
    assert decision.details["complete"] is False


def test_prior_follows_the_ranking_tempered() -> None:
    w = factor_weights([3.0, 2.0, 1.0, 0.0], 4)
    assert list(np.argsort(-w)) == [0, 1, 2, 3]
    assert w.sum() == pytest.approx(1.0)
    assert w.max() / w.min() < 4  # tempered: a wrong ranking costs at most a few nats
    assert list(factor_weights([1.0] * 4, 4)) == [0.25] * 4


def test_pair_priors_are_shared_over_all_pairs_not_only_those_scored() -> None:
    weights = np.full(10, 0.1)
    hyps = hypotheses(10, [0, 1, 2])
    lp = dict(zip(hyps, log_priors(hyps, weights), strict=True))
    assert np.exp(lp[Explanation("and", (0, 1))]) == pytest.approx(0.08 / 45)
    assert np.exp(lp[Explanation("single", (3,))]) == pytest.approx(0.04)
