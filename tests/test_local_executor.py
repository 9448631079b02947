"""The local executor: GPU/CPU slots, process groups, timeouts, cancel, the registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from trainers import fake_command, yaml_writer

from bisect_runs.errors import SettingsError
from bisect_runs.executors import get_executor
from bisect_runs.executors.base import Executor, Launch, ProcessEnd
from bisect_runs.executors.local import LocalExecutor, plan_slots, visible_gpus
from bisect_runs.trials import START_ERROR, make_trial, prepare_launch


def _launches(tmp_path: Path, n: int, fake: dict, timeout_s: float | None = None) -> list[Launch]:  # type: ignore[type-arg]
    write = yaml_writer({"fake": fake})
    trials = [make_trial("t", {}, seed, 10, fake_command()) for seed in range(n)]
    return [prepare_launch(t, tmp_path, write, timeout_s=timeout_s) for t in trials]


def _collect(executor: Executor, n: int, limit: float = 60.0) -> list[ProcessEnd]:
    ends: list[ProcessEnd] = []
    deadline = time.monotonic() + limit
    while len(ends) < n and time.monotonic() < deadline:
        ends.extend(executor.wait(timeout=1.0))
    assert len(ends) == n, f"only {len(ends)} of {n} launches ended"
    return ends


def _seen(launch: Launch) -> dict:  # type: ignore[type-arg]
    return json.loads((launch.run_dir / "trainer.json").read_text())


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_gpu_slots_from_visible_devices_pin_each_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,7,9,11")
    executor = LocalExecutor(gpus_per_trial=2)
    assert [s.label for s in executor.slots] == ["gpu:3,5", "gpu:7,9"]  # GPU 11 alone cannot hold a trial
    launches = _launches(tmp_path, 6, {"sleep": 0.2})
    with executor:
        executor.submit(launches)
        ends = _collect(executor, 6)
    assert {e.status for e in ends} == {"exited"} and {e.returncode for e in ends} == {0}
    for end, launch in zip(sorted(ends, key=lambda e: e.trial_id), sorted(launches, key=lambda la: la.trial_id), strict=True):
        assert _seen(launch)["env"]["CUDA_VISIBLE_DEVICES"] == end.slot.split(":")[1]  # type: ignore[union-attr]
    assert {e.slot for e in ends} == {"gpu:3,5", "gpu:7,9"}


def test_slots_are_exclusive(tmp_path: Path) -> None:
    counter = tmp_path / "counter.txt"
    launches = _launches(tmp_path, 6, {"sleep": 0.3, "counter": str(counter)})
    with LocalExecutor(parallel="auto", devices=["0", "1"]) as executor:
        executor.submit(launches)
        _collect(executor, 6)
    spans: dict[tuple[str, str], list[float]] = {}
    for line in counter.read_text().splitlines():
        event, tag, when, gpu = line.split()
        spans.setdefault((gpu, tag), []).append(float(when))
    per_gpu: dict[str, list[list[float]]] = {}
    for (gpu, _), times in spans.items():
        per_gpu.setdefault(gpu, []).append(sorted(times))
    assert set(per_gpu) == {"0", "1"} and sum(len(v) for v in per_gpu.values()) == 6
    for intervals in per_gpu.values():
        intervals.sort()
        assert all(a[1] <= b[0] for a, b in zip(intervals, intervals[1:], strict=False)), intervals


def test_cpu_slots_hide_gpus_and_limit_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    launches = _launches(tmp_path, 2, {})
    with LocalExecutor(parallel=2, devices=[]) as executor:
        assert executor.capacity == 2
        executor.submit(launches)
        ends = _collect(executor, 2)
    assert sorted(e.slot or "" for e in ends) == ["cpu:0", "cpu:1"]
    env = _seen(launches[0])["env"]
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2))
    assert env["BISECT_RUNS_SEED"] == "0" and env["BISECT_RUNS_RUN_DIR"] == str(launches[0].run_dir)


def test_plan_slots_rules() -> None:
    assert len(plan_slots([], parallel="auto", threads_per_trial=4, cpu_count=16)) == 4
    assert len(plan_slots([], parallel=3, cpu_count=16)) == 3
    assert [s.label for s in plan_slots(["0", "1", "2"], parallel=2)] == ["gpu:0", "gpu:1"]
    assert [s.label for s in plan_slots(["0", "1", "2"], gpus_per_trial=3)] == ["gpu:0,1,2"]
    with pytest.raises(SettingsError, match=r"^gpus_per_trial is 2 but only 1 GPU\(s\) are visible \(0\)$"):
        plan_slots(["0"], gpus_per_trial=2)
    with pytest.raises(SettingsError, match=r"^gpus_per_trial is 1 but only 0 GPU\(s\) are visible \(none\)$"):
        plan_slots([], gpus_per_trial=1)
    with pytest.raises(SettingsError, match=r"^parallel must be a positive integer or 'auto' \(got 0\)$"):
        plan_slots([], parallel=0)


@pytest.mark.parametrize(("listed", "ids"), [("0,1", ["0", "1"]), ("", []), ("-1", []), ("2,-1,3", ["2"]), ("GPU-ab12, 1", ["GPU-ab12", "1"])])
def test_visible_gpus_from_environment(listed: str, ids: list[str]) -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": listed}) == ids


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    [launch] = _launches(tmp_path, 1, {"sleep": 60, "grandchild": True, "ignore_sigterm": True}, timeout_s=1.0)
    with LocalExecutor(parallel=1, devices=[], grace_s=0.5) as executor:
        executor.submit([launch])
        started = time.monotonic()
        [end] = _collect(executor, 1)
    assert end.status == "timeout" and end.returncode == -9
    assert 1.0 <= time.monotonic() - started < 10
    grandchild = int((launch.run_dir / "grandchild.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), "the trainer's grandchild survived the timeout"
    assert _seen(launch)["pid"] == int(end.job_id or 0)


def test_cancel_stops_running_and_queued_launches(tmp_path: Path) -> None:
    launches = _launches(tmp_path, 4, {"sleep": 60, "grandchild": True})
    with LocalExecutor(parallel=2, devices=[], grace_s=1.0) as executor:
        executor.submit(launches)
        deadline = time.monotonic() + 30
        while sum((la.run_dir / "grandchild.pid").exists() for la in launches) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        ends = executor.cancel()
        assert executor.pending() == 0
    assert len(ends) == 4 and {e.status for e in ends} == {"interrupted"}
    assert sorted(e.returncode is None for e in ends) == [False, False, True, True]  # two never started
    for launch in launches[:2]:
        pid_file = launch.run_dir / "grandchild.pid"
        if pid_file.exists():
            assert not _alive(int(pid_file.read_text()))


def test_stop_ends_one_running_launch_and_leaves_the_others(tmp_path: Path) -> None:
    first, second = _launches(tmp_path, 2, {"sleep": 3, "grandchild": True})
    with LocalExecutor(parallel=2, devices=[], grace_s=1.0) as executor:
        assert executor.supports_stop and not executor.stop(first.trial_id)  # not started yet
        executor.submit([first, second])
        deadline = time.monotonic() + 30
        while not (first.run_dir / "grandchild.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert executor.stop(first.trial_id) and not executor.stop(first.trial_id)  # asked once
        ends = {e.trial_id: e for e in _collect(executor, 2)}
    assert ends[first.trial_id].status == "stopped" and ends[first.trial_id].returncode == -15
    assert ends[second.trial_id].status == "exited" and ends[second.trial_id].returncode == 0
    grandchild = int((first.run_dir / "grandchild.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), "the stopped trainer's grandchild survived"


def test_executor_is_reusable_after_cancel(tmp_path: Path) -> None:
    with LocalExecutor(parallel=1, devices=[]) as executor:
        executor.submit(_launches(tmp_path / "a", 1, {"sleep": 60}))
        time.sleep(0.3)
        executor.cancel()
        executor.submit(_launches(tmp_path / "b", 1, {}))
        [end] = _collect(executor, 1)
    assert (end.status, end.returncode) == ("exited", 0)


def test_a_missing_command_is_reported_not_raised(tmp_path: Path) -> None:
    [launch] = _launches(tmp_path, 1, {})
    launch = Launch(launch.trial_id, ("no-such-trainer-xyz", "--x"), launch.run_dir, {}, launch.stdout_path, launch.stderr_path)
    with LocalExecutor(parallel=1, devices=[]) as executor:
        executor.submit([launch])
        [end] = _collect(executor, 1)
    assert end.returncode == 127 and "cannot start 'no-such-trainer-xyz'" in end.extra[START_ERROR]
    assert "No such file or directory" in launch.stderr_path.read_text()


def test_job_ids_are_reported_as_processes_start(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    launches = _launches(tmp_path, 2, {})
    with LocalExecutor(parallel=2, devices=[]) as executor:
        executor.on_submitted = lambda tid, job: seen.append((tid, job))
        executor.submit(launches)
        ends = _collect(executor, 2)
    assert sorted(seen) == sorted((e.trial_id, e.job_id) for e in ends)


def test_stop_leftover_kills_only_the_trials_own_processes(tmp_path: Path) -> None:
    [launch] = _launches(tmp_path, 1, {"sleep": 60})
    orphan = subprocess.Popen(launch.argv, env={**os.environ, **launch.env}, start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not (launch.run_dir / "trainer.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        executor = LocalExecutor(parallel=1, devices=[])
        assert executor.stop_leftover(launch, str(other.pid)) == 0  # not this trial's process
        assert executor.stop_leftover(launch, str(orphan.pid)) == 1
        assert orphan.wait(timeout=10) == -9
        assert other.poll() is None
    finally:
        for proc in (orphan, other):
            proc.kill()
            proc.wait()


def test_registry_names_valid_executors_and_options() -> None:
    with pytest.raises(SettingsError, match=r"^unknown executor 'k8s'; valid: local, slurm, ray$"):
        get_executor("k8s")
    with pytest.raises(SettingsError) as err:
        get_executor("local", paralel=2, gpus=1)
    assert str(err.value) == (
        "local executor: unknown option(s) gpus, paralel; valid: parallel, gpus_per_trial, devices, threads_per_trial, grace_s, cwd"
    )
    executor = get_executor("local", parallel=3, devices=[])
    assert isinstance(executor, LocalExecutor) and executor.capacity == 3
