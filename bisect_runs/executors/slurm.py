"""Run trials as Slurm jobs through submitit: one job per launch, a job array per batch.

The job runs `executors.job.run_launch`, which starts the trainer's argv exactly as the
local executor does (same environment contract, same run directory on shared storage,
stdout/stderr to the launch's files, timeout with process-group kill) and writes how it
ended as a small JSON file next to submitit's own files. The executor polls `squeue` (and `sacct` where
accounting is on) for jobs that ended without one: preempted or node-failed jobs are
resubmitted once, then reported as `lost`. `stop` scancels one trial's job; however it then
ends, it is reported as stopped (never lost, never resubmitted).

The Ray executor runs the same `run_launch` inside its tasks.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisect_runs.errors import SettingsError, TrialError
from bisect_runs.executors.base import STOPPED, Executor, Launch, ProcessEnd, check_limits
from bisect_runs.executors.job import (
    KILL_GRACE_S,
    process_end,
    run_launch,
    set_aside,
)

POLL_S = 0.5
ENDS_DIR = "ends"
# Slurm states after which a job will never write its end file.
FINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)
UNKNOWN_POLLS_LOST = (
    6  # a job neither squeue nor sacct knows, with no end file, for this many polls
)


# -- the submitting side ----------------------------------------------------------------


@dataclass
class _Job:
    """A launch and the Slurm job currently running it."""

    launch: Launch
    job_id: str
    submitted: float
    attempt: int = 1
    reattached: bool = False
    unknown_polls: int = 0
    stopping: bool = False  # scancelled by `stop`: it ends as STOPPED whatever Slurm says
    history: list[str] = field(default_factory=list)  # earlier job ids and why they were replaced


class SlurmExecutor(Executor):
    """Submits launches as Slurm jobs (arrays when several start at once) and polls their ends."""

    name = "slurm"
    supports_reattach = True
    supports_stop = True

    def __init__(
        self,
        folder: str | Path,
        partition: str | None = None,
        gpus_per_trial: int = 0,
        cpus_per_trial: int = 1,
        mem_gb: float | None = None,
        time_min: int | None = None,
        array_parallelism: int | None = None,
        additional_parameters: dict[str, Any] | None = None,
        max_parallel: int = 16,
        requeue: int = 1,
        poll_s: float = POLL_S,
        setup: list[str] | None = None,
        cwd: str | Path | None = None,
    ) -> None:
        check_limits("slurm", [("gpus_per_trial", gpus_per_trial, 0), ("cpus_per_trial", cpus_per_trial, 1),
                               ("max_parallel", max_parallel, 1), ("array_parallelism", array_parallelism, 1),
                               ("requeue", requeue, 0)])
        self.folder = Path(folder).resolve()
        self.gpus_per_trial = gpus_per_trial
        self.max_parallel = max_parallel
        self.array_parallelism = array_parallelism
        self.requeue = requeue
        self.poll_s = poll_s
        self.time_min = time_min
        self.cwd = str(Path(cwd or os.getcwd()).resolve())  # where trainers start, as locally
        self._submitit = _make_submitit(self.folder)
        self._base_parameters = _parameters(
            partition, cpus_per_trial, mem_gb, additional_parameters, setup
        )
        self._queue: list[Launch] = []
        self._jobs: dict[str, _Job] = {}  # job id -> job
        self._ends: list[ProcessEnd] = []

    @property
    def capacity(self) -> int:
        return self.max_parallel

    def pending(self) -> int:
        return len(self._queue) + len(self._jobs) + len(self._ends)

    def submit(self, launches: Sequence[Launch]) -> None:
        self._queue.extend(launches)
        self._top_up()

    def reattach(self, launches: Sequence[tuple[Launch, str]]) -> None:
        now = time.time()
        for launch, job_id in launches:
            self._jobs[job_id] = _Job(launch, job_id, now, reattached=True)

    def wait(self, timeout: float | None = None) -> list[ProcessEnd]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._poll()
            self._top_up()
            if self._ends or not (self._jobs or self._queue):
                ends, self._ends = self._ends, []
                return ends
            if deadline is not None and time.monotonic() >= deadline:
                return []
            pause = (
                self.poll_s if deadline is None else min(self.poll_s, deadline - time.monotonic())
            )
            time.sleep(max(pause, 0.0))

    def cancel(self) -> list[ProcessEnd]:
        """scancel every job of this search; queued and running launches end as interrupted."""
        jobs = list(self._jobs.values())
        if jobs:
            _scancel([j.job_id for j in jobs])
            _wait_gone([j.job_id for j in jobs], timeout_s=30.0)
        ends = [self._interrupted(j.launch, j.job_id) for j in jobs]
        ends += [self._interrupted(launch, None) for launch in self._queue]
        self._jobs.clear()
        self._queue.clear()
        ends, self._ends = self._ends + ends, []
        return ends

    def stop(self, trial_id: str) -> bool:
        """scancel one trial's job; its end comes back STOPPED (not lost, not resubmitted)."""
        job = next((j for j in self._jobs.values() if j.launch.trial_id == trial_id), None)
        if job is None or job.stopping:
            return False
        job.stopping = True
        _scancel([job.job_id])
        return True

    def close(self) -> None:
        """Jobs keep running after close: a later `--resume` re-attaches to them."""

    # -- submitting -------------------------------------------------------------------

    def _top_up(self) -> None:
        """Submit queued launches while fewer than `max_parallel` jobs are in Slurm."""
        room = self.max_parallel - len(self._jobs)
        if room <= 0 or not self._queue:
            return
        batch, self._queue = self._queue[:room], self._queue[room:]
        for group in _by_gpus(batch):
            self._submit_group(group)

    def _submit_group(self, launches: list[Launch], attempt: int = 1) -> list[_Job]:
        """One sbatch for all launches (an array job when more than one)."""
        import submitit

        params = dict(self._base_parameters)
        params.update(_time_parameters(self.time_min, launches))
        gpus = launches[0].gpus or self.gpus_per_trial
        params["gpus_per_node"] = gpus if gpus else None
        params["array_parallelism"] = min(len(launches), self.array_parallelism or len(launches))
        self._submitit.update_parameters(**params)
        ends_dir = self.folder / ENDS_DIR
        try:
            with self._submitit.batch():
                pending = [
                    self._submitit.submit(
                        run_launch,
                        launch,
                        launch.cwd or self.cwd,
                        str(ends_dir / f"{launch.trial_id}.json"),
                        gpus,
                    )
                    for launch in launches
                ]
        except (submitit.core.utils.FailedJobError, subprocess.CalledProcessError, OSError) as exc:
            raise TrialError(
                f"sbatch failed for {len(launches)} trial(s) in {self.folder}: {exc}"
            ) from exc
        now = time.time()
        jobs = []
        for launch, sjob in zip(launches, pending, strict=True):
            job = _Job(launch, str(sjob.job_id), now, attempt)
            self._jobs[job.job_id] = job
            jobs.append(job)
            if self.on_submitted is not None:
                self.on_submitted(launch.trial_id, job.job_id)
        return jobs

    # -- polling ----------------------------------------------------------------------

    def _poll(self) -> None:
        """Collect ends written by jobs; ask Slurm about the rest."""
        if not self._jobs:
            return
        silent = [j for j in list(self._jobs.values()) if not self._collect(j)]
        if not silent:
            return
        states = slurm_states([j.job_id for j in silent])
        for job in silent:
            self._judge(job, states.get(job.job_id))

    def _collect(self, job: _Job) -> bool:
        """Turn the job's end file into a ProcessEnd if the job wrote it."""
        end = _read_end(self._end_file(job), job.job_id, terminated_ok=job.stopping)
        if end is None:
            return False
        del self._jobs[job.job_id]
        ended = process_end(job.launch, end, job.job_id, self._extra(job))
        if job.stopping:  # the trainer's exit is the scancel's doing (or came first: outcomes tells)
            ended = dataclasses.replace(ended, status=STOPPED, detail="; ".join([*job.history, _stopped(job)]))
        self._ends.append(ended)
        return True

    def _end_file(self, job: _Job) -> Path:
        return self.folder / ENDS_DIR / f"{job.launch.trial_id}.json"

    def _judge(self, job: _Job, state: str | None) -> None:
        """A job with no end file: still queued/running, ended by Slurm, or vanished."""
        if state is None:
            job.unknown_polls += 1
            if job.unknown_polls >= UNKNOWN_POLLS_LOST and job.stopping:
                self._finish(job, STOPPED, _stopped(job))
            elif job.unknown_polls >= UNKNOWN_POLLS_LOST:
                self._retry_or_lose(job, "Slurm no longer knows the job and it left no result")
            return
        job.unknown_polls = 0
        if state not in FINAL_STATES:
            return
        if _read_end(self._end_file(job), job.job_id, terminated_ok=job.stopping):
            return  # written between the file check and squeue: collected next poll
        if job.stopping:  # Slurm killed it before it wrote its end: stopped all the same
            self._finish(job, STOPPED, _stopped(job))
        elif state == "TIMEOUT":
            self._finish(job, "timeout", f"Slurm time limit reached (job {job.job_id})")
        elif state == "OUT_OF_MEMORY":
            self._finish(job, "exited", f"Slurm: out of memory (job {job.job_id})", -signal.SIGKILL)
        elif state == "CANCELLED" and job.reattached:
            # Stopped with the earlier search (Ctrl-C), not lost: run it again.
            why = f"job {job.job_id} was cancelled with an earlier search, resubmitted"
            self._resubmit(job, job.attempt, why)
        elif state == "CANCELLED":
            self._finish(job, "lost", f"job {job.job_id} was cancelled outside the search")
        else:
            self._retry_or_lose(job, f"job {job.job_id} ended {state} without a result")

    def _retry_or_lose(self, job: _Job, why: str) -> None:
        """Requeue a job killed by the infrastructure once; after that it is lost."""
        if job.attempt > self.requeue:
            self._finish(job, "lost", why)
            return
        self._resubmit(job, job.attempt + 1, why + ", resubmitted")

    def _resubmit(self, job: _Job, attempt: int, why: str) -> None:
        """Run a job's launch again in a fresh job, the killed run's files set aside."""
        del self._jobs[job.job_id]
        set_aside(job.launch)
        (new,) = self._submit_group([job.launch], attempt=attempt)
        new.history = [*job.history, why]

    def _finish(self, job: _Job, status: str, why: str, returncode: int | None = None) -> None:
        """End a job that left no end file (Slurm ended it, or it vanished)."""
        del self._jobs[job.job_id]
        end = ProcessEnd(
            job.launch.trial_id,
            status,
            returncode,
            time.time() - job.submitted,
            job_id=job.job_id,
            detail="; ".join([*job.history, why]),
            extra=self._extra(job),
        )
        self._ends.append(end)

    def _extra(self, job: _Job) -> dict[str, str]:
        extra = {"executor": "slurm", "attempt": str(job.attempt)}
        if job.history:
            extra["requeued"] = "; ".join(job.history)
        return extra

    def _interrupted(self, launch: Launch, job_id: str | None) -> ProcessEnd:
        detail = "cancelled (scancel)" if job_id else "cancelled before it was submitted"
        return ProcessEnd(launch.trial_id, "interrupted", None, 0.0, job_id=job_id, detail=detail)


# -- Slurm commands -----------------------------------------------------------------------


def slurm_states(job_ids: Iterable[str]) -> dict[str, str]:
    """Current state of each job id that squeue (or, for purged jobs, sacct) still knows."""
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    states = _parse_states(
        _run(["squeue", "--states=all", "--noheader", "--format=%i|%T", f"--jobs={','.join(ids)}"])
    )
    missing = [i for i in ids if i not in states]
    if missing:
        sacct = _run(
            [
                "sacct",
                "--noheader",
                "--parsable2",
                "--format=JobID,State",
                f"--jobs={','.join(missing)}",
            ]
        )
        states.update(_parse_states(sacct))
    return {i: states[i] for i in ids if i in states}


def _parse_states(output: str) -> dict[str, str]:
    """Parse `JOBID|STATE` lines, expanding pending array ranges such as `12_[3-5%2]`."""
    from submitit.slurm.slurm import read_job_id

    states: dict[str, str] = {}
    for line in output.splitlines():
        job, _, state = line.strip().partition("|")
        if not job or "." in job:  # job steps (sacct) are not jobs
            continue
        state = state.split()[0] if state.strip() else "UNKNOWN"  # "CANCELLED by 0" -> "CANCELLED"
        for parts in read_job_id(job):
            for job_id in _expand(parts):
                states[job_id] = state
    return states


def _expand(parts: tuple[str, ...]) -> list[str]:
    if len(parts) == 1:
        return [parts[0]]
    if len(parts) == 2:
        return [f"{parts[0]}_{parts[1]}"]
    return [f"{parts[0]}_{i}" for i in range(int(parts[1]), int(parts[2]) + 1)]


def _run(argv: list[str]) -> str:
    """Run a Slurm client command; its stdout, or "" if it failed (e.g. sacct without accounting)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def _scancel(job_ids: list[str]) -> None:
    for start in range(0, len(job_ids), 200):  # keep the argv short on big searches
        subprocess.run(
            ["scancel", *job_ids[start : start + 200]], capture_output=True, timeout=60, check=False
        )


def _wait_gone(job_ids: list[str], timeout_s: float) -> None:
    """Wait until no job is pending or running any more, so Ctrl-C leaves nothing behind."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = slurm_states(job_ids)
        if all(state in FINAL_STATES for state in states.values()):
            return
        time.sleep(POLL_S)


# -- settings ---------------------------------------------------------------------------


def _make_submitit(folder: Path) -> Any:
    """A submitit SlurmExecutor writing its files under `folder`; fails clearly without Slurm."""
    try:
        import submitit
    except ImportError as exc:
        raise SettingsError(
            "the slurm executor needs submitit: pip install 'bisect-runs[slurm]'"
        ) from exc
    if shutil.which("sbatch") is None:
        raise SettingsError(
            "the slurm executor needs the Slurm client commands (sbatch not found on PATH)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    return submitit.SlurmExecutor(folder=folder, max_num_timeout=0)


def _parameters(
    partition: str | None,
    cpus_per_trial: int,
    mem_gb: float | None,
    additional_parameters: dict[str, Any] | None,
    setup: list[str] | None,
) -> dict[str, Any]:
    """submitit parameters shared by every job of the search."""
    extra = {"no-requeue": True, **(additional_parameters or {})}  # requeueing is ours: once
    return {
        "job_name": "bisect-runs",
        "partition": partition,
        "cpus_per_task": cpus_per_trial,
        "mem": None if mem_gb is None else _mem(mem_gb),
        "ntasks_per_node": 1,
        "use_srun": False,  # the job step itself runs the trainer; no srun step to wait for
        "signal_delay_s": 60,
        "additional_parameters": extra,
        "setup": setup,
    }


def _mem(mem_gb: float) -> str:
    return f"{int(mem_gb)}GB" if mem_gb == int(mem_gb) else f"{int(mem_gb * 1024)}MB"


def _time_parameters(time_min: int | None, launches: Sequence[Launch]) -> dict[str, Any]:
    """Slurm's time limit: the configured one, else the trial timeout plus a margin, else the partition's."""
    if time_min is not None:
        return {"time": time_min}
    timeouts = [launch.timeout_s for launch in launches if launch.timeout_s is not None]
    if not timeouts:
        return {"time": None}
    return {"time": math.ceil((max(timeouts) + KILL_GRACE_S) / 60) + 2}


def _by_gpus(launches: list[Launch]) -> list[list[Launch]]:
    """Split a batch so that each array job asks for one GPU count."""
    groups: dict[int, list[Launch]] = {}
    for launch in launches:
        groups.setdefault(launch.gpus, []).append(launch)
    return list(groups.values())


def _read_end(path: Path, job_id: str, terminated_ok: bool = False) -> dict[str, Any] | None:
    """The end file written by this job, unless Slurm terminated the job (cancel, preemption).

    `terminated_ok`: also when terminated, for a job the search itself scancelled to stop it.
    """
    try:
        end = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(end, dict) or end.get("job_id") != job_id:
        return None  # another job's (an earlier attempt of the same trial)
    if end.get("terminated") and not terminated_ok:
        return None  # Slurm stopped this one: its state says how it ended
    return end


def _stopped(job: _Job) -> str:
    return f"stopped early (scancel of job {job.job_id})"
