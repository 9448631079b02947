"""Trials: one training run of a variant config for a step budget with one seed.

This module holds the records; preparing (writing the config, substituting the command),
finishing (reading metrics, classifying the outcome) live here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Outcome statuses.
OK, DIVERGED, CRASHED, TIMEOUT, INTERRUPTED = "ok", "diverged", "crashed", "timeout", "interrupted"
FINISHED = frozenset({OK, DIVERGED, CRASHED, TIMEOUT})  # interrupted trials are run again on --resume


@dataclass(frozen=True)
class Trial:
    """A variant config (as changes to the bad config), a seed, a budget and a command template."""

    label: str  # human name of the variant, e.g. "A", "B", "B - {lrStart,lrEnd}"
    changes: tuple[tuple[str, Any], ...]  # (difference key, value to set) relative to the bad config, sorted
    seed: int
    steps: int
    command: tuple[str, ...]  # the template, shlex-split, placeholders unsubstituted
    id: str = ""  # stable hash of the above (label excluded); filled by `make_trial`


@dataclass
class Outcome:
    """What came of a trial: status, the reduced metric, what the trainer reported of speed and memory."""

    trial_id: str
    status: str
    value: float | None = None
    wall_s: float = 0.0
    returncode: int | None = None
    steps_per_s: float | None = None
    peak_gpu_mem_mb: float | None = None
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, metric) as logged
    stderr_tail: str = ""
    attempt: int = 1
    job_id: str | None = None
    slot: str | None = None
    detail: str = ""
