"""Judging a trial's end: read its metrics, classify it (ok, diverged, crashed, timeout), write outcome.json.

A trial stopped early (see `bisect_runs.curves`) is ok, with the value projected to the full
budget and where it stopped; every other trial is judged on what it logged, the same for
every executor. See docs/trials.md.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
from pathlib import Path

from bisect_runs.curves import EarlyStop
from bisect_runs.executors.base import STOPPED, ProcessEnd
from bisect_runs.metrics import (
    MetricRead,
    MetricSpec,
    first_nonfinite,
    read_metric,
    reduce_history,
    speed_from_log,
)
from bisect_runs.trials import (
    CRASHED,
    DIVERGED,
    INTERRUPTED,
    OK,
    TIMEOUT,
    Outcome,
    Trial,
    TrialPaths,
    trial_paths,
    write_outcome,
)

STDERR_TAIL_LINES = 20
_NONFINITE_WORDS = re.compile(r"\bnan\b|\binf\b|non-finite|nonfinite|not finite", re.IGNORECASE)


def finish(
    trial: Trial, end: ProcessEnd, spec: MetricSpec, out_dir: Path, attempt: int = 1, early: EarlyStop | None = None
) -> Outcome:
    """Read the trial's metrics, classify how it went, write `outcome.json`; return the outcome.

    `early`: the runner stopped the trial there (when `end.status` is STOPPED): ok, at its projection.
    """
    paths = trial_paths(out_dir, trial.id)
    read = read_metric(paths.run_dir, spec, log_path=paths.stdout)
    tail = tail_lines(paths.stderr) or tail_lines(paths.stdout)
    early = early if end.status == STOPPED else None
    last = max((s for s, _ in read.history), default=0)
    if early is not None and end.returncode == 0 and last >= trial.steps:  # it ended before the stop landed
        early, end = None, dataclasses.replace(end, status="exited")
    value: float | None
    if early is not None:
        status, detail, value = OK, early_detail(early), early.value
    else:
        status, detail = classify(end, read, spec, tail)
        value = reduce_history(read.history, spec.reduce) if status == OK else None
    outcome = Outcome(
        trial_id=trial.id,
        status=status,
        value=value,
        wall_s=end.wall_s,
        returncode=end.returncode,
        steps_per_s=read.steps_per_s if read.steps_per_s is not None else _log_speed(paths),
        peak_gpu_mem_mb=read.peak_gpu_mem_mb,
        history=list(read.history),
        stderr_tail=tail if status != OK else "",
        attempt=attempt,
        job_id=end.job_id,
        slot=end.slot,
        detail=detail,
        steps_run=trial.steps if early is None else max(last, early.step),
        start_step=trial.start_step,
        stopped_early=None if early is None else early.to_json(),
    )
    write_outcome(out_dir, outcome)
    return outcome


def early_detail(early: EarlyStop) -> str:
    """How a stopped trial's value came about, in one line."""
    return f"stopped early at step {early.step}: near {early.like}'s curve, projected to {early.value:.6g}"


def classify(end: ProcessEnd, read: MetricRead, spec: MetricSpec, stderr_tail: str = "") -> tuple[str, str]:
    """(status, detail) from how the process ended and what it logged."""
    if end.status in ("interrupted", STOPPED):  # stopped without a projection: run it again
        return INTERRUPTED, end.detail or "stopped by Ctrl-C or SIGTERM"
    if end.status == "timeout":
        return TIMEOUT, end.detail or f"still running after {end.wall_s:.0f} s; its process group was killed"
    if end.status == "lost":
        return CRASHED, "lost: " + (end.detail or "the executor lost the job (node failure or preemption)")
    bad = first_nonfinite(read.history)
    if bad is not None:
        return DIVERGED, f"{spec.name} became {bad[1]} at step {bad[0]}"
    finite = reduce_history(read.history, "last") is not None
    if end.returncode != 0 or not finite:
        why = _stopped_after_nonfinite(read, stderr_tail)
        stop = _exit_text(end) if end.returncode != 0 else "exit status 0"
        if why:
            return DIVERGED, f"{why}, then the trainer stopped ({stop})"
        if end.returncode != 0:
            last = stderr_tail.strip().splitlines()[-1:] if stderr_tail.strip() else []
            return CRASHED, (end.detail + "; " if end.detail else "") + stop + (f": {last[0][:200]}" if last else "")
        return CRASHED, f"no value of {spec.name!r} in {read.where}" + _logged_names(read) + _problems(read)
    return OK, ""


def _logged_names(read: MetricRead, shown: int = 8) -> str:
    """What the run did log, so a misspelt metric name is easy to spot."""
    names = sorted(read.series)
    if not names:
        return ""
    more = ", ..." if len(names) > shown else ""
    return f" (it logged {', '.join(names[:shown])}{more})"


def _stopped_after_nonfinite(read: MetricRead, stderr_tail: str) -> str:
    """Why a run that stopped early counts as diverged: a logged NaN/inf, or one named in stderr."""
    for name, history in read.series.items():
        bad = first_nonfinite(history)
        if bad is not None:
            return f"{name} became {bad[1]} at step {bad[0]}"
    match = _NONFINITE_WORDS.search(stderr_tail)
    return f"stderr reports a non-finite value ({match.group(0)!r})" if match else ""


def _exit_text(end: ProcessEnd) -> str:
    if end.returncode is not None and end.returncode < 0:
        try:
            return f"killed by {signal.Signals(-end.returncode).name}"
        except ValueError:
            return f"killed by signal {-end.returncode}"
    return f"exit status {end.returncode}"


def _problems(read: MetricRead) -> str:
    return f" ({'; '.join(read.problems[:3])})" if read.problems else ""


def _log_speed(paths: TrialPaths) -> float | None:
    """Steps/s from progress lines when the metrics named none (tqdm writes to stderr)."""
    for path in (paths.stderr, paths.stdout):
        speed = speed_from_log(_read_tail(path, 16384))
        if speed is not None:
            return speed
    return None


def tail_lines(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    """The last lines of a log (reading only its end: logs can be large)."""
    text = _read_tail(path, 65536)
    return "\n".join(text.rstrip("\n").splitlines()[-lines:]) if text.strip() else ""


def _read_tail(path: Path, size: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
