"""`summary.json`: the record of what a search found, and how effects are written into it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bisect_runs.atomic import plain_json, write_json
from bisect_runs.strategies.base import Effect

SUMMARY_FILE = "summary.json"


@dataclass
class SearchResult:
    """What a search found; `summary.json` is its JSON form."""

    good: str
    bad: str
    metric: str
    mode: str
    steps: int
    strategy: str
    reproduced: bool
    differences: list[dict[str, Any]]
    factors: list[dict[str, Any]]
    culprits: list[list[str]]
    effects: list[dict[str, Any]]
    runs: int
    rounds: int
    verdict: str
    regression: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    complete: bool = True  # False when a budget ran out or the search was interrupted
    seeds: dict[str, Any] | None = None  # whether the trainer used the seed (strategies.seeding.SeedCheck)
    trial_steps: int | None = None  # steps the trials ran, summed (early stopping makes it less than runs x steps)
    early_stop: dict[str, Any] | None = None  # early_stop.cost: full-budget steps, trials stopped, from which step
    checkpoint: dict[str, Any] | None = None  # the shared prefix every trial resumed from (path, step, fingerprint)

    @property
    def exit_code(self) -> int:
        """0 culprit(s) found, 1 regression not reproduced or not localized.

        A best answer from a search that ran out of budget is not a finding: exit 1.
        """
        return 0 if self.reproduced and self.culprits and self.complete else 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def effect_json(e: Effect, names: list[str], keys: list[list[str]], whole: str | None = None,
                deterministic: bool = False) -> dict[str, Any]:
    """An effect as summary.json writes it; `whole` names an effect of every factor (of more than one);
    a trainer that ignores the seed (`deterministic`) has no intervals or p-values to give."""
    factor_keys = [k for i in e.factors for k in keys[i]]
    covers_all = whole is not None and len(e.factors) == len(keys) > 1
    measured = {"ci_low": None, "ci_high": None, "p_value": None, "deterministic": True} if deterministic else {}
    return {
        "key": ", ".join(factor_keys) if factor_keys and not covers_all else whole or "B vs A",
        "keys": [] if covers_all else factor_keys,
        "factors": [] if covers_all else [names[i] for i in e.factors],
        "effect": e.effect,
        "ci_low": e.ci_low,
        "ci_high": e.ci_high,
        "explained_fraction": e.explained_fraction,
        "p_value": e.p_value,
        "n": e.n,
        **measured,
    }


def jsonable(value: Any) -> Any:
    """Make strategy details JSON-safe (frozensets and tuples to lists)."""
    return plain_json(value, default=lambda o: sorted(o) if isinstance(o, (set, frozenset)) else str(o))


def write_summary(out_dir: Path, result: SearchResult) -> Path:
    """Write summary.json atomically."""
    return write_json(out_dir / SUMMARY_FILE, result.to_json())
