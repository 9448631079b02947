"""The executor interface: run prepared trial commands somewhere, report how each process ended.

Executors only run processes. Writing configs, reading metrics and judging outcomes
happen in `bisect_runs.trials`, the same for every executor, so Slurm and Ray
executors plug in without touching the strategies.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bisect_runs.errors import SettingsError


@dataclass(frozen=True)
class Launch:
    """One process to run: a trial's fully substituted argv, its run directory and environment."""

    trial_id: str
    argv: tuple[str, ...]
    run_dir: Path
    env: dict[str, str]  # only the contract's additions; executors merge it over os.environ
    stdout_path: Path
    stderr_path: Path
    timeout_s: float | None = None
    gpus: int = 0  # GPUs this trial needs (0 = CPU slot)
    cwd: str | None = None  # where the process starts (a commit's worktree); None: the executor's cwd


@dataclass(frozen=True)
class ProcessEnd:
    """How a launched process ended, as the executor saw it."""

    trial_id: str
    status: str  # "exited" | "timeout" | "interrupted" | "lost" (infrastructure: node failure, preemption)
    returncode: int | None
    wall_s: float
    job_id: str | None = None
    slot: str | None = None  # e.g. "gpu:0,1" or "cpu:3"
    detail: str = ""
    extra: dict[str, str] = field(default_factory=dict)


class Executor(abc.ABC):
    """Runs launches concurrently on its slots; outcomes come back as they finish."""

    name = "abstract"
    supports_reattach = False  # cluster executors can pick up jobs a previous search left running
    # Set by the runner: called with (trial_id, job_id) as soon as a job id is known, so the
    # journal can record it and `--resume` can re-attach instead of resubmitting.
    on_submitted: Callable[[str, str], None] | None = None

    @property
    @abc.abstractmethod
    def capacity(self) -> int:
        """How many launches run at once (the P that strategies plan rounds for)."""

    @abc.abstractmethod
    def submit(self, launches: Sequence[Launch]) -> None:
        """Queue launches; they start as slots free up."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> list[ProcessEnd]:
        """Block until at least one launch ends (or timeout); return every end seen so far."""

    @abc.abstractmethod
    def cancel(self) -> list[ProcessEnd]:
        """Stop everything queued or running; return their ends with status "interrupted"."""

    def reattach(self, launches: Sequence[tuple[Launch, str]]) -> None:
        """Watch jobs submitted by an earlier search (launch, job id) as if just submitted."""
        raise NotImplementedError(f"the {self.name} executor cannot re-attach to running jobs")

    def pending(self) -> int:
        """Launches submitted and not yet returned by `wait`."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook, most executors hold nothing
        """Release resources (threads, cluster connections)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_limits(backend: str, limits: Sequence[tuple[str, float | None, int]]) -> None:
    """Every (option, value, least) whose value is below its least, in one SettingsError naming the backend."""
    problems = [f"{name} must be >= {least}, got {value}" for name, value, least in limits if value is not None and value < least]
    if problems:
        raise SettingsError(f"{backend}: " + "; ".join(problems))
