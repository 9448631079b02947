"""The Ray executor against a real local Ray instance: one Ray task per trial.

The instance starts once for the module (through the executor, which owns and shuts it down).
With BISECT_RUNS_REQUIRE_CLUSTER=1 (CI) a missing Ray is a failure instead of a skip.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from bisect_runs.cli import cli
from bisect_runs.errors import SettingsError
from bisect_runs.executors.base import Executor, Launch, ProcessEnd
from bisect_runs.journal import read_journal
from tests.cluster_early_stop import search_stopping_early
from tests.trainers import FAKE_TRAINER

pytestmark = pytest.mark.ray

TRAINER = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    from pathlib import Path

    run_dir = Path(os.environ["BISECT_RUNS_RUN_DIR"])
    mode = sys.argv[1]
    if mode == "env":
        seen = {k: v for k, v in os.environ.items() if k.startswith("BISECT_RUNS_")}
        seen["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES")
        (run_dir / "env.json").write_text(json.dumps({"env": seen, "cwd": os.getcwd()}))
        print("to stdout")
        print("to stderr", file=sys.stderr)
        sys.exit(int(sys.argv[2]))
    if mode == "hang":  # note our pids (and a grandchild's) once per attempt, then hang
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(run_dir / "pids.jsonl", "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "child": child.pid}) + "\\n")
        time.sleep(float(sys.argv[2]))
    """
)


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    """One local Ray instance for the module, started and shut down by a RayExecutor."""
    try:
        import ray
    except ImportError as exc:
        if os.environ.get("BISECT_RUNS_REQUIRE_CLUSTER") == "1":
            pytest.fail(f"BISECT_RUNS_REQUIRE_CLUSTER=1 but Ray is not importable: {exc}")
        pytest.skip(f"Ray is not installed (pip install 'bisect-runs[ray]'): {exc}")
    from bisect_runs.executors.ray import RayExecutor

    assert not ray.is_initialized()
    owner = RayExecutor(num_cpus=4)
    yield
    owner.close()
    assert not ray.is_initialized()  # the executor that started Ray shut it down


@pytest.fixture
def trainer(tmp_path: Path) -> Path:
    path = tmp_path / "trainer.py"
    path.write_text(TRAINER)
    return path


def make_launch(
    tmp_path: Path, trial_id: str, args: list[str], timeout_s: float | None = 60
) -> Launch:
    trial = tmp_path / "trials" / trial_id
    run_dir = trial / "run"
    env = {"BISECT_RUNS_RUN_DIR": str(run_dir), "BISECT_RUNS_SEED": "3", "BISECT_RUNS_STEPS": "50"}
    return Launch(
        trial_id,
        (sys.executable, *args),
        run_dir,
        env,
        trial / "stdout.log",
        trial / "stderr.log",
        timeout_s,
    )


def collect(executor: Executor, n: int, timeout_s: float = 60.0) -> dict[str, ProcessEnd]:
    ends: dict[str, ProcessEnd] = {}
    deadline = time.monotonic() + timeout_s
    while len(ends) < n:
        assert time.monotonic() < deadline, f"only {len(ends)} of {n} trials ended: {ends}"
        ends.update((e.trial_id, e) for e in executor.wait(timeout=1.0))
    return ends


def wait_until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def gone(noted: dict[str, int]) -> bool:
    return not alive(noted["pid"]) and not alive(noted["child"])


def pids(launch: Launch) -> list[dict[str, int]]:
    """Pids the trainer noted, over every run of the launch (killed runs are set aside)."""
    trial_dir = launch.stderr_path.parent
    runs = sorted(trial_dir.glob("requeued-*/run"), key=lambda p: int(p.parent.name.split("-")[1]))
    noted = []
    for run_dir in [*runs, launch.run_dir]:
        path = run_dir / "pids.jsonl"
        if path.exists():
            noted += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return noted


def test_runs_trainer_as_locally(ray_instance: None, tmp_path: Path, trainer: Path) -> None:
    from bisect_runs.executors.ray import RayExecutor

    ok = make_launch(tmp_path, "ok", [str(trainer), "env", "0"])
    bad = make_launch(tmp_path, "bad", [str(trainer), "env", "4"])
    with RayExecutor(cwd=tmp_path) as executor:
        assert executor.capacity == 4  # CPUs of the instance / one CPU per trial
        executor.submit([ok, bad])
        ends = collect(executor, 2)
    assert (ends["ok"].status, ends["ok"].returncode) == ("exited", 0)
    assert (ends["bad"].status, ends["bad"].returncode) == ("exited", 4)
    assert ends["ok"].job_id and ends["ok"].job_id != ends["bad"].job_id
    seen = json.loads((ok.run_dir / "env.json").read_text())
    assert seen["cwd"] == str(tmp_path.resolve())
    assert seen["env"]["BISECT_RUNS_SEED"] == "3" and seen["env"]["BISECT_RUNS_STEPS"] == "50"
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == ""
    assert ok.stdout_path.read_text() == "to stdout\n"
    assert ok.stderr_path.read_text() == "to stderr\n"


def test_timeout_kills_the_process_group(ray_instance: None, tmp_path: Path, trainer: Path) -> None:
    from bisect_runs.executors.ray import RayExecutor

    launch = make_launch(tmp_path, "slow", [str(trainer), "hang", "600"], timeout_s=1.5)
    with RayExecutor() as executor:
        executor.submit([launch])
        end = collect(executor, 1)["slow"]
    assert end.status == "timeout" and 1.5 <= end.wall_s < 20
    assert "process group killed" in end.detail
    (noted,) = pids(launch)
    wait_until(lambda: not alive(noted["pid"]) and not alive(noted["child"]))


def test_cancel_interrupts_and_kills_trainers(
    ray_instance: None, tmp_path: Path, trainer: Path
) -> None:
    from bisect_runs.executors.ray import RayExecutor

    launches = [make_launch(tmp_path, f"c{i}", [str(trainer), "hang", "600"]) for i in range(2)]
    executor = RayExecutor()
    executor.submit(launches)
    wait_until(lambda: all(pids(launch) for launch in launches))
    started = time.monotonic()
    ends = {e.trial_id: e for e in executor.cancel()}
    assert time.monotonic() - started < 40  # interrupt, or force-cancel after the grace period
    assert set(ends) == {"c0", "c1"} and {e.status for e in ends.values()} == {"interrupted"}
    assert executor.pending() == 0 and executor.wait(timeout=0.1) == []
    for launch in launches:
        (noted,) = pids(launch)
        wait_until(partial(gone, noted))
    executor.close()


def test_stop_interrupts_one_task_and_reports_it_stopped(
    ray_instance: None, tmp_path: Path, trainer: Path
) -> None:
    from bisect_runs.executors.ray import RayExecutor

    victim = make_launch(tmp_path, "victim", [str(trainer), "hang", "600"], timeout_s=None)  # an untimed wait too
    other = make_launch(tmp_path, "other", [str(trainer), "hang", "600"])
    with RayExecutor() as executor:
        executor.submit([victim, other])
        assert executor.supports_stop and not executor.stop("no-such-trial")
        wait_until(lambda: bool(pids(victim)) and bool(pids(other)))
        assert executor.stop("victim") and not executor.stop("victim")  # asked once
        end = collect(executor, 1, timeout_s=20)["victim"]
        assert (end.status, end.detail) == ("stopped", "stopped early (ray.cancel)")  # not lost, not retried
        (noted,) = pids(victim)  # ran once
        wait_until(partial(gone, noted))
        assert executor.wait(timeout=1.0) == [] and executor.pending() == 1  # the other task runs on
        assert all(alive(pid) for pid in pids(other)[0].values())


def test_dead_worker_is_retried_once_then_lost(
    ray_instance: None, tmp_path: Path, trainer: Path
) -> None:
    from bisect_runs.executors.ray import RayExecutor

    launch = make_launch(tmp_path, "victim", [str(trainer), "hang", "600"])
    with RayExecutor(requeue=1) as executor:
        executor.submit([launch])
        ends: list[ProcessEnd] = []
        killed = 0
        deadline = time.monotonic() + 60
        while not ends:
            assert time.monotonic() < deadline, "the task was neither retried nor reported lost"
            noted = pids(launch)
            if len(noted) > killed:  # the worker running the task dies
                os.kill(noted[killed]["ppid"], signal.SIGKILL)
                killed += 1
            ends = executor.wait(timeout=0.5)
    (end,) = ends
    assert killed == 2
    assert end.status == "lost" and end.returncode is None
    assert end.detail
    retry_run = json.loads((launch.run_dir / "pids.jsonl").read_text())
    assert pids(launch) == [*_set_aside_runs(launch), retry_run]  # the retry started empty
    for run in pids(launch):  # trainers outlive their killed workers; both were stopped
        wait_until(partial(gone, run))


def _set_aside_runs(launch: Launch) -> list[dict[str, int]]:
    path = launch.stderr_path.parent / "requeued-1" / "run" / "pids.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_invalid_options_are_listed_together(ray_instance: None) -> None:
    from bisect_runs.executors.ray import RayExecutor

    with pytest.raises(SettingsError) as err:
        RayExecutor(num_cpus_per_trial=-1, max_parallel=0)
    assert (
        str(err.value)
        == "ray: num_cpus_per_trial must be >= 0, got -1; max_parallel must be >= 1, got 0"
    )


# -- the same end-to-end search as locally ----------------------------------------------

GOOD = {
    "lr": 0.02,
    "dropout": 0.4,
    "batch_size": 64,
    "optimizer": "adam",
    "use_ln": False,
    "warmup": 100,
}
BAD = {
    "lr": 0.0008,
    "dropout": 0.5,
    "batch_size": 128,
    "optimizer": "adamw",
    "use_ln": True,
    "warmup": 500,
}
FAKE = {"metric": "loss", "value": "1.0 + (lr < 0.01)", "noise": 0.15}  # lr alone regresses


def search_on(root: Path, executor: str, **section: Any) -> dict[str, Any]:
    """Run `bisect-runs search` on the fake-trainer project with an executor; its summary."""
    root.mkdir()
    for name, values in (("good", GOOD), ("bad", BAD)):
        (root / f"{name}.yaml").write_text(yaml.safe_dump({"fake": FAKE, **values}))
    command = f"{sys.executable} {FAKE_TRAINER} --config {{config}} --run-dir {{run_dir}} --steps {{steps}} --seed {{seed}}"
    settings: dict[str, Any] = {
        "good": "good.yaml",
        "bad": "bad.yaml",
        "command": command,
        "metric": "loss",
    }
    settings.update(
        {"mode": "min", "steps": 10, "parallel": 2, "out": "out", "executor": executor, **section}
    )
    (root / "bisect.yaml").write_text(yaml.safe_dump(settings))
    result = CliRunner().invoke(cli, ["search", "--project", str(root / "bisect.yaml")])
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads((root / "out" / "summary.json").read_text())
    return summary


def test_search_on_ray_finds_the_local_culprits(ray_instance: None, tmp_path: Path) -> None:
    local = search_on(tmp_path / "local", "local")
    on_ray = search_on(tmp_path / "ray", "ray", ray={"max_parallel": 2})
    assert local["culprits"] == on_ray["culprits"] == [["lr"]]
    assert on_ray["reproduced"] is True
    trials = [
        e["outcome"] for e in read_journal(tmp_path / "ray" / "out") if e.get("event") == "trial"
    ]
    assert len(trials) == on_ray["runs"] and {t["status"] for t in trials} == {"ok"}


def test_early_stop_on_ray_cancels_exploring_trials(ray_instance: None, tmp_path: Path) -> None:
    summary, stopped = search_stopping_early(tmp_path / "search", "ray", ray={"max_parallel": 2})
    assert all(t["outcome"]["job_id"] for t in stopped)  # Ray task ids
    assert not list((tmp_path / "search" / "out" / "trials").glob("*/requeued-*"))  # none retried
