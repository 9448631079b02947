"""Telling a crash of the infrastructure (a flaky node, the OOM killer, a lost file system) from a crash the variant causes.

A crash that does not repeat when the same trial is run again, or that strikes a point no more
often than it strikes every other point of the search, says nothing about the variant: its
valid retried value is kept, and its crashes are not judged as the variant's outcome. See
docs/trials.md ("Crashes and retries").
"""

from __future__ import annotations

import math
import re

from bisect_runs.trials import CRASHED, Outcome

EXTRA_RETRIES = 2  # further attempts for a crash that looks like infrastructure
SIGNIFICANCE = 0.05  # a point's crashes are its own when background crashes explain them this rarely
# Words of crashes that come from the machine, not from the training code.
_INFRA_SIGNS = re.compile(
    r"killed by SIG(KILL|BUS|TERM|HUP)|No space left on device|Connection (reset|refused|timed out)"
    r"|NCCL (error|timeout)|CUDA error: (an illegal memory access|unspecified launch failure|uncorrectable ECC)"
    r"|Input/output error|Stale file handle|Broken pipe|Too many open files",
    re.IGNORECASE,
)


def looks_like_infrastructure(outcome: Outcome, flaky_seen: bool) -> bool:
    """A crash worth more retries: the machine's words in its detail or stderr, or a trainer already seen crashing at random."""
    if outcome.status != CRASHED:
        return False
    return flaky_seen or bool(_INFRA_SIGNS.search(f"{outcome.detail}\n{outcome.stderr_tail or ''}"))


def attempt_counts(outcome: Outcome) -> tuple[int, int]:
    """(runs, crashed runs) of one trial, its retries included."""
    earlier = [a.get("status") for a in outcome.attempts]
    return 1 + len(earlier), earlier.count(CRASHED) + (outcome.status == CRASHED)


def crashes_are_the_points_own(crashed: int, attempts: int, background_crashed: int, background_attempts: int) -> bool:
    """Do `crashed` of `attempts` at one point exceed what the crash rate elsewhere explains (one-sided binomial test)?"""
    if crashed == 0:
        return False
    rate = (background_crashed + 0.5) / (background_attempts + 1)  # never 0: one crash elsewhere is not proof of none
    return binomial_tail(crashed, attempts, rate) < SIGNIFICANCE


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    return min(1.0, sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))
