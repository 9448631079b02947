"""Trial ids, command substitution, preparing a trial's directory, classifying outcomes."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from trainers import fake_command, yaml_writer

from bisect_runs.curves import EarlyStop
from bisect_runs.errors import TrialError
from bisect_runs.executors.base import ProcessEnd
from bisect_runs.metrics import MetricSpec
from bisect_runs.outcomes import finish
from bisect_runs.trials import (
    CRASHED,
    DIVERGED,
    INTERRUPTED,
    OK,
    TIMEOUT,
    Outcome,
    make_trial,
    outcome_from_json,
    outcome_to_json,
    override_words,
    prepare_launch,
    read_outcome,
    substitute,
    trial_from_json,
    trial_paths,
    trial_to_json,
)
from bisect_runs.variants import ABSENT

CMD = ("python", "train.py", "--config", "{config}")


def test_trial_id_is_sha256_of_canonical_json_without_label() -> None:
    trial = make_trial("B", {"lr": 0.1, "opt": "adam"}, 3, 200, CMD)
    canonical = json.dumps(
        {"changes": [["lr", 0.1], ["opt", "adam"]], "seed": 3, "steps": 200, "command": list(CMD)},
        sort_keys=True,
        separators=(",", ":"),
    )
    assert trial.id == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert make_trial("another label", [("opt", "adam"), ("lr", 0.1)], 3, 200, CMD).id == trial.id
    assert make_trial("B", {"lr": 0.1, "opt": "adam"}, 4, 200, CMD).id != trial.id
    assert make_trial("B", {"lr": 0.1, "opt": "adam"}, 3, 201, CMD).id != trial.id


def test_absent_is_not_none_and_round_trips_through_json() -> None:
    removed = make_trial("A", {"l2_decay": ABSENT}, 0, 10, CMD)
    nulled = make_trial("A", {"l2_decay": None}, 0, 10, CMD)
    assert removed.id != nulled.id
    data = json.loads(json.dumps(trial_to_json(removed)))
    assert data["changes"] == [["l2_decay", {"$absent": True}]]
    back = trial_from_json(data)
    assert back == removed and back.changes[0][1] is ABSENT


def test_outcome_json_round_trip_ignores_unknown_keys() -> None:
    outcome = Outcome("abc", DIVERGED, history=[(1, 0.5), (2, math.inf)], infra=False, attempts=[{"status": "crashed"}])
    data = json.loads(json.dumps({**outcome_to_json(outcome), "future_field": 1}))
    assert outcome_from_json(data) == outcome


def test_substitute_inside_words_and_overrides_as_separate_words() -> None:
    command = ("train", "--out={run_dir}/x", "{overrides}", "--note", "seed {seed} of {steps}: {overrides}", '{"a": {"b": 1}}')
    argv = substitute(command, {"config": "c.yaml", "run_dir": "/r", "steps": "5", "seed": "2"}, ["lr=0.1", "~wd"])
    assert argv == ("train", "--out=/r/x", "lr=0.1", "~wd", "--note", "seed 2 of 5: lr=0.1 ~wd", '{"a": {"b": 1}}')


def test_unknown_placeholder_lists_the_valid_ones() -> None:
    with pytest.raises(TrialError) as err:
        substitute(("train", "--x={sed}", "{out_dir}"), {}, [])
    assert str(err.value) == (
        "command template: unknown placeholder(s) {out_dir}, {sed}; "
        "valid: {config}, {run_dir}, {steps}, {seed}, {checkpoint}, {overrides}, {args}, {python}"
    )


def test_keys_the_base_config_lacks_are_added_with_a_plus() -> None:
    changes = [("aug.extra", 3), ("lr", 0.1), ("max_steps", 5), ("wd", ABSENT)]
    assert override_words(changes, base_keys={"lr", "wd"}) == ["+aug.extra=3", "lr=0.1", "+max_steps=5", "~wd"]
    assert override_words(changes)[0] == "aug.extra=3"  # base unknown: plain overrides


def test_override_words_are_hydra_style() -> None:
    changes = [("a", True), ("b", None), ("c", [1, 2]), ("d", "x y"), ("e", ABSENT), ("f", 1e-5), ("g", "adam"),
               ("h", "true"), ("i", "1e-5"), ("j", "it's"), ("k", "")]  # fmt: skip
    words = override_words(changes)
    assert words == ["a=true", "b=null", "c=[1,2]", "d='x y'", "~e", "f=1e-05", "g=adam", "h='true'", "i='1e-5'", "j='it\\'s'", "k=''"]


def test_prepare_launch_layout_env_and_config_keys(tmp_path: Path) -> None:
    trial = make_trial("B", {"opt.lr": 0.1}, 7, 30, fake_command("{overrides}"))
    launch = prepare_launch(trial, tmp_path, yaml_writer({"opt": {"lr": 1.0}}), timeout_s=9, steps_key="train.steps", seed_key="seed")
    paths = trial_paths(tmp_path, trial.id)
    assert launch.run_dir == paths.run_dir and list(paths.run_dir.iterdir()) == []
    config = paths.config_dir / "config.yaml"
    assert config.read_text() == "opt:\n  lr: 0.1\nseed: 7\ntrain:\n  steps: 30\n"
    assert launch.env == {
        "BISECT_RUNS_CONFIG": str(config),
        "BISECT_RUNS_RUN_DIR": str(paths.run_dir),
        "BISECT_RUNS_STEPS": "30",
        "BISECT_RUNS_SEED": "7",
    }
    assert launch.argv[-3:] == ("opt.lr=0.1", "seed=7", "train.steps=30")
    assert launch.timeout_s == 9
    assert json.loads(paths.launch.read_text())["argv"] == list(launch.argv)


def test_run_dir_key_writes_the_trials_own_directory_into_its_config(tmp_path: Path) -> None:
    trial = make_trial("B", {"lr": 0.1}, 0, 30, fake_command("{overrides}"))
    launch = prepare_launch(trial, tmp_path, yaml_writer({"lr": 1.0, "output_dir": "runs/exp3"}), run_dir_key="output_dir")
    config = yaml.safe_load((trial_paths(tmp_path, trial.id).config_dir / "config.yaml").read_text())
    assert config == {"lr": 0.1, "output_dir": str(launch.run_dir)}
    assert f"output_dir={launch.run_dir}" in launch.argv


def test_prepare_launch_starts_fresh_and_keeps_earlier_attempts(tmp_path: Path) -> None:
    trial = make_trial("B", {}, 0, 10, fake_command())
    first = prepare_launch(trial, tmp_path, yaml_writer({}))
    (first.run_dir / "metrics.jsonl").write_text("{}\n")
    retry = prepare_launch(trial, tmp_path, yaml_writer({}), attempt=2)
    assert list(retry.run_dir.iterdir()) == []
    assert (trial_paths(tmp_path, trial.id).dir / "attempt-1" / "run" / "metrics.jsonl").exists()
    again = prepare_launch(trial, tmp_path, yaml_writer({}))
    assert not (trial_paths(tmp_path, trial.id).dir / "attempt-1").exists() and again.run_dir.exists()


def test_shell_metacharacters_reach_the_trainer_literally(tmp_path: Path) -> None:
    nasty = '"; rm -rf ~ ; echo $(whoami) `id` > /tmp/pwned'
    trial = make_trial("B", {"note": nasty}, 0, 10, fake_command("{overrides}", "--tag={overrides}"))
    launch = prepare_launch(trial, tmp_path, yaml_writer({"note": "x"}))
    subprocess.run(launch.argv, env={**os.environ, **launch.env}, check=True, timeout=60)
    seen = json.loads((launch.run_dir / "trainer.json").read_text())
    assert seen["config"]["note"] == nasty  # from the config file, then from the override word
    assert any(word.startswith("note='") and nasty in word for word in seen["argv"])
    assert any(word.startswith("--tag=note='") for word in seen["argv"])


def _end(status: str = "exited", rc: int | None = 0) -> ProcessEnd:
    return ProcessEnd("x", status, rc, 1.5, job_id="42", slot="cpu:0")


def _finish(tmp_path: Path, jsonl: str, end: ProcessEnd, stderr: str = "", name: str = "loss",
            early: EarlyStop | None = None) -> Outcome:  # fmt: skip
    trial = make_trial("B", {}, 0, 10, CMD)
    paths = trial_paths(tmp_path, trial.id)
    paths.run_dir.mkdir(parents=True)
    (paths.run_dir / "metrics.jsonl").write_text(jsonl)
    paths.stderr.write_text(stderr)
    return finish(trial, end, MetricSpec(name, reduce="min"), tmp_path, early=early)


def test_a_trial_stopped_early_is_ok_at_its_projection(tmp_path: Path) -> None:
    early = EarlyStop(step=4, t=0.02, value=0.31, like="A")
    lines = '{"step": 4, "loss": 0.9}\n{"step": 6, "loss": 0.8}\n'  # it logged once more before SIGTERM landed
    outcome = _finish(tmp_path, lines, _end("stopped", -15), early=early)
    assert (outcome.status, outcome.value, outcome.steps_run) == (OK, 0.31, 6)
    assert outcome.stopped_early == {"step": 4, "t": 0.02, "projected": 0.31, "like": "A"}
    assert outcome.detail == "stopped early at step 4: near A's curve, projected to 0.31"
    assert read_outcome(tmp_path, outcome.trial_id) == outcome


def test_a_trial_that_finished_before_its_stop_landed_keeps_its_own_value(tmp_path: Path) -> None:
    early = EarlyStop(step=4, t=0.02, value=0.31, like="A")
    outcome = _finish(tmp_path, '{"step": 4, "loss": 0.9}\n{"step": 10, "loss": 0.5}\n', _end("stopped", 0), early=early)
    assert (outcome.status, outcome.value, outcome.steps_run, outcome.stopped_early) == (OK, 0.5, 10, None)


def test_finish_ok_reduces_and_writes_outcome_json(tmp_path: Path) -> None:
    outcome = _finish(tmp_path, '{"step": 1, "loss": 0.5, "steps_per_sec": 9}\n{"step": 2, "loss": 0.7}\n', _end())
    assert (outcome.status, outcome.value, outcome.wall_s, outcome.steps_per_s) == (OK, 0.5, 1.5, 9.0)
    assert read_outcome(tmp_path, outcome.trial_id) == outcome


@pytest.mark.parametrize(
    ("jsonl", "end", "stderr", "status", "detail"),
    [
        ('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": NaN}\n', _end(), "", DIVERGED, "loss became nan at step 2"),
        ('{"step": 1, "loss": 0.5, "grad": 1}\n{"step": 2, "grad": Infinity}\n', _end(rc=1), "", DIVERGED,
         "grad became inf at step 2, then the trainer stopped (exit status 1)"),
        ("", _end(rc=1), "Traceback\nValueError: loss is nan\n", DIVERGED,
         "stderr reports a non-finite value ('nan'), then the trainer stopped (exit status 1)"),
        ('{"step": 1, "loss": 0.5}\n', _end(rc=3), "boom\nKeyError: 'lr'\n", CRASHED, "exit status 3: KeyError: 'lr'"),
        ('{"step": 1, "loss": 0.5}\n', _end(rc=-9), "", CRASHED, "killed by SIGKILL"),
        ('{"step": 1, "acc": 0.5}\n', _end(), "", CRASHED, "no value of 'loss' in "),
        ('{"step": 1, "loss": 0.5}\n', _end("timeout", -15), "", TIMEOUT, "still running after"),
        ('{"step": 1, "loss": 0.5}\n', _end("interrupted", -15), "", INTERRUPTED, "stopped by Ctrl-C or SIGTERM"),
        ('{"step": 1, "loss": 0.5}\n', _end("lost", None), "", CRASHED, "lost: "),
    ],
)  # fmt: skip
def test_classification(tmp_path: Path, jsonl: str, end: ProcessEnd, stderr: str, status: str, detail: str) -> None:
    outcome = _finish(tmp_path, jsonl, end, stderr)
    assert outcome.status == status
    assert outcome.detail.startswith(detail)
    assert outcome.value is None
    if status in (CRASHED, DIVERGED) and stderr:
        assert outcome.stderr_tail == stderr.strip()


def test_fake_trainer_runs_standalone(tmp_path: Path) -> None:
    """The shared test trainer honours the contract's environment when given no flags."""
    config = tmp_path / "c.yaml"
    config.write_text("fake:\n  metric: acc\n  value: '0.5 + lr'\nlr: 0.25\n")
    env = {**os.environ, "BISECT_RUNS_CONFIG": str(config), "BISECT_RUNS_RUN_DIR": str(tmp_path / "r"), "BISECT_RUNS_STEPS": "20"}
    subprocess.run([sys.executable, fake_command()[1]], env=env, check=True, timeout=60)
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1]) == {"step": 20, "acc": pytest.approx(0.75 + 1.25 * math.exp(-4))}


def test_missing_metric_names_what_the_run_logged(tmp_path: Path) -> None:
    outcome = _finish(tmp_path, '{"step": 1, "val/loss": 0.5, "acc": 1}\n', _end())
    assert outcome.status == CRASHED
    assert outcome.detail.endswith("metrics.jsonl (it logged acc, val/loss)")
