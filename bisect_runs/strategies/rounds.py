"""Asking for one round of runs: clip it to the budget, record it, hand back the observations."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from bisect_runs.strategies.base import Observation, Request, SearchContext
from bisect_runs.strategies.evidence import Evidence

Ask = Generator[list[Request], list[Observation], list[Observation] | None]


def budget_exhausted(ctx: SearchContext) -> bool:
    left = ctx.budget_left()
    return ctx.out_of_time or (left is not None and left <= 0)


def ask(ev: Evidence, requests: list[Request], phase: str, log: list[dict[str, Any]]) -> Ask:
    """Yield one round (clipped to the run budget); None when no budget is left."""
    ctx = ev.ctx
    left = ctx.budget_left()
    if budget_exhausted(ctx) or not requests:
        return None
    if left is not None:
        requests = requests[:left]
    log.append({"phase": phase, "points": [sorted(r.point) for r in requests], "seeds": [r.seed for r in requests]})
    observations = yield requests
    ev.add(list(observations))
    return list(observations)


def slots(ctx: SearchContext) -> int:
    """Requests per round: every slot busy."""
    return max(1, int(ctx.parallel))
