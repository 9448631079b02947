"""Early stopping in a search: the reference from A's and B's full runs, the runner's judge, the cost.

The rule and the projection live in `bisect_runs.curves`; this module decides when a search may
use them: only with metrics a running trial appends to (JSON lines, CSV, stdout), only once A
and B each have full-length curves, never for A and B themselves (they are the reference), and
only in exploring rounds: the runs a verdict's numbers come from (auto's confirmation, the
replication, a culprit set's members, the control) run in full.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from bisect_runs.curves import Reference, reference
from bisect_runs.runner import EarlyJudge
from bisect_runs.trials import OK, Outcome

STREAMED = frozenset({"jsonl", "csv", "regex"})  # metric sources a trial writes step by step as it runs
REFERENCE_LABELS = frozenset({"A", "B"})  # the trials that always run the full budget
EXPLORING = frozenset({"screen", "bayes", "oat", "ddmin"})  # phases whose trials may stop early


def reference_of(a: Iterable[Outcome], b: Iterable[Outcome], mode: str, steps: int) -> Reference | None:
    """The reference curves of A's and B's finished full-length runs; None with too few of them."""
    return reference(_full_runs(a, steps), _full_runs(b, steps), mode, steps)


def _full_runs(outcomes: Iterable[Outcome], steps: int) -> list[tuple[list[tuple[int, float]], float]]:
    return [
        (o.history, o.value)
        for o in outcomes
        if o.status == OK and o.value is not None and o.stopped_early is None and (o.steps_run or steps) >= steps
    ]


def judge_for(ref: Reference | None, keep_full: Collection[str] = REFERENCE_LABELS) -> EarlyJudge | None:
    """The runner's judge for a round: None while the reference allows no early stop."""
    if ref is None or ref.start is None:
        return None
    return lambda trial, history: None if trial.label in keep_full else ref.judge(history)


def cost(outcomes: Iterable[Outcome], steps: int, ref: Reference | None) -> dict[str, Any]:
    """Trial-steps the search ran (sum over trials of steps run, from their checkpoint's step) beside every trial at the full budget."""
    finished = [o for o in outcomes if o.finished]
    ran = sum((steps if o.steps_run is None else o.steps_run) - o.start_step for o in finished)
    stopped = sum(o.stopped_early is not None for o in finished)
    return {
        "trial_steps": ran,
        "full_budget_steps": sum(steps - o.start_step for o in finished),
        "stopped_early": stopped,
        "from_step": None if ref is None else ref.start,
    }
