"""The local executor: a pool of GPU or CPU slots on this machine, one trainer process per slot.

Each slot has a worker thread that starts a launch in a new session (its own process group),
blocks until it exits, and reports a `ProcessEnd`. A timeout or `cancel()` sends SIGTERM to
the whole group, then SIGKILL after a grace period; leftovers of a group (grandchildren) are
killed when its leader exits, so a slot is free when its trial is reported.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bisect_runs.errors import SettingsError
from bisect_runs.executors.base import STOPPED, Executor, Launch, ProcessEnd
from bisect_runs.executors.processes import alive, environ_of, group_members
from bisect_runs.trials import START_ERROR, record_environment


@dataclass(frozen=True)
class Slot:
    """Where one trial runs: a label ("gpu:0,1", "cpu:3") and the environment that pins it there."""

    label: str
    env: dict[str, str]


@dataclass
class _Running:
    launch: Launch
    proc: subprocess.Popen[bytes]
    started: float
    reason: str = "exited"  # "timeout", "interrupted" or "stopped" once we decide to stop it
    exited: threading.Event = field(default_factory=threading.Event)


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES, else torch, else `nvidia-smi -L`."""
    environ = os.environ if environ is None else environ
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return _parse_visible(listed)
    if "torch" not in sys.modules:
        smi = shutil.which("nvidia-smi")
        if smi is not None:
            return _nvidia_smi(smi)
        if importlib.util.find_spec("torch") is None or _no_gpu_devices():
            return []  # importing torch only to learn there is no GPU costs seconds
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def _no_gpu_devices() -> bool:
    """On Linux, no NVIDIA or ROCm device node: torch would find no GPU either."""
    if not sys.platform.startswith("linux"):
        return False
    return not glob.glob("/dev/nvidia[0-9]*") and not os.path.exists("/dev/kfd")


def _parse_visible(listed: str) -> list[str]:
    """Ids from CUDA_VISIBLE_DEVICES; like CUDA, stop at the first negative id ("-1" hides all)."""
    ids = []
    for item in (part.strip() for part in listed.split(",")):
        if not item or item.startswith("-"):
            break
        ids.append(item)
    return ids


def _nvidia_smi(smi: str) -> list[str]:
    try:
        out = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [
        str(i)
        for i, line in enumerate(line for line in out.splitlines() if line.startswith("GPU "))
    ]


def plan_slots(
    devices: Sequence[str],
    gpus_per_trial: int | str | None = None,
    parallel: int | str = "auto",
    threads_per_trial: int | None = None,
    cpu_count: int | None = None,
) -> list[Slot]:
    """Slots of K GPUs each when GPUs are visible (K = gpus_per_trial, default 1), else CPU slots."""
    k = _gpus_per_trial(gpus_per_trial, devices)
    if parallel != "auto" and (
        not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1
    ):
        raise SettingsError(f"parallel must be a positive integer or 'auto' (got {parallel!r})")
    if k > 0:
        groups = [list(devices[i : i + k]) for i in range(0, len(devices) - k + 1, k)]
        count = len(groups) if parallel == "auto" else min(int(parallel), len(groups))
        return [
            Slot("gpu:" + ",".join(g), {"CUDA_VISIBLE_DEVICES": ",".join(g)})
            for g in groups[:count]
        ]
    cpus = cpu_count or os.cpu_count() or 1
    if parallel == "auto":
        threads = threads_per_trial or 1
        count = max(1, cpus // threads)
    else:
        count = int(parallel)
        threads = threads_per_trial or max(1, cpus // count)
    env = {"CUDA_VISIBLE_DEVICES": ""}
    if "OMP_NUM_THREADS" not in os.environ:  # keep parallel CPU trainers from oversubscribing cores
        env["OMP_NUM_THREADS"] = str(threads)
    return [Slot(f"cpu:{i}", dict(env)) for i in range(count)]


def _gpus_per_trial(value: int | str | None, devices: Sequence[str]) -> int:
    """0, None or "auto": one GPU per trial when any is visible, else CPU; K > 0 needs K GPUs."""
    if value in (None, 0, "auto"):
        return 1 if devices else 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SettingsError(
            f"gpus_per_trial must be a non-negative integer or 'auto' (got {value!r})"
        )
    if value > len(devices):
        seen = ", ".join(devices) if devices else "none"
        raise SettingsError(
            f"gpus_per_trial is {value} but only {len(devices)} GPU(s) are visible ({seen})"
        )
    return value


class LocalExecutor(Executor):
    """Runs trainer processes on this machine, one per slot, each in its own process group."""

    name = "local"
    supports_stop = True

    def __init__(
        self,
        parallel: int | str = "auto",
        gpus_per_trial: int | str | None = None,
        devices: Sequence[str] | None = None,
        threads_per_trial: int | None = None,
        grace_s: float = 5.0,
        cwd: str | Path | None = None,
    ) -> None:
        gpus = list(devices) if devices is not None else visible_gpus()
        self.slots = plan_slots(gpus, gpus_per_trial, parallel, threads_per_trial)
        self.grace_s = grace_s
        self.cwd = None if cwd is None else str(cwd)
        self._launches: queue.Queue[Launch | None] = queue.Queue()
        self._ends: queue.Queue[ProcessEnd] = queue.Queue()
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._outstanding = 0  # submitted and not yet put on `_ends`
        self._returned_pending = 0  # submitted and not yet returned by wait/cancel
        self._cancelling = False
        self._error: BaseException | None = None
        self._workers: list[threading.Thread] = []

    @property
    def capacity(self) -> int:
        return len(self.slots)

    def submit(self, launches: Sequence[Launch]) -> None:
        """Queue launches; a worker per slot starts them as slots free up."""
        self._start_workers()
        with self._lock:
            self._outstanding += len(launches)
            self._returned_pending += len(launches)
        for launch in launches:
            self._launches.put(launch)

    def wait(self, timeout: float | None = None) -> list[ProcessEnd]:
        """Block until a launch ends (or timeout); return every end not yet returned."""
        if self._error is not None:
            raise self._error
        try:
            ends = [self._ends.get(timeout=timeout)]
        except queue.Empty:
            return []
        ends.extend(self._drain())
        with self._lock:
            self._returned_pending -= len(ends)
        return ends

    def cancel(self) -> list[ProcessEnd]:
        """Stop every queued and running launch; return all ends not yet returned by `wait`."""
        with self._lock:
            self._cancelling = True
            running = list(self._running.values())
        for item in running:
            item.reason = "interrupted"
        self._stop_all(running)
        with self._idle:
            while self._outstanding > 0:
                self._idle.wait(timeout=1.0)
            self._cancelling = False
        ends = self._drain()
        with self._lock:
            self._returned_pending -= len(ends)
        return ends

    def pending(self) -> int:
        return self._returned_pending

    def stop(self, trial_id: str) -> bool:
        """End one running trial early (SIGTERM to its group, SIGKILL after the grace period)."""
        with self._lock:
            item = self._running.get(trial_id)
            if item is None or item.exited.is_set() or item.reason != "exited":
                return False
            item.reason = STOPPED
        # in the background: the caller goes on watching the other trials meanwhile
        threading.Thread(target=self._stop_all, args=([item],), name=f"stop {trial_id}", daemon=True).start()
        return True

    def close(self) -> None:
        """Stop anything still running and end the worker threads."""
        if self._outstanding > 0:
            self.cancel()
        for _ in self._workers:
            self._launches.put(None)
        for worker in self._workers:
            worker.join(timeout=5.0)
        self._workers = []

    def stop_leftover(self, launch: Launch, job_id: str) -> int:
        """Kill what is left of a trial an earlier, killed search started (by pid = process group)."""
        try:
            pgid = int(job_id)
        except ValueError:
            return 0
        marker = f"BISECT_RUNS_RUN_DIR={launch.run_dir}".encode()
        pids = [pid for pid in group_members(pgid) if marker in environ_of(pid)]
        for pid in pids:
            _signal(pid, signal.SIGKILL, group=False)
        deadline = time.monotonic() + self.grace_s
        while pids and time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.02)
        return len(pids)

    # -- workers ------------------------------------------------------------------------

    def _start_workers(self) -> None:
        if self._workers:
            return
        self._base_env = dict(os.environ)
        for slot in self.slots:
            worker = threading.Thread(
                target=self._work, args=(slot,), name=f"bisect-runs {slot.label}", daemon=True
            )
            worker.start()
            self._workers.append(worker)

    def _work(self, slot: Slot) -> None:
        while True:
            launch = self._launches.get()
            if launch is None:
                return
            try:
                end = self._run(launch, slot)
            except BaseException as exc:  # reported from wait() in the calling thread
                self._error = exc
                end = ProcessEnd(
                    launch.trial_id,
                    "lost",
                    None,
                    0.0,
                    slot=slot.label,
                    detail=f"executor error: {exc}",
                )
            with self._idle:
                self._ends.put(end)
                self._outstanding -= 1
                self._idle.notify_all()

    def _run(self, launch: Launch, slot: Slot) -> ProcessEnd:
        env = {**self._base_env, **launch.env, **slot.env}
        record_environment(launch, env)
        with self._lock:
            if self._cancelling:
                return ProcessEnd(
                    launch.trial_id,
                    "interrupted",
                    None,
                    0.0,
                    slot=slot.label,
                    detail="cancelled before it started",
                )
            started = time.monotonic()
            try:
                proc = _popen(launch, env, launch.cwd or self.cwd)
            except OSError as exc:
                return _start_failure(launch, slot, exc, time.monotonic() - started)
            item = _Running(launch, proc, started)
            self._running[launch.trial_id] = item
        if self.on_submitted is not None:
            try:
                self.on_submitted(launch.trial_id, str(proc.pid))
            except Exception as exc:  # the trial runs on; wait() raises this in the caller's thread
                self._error = exc
        timer = self._timer(item)
        _wait_exit(proc)
        wall = time.monotonic() - started
        item.exited.set()
        # Grandchildren left in the group; the unreaped leader keeps the group id ours meanwhile.
        _signal(proc.pid, signal.SIGKILL)
        proc.wait()
        _wait_group_gone(proc.pid, limit_s=2.0)
        if timer is not None:
            timer.cancel()
        with self._lock:
            self._running.pop(launch.trial_id, None)
        detail = (
            f"no exit after {launch.timeout_s:g} s; process group killed"
            if item.reason == "timeout"
            else ""
        )
        return ProcessEnd(
            launch.trial_id,
            item.reason,
            proc.returncode,
            wall,
            job_id=str(proc.pid),
            slot=slot.label,
            detail=detail,
            extra={"pid": str(proc.pid)},
        )

    def _timer(self, item: _Running) -> threading.Timer | None:
        if not item.launch.timeout_s:
            return None
        timer = threading.Timer(item.launch.timeout_s, self._expire, (item,))
        timer.daemon = True
        timer.start()
        return timer

    def _expire(self, item: _Running) -> None:
        if not item.exited.is_set() and item.reason == "exited":
            item.reason = "timeout"
            self._stop_all([item])

    def _stop_all(self, items: Sequence[_Running]) -> None:
        """SIGTERM each process group, then SIGKILL the groups still alive after the grace period."""
        for item in items:
            _signal(item.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for item in items:
            if not item.exited.wait(max(0.0, deadline - time.monotonic())):
                _signal(item.proc.pid, signal.SIGKILL)

    def _drain(self) -> list[ProcessEnd]:
        ends = []
        while True:
            try:
                ends.append(self._ends.get_nowait())
            except queue.Empty:
                return ends


def _popen(launch: Launch, env: dict[str, str], cwd: str | None) -> subprocess.Popen[bytes]:
    """Start a launch in its own session, output to its log files, never through a shell."""
    launch.stdout_path.parent.mkdir(parents=True, exist_ok=True)
    with open(launch.stdout_path, "ab") as out, open(launch.stderr_path, "ab") as err:
        return subprocess.Popen(
            list(launch.argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )


def _start_failure(launch: Launch, slot: Slot, exc: OSError, wall: float) -> ProcessEnd:
    message = f"cannot start {launch.argv[0]!r}: {exc.strerror or exc}"
    with open(launch.stderr_path, "a", encoding="utf-8") as err:
        err.write(f"bisect-runs: {message}\n")
    return ProcessEnd(
        launch.trial_id,
        "exited",
        127,
        wall,
        slot=slot.label,
        detail=message,
        extra={START_ERROR: message},
    )


def _wait_exit(proc: subprocess.Popen[bytes]) -> None:
    """Block until the process exits without reaping it (so its process group id stays ours)."""
    if hasattr(os, "waitid"):
        try:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            return
        except ChildProcessError:
            pass  # already reaped: Popen.wait below returns at once
    proc.wait()


def _signal(pid: int, sig: signal.Signals, group: bool = True) -> None:
    """Send a signal to a process group (or one process) that may already be gone."""
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # nothing left to stop


def _wait_group_gone(pgid: int, limit_s: float) -> None:
    """Wait (briefly) until no live process is left in a killed group, so its GPUs are free."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return  # the usual case: nothing was left
    deadline = time.monotonic() + limit_s
    while any(alive(pid) for pid in group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.01)
