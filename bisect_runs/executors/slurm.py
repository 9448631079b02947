"""Run trials as Slurm jobs through submitit: one job per launch, a job array per batch.

The job runs `run_launch`, which starts the trainer's argv exactly as the local executor
does (same environment contract, same run directory on shared storage, stdout/stderr to
the launch's files, timeout with process-group kill) and writes how it ended as a small
JSON file next to submitit's own files. The executor polls `squeue` (and `sacct` where
accounting is on) for jobs that ended without one: preempted or node-failed jobs are
resubmitted once, then reported as `lost`.

`run_launch` is also what the Ray executor runs inside its tasks.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisect_runs.errors import SettingsError, TrialError
from bisect_runs.executors.base import Executor, Launch, ProcessEnd
from bisect_runs.executors.local import START_ERROR, _environ, _group_members

KILL_GRACE_S = 5.0  # SIGTERM first, SIGKILL this long after, like the local executor
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


# -- inside the job ---------------------------------------------------------------------


def run_launch(
    launch: Launch, cwd: str, end_file: str | None = None, gpus: float | None = None
) -> dict[str, Any]:
    """Run one launch to its end on this node; return (and optionally write) how it ended.

    `cwd` is the directory the search was started in, so relative paths in the command work
    as they do locally. `gpus` is what the job or task was granted (default: `launch.gpus`).
    """
    started = time.monotonic()
    if _pgid_file(
        launch
    ).exists():  # an earlier run of this launch was killed with its job or worker
        kill_noted_group(launch)
        _set_aside(launch)
    launch.run_dir.mkdir(parents=True, exist_ok=True)
    env = job_env(launch, launch.gpus if gpus is None else gpus, os.environ)
    with _noting_sigterm() as terminated:
        returncode, timed_out, start_error = _run_process(launch, env, cwd)
    end = {
        "returncode": returncode,
        "timed_out": timed_out,
        "terminated": bool(terminated),  # scancel, preemption: the exit is not the trainer's result
        "start_error": start_error,
        "wall_s": time.monotonic() - started,
        "host": socket.gethostname(),
        "gpus": env.get("CUDA_VISIBLE_DEVICES", ""),
        "job_id": _slurm_job_id(),
    }
    if end_file is not None:
        _write_json_atomic(Path(end_file), end)
    return end


@contextlib.contextmanager
def _noting_sigterm() -> Iterator[list[int]]:
    """Note a SIGTERM to this job (Slurm cancels and preempts with it) while the trainer runs.

    The trainer gets the signal from Slurm too; noting it lets the executor tell a cancelled
    or preempted job from a trainer that failed. Only in a Slurm job's main thread.
    """
    seen: list[int] = []
    if (
        "SLURM_JOB_ID" not in os.environ
        or threading.current_thread() is not threading.main_thread()
    ):
        yield seen
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        yield seen
    finally:
        signal.signal(signal.SIGTERM, previous)


def _slurm_job_id() -> str | None:
    """This job's id as sbatch and squeue name it (`123`, or `123_4` for an array element)."""
    array_id, task_id = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_id and task_id:
        return f"{array_id}_{task_id}"
    return os.environ.get("SLURM_JOB_ID")


def process_end(
    launch: Launch, end: dict[str, Any], job_id: str | None, extra: dict[str, str]
) -> ProcessEnd:
    """The ProcessEnd of a launch from the end `run_launch` reported, named like the local executor's."""
    gpus, host = str(end.get("gpus") or ""), str(end.get("host") or "")
    start_error = str(end.get("start_error") or "")
    detail = start_error
    if end.get("timed_out"):
        detail = f"no exit after {launch.timeout_s:g} s; process group killed"
    return ProcessEnd(
        trial_id=launch.trial_id,
        status="timeout" if end.get("timed_out") else "exited",
        returncode=end.get("returncode"),
        wall_s=float(end.get("wall_s") or 0.0),
        job_id=job_id,
        slot=f"{host}:gpu:{gpus}" if gpus else (host or None),
        detail=detail,
        extra={**extra, START_ERROR: start_error} if start_error else extra,
    )


def job_env(launch: Launch, gpus: float, environ: Mapping[str, str]) -> dict[str, str]:
    """The trainer's environment: the job's, the contract's variables, the GPUs the cluster granted."""
    env = {**environ, **launch.env}
    if gpus > 0 and "CUDA_VISIBLE_DEVICES" in environ:  # set by Slurm's gres or by Ray
        env["CUDA_VISIBLE_DEVICES"] = environ["CUDA_VISIBLE_DEVICES"]
    elif gpus == 0:  # a CPU trial sees no GPU, as in a local CPU slot
        env["CUDA_VISIBLE_DEVICES"] = ""
    cpus = environ.get("SLURM_CPUS_PER_TASK")
    if cpus and "OMP_NUM_THREADS" not in environ:  # as locally: threads = the trial's CPUs
        env["OMP_NUM_THREADS"] = cpus
    return env


def _run_process(launch: Launch, env: dict[str, str], cwd: str) -> tuple[int | None, bool, str]:
    """Start the trainer in its own process group; kill the whole group on timeout or interrupt.

    Returns (returncode, timed out, why it could not start).
    """
    launch.stdout_path.parent.mkdir(parents=True, exist_ok=True)
    launch.stderr_path.parent.mkdir(parents=True, exist_ok=True)
    with open(launch.stdout_path, "ab") as out, open(launch.stderr_path, "ab") as err:
        try:
            proc = subprocess.Popen(
                list(launch.argv),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        except OSError as exc:  # missing or non-executable trainer: a crash of the trial
            message = f"cannot start {launch.argv[0]!r}: {exc.strerror or exc}"
            err.write(f"bisect-runs: {message}\n".encode())
            return 127, False, message
        _write_pgid(launch, proc.pid)
        try:
            return proc.wait(timeout=launch.timeout_s), False, ""
        except subprocess.TimeoutExpired:
            kill_group(proc)
            return proc.returncode, True, ""
        except BaseException:  # Ray's KeyboardInterrupt on cancel, SystemExit on shutdown
            kill_group(proc)
            raise
        finally:
            _reap_group(proc.pid)
            _pgid_file(launch).unlink(missing_ok=True)


def kill_group(proc: subprocess.Popen[bytes], grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM the process group, SIGKILL it after `grace_s`; wait for the leader."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def _reap_group(pgid: int) -> None:
    """Kill what the trainer left behind in its group (data-loader workers, shells)."""
    _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _pgid_file(launch: Launch) -> Path:
    """Where the running trainer's process group is noted, for a driver that must kill it."""
    return launch.stderr_path.with_name(f".{launch.trial_id}.pgid")


def _write_pgid(launch: Launch, pgid: int) -> None:
    _write_json_atomic(_pgid_file(launch), {"host": socket.gethostname(), "pgid": pgid})


def kill_noted_group(launch: Launch) -> int:
    """Kill what is left of a launch's trainer group if it runs on this host; how many processes."""
    try:
        noted = json.loads(_pgid_file(launch).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    pgid = noted.get("pgid")
    if noted.get("host") != socket.gethostname() or not isinstance(pgid, int):
        return 0
    marker = f"BISECT_RUNS_RUN_DIR={launch.run_dir}".encode()
    members = [
        pid
        for pid in _group_members(pgid)
        if "BISECT_RUNS_RUN_DIR" not in launch.env or marker in _environ(pid)
    ]
    for pid in members:  # only this trial's processes, even if the group id was reused
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(members)


def _set_aside(launch: Launch) -> None:
    """Move a killed run's files to `requeued-N/` beside them, so the rerun starts empty."""
    trial_dir = launch.stderr_path.parent
    if not any(p.exists() for p in (launch.run_dir, launch.stdout_path, launch.stderr_path)):
        return
    n = 1
    while (trial_dir / f"requeued-{n}").exists():
        n += 1
    aside = trial_dir / f"requeued-{n}"
    aside.mkdir(parents=True)
    for path in (launch.run_dir, launch.stdout_path, launch.stderr_path, _pgid_file(launch)):
        if path.exists():
            shutil.move(str(path), str(aside / path.name))


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
    history: list[str] = field(default_factory=list)  # earlier job ids and why they were replaced


class SlurmExecutor(Executor):
    """Submits launches as Slurm jobs (arrays when several start at once) and polls their ends."""

    name = "slurm"
    supports_reattach = True

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
        _check_options(gpus_per_trial, cpus_per_trial, max_parallel, array_parallelism, requeue)
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
        end = _read_end(self.folder / ENDS_DIR / f"{job.launch.trial_id}.json", job.job_id)
        if end is None:
            return False
        del self._jobs[job.job_id]
        self._ends.append(process_end(job.launch, end, job.job_id, self._extra(job)))
        return True

    def _judge(self, job: _Job, state: str | None) -> None:
        """A job with no end file: still queued/running, ended by Slurm, or vanished."""
        if state is None:
            job.unknown_polls += 1
            if job.unknown_polls >= UNKNOWN_POLLS_LOST:
                self._retry_or_lose(job, "Slurm no longer knows the job and it left no result")
            return
        job.unknown_polls = 0
        if state not in FINAL_STATES:
            return
        if _read_end(self.folder / ENDS_DIR / f"{job.launch.trial_id}.json", job.job_id):
            return  # written between the file check and squeue: collected next poll
        if state == "TIMEOUT":
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
        _set_aside(job.launch)
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


def _check_options(
    gpus_per_trial: int,
    cpus_per_trial: int,
    max_parallel: int,
    array_parallelism: int | None,
    requeue: int,
) -> None:
    problems = []
    if gpus_per_trial < 0:
        problems.append(f"gpus_per_trial must be >= 0, got {gpus_per_trial}")
    if cpus_per_trial < 1:
        problems.append(f"cpus_per_trial must be >= 1, got {cpus_per_trial}")
    if max_parallel < 1:
        problems.append(f"max_parallel must be >= 1, got {max_parallel}")
    if array_parallelism is not None and array_parallelism < 1:
        problems.append(f"array_parallelism must be >= 1, got {array_parallelism}")
    if requeue < 0:
        problems.append(f"requeue must be >= 0, got {requeue}")
    if problems:
        raise SettingsError("slurm: " + "; ".join(problems))


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


def _read_end(path: Path, job_id: str) -> dict[str, Any] | None:
    """The end file written by this job, unless Slurm terminated the job (cancel, preemption)."""
    try:
        end = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(end, dict) or end.get("job_id") != job_id or end.get("terminated"):
        return None  # another job's, or Slurm stopped this one: its state says how it ended
    return end
