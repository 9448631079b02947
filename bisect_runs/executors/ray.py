"""Run trials as Ray tasks: one task per launch, on a Ray cluster or a local instance.

Each task runs `run_launch` (the same function Slurm jobs run), so the trainer sees the
same command, environment and run directory as locally. Cancel interrupts the tasks (the
task kills its trainer's process group), then force-cancels stragglers. A worker or node
that dies is retried `requeue` times by Ray, then reported as `lost`. `stop` interrupts one
task the same way; it is reported as stopped, however it then ends.

Ray tasks die with the driver, so this executor cannot re-attach: `--resume` runs the
trials a previous search left unfinished again.
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bisect_runs.errors import SettingsError
from bisect_runs.executors.base import STOPPED, Executor, Launch, ProcessEnd, check_limits
from bisect_runs.executors.job import kill_noted_group, process_end, run_launch

CANCEL_GRACE_S = 10.0  # time for interrupted tasks to stop their trainers before a forced cancel


class RayExecutor(Executor):
    """Submits each launch as a Ray task with its CPUs and GPUs; collects ends with `ray.wait`."""

    name = "ray"
    supports_reattach = False
    supports_stop = True

    def __init__(
        self,
        address: str | None = None,
        num_cpus_per_trial: float = 1,
        num_gpus_per_trial: float = 0,
        num_cpus: int | None = None,
        num_gpus: int | None = None,
        max_parallel: int | None = None,
        requeue: int = 1,
        cwd: str | Path | None = None,
    ) -> None:
        check_limits("ray", [("num_cpus_per_trial", num_cpus_per_trial, 0), ("num_gpus_per_trial", num_gpus_per_trial, 0),
                             ("max_parallel", max_parallel, 1), ("requeue", requeue, 0)])
        self._ray = _import_ray()
        self.num_cpus_per_trial = num_cpus_per_trial
        self.num_gpus_per_trial = num_gpus_per_trial
        self.requeue = requeue
        self.cwd = str(Path(cwd or os.getcwd()).resolve())  # where trainers start, as locally
        self._owns_ray = _connect(self._ray, address, num_cpus, num_gpus)
        self._capacity = max_parallel or self._fit()
        self._task = self._ray.remote(run_launch)
        self._running: dict[Any, tuple[Launch, float]] = {}  # object ref -> (launch, submit time)
        self._stopping: set[Any] = set()  # refs of tasks `stop` interrupted

    @property
    def capacity(self) -> int:
        return self._capacity

    def pending(self) -> int:
        return len(self._running)

    def submit(self, launches: Sequence[Launch]) -> None:
        for launch in launches:
            gpus = launch.gpus or self.num_gpus_per_trial
            ref = self._task.options(
                num_cpus=self.num_cpus_per_trial,
                num_gpus=gpus,
                max_retries=self.requeue,
                retry_exceptions=False,
                name=f"bisect-runs:{launch.trial_id}",
            ).remote(launch, launch.cwd or self.cwd, None, gpus)
            self._running[ref] = (launch, time.monotonic())
            task_id = _task_id(ref)
            if self.on_submitted is not None and task_id is not None:
                self.on_submitted(launch.trial_id, task_id)

    def wait(self, timeout: float | None = None) -> list[ProcessEnd]:
        if not self._running:
            return []
        refs = list(self._running)
        ready, _ = self._ray.wait(refs, num_returns=1, timeout=timeout)
        if not ready:
            return []
        ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        return [self._end(ref) for ref in ready]

    def cancel(self) -> list[ProcessEnd]:
        """Interrupt every task (its trainer group is killed), force-cancel what does not stop."""
        refs = list(self._running)
        for ref in refs:
            self._ray.cancel(ref, force=False)
        _, stuck = (
            self._ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
            if refs
            else ([], [])
        )
        for ref in stuck:
            self._ray.cancel(ref, force=True)
            kill_noted_group(self._running[ref][0])
        ends = []
        for ref in refs:
            launch, submitted = self._running.pop(ref)
            self._stopping.discard(ref)
            ends.append(
                ProcessEnd(
                    launch.trial_id,
                    "interrupted",
                    None,
                    time.monotonic() - submitted,
                    job_id=_task_id(ref),
                    detail="cancelled (ray.cancel)",
                )
            )
        return ends

    def stop(self, trial_id: str) -> bool:
        """Interrupt one trial's task (it kills its trainer's group); its end comes back STOPPED."""
        ref = next((r for r, (launch, _) in self._running.items() if launch.trial_id == trial_id), None)
        if ref is None or ref in self._stopping:
            return False
        self._stopping.add(ref)
        self._ray.cancel(ref, force=False)
        return True

    def close(self) -> None:
        """Stop what still runs; shut down the Ray instance if this executor started it."""
        if self._running:
            self.cancel()
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()

    def stop_leftover(self, launch: Launch, job_id: str) -> int:
        """Kill a trainer an earlier, killed search left running on this host (tasks die, trainers may not)."""
        return kill_noted_group(launch)

    def _fit(self) -> int:
        """How many trials the cluster runs at once with the per-trial CPUs and GPUs."""
        resources = self._ray.cluster_resources()
        fits = (
            [int(resources.get("CPU", 1) // self.num_cpus_per_trial)]
            if self.num_cpus_per_trial
            else []
        )
        if self.num_gpus_per_trial:
            fits.append(int(resources.get("GPU", 0) // self.num_gpus_per_trial))
        return max(1, min(fits or [1]))

    def _end(self, ref: Any) -> ProcessEnd:
        """The ProcessEnd of a finished task; STOPPED for one `stop` interrupted, however it ended."""
        end = self._task_end(ref)
        if ref not in self._stopping:
            return end
        self._stopping.discard(ref)
        return dataclasses.replace(end, status=STOPPED, detail="stopped early (ray.cancel)")

    def _task_end(self, ref: Any) -> ProcessEnd:
        """The ProcessEnd of a finished task: its returned end, or why Ray could not run it."""
        launch, submitted = self._running.pop(ref)
        exceptions = self._ray.exceptions
        try:
            end = self._ray.get(ref)
        except exceptions.TaskCancelledError:
            return self._process_end(
                launch, "interrupted", None, submitted, ref, "cancelled (ray.cancel)"
            )
        except exceptions.RayTaskError as exc:  # the task itself raised: not a trainer result
            detail = f"the Ray task failed: {_last_line(exc)}"
            return self._process_end(launch, "lost", None, submitted, ref, detail)
        except exceptions.RayError as exc:  # worker or node died (after `requeue` retries)
            kill_noted_group(launch)  # its trainer outlives the worker
            detail = f"{type(exc).__name__}: {_last_line(exc)}"
            return self._process_end(launch, "lost", None, submitted, ref, detail)
        return process_end(launch, end, _task_id(ref), {"executor": "ray"})

    def _process_end(
        self,
        launch: Launch,
        status: str,
        returncode: int | None,
        submitted: float,
        ref: Any,
        detail: str,
    ) -> ProcessEnd:
        wall = time.monotonic() - submitted
        return ProcessEnd(
            launch.trial_id,
            status,
            returncode,
            wall,
            job_id=_task_id(ref),
            detail=detail,
            extra={"executor": "ray"},
        )


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise SettingsError("the ray executor needs Ray: pip install 'bisect-runs[ray]'") from exc
    return ray


def _connect(ray: Any, address: str | None, num_cpus: int | None, num_gpus: int | None) -> bool:
    """Join the cluster at `address`, reuse a running connection, or start a local instance.

    Returns whether this executor started Ray (and so shuts it down on close).
    """
    if ray.is_initialized():
        return False
    if address is not None:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, log_to_driver=False)
    return True


def _task_id(ref: Any) -> str | None:
    try:
        return str(ref.task_id().hex())
    except AttributeError:
        return None


def _last_line(exc: BaseException) -> str:
    """The last non-empty line of an exception's text (Ray's include whole tracebacks)."""
    text = str(exc).strip() or "".join(traceback.format_exception_only(type(exc), exc)).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
