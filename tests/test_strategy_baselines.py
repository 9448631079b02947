"""The selectable baselines (`oat`, `ddmin`), the strategy registry and the in-process driver."""

from __future__ import annotations

import numpy as np
import pytest

from bisect_runs.errors import SettingsError
from bisect_runs.simulation import Scenario, make_scenario
from bisect_runs.strategies import STRATEGIES, drive, make_strategy
from bisect_runs.strategies.base import Observation, Request, SearchContext


def context(sc: Scenario, **overrides: object) -> SearchContext:
    settings: dict[str, object] = dict(
        n_factors=sc.n, factor_names=[f"k{i}" for i in range(sc.n)], parallel=4, min_effect=0.25,
        prior_scores=sc.priors,
    )
    settings.update(overrides)
    return SearchContext(**settings)  # type: ignore[arg-type]


def run(kind: str, strategy: str, d: float = 30.0, seed: int = 1, n: int = 8, **overrides: object):  # type: ignore[no-untyped-def]
    sc = make_scenario(kind, n, d, np.random.default_rng(seed))
    ctx = context(sc, **overrides)
    decision, runs, rounds = drive(make_strategy(strategy, ctx), sc.evaluate, ctx)
    return sc, decision, runs, rounds


def test_oat_runs_both_directions_on_three_seeds() -> None:
    sc, decision, runs, rounds = run("single", "oat")
    assert runs == 6 * 8 + 6 and rounds == 14
    assert sc.correct(decision.reproduced, decision.culprits)


@pytest.mark.parametrize("kind", ["and2", "or2"])
def test_oat_classifies_pairs_when_noise_is_low(kind: str) -> None:
    sc, decision, *_ = run(kind, "oat")
    assert sc.correct(decision.reproduced, decision.culprits), decision.verdict


def test_oat_abstains_without_regression() -> None:
    _, decision, *_ = run("null", "oat", d=4.0)
    assert not decision.reproduced and decision.culprits == []


def test_ddmin_isolates_a_single_culprit() -> None:
    for seed in (1, 2, 3):
        sc, decision, runs, _ = run("single", "ddmin", seed=seed, n=12)
        assert sc.correct(decision.reproduced, decision.culprits)
        assert runs < 60


def test_oat_misses_additive_halves() -> None:
    """Neither half reaches 70 % alone: the limitation the design-based search removes."""
    sc, decision, *_ = run("additive2", "oat")
    assert decision.reproduced and not sc.correct(decision.reproduced, decision.culprits)


def test_ddmin_isolates_only_one_member_of_an_and_pair() -> None:
    """dd isolation finds a failure-inducing difference, not the whole pair (a known limit)."""
    sc, decision, *_ = run("and2", "ddmin", seed=4, n=12)
    assert len(decision.culprits) == 1 and set(decision.culprits[0]) <= set(sc.truth[0])


def test_baselines_respect_the_run_budget() -> None:
    for strategy in ("oat", "ddmin"):
        _, decision, runs, _ = run("single", strategy, max_runs=9)
        assert runs <= 9 and decision.details["complete"] is False


def test_seeds_option_sets_seeds_per_arm() -> None:
    sc = make_scenario("single", 5, 30.0, np.random.default_rng(2))
    ctx = context(sc)
    ctx.seeds = 2
    _, runs, _ = drive(make_strategy("oat", ctx), sc.evaluate, ctx)
    assert runs == 2 * (2 + 2 * 5)


def test_unknown_strategy_lists_valid_names() -> None:
    sc = make_scenario("single", 5, 4.0, np.random.default_rng(0))
    with pytest.raises(SettingsError, match="unknown strategy 'bisect'; valid strategies: auto, screen, oat, ddmin"):
        make_strategy("bisect", context(sc))
    assert STRATEGIES == ("auto", "screen", "oat", "ddmin", "bayes")


def test_drive_counts_runs_and_rounds_and_checks_answers() -> None:
    sc = make_scenario("single", 5, 30.0, np.random.default_rng(0))
    ctx = context(sc)
    decision, runs, rounds = drive(make_strategy("auto", ctx), sc.evaluate, ctx)
    assert ctx.runs_used == runs and rounds == len(decision.details["rounds"])

    def short(requests: list[Request]) -> list[Observation]:
        return sc.evaluate(requests)[:-1]

    with pytest.raises(ValueError, match="requests but"):
        drive(make_strategy("auto", context(sc)), short, context(sc))


def test_simulation_is_a_pure_function_of_point_and_seed() -> None:
    sc = make_scenario("nan_and", 6, 2.0, np.random.default_rng(3))
    requests = [Request(frozenset({1, 2}), s) for s in range(20)]
    assert sc.evaluate(requests) == sc.evaluate(requests)
    assert sc.correct(True, sc.truth) and not sc.correct(False, sc.truth)
    with pytest.raises(ValueError, match="unknown scenario"):
        make_scenario("nope", 6, 2.0, np.random.default_rng(0))


def test_oat_names_a_factor_that_repairs_the_regression_alone() -> None:
    """Reverting k0 repairs all of it, applying it to A needs k1 or k2 too: oat must not say "no culprit"."""
    import random

    def loss(point: frozenset[int], seed: int) -> float:
        return 1.0 + float(0 in point and (1 in point or 2 in point)) + random.Random(seed * 31 + sum(point)).gauss(0, 0.02)

    def evaluate(requests: list[Request]) -> list[Observation]:
        return [Observation(r.point, r.seed, "ok", loss(r.point, r.seed)) for r in requests]

    ctx = SearchContext(n_factors=3, factor_names=["k0", "k1", "k2"], parallel=4)
    decision, *_ = drive(make_strategy("oat", ctx), evaluate, ctx)
    assert decision.reproduced and decision.culprits == [[0]]
    assert decision.details["classification"] == "single"
    assert decision.verdict == (
        "One factor at a time: {k0} (single; reverting it repairs the regression, applying it to A alone "
        "does not reproduce it)."
    )
    assert "diffuse" not in str(decision.details)
