"""Members of a culprit that is a set of keys: each key's own reproduce and repair share.

A factor of several keys (`learning_rate+min_lr`, both 30x lower; a named group) is toggled as
one unit by the search. When the verdict names such a set, every member is run alone, applied
to A (A + key) and reverted in B (B - key), at the seeds A and B already ran, so the verdict can
say which member carries the regression (reverting `learning_rate` alone may repair 95 %).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any

from bisect_runs.factors import Factor
from bisect_runs.report.verdict import members_sentence
from bisect_runs.strategies.base import OK, Decision, Observation, Point, Request
from bisect_runs.strategies.calibration import a_point, b_point
from bisect_runs.strategies.effects import Fraction
from bisect_runs.strategies.evidence import Evidence
from bisect_runs.strategies.rounds import ask
from bisect_runs.strategies.verdicts import direct_shares

MAX_MEMBERS = 6  # a larger set costs more runs than it tells: the verdict names it whole
MAX_SEEDS = 2  # seeds per member point (A and B at them have run already): 2 x members x 2 runs in all


@dataclass(frozen=True)
class Split:
    """The searched factors with one culprit factor replaced by its members, one factor each."""

    factors: list[Factor]
    members: list[int]  # indices of the members in `factors`
    whole: Factor


def splittable(decision: Decision, factors: list[Factor]) -> list[int]:
    """Indices of culprit factors of several keys (few enough to run one by one)."""
    named = sorted({i for culprit in decision.culprits for i in culprit})
    return [i for i in named if 2 <= len(factors[i].differences) <= MAX_MEMBERS]


def split(factors: list[Factor], index: int) -> Split:
    """`factors` with factor `index` replaced, in place, by one factor per member key."""
    whole = factors[index]
    parts = [Factor(d.key, [d], d.level, d.score, d.category, d.reason) for d in whole.differences]
    return Split(factors[:index] + parts + factors[index + 1 :], list(range(index, index + len(parts))), whole)


def ab_seeds(observations: list[Observation], n: int) -> list[int]:
    """Seeds at which both A and B finished (their trials are reused, not run again)."""
    a, b = a_point(), b_point(n)
    done = {(o.point, o.seed) for o in observations if o.status == OK}
    return sorted(seed for point, seed in done if point == a and (b, seed) in done)[:MAX_SEEDS]


def runs_needed(parts: Split, seeds: list[int]) -> int:
    return 2 * len(parts.members) * len(seeds)


def member_shares(ev: Evidence, members: list[int], seeds: list[int]) -> Generator[list[Request], list[Observation], dict[int, tuple[Fraction, Fraction]]]:
    """One round: A, B, A + member and B - member at each seed; then each member's direct shares."""
    n = ev.ctx.n_factors
    a, b = a_point(), b_point(n)
    points: list[Point] = [a, b] + [frozenset({m}) for m in members] + [b - {m} for m in members]
    requests = [Request(p, seed) for seed in seeds for p in points]
    ev.requested.update((r.point, r.seed) for r in requests)
    yield from ask(ev, requests, "members", [])  # its phase names the round and keeps early stopping off
    return {m: direct_shares(ev, frozenset({m}), level=0.95) for m in members}


def members_json(parts: Split, shares: dict[int, tuple[Fraction, Fraction]], deterministic: bool) -> dict[str, Any]:
    """What summary.json's details say of one split culprit."""

    def share(f: Fraction) -> dict[str, Any]:
        bounded = not deterministic and math.isfinite(f.low) and math.isfinite(f.high)
        return {"value": _finite(f.value), "ci_low": f.low if bounded else None, "ci_high": f.high if bounded else None}

    return {
        "factor": parts.whole.name,
        "members": [
            {"key": parts.factors[m].name, "reproduce": share(shares[m][0]), "repair": share(shares[m][1])}
            for m in parts.members
        ],
    }


def with_members(decision: Decision, entries: list[dict[str, Any]]) -> Decision:
    """The decision with each split culprit's members in its details and verdict."""
    if not entries:
        return decision
    verdict = " ".join([decision.verdict, *(members_sentence(e, page=False) for e in entries)])
    return replace(decision, verdict=verdict, details={**decision.details, "members": entries})


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
