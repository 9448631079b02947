"""The Slurm executor against a real cluster: trials go through sbatch and run as Slurm jobs.

CI starts a single-node cluster with `.ci/cluster.sh start` and sets
BISECT_RUNS_REQUIRE_CLUSTER=1, which turns a missing cluster into a failure instead of a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from bisect_runs.cli import cli
from bisect_runs.curves import EarlyStop
from bisect_runs.errors import SettingsError
from bisect_runs.executors.base import Executor, Launch, ProcessEnd
from bisect_runs.executors.job import job_env
from bisect_runs.executors.slurm import (
    SlurmExecutor,
    _parse_states,
    _time_parameters,
    slurm_states,
)
from bisect_runs.journal import Journal, read_journal
from bisect_runs.metrics import MetricSpec
from bisect_runs.runner import TrialRunner
from bisect_runs.trials import make_trial, prepare_launch
from tests.cluster_early_stop import search_stopping_early
from tests.trainers import FAKE_TRAINER, fake_command, yaml_writer

pytestmark = pytest.mark.slurm

TRAINER = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    from pathlib import Path

    run_dir = Path(os.environ["BISECT_RUNS_RUN_DIR"])
    mode = sys.argv[1]
    if mode == "env":
        seen = {k: v for k, v in os.environ.items() if k.startswith("BISECT_RUNS_")}
        seen["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES")
        (run_dir / "env.json").write_text(json.dumps({"env": seen, "cwd": os.getcwd(), "argv": sys.argv}))
        print("to stdout")
        print("to stderr", file=sys.stderr)
        sys.exit(int(sys.argv[2]))
    if mode == "hang":  # note our pids (and a grandchild's) once per attempt, then hang
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(run_dir / "pids.jsonl", "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "child": child.pid}) + "\\n")
        time.sleep(float(sys.argv[2]))
    if mode == "once":  # hang the first time, succeed when run again
        marker = Path(sys.argv[2])
        if marker.exists():
            sys.exit(0)
        marker.write_text("ran")
        with open(run_dir / "pids.jsonl", "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "child": os.getpid()}) + "\\n")
        time.sleep(600)
    """
)


def _cluster_missing() -> str | None:
    """Why the Slurm tests cannot run here, or None when a cluster answers."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "Slurm client commands (sinfo, sbatch) not found; start one with `bash .ci/cluster.sh start`"
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed (pip install 'bisect-runs[slurm]')"
    done = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, check=False)
    states = done.stdout.split()
    if done.returncode != 0 or not any(s.rstrip("*~#") in ("idle", "mix", "alloc") for s in states):
        return f"no Slurm node is up (sinfo: {done.stdout.strip() or done.stderr.strip()})"
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    reason = _cluster_missing()
    if reason is None:
        return
    if os.environ.get("BISECT_RUNS_REQUIRE_CLUSTER") == "1":
        pytest.fail(f"BISECT_RUNS_REQUIRE_CLUSTER=1 but {reason}")
    pytest.skip(reason)


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
    env = {"BISECT_RUNS_RUN_DIR": str(run_dir), "BISECT_RUNS_SEED": "7", "BISECT_RUNS_STEPS": "100"}
    return Launch(
        trial_id,
        (sys.executable, *args),
        run_dir,
        env,
        trial / "stdout.log",
        trial / "stderr.log",
        timeout_s,
    )


def collect(executor: Executor, n: int, timeout_s: float = 90.0) -> dict[str, ProcessEnd]:
    """Wait for `n` ends; fail (not hang) if the cluster does not deliver them."""
    ends: dict[str, ProcessEnd] = {}
    deadline = time.monotonic() + timeout_s
    while len(ends) < n:
        assert time.monotonic() < deadline, f"only {len(ends)} of {n} trials ended: {ends}"
        ends.update((e.trial_id, e) for e in executor.wait(timeout=1.0))
    return ends


def wait_until(predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


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


def active_jobs(job_ids: list[str]) -> dict[str, str]:
    """Our jobs that squeue still lists as pending, running or completing."""
    done = subprocess.run(
        ["squeue", "-h", "-o", "%i|%T", "--states=PENDING,RUNNING,COMPLETING,SUSPENDED"],
        capture_output=True,
        text=True,
        check=True,
    )
    listed = dict(line.split("|", 1) for line in done.stdout.split())
    return {j: listed[j] for j in job_ids if j in listed}


# -- against the cluster ----------------------------------------------------------------


def test_runs_trainer_as_locally(cluster: None, tmp_path: Path, trainer: Path) -> None:
    ok = make_launch(tmp_path, "ok", [str(trainer), "env", "0"])
    bad = make_launch(tmp_path, "bad", [str(trainer), "env", "3"])
    submitted: list[tuple[str, str]] = []
    with SlurmExecutor(tmp_path / "slurm", cwd=tmp_path) as executor:
        executor.on_submitted = lambda trial, job: submitted.append((trial, job))
        executor.submit([ok, bad])
        ends = collect(executor, 2)
    assert ends["ok"].status == "exited" and ends["ok"].returncode == 0
    assert ends["bad"].status == "exited" and ends["bad"].returncode == 3
    assert dict(submitted) == {"ok": ends["ok"].job_id, "bad": ends["bad"].job_id}
    assert ends["ok"].job_id != ends["bad"].job_id
    seen = json.loads((ok.run_dir / "env.json").read_text())
    assert seen["cwd"] == str(tmp_path.resolve())
    assert seen["env"]["BISECT_RUNS_SEED"] == "7" and seen["env"]["BISECT_RUNS_STEPS"] == "100"
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == ""  # a CPU trial sees no GPU
    assert ok.stdout_path.read_text() == "to stdout\n"
    assert ok.stderr_path.read_text() == "to stderr\n"
    assert 0 < ends["ok"].wall_s < 30


def test_missing_trainer_is_exit_127(cluster: None, tmp_path: Path) -> None:
    launch = make_launch(tmp_path, "nope", [])
    launch = Launch(
        "nope",
        (str(tmp_path / "no-such-trainer"),),
        launch.run_dir,
        launch.env,
        launch.stdout_path,
        launch.stderr_path,
    )
    with SlurmExecutor(tmp_path / "slurm") as executor:
        executor.submit([launch])
        end = collect(executor, 1)["nope"]
    assert (end.status, end.returncode) == ("exited", 127)
    assert "no-such-trainer" in end.extra["start_error"]
    assert "cannot start" in launch.stderr_path.read_text()


def test_timeout_kills_the_process_group(cluster: None, tmp_path: Path, trainer: Path) -> None:
    launch = make_launch(tmp_path, "slow", [str(trainer), "hang", "600"], timeout_s=2)
    with SlurmExecutor(tmp_path / "slurm") as executor:
        executor.submit([launch])
        end = collect(executor, 1)["slow"]
    assert end.status == "timeout"
    assert 2 <= end.wall_s < 30
    (noted,) = pids(launch)
    wait_until(lambda: not alive(noted["pid"]) and not alive(noted["child"]), timeout_s=10)


def test_cancel_scancels_every_job(cluster: None, tmp_path: Path, trainer: Path) -> None:
    launches = [make_launch(tmp_path, f"c{i}", [str(trainer), "hang", "600"]) for i in range(3)]
    submitted: dict[str, str] = {}
    executor = SlurmExecutor(tmp_path / "slurm", max_parallel=2)
    executor.on_submitted = submitted.__setitem__
    executor.submit(launches)
    assert executor.wait(timeout=0.1) == []
    wait_until(lambda: all(pids(launch) for launch in launches[:2]))
    ends = {e.trial_id: e for e in executor.cancel()}
    assert {e.status for e in ends.values()} == {"interrupted"}
    assert set(ends) == {"c0", "c1", "c2"}
    assert ends["c2"].job_id is None  # never submitted: max_parallel held it back
    assert set(submitted) == {"c0", "c1"}
    assert active_jobs(list(submitted.values())) == {}
    for launch in launches[:2]:
        (noted,) = pids(launch)
        wait_until(partial(gone, noted), timeout_s=15)
    assert executor.pending() == 0


def test_reattach_after_restart(cluster: None, tmp_path: Path, trainer: Path) -> None:
    quick = make_launch(tmp_path, "quick", [str(trainer), "env", "5"])
    slow = make_launch(tmp_path, "slow", [str(trainer), "hang", "3"])
    submitted: dict[str, str] = {}
    first = SlurmExecutor(tmp_path / "slurm")
    first.on_submitted = submitted.__setitem__
    first.submit([quick, slow])
    first.close()  # the search dies; its jobs keep running
    del first
    wait_until(lambda: bool(pids(slow)))
    resubmitted: list[str] = []
    second = SlurmExecutor(tmp_path / "slurm")
    second.on_submitted = lambda trial, job: resubmitted.append(trial)
    second.reattach([(quick, submitted["quick"]), (slow, submitted["slow"])])
    ends = collect(second, 2)
    assert resubmitted == []
    assert (ends["quick"].status, ends["quick"].returncode, ends["quick"].job_id) == (
        "exited",
        5,
        submitted["quick"],
    )
    assert (ends["slow"].status, ends["slow"].returncode, ends["slow"].job_id) == (
        "exited",
        0,
        submitted["slow"],
    )
    assert len(pids(slow)) == 1  # ran once


def test_reattached_job_cancelled_by_earlier_search_runs_again(
    cluster: None, tmp_path: Path, trainer: Path
) -> None:
    launch = make_launch(tmp_path, "again", [str(trainer), "once", str(tmp_path / "marker")])
    submitted: list[str] = []
    first = SlurmExecutor(tmp_path / "slurm")
    first.on_submitted = lambda trial, job: submitted.append(job)
    first.submit([launch])
    wait_until(lambda: bool(pids(launch)))
    assert [e.status for e in first.cancel()] == ["interrupted"]  # Ctrl-C of the earlier search
    second = SlurmExecutor(tmp_path / "slurm")
    second.on_submitted = lambda trial, job: submitted.append(job)
    second.reattach([(launch, submitted[0])])
    end = collect(second, 1)["again"]
    assert (end.status, end.returncode) == ("exited", 0)
    assert len(submitted) == 2 and end.job_id == submitted[1]
    assert (launch.stderr_path.parent / "requeued-1" / "run" / "pids.jsonl").exists()  # set aside
    assert not (launch.run_dir / "pids.jsonl").exists()  # the rerun started empty


def test_stop_scancels_one_job_and_reports_it_stopped(cluster: None, tmp_path: Path, trainer: Path) -> None:
    victim = make_launch(tmp_path, "victim", [str(trainer), "hang", "600"])
    other = make_launch(tmp_path, "other", [str(trainer), "hang", "600"])
    submitted: dict[str, str] = {}
    executor = SlurmExecutor(tmp_path / "slurm")
    executor.on_submitted = submitted.__setitem__
    executor.submit([victim, other])
    assert executor.supports_stop and not executor.stop("no-such-trial")
    wait_until(lambda: bool(pids(victim)) and bool(pids(other)))
    assert executor.stop("victim") and not executor.stop("victim")  # asked once
    end = collect(executor, 1)["victim"]
    assert (end.status, end.job_id) == ("stopped", submitted["victim"])  # not lost, not resubmitted
    assert end.detail == f"stopped early (scancel of job {submitted['victim']})"
    assert end.extra["attempt"] == "1" and 0 < end.wall_s < 30
    (noted,) = pids(victim)
    wait_until(partial(gone, noted), timeout_s=15)
    assert active_jobs([submitted["victim"]]) == {}
    assert active_jobs([submitted["other"]]) == {submitted["other"]: "RUNNING"}  # only that one job
    assert executor.wait(timeout=2.0) == [] and executor.pending() == 1
    assert {e.status for e in executor.cancel()} == {"interrupted"}


def test_resumed_search_stops_the_job_it_reattached_to(cluster: None, tmp_path: Path) -> None:
    slow = {"fake.metric": "loss", "fake.value": 0.5, "fake.sleep": 60, "fake.log_every": 1}
    trial = make_trial("A + {x}", slow, 0, 100, fake_command())
    first = SlurmExecutor(tmp_path / "slurm")
    with Journal(tmp_path) as journal:  # the earlier search submits the trial, then dies
        first.on_submitted = journal.submitted
        first.submit([prepare_launch(trial, tmp_path, yaml_writer({}))])
    (job_id,) = [e["job_id"] for e in read_journal(tmp_path) if e.get("event") == "submitted"]
    stop_at_3 = lambda trial, history: EarlyStop(3, 0.0, 0.5, "A") if len(history) >= 3 else None  # noqa: E731
    with Journal(tmp_path, resume=True) as journal:
        runner = TrialRunner(tmp_path, SlurmExecutor(tmp_path / "slurm"), journal, yaml_writer({}), metric=MetricSpec("loss"))
        runner.early_stop = stop_at_3
        (outcome,) = runner.run([trial])
    assert (outcome.status, outcome.value, outcome.job_id) == ("ok", 0.5, job_id)  # re-attached, then stopped
    assert outcome.stopped_early == {"step": 3, "t": 0.0, "projected": 0.5, "like": "A"}
    assert 3 <= outcome.steps_run < 100 and not outcome.infra and outcome.attempts == []
    assert active_jobs([job_id]) == {}


def test_job_killed_twice_is_lost_after_one_requeue(
    cluster: None, tmp_path: Path, trainer: Path
) -> None:
    launch = make_launch(tmp_path, "victim", [str(trainer), "hang", "600"])
    submitted: list[str] = []
    executor = SlurmExecutor(tmp_path / "slurm")
    executor.on_submitted = lambda trial, job: submitted.append(job)
    executor.submit([launch])
    ends: list[ProcessEnd] = []
    killed = 0
    deadline = time.monotonic() + 90
    while not ends:
        assert time.monotonic() < deadline, "the job was neither requeued nor reported lost"
        noted = pids(launch)
        if len(noted) > killed:  # the job's own process (the trainer's parent) dies: a node failure
            os.kill(noted[killed]["ppid"], signal.SIGKILL)
            killed += 1
        ends = executor.wait(timeout=0.5)
    (end,) = ends
    assert killed == 2 and len(submitted) == 2 and submitted[0] != submitted[1]
    assert end.status == "lost" and end.job_id == submitted[1]
    assert "resubmitted" in end.detail and "FAILED" in end.detail
    assert end.extra["attempt"] == "2"
    assert active_jobs(submitted) == {}
    assert (launch.stderr_path.parent / "requeued-1" / "run" / "pids.jsonl").exists()


# -- without a cluster ------------------------------------------------------------------


def test_invalid_options_are_listed_together(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as err:
        SlurmExecutor(tmp_path, cpus_per_trial=0, max_parallel=0)
    assert (
        str(err.value)
        == "slurm: cpus_per_trial must be >= 1, got 0; max_parallel must be >= 1, got 0"
    )


def test_states_parse_arrays_and_reasons() -> None:
    output = "12_[3-5%2]|PENDING\n13|CANCELLED by 0\n13.batch|CANCELLED\n14_0|RUNNING\n"
    assert _parse_states(output) == {
        "12_3": "PENDING",
        "12_4": "PENDING",
        "12_5": "PENDING",
        "13": "CANCELLED",
        "14_0": "RUNNING",
    }


def test_unknown_jobs_have_no_state(cluster: None) -> None:
    assert slurm_states(["999999999"]) == {}


def test_trainer_sees_the_gpus_the_cluster_granted(tmp_path: Path) -> None:
    launch = make_launch(tmp_path, "g", ["x"])
    granted = {"CUDA_VISIBLE_DEVICES": "2,3", "SLURM_CPUS_PER_TASK": "8", "PATH": "/bin"}
    env = job_env(launch, 2, granted)
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3" and env["OMP_NUM_THREADS"] == "8"
    assert env["BISECT_RUNS_SEED"] == "7" and env["PATH"] == "/bin"
    assert job_env(launch, 0, granted)["CUDA_VISIBLE_DEVICES"] == ""  # a CPU trial sees none
    assert job_env(launch, 0, {**granted, "OMP_NUM_THREADS": "1"})["OMP_NUM_THREADS"] == "1"


def test_time_limit_covers_the_trial_timeout(tmp_path: Path) -> None:
    launch = make_launch(tmp_path, "t", ["x"], timeout_s=600)
    assert _time_parameters(None, [launch]) == {"time": 13}  # 10 min + grace, rounded up, + 2
    assert _time_parameters(30, [launch]) == {"time": 30}
    assert _time_parameters(None, [make_launch(tmp_path, "u", ["x"], timeout_s=None)]) == {
        "time": None
    }


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


def test_search_on_slurm_finds_the_local_culprits(cluster: None, tmp_path: Path) -> None:
    local = search_on(tmp_path / "local", "local")
    slurm = search_on(tmp_path / "slurm", "slurm", slurm={"max_parallel": 2})
    assert local["culprits"] == slurm["culprits"] == [["lr"]]
    assert slurm["reproduced"] is True
    journal = read_journal(tmp_path / "slurm" / "out")
    job_ids = {e["trial_id"]: e["job_id"] for e in journal if e.get("event") == "submitted"}
    trials = [e["outcome"] for e in journal if e.get("event") == "trial"]
    assert len(trials) == slurm["runs"] and all(
        t["job_id"] == job_ids[t["trial_id"]] for t in trials
    )
    assert all(t["job_id"].split("_")[0].isdigit() for t in trials)  # Slurm job ids, not pids
    assert active_jobs(list(job_ids.values())) == {}


def test_early_stop_on_slurm_scancels_exploring_trials(cluster: None, tmp_path: Path) -> None:
    summary, stopped = search_stopping_early(tmp_path / "search", "slurm", slurm={"max_parallel": 2})
    jobs = [t["outcome"]["job_id"] for t in stopped]
    assert set(slurm_states(jobs).values()) == {"CANCELLED"}  # scancelled, yet recorded as stopped early
    submitted = [e["job_id"] for e in read_journal(tmp_path / "search" / "out") if e.get("event") == "submitted"]
    assert len(submitted) == summary["runs"] and active_jobs(submitted) == {}  # none resubmitted, none left
    assert not list((tmp_path / "search" / "out" / "trials").glob("*/requeued-*"))


def _worked_examples() -> dict[str, str]:
    """The worked bisect.yaml of docs/cluster.md, as written (Slurm) and with its Ray lines uncommented."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "cluster.md").read_text(encoding="utf-8")
    block = re.search(r"## A worked `bisect.yaml`\n\n```yaml\n(.*?)```", text, re.S)
    assert block is not None, "docs/cluster.md lost its worked bisect.yaml"
    slurm = block.group(1)
    head, _, ray = slurm.partition("# Or, on a Ray cluster:\n")
    head = re.sub(r"(?ms)^executor: slurm\n.*", "", head)  # the Slurm part ends the file's own keys
    ray = "\n".join(line[2:] if line.startswith("# ") else line for line in ray.splitlines())
    return {"slurm": slurm, "ray": head + ray + "\n"}


@pytest.mark.parametrize("executor", ["slurm", "ray"])
def test_docs_worked_bisect_yaml_is_valid(tmp_path: Path, executor: str) -> None:
    """The documented project file loads, and every option it gives the executor is one the executor takes."""
    import inspect

    from bisect_runs.executors import executor_class
    from bisect_runs.project import load_project, make_settings
    from bisect_runs.search_settings import executor_options

    path = tmp_path / "bisect.yaml"
    path.write_text(_worked_examples()[executor], encoding="utf-8")
    settings = make_settings(load_project(path), {})
    assert settings.executor == executor and settings.metric == "val_per" and settings.timeout == 1800
    options = executor_options(settings)
    assert options and (executor != "slurm" or options["additional_parameters"]["account"] == "speech-lab")
    accepted = set(inspect.signature(executor_class(executor).__init__).parameters) - {"self"}
    assert set(options) <= accepted, f"docs/cluster.md gives {executor} unknown options {set(options) - accepted}"
