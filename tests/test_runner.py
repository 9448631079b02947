"""TrialRunner end to end with real trainer processes: outcomes, retries, reuse, interrupts, resume."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from trainers import FAKE_TRAINER, fake_command, yaml_writer

from bisect_runs.crashes import EXTRA_RETRIES
from bisect_runs.errors import TrialError
from bisect_runs.executors.base import ProcessEnd
from bisect_runs.executors.local import LocalExecutor
from bisect_runs.journal import Journal, read_journal
from bisect_runs.metrics import MetricSpec
from bisect_runs.progress import Progress
from bisect_runs.runner import TrialRunner
from bisect_runs.trials import (
    CRASHED,
    DIVERGED,
    FINISHED,
    OK,
    TIMEOUT,
    Outcome,
    Trial,
    make_trial,
    trial_paths,
)


def _run(tmp_path: Path, trials: list[Trial], base: dict[str, Any] | None = None, **options: Any) -> tuple[list[Outcome], TrialRunner]:
    metric = options.pop("metric", MetricSpec("loss"))
    progress = options.pop("progress", None)
    with LocalExecutor(parallel=2, devices=[], grace_s=0.5) as executor, Journal(tmp_path, resume=True) as journal:
        runner = TrialRunner(tmp_path, executor, journal, yaml_writer(base or {}), metric=metric, progress=progress, **options)
        return runner.run(trials), runner


def _trial(fake: dict[str, Any], seed: int = 0, steps: int = 20, label: str = "t", command: tuple[str, ...] | None = None) -> Trial:
    return make_trial(label, {f"fake.{k}": v for k, v in fake.items()}, seed, steps, command or fake_command("{overrides}"))


def test_every_outcome_class(tmp_path: Path) -> None:
    trials = [
        _trial({"value": 0.25}),
        _trial({"diverge": True}),
        _trial({"diverge": True, "diverge_then": "exit", "nan_key": "grad_norm"}),
        _trial({"crash": True, "stderr": "CUDA error: out of memory"}),
        _trial({"no_metric": True}),
        _trial({"sleep": 30}),
    ]
    outcomes, runner = _run(tmp_path, trials, timeout_s=1.5, retries=0)
    statuses = [(o.status, o.detail) for o in outcomes]
    assert statuses[0] == (OK, "") and outcomes[0].value == pytest.approx(0.25 + 1.75 * 2.718281828 ** -4)
    assert statuses[1] == (DIVERGED, "loss became nan at step 12")
    assert statuses[2] == (DIVERGED, "grad_norm became nan at step 12, then the trainer stopped (exit status 1)")
    assert statuses[3] == (CRASHED, "exit status 1: CUDA error: out of memory")  # the last stderr line
    assert statuses[4][0] == CRASHED and statuses[4][1].startswith("no value of 'loss' in ")
    assert statuses[5][0] == TIMEOUT and outcomes[5].wall_s >= 1.5
    assert outcomes[3].stderr_tail == "RuntimeError: simulated crash at step 12\nCUDA error: out of memory"
    assert all(o.wall_s > 0 and o.slot in ("cpu:0", "cpu:1") for o in outcomes)
    assert runner.runs == runner.launched == 6
    journaled = {e["trial"]["id"]: e["outcome"]["status"] for e in read_journal(tmp_path) if e["event"] == "trial"}
    assert journaled == {t.id: o.status for t, o in zip(trials, outcomes, strict=True)}
    for trial, outcome in zip(trials, outcomes, strict=True):
        saved = json.loads(trial_paths(tmp_path, trial.id).outcome.read_text())
        assert saved["status"] == outcome.status


@pytest.mark.parametrize(
    ("source", "spec"),
    [
        ("jsonl", MetricSpec("loss", reduce="min")),
        ("stdout", MetricSpec("loss", source="regex", reduce="min")),
        ("csv", MetricSpec("loss", source="csv", reduce="min")),
    ],
)
def test_metric_sources_and_reported_speed_memory(tmp_path: Path, source: str, spec: MetricSpec) -> None:
    extras = {"steps_per_sec": 42.0, "peak_gpu_mem_mb": 1234.0}
    [outcome], _ = _run(tmp_path, [_trial({"value": 0.5, "sources": [source], "extras": extras})], metric=spec)
    assert outcome.status == OK and outcome.value == pytest.approx(0.5 + 1.5 * 2.718281828 ** -4)
    assert [s for s, _ in outcome.history] == [4, 8, 12, 16, 20]
    assert (outcome.steps_per_s, outcome.peak_gpu_mem_mb) == (42.0, 1234.0)


def test_tensorboard_metric_source(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    pytest.importorskip("torch", reason="the test trainer writes event files with torch")
    trial = _trial({"value": 0.5, "sources": ["tensorboard"], "extras": {"it/s": 7.0}})
    [outcome], _ = _run(tmp_path, [trial], metric=MetricSpec("loss", source="tensorboard"))
    assert outcome.status == OK and outcome.value == pytest.approx(0.5 + 1.5 * 2.718281828 ** -4, rel=1e-6)
    assert outcome.steps_per_s == 7.0


def test_flaky_crash_is_retried_and_its_value_kept_then_crashes_get_more_retries(tmp_path: Path) -> None:
    flaky = _trial({"crash": True, "crash_once": str(tmp_path / "crashed-once")})
    broken = _trial({"crash": True}, seed=1)
    with LocalExecutor(parallel=2, devices=[], grace_s=0.5) as executor, Journal(tmp_path, resume=True) as journal:
        runner = TrialRunner(tmp_path, executor, journal, yaml_writer({}), metric=MetricSpec("loss"), retries=1)
        [first] = runner.run([flaky])
        assert (first.status, first.infra, first.attempt, first.value is not None) == (OK, False, 2, True)
        assert [a["status"] for a in first.attempts] == [CRASHED]
        assert runner.flaky_seen
        [second] = runner.run([broken])  # this trainer has crashed at random: more retries before judging
    assert (second.status, second.infra, len(second.attempts)) == (CRASHED, False, 1 + EXTRA_RETRIES)
    assert runner.launched == 2 + 2 + EXTRA_RETRIES and runner.runs == 2
    for trial in (flaky, broken):
        assert (trial_paths(tmp_path, trial.id).dir / "attempt-1" / "stderr.log").exists()


class _LosingExecutor(LocalExecutor):
    """A local executor whose first end of each trial reads as a lost job (a preempted node)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.lost: set[str] = set()

    def wait(self, timeout: float | None = None) -> list[ProcessEnd]:
        ends = super().wait(timeout)
        for i, end in enumerate(ends):
            if end.trial_id not in self.lost:
                self.lost.add(end.trial_id)
                ends[i] = dataclasses.replace(end, status="lost", detail="node went away")
        return ends


@pytest.mark.parametrize("retries", [0, 1])
def test_lost_jobs_are_infrastructure(tmp_path: Path, retries: int) -> None:
    with _LosingExecutor(parallel=1, devices=[]) as executor, Journal(tmp_path) as journal:
        runner = TrialRunner(tmp_path, executor, journal, yaml_writer({}), metric=MetricSpec("loss"), retries=retries)
        [outcome] = runner.run([_trial({})])
    # Executors requeue lost jobs themselves; the runner never retries them again.
    assert (outcome.status, outcome.infra, outcome.detail) == (CRASHED, True, "lost: node went away")
    assert runner.launched == 1


def test_journaled_trials_are_reused_and_duplicates_run_once(tmp_path: Path) -> None:
    counter = tmp_path / "counter.txt"
    trials = [_trial({"counter": str(counter), "value": 0.1 * s}, seed=s) for s in range(3)]
    first, runner = _run(tmp_path, trials + [trials[0]])
    assert runner.launched == 3 and first[0] == first[3]
    again, runner = _run(tmp_path, [trials[2], trials[1], trials[0]])
    assert runner.launched == 0 and runner.runs == 3
    assert again == [first[2], first[1], first[0]]
    assert len([line for line in counter.read_text().splitlines() if line.startswith("start")]) == 3


def test_steps_and_seed_keys_go_into_the_config(tmp_path: Path) -> None:
    trial = _trial({}, seed=5, steps=10)
    [outcome], _ = _run(tmp_path, [trial], base={"train": {"steps": 1}}, steps_key="train.steps", seed_key="seed")
    seen = json.loads((trial_paths(tmp_path, trial.id).run_dir / "trainer.json").read_text())
    assert outcome.status == OK
    assert (seen["config"]["train.steps"], seen["config"]["seed"]) == (10, 5)


def test_a_command_that_cannot_start_is_an_error(tmp_path: Path) -> None:
    trial = _trial({}, command=("no-such-trainer-xyz", "{config}"))
    with pytest.raises(TrialError, match=r"^cannot start 'no-such-trainer-xyz': No such file or directory \(command: no-such-trainer-xyz \{config\}\)$"):
        _run(tmp_path, [trial])


def test_unknown_placeholder_fails_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(TrialError, match=r"unknown placeholder\(s\) \{outdir\}"):
        _run(tmp_path, [_trial({}, command=("python", "{outdir}"))])
    assert not (tmp_path / "trials").exists()


def test_progress_in_a_pipe_prints_one_line_per_trial(tmp_path: Path) -> None:
    out = io.StringIO()
    trials = [_trial({}, seed=s, label="B") for s in range(2)] + [_trial({"crash": True}, seed=9, label="A")]
    _run(tmp_path, trials, progress=Progress(out), retries=0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue()
    assert any(line.startswith(f"trial {trials[2].id} A seed=9: crashed (exit status 1") for line in lines)
    assert sum(": ok " in line for line in lines) == 2


def test_progress_on_a_terminal_is_one_live_line(tmp_path: Path) -> None:
    out = io.StringIO()
    _run(tmp_path, [_trial({}, seed=s) for s in range(3)], progress=Progress(out, live=True))
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\x1b[2Ktrials 3/3 done | 0 running | 0 queued | ETA 0.0s\n\x1b[?25h")
    assert text.startswith("\x1b[?25ltrials 0/3 done | 2 running | 1 queued\r")


def test_verbose_progress_shows_starts_and_reused_trials(tmp_path: Path) -> None:
    trial = _trial({})
    _run(tmp_path, [trial])
    out = io.StringIO()
    _run(tmp_path, [trial, _trial({}, seed=1)], progress=Progress(out, level="verbose"))
    lines = out.getvalue().splitlines()
    assert lines[0] == "1 of 2 trials reused from the journal"
    assert lines[1].startswith(f"trial {_trial({}, seed=1).id} t seed=1: started (job ")
    assert lines[2].startswith(f"trial {_trial({}, seed=1).id} t seed=1: ok ")


def test_quiet_progress_prints_nothing(tmp_path: Path) -> None:
    out = io.StringIO()
    _run(tmp_path, [_trial({"crash": True})], progress=Progress(out, level="quiet"), retries=0)
    assert out.getvalue() == ""


DRIVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from trainers import fake_command, yaml_writer
    from bisect_runs.executors.local import LocalExecutor
    from bisect_runs.journal import Journal
    from bisect_runs.metrics import MetricSpec
    from bisect_runs.runner import TrialRunner
    from bisect_runs.trials import make_trial

    out, n, sleep, resume = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "resume"
    fake = {{"fake": {{"sleep": sleep, "counter": "$COUNTER_FILE", "grandchild": sleep > 5}}}}
    trials = [make_trial("B", {{}}, seed, 20, fake_command()) for seed in range(n)]
    with LocalExecutor(parallel=2, devices=[], grace_s=1.0) as ex, Journal(out, resume=resume) as journal:
        runner = TrialRunner(out, ex, journal, yaml_writer(fake), metric=MetricSpec("loss"))
        try:
            outcomes = runner.run(trials)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(130)
    print("done", runner.launched, [o.status for o in outcomes], flush=True)
    """
)


def _driver(tmp_path: Path, n: int, sleep: float, resume: bool, counter: Path) -> subprocess.Popen[str]:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=str(FAKE_TRAINER.parent.parent)))
    env = {**os.environ, "COUNTER_FILE": str(counter)}
    args = [sys.executable, str(script), str(tmp_path / "out"), str(n), str(sleep), "resume" if resume else "fresh"]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(path: Path, event: str) -> list[str]:
    return [line.split()[1] for line in path.read_text().splitlines() if line.startswith(event)] if path.exists() else []


def _wait_for(condition: Any, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_kill_9_then_resume_never_reruns_a_finished_trial(tmp_path: Path) -> None:
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    driver = _driver(tmp_path, 8, 0.4, False, first)
    _wait_for(lambda: len(_lines(first, "end")) >= 3 and len(_lines(first, "start")) > len(_lines(first, "end")))
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    out = tmp_path / "out"
    finished = {e["trial"]["seed"] for e in read_journal(out) if e["event"] == "trial" and e["outcome"]["status"] in FINISHED}
    assert 1 <= len(finished) < 8

    resumed = _driver(tmp_path, 8, 0.4, True, second)
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    assert stdout.startswith(f"done {8 - len(finished)} ")
    rerun = {int(tag) for tag in _lines(second, "start")}
    assert rerun == set(range(8)) - finished, "a trial the journal had finished ran again"
    lines = [e for e in read_journal(out) if e["event"] == "trial"]
    assert sorted(e["trial"]["seed"] for e in lines) == list(range(8))  # each finished exactly once
    assert {e["outcome"]["status"] for e in lines} == {OK}


def test_sigterm_stops_every_trial_and_records_them_interrupted(tmp_path: Path) -> None:
    counter = tmp_path / "counter.txt"
    driver = _driver(tmp_path, 3, 60.0, False, counter)
    out = tmp_path / "out"
    _wait_for(lambda: len(list(out.glob("trials/*/run/grandchild.pid"))) == 2)
    pids = [json.loads(p.read_text())["pid"] for p in out.glob("trials/*/run/trainer.json")]
    pids += [int(p.read_text()) for p in out.glob("trials/*/run/grandchild.pid")]
    started = time.monotonic()
    driver.send_signal(signal.SIGTERM)
    stdout, stderr = driver.communicate(timeout=30)
    assert driver.returncode == 130 and stdout.strip() == "interrupted", stderr
    assert time.monotonic() - started < 10
    statuses = [e["outcome"]["status"] for e in read_journal(out) if e["event"] == "trial"]
    assert statuses == ["interrupted"] * 3
    for pid in pids:
        _wait_for(lambda pid=pid: not _alive(pid), limit=5)
    with Journal(out, resume=True) as journal:  # lock released, nothing counted as finished
        assert journal.finished_ids() == set()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
