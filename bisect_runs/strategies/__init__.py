"""Search strategies: which trials to run next, from what is known; see `base` for the protocol."""

from __future__ import annotations

from collections.abc import Callable

from bisect_runs.errors import SettingsError
from bisect_runs.strategies.base import Decision, Observation, Request, SearchContext, Strategy

STRATEGIES = ("auto", "screen", "oat", "ddmin", "bayes")  # the one list of names: CLI choices and bisect.yaml check it


def make_strategy(name: str, ctx: SearchContext) -> Strategy:
    """The strategy generator called `name` for this problem."""
    if name not in STRATEGIES:
        raise SettingsError(f"unknown strategy {name!r}; valid strategies: {', '.join(STRATEGIES)}")
    if ctx.n_factors < 1:
        raise SettingsError("a search needs at least one difference between the good and the bad config")
    if name == "oat":
        from bisect_runs.strategies.oat import oat

        return oat(ctx)
    if name == "ddmin":
        from bisect_runs.strategies.ddmin import ddmin

        return ddmin(ctx)
    if name == "bayes":
        from bisect_runs.strategies.bayes import bayes

        return bayes(ctx)
    from bisect_runs.strategies.auto import auto

    return auto(ctx, always_screen=name == "screen")


def drive(
    strategy: Strategy, evaluate: Callable[[list[Request]], list[Observation]], ctx: SearchContext
) -> tuple[Decision, int, int]:
    """Run a strategy to its decision in process: returns (decision, runs, rounds)."""
    runs = rounds = 0
    try:
        requests = next(strategy)
        while True:
            observations = evaluate(requests)
            if len(observations) != len(requests):
                raise ValueError(f"{len(requests)} requests but {len(observations)} observations")
            runs += len(requests)
            rounds += 1
            ctx.runs_used += len(requests)
            requests = strategy.send(observations)
    except StopIteration as stop:
        return stop.value, runs, rounds


__all__ = ["STRATEGIES", "drive", "make_strategy"]
