"""Inside a cluster job or task: run one launch to its end and report how it ended.

`run_launch` starts the trainer's argv exactly as the local executor does (same environment
contract, same run directory on shared storage, stdout/stderr to the launch's files,
timeout with process-group kill) and returns (or writes as a small JSON file) how it
ended; `process_end` turns that into the ProcessEnd the driver reports. Slurm jobs and
Ray tasks both run it, so neither backend imports the other.
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
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bisect_runs.atomic import write_json
from bisect_runs.executors.base import Launch, ProcessEnd
from bisect_runs.executors.processes import environ_of, group_members
from bisect_runs.trials import START_ERROR, record_environment

KILL_GRACE_S = 5.0  # SIGTERM first, SIGKILL this long after, like the local executor


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
        set_aside(launch)
    launch.run_dir.mkdir(parents=True, exist_ok=True)
    env = job_env(launch, launch.gpus if gpus is None else gpus, os.environ)
    record_environment(launch, env)
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
        write_json(Path(end_file), end)
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
            # A timed wait polls, so Ray's cancel (KeyboardInterrupt in this thread) lands at once;
            # an untimed one would block in waitpid until the trainer exits on its own.
            return proc.wait(timeout=math.inf if launch.timeout_s is None else launch.timeout_s), False, ""
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
    write_json(_pgid_file(launch), {"host": socket.gethostname(), "pgid": pgid})


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
        for pid in group_members(pgid)
        if "BISECT_RUNS_RUN_DIR" not in launch.env or marker in environ_of(pid)
    ]
    for pid in members:  # only this trial's processes, even if the group id was reused
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(members)


def set_aside(launch: Launch) -> None:
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


