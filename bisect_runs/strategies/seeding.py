"""Does the trainer use the seed? Repeats of a point at different seeds that give identical values say no.

A trainer that seeds itself (nanoGPT's `1337 + seed_offset`) answers every seed alike: its runs
are deterministic, so a search decides from one run per point and gives no confidence intervals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bisect_runs.strategies.base import OK, Observation, Point

MIN_POINTS = 2  # points (A and B) each repeated at two or more seeds before judging


@dataclass
class SeedCheck:
    """Whether repeats at different seeds gave identical values, and at which points and seeds."""

    ignored: bool | None  # None until enough points were repeated
    points: int = 0
    seeds: list[int] = field(default_factory=list)

    def note(self, seed_base: int) -> str:
        """The warning the verdict, summary and report carry."""
        seeds = ", ".join(map(str, self.seeds))
        return (
            f"Warning: the trainer ignores the seed: {self.points} configurations run at seeds {seeds} each gave "
            f"bit-identical values. The runs were judged as deterministic (later trials ran at seed {seed_base} only, "
            "no confidence intervals); the answer holds for that one seed, and effects of RNG order (a change that "
            "shifts which batches are drawn) can pose as effects of a difference. To give the trainer a seed, "
            "pass {seed} in the command (e.g. --seed={seed}) or name the config key it seeds from as seed_key."
        )

    def to_json(self, seed_base: int) -> dict[str, Any]:
        return {"ignored": self.ignored, "points": self.points, "seeds": self.seeds,
                "note": self.note(seed_base) if self.ignored else None}  # fmt: skip


def check_seeds(observations: Iterable[Observation]) -> SeedCheck:
    """Identical values at every point repeated at distinct seeds means the seed is ignored."""
    values: dict[Point, dict[int, float]] = defaultdict(dict)
    for o in observations:
        if o.status == OK and o.value is not None:
            values[o.point].setdefault(o.seed, o.value)
    repeated = {p: v for p, v in values.items() if len(v) >= 2}
    if len(repeated) < MIN_POINTS:
        return SeedCheck(None)
    ignored = all(len(set(v.values())) == 1 for v in repeated.values())
    seeds = sorted({s for v in repeated.values() for s in v})
    return SeedCheck(ignored, len(repeated), seeds)
