"""One atomic writer and one NaN policy: files appear whole, JSON is strict (NaN/inf as null)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bisect_runs.atomic import finite, write_atomic, write_json
from bisect_runs.executors.base import ProcessEnd
from bisect_runs.metrics import MetricSpec
from bisect_runs.outcomes import finish
from bisect_runs.trials import DIVERGED, make_trial, read_outcome, trial_paths


def strict_load(path: Path) -> Any:
    """Parse as strict JSON: a NaN or Infinity token fails the test."""

    def reject(token: str) -> None:
        raise AssertionError(f"{path.name} holds the non-JSON token {token}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)


def test_write_json_writes_non_finite_numbers_as_null(tmp_path: Path) -> None:
    data = {"effect": math.nan, "ci": (-math.inf, 1.5), "nested": [{"p": math.inf}], "n": 3}
    path = write_json(tmp_path / "deep" / "summary.json", data)
    assert strict_load(path) == {"effect": None, "ci": [None, 1.5], "nested": [{"p": None}], "n": 3}


def test_finite_keeps_finite_values_and_other_types() -> None:
    assert finite({"a": 1, "b": 0.5, "c": "nan", "d": None, "e": True}) == {"a": 1, "b": 0.5, "c": "nan", "d": None, "e": True}


def test_write_atomic_replaces_whole_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "report.md"
    write_atomic(path, "old\n")
    write_atomic(path, b"new\n")
    assert path.read_bytes() == b"new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_failed_rename_removes_the_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("x")
    with pytest.raises(OSError):
        write_atomic(target, "text")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_diverged_outcome_json_is_strict_and_reads_back(tmp_path: Path) -> None:
    trial = make_trial("B", {}, 0, 10, ("python", "train.py"))
    paths = trial_paths(tmp_path, trial.id)
    paths.run_dir.mkdir(parents=True)
    (paths.run_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": NaN}\n')
    outcome = finish(trial, ProcessEnd(trial.id, "exited", 0, 1.0), MetricSpec("loss"), tmp_path)
    assert outcome.status == DIVERGED
    written = strict_load(paths.outcome)
    assert written["history"] == [[1, 0.5], [2, None]]
    back = read_outcome(tmp_path, trial.id)
    assert back is not None and back.status == DIVERGED
    assert back.history[0] == (1, 0.5) and math.isnan(back.history[1][1])
