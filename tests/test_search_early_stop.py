"""Early stopping end to end: a real PyTorch trainer streams its curve, `bisect-runs search` stops trials."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from bisect_runs.cli import cli
from bisect_runs.journal import read_journal
from bisect_runs.project import load_project, make_settings
from bisect_runs.search import Search
from bisect_runs.trials import Outcome, make_trial

pytest.importorskip("torch")

TRAINER = Path(__file__).parent / "trainers" / "curve_trainer.py"
COMMAND = f"{sys.executable} {TRAINER} --config {{config}} --run-dir {{run_dir}} --steps {{steps}} --seed {{seed}}"
PACE = {"eval_every": 4, "step_s": 0.03}  # ten evaluations over 40 steps of about 30 ms each
GOOD = {"lr": 0.05, "weight_decay": 0.0, "clip": 1000.0, **PACE}
BAD = {"lr": 0.003, "weight_decay": 1.0e-6, "clip": 500.0, **PACE}
STEPS = 40


def project(tmp_path: Path, **settings: Any) -> Path:
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(GOOD))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(BAD))
    (tmp_path / "bisect.yaml").write_text(yaml.safe_dump(
        {"good": "good.yaml", "bad": "bad.yaml", "command": COMMAND, "metric": "val_loss", "mode": "min",
         "steps": STEPS, "parallel": 2, "out": "out", "early_stop": True, **settings}))  # fmt: skip
    return tmp_path


def search(root: Path, *args: str) -> tuple[int, dict[str, Any], list[dict[str, Any]], str]:
    result = CliRunner().invoke(cli, ["search", "--project", str(root / "bisect.yaml"), *args])
    summary = json.loads((root / "out" / "summary.json").read_text())
    trials = [e for e in read_journal(root / "out") if e.get("event") == "trial"]
    return result.exit_code, summary, trials, result.output


def test_trials_stop_early_and_the_culprit_is_the_same(tmp_path: Path) -> None:
    code, summary, trials, output = search(project(tmp_path))
    assert code == 0, output
    assert summary["culprits"] == [["lr"]]
    stopped = [t for t in trials if t["outcome"]["stopped_early"] is not None]
    assert stopped, output
    for t in trials:
        outcome = t["outcome"]
        if t["trial"]["label"] in ("A", "B"):  # the reference curves always run the whole budget
            assert outcome["stopped_early"] is None and outcome["steps_run"] == STEPS
    for t in stopped:
        early, outcome = t["outcome"]["stopped_early"], t["outcome"]
        assert early["step"] <= outcome["steps_run"] < STEPS
        assert outcome["status"] == "ok" and outcome["value"] == early["projected"]
        logged = json.loads((tmp_path / "out" / "trials" / t["trial"]["id"] / "run" / "metrics.jsonl")
                            .read_text().splitlines()[-1])  # fmt: skip
        assert logged["step"] < STEPS  # the trainer really was stopped
    cost = summary["early_stop"]
    assert summary["trial_steps"] == sum(t["outcome"]["steps_run"] for t in trials) < summary["runs"] * STEPS
    assert cost["stopped_early"] == len(stopped) and cost["full_budget_steps"] == summary["runs"] * STEPS
    assert "stopped early at step" in output


A_CURVES = [[(4 * k, 8.0 / k + 0.01 * seed) for k in range(1, 11)] for seed in (0, 1)]
B_CURVES = [[(4 * k, 9.0 + 0.01 * seed) for k in range(1, 11)] for seed in (0, 1)]


def searched(root: Path, phase: str, **flags: Any) -> Search:
    """A search in `phase` whose A and B have each run twice in full (their outcomes as the runner records them)."""
    s = Search(make_settings(load_project(root / "bisect.yaml"), flags))
    s.phase = phase
    full = frozenset(range(len(s.factors)))
    for point, curves in ((frozenset(), A_CURVES), (full, B_CURVES)):
        for seed, history in enumerate(curves):
            s.outcomes[(point, seed)] = [Outcome("t", "ok", history[-1][1], history=history, steps_run=STEPS)]
    return s


@pytest.mark.parametrize(
    ("phase", "flags", "on"),
    [
        ("screen", {}, True),
        ("screen", {"early_stop": False}, False),
        ("screen", {"metric_source": "tensorboard"}, False),
        ("confirm", {}, False),  # the runs a verdict's numbers come from run in full
        ("replicate", {}, False),
    ],
)
def test_early_stopping_is_off_by_flag_for_metrics_not_streamed_and_when_confirming(
    tmp_path: Path, phase: str, flags: dict[str, Any], on: bool
) -> None:
    judge = searched(project(tmp_path), phase, **flags).early_judge()
    assert (judge is not None) is on
    if judge is not None:
        near_a = [(4 * k, 8.0 / k) for k in range(1, 4)]
        assert judge(make_trial("A + {weight_decay}", {}, 7, STEPS, ()), near_a) is not None
        assert judge(make_trial("A", {}, 7, STEPS, ()), near_a) is None  # the reference itself runs in full


def test_early_stopping_is_off_unless_asked_for(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "bisect.yaml").write_text((root / "bisect.yaml").read_text().replace("early_stop: true\n", ""))
    assert searched(root, "screen").early_judge() is None


def test_early_stop_setting_must_be_true_or_false(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["search", "--project", str(project(tmp_path, early_stop="yes") / "bisect.yaml")])
    assert result.exit_code == 2
    assert "early_stop must be true or false (got 'yes')" in result.output


def test_a_trial_requested_in_full_runs_the_whole_budget(tmp_path: Path) -> None:
    """An exploring round may ask some trials in full (`bayes` confirming its answer): they are never judged."""
    judge = searched(project(tmp_path), "bayes").early_judge(frozenset({"A + {weight_decay}"}))
    assert judge is not None
    near_a = [(4 * k, 8.0 / k) for k in range(1, 4)]
    assert judge(make_trial("A + {weight_decay}", {}, 7, STEPS, ()), near_a) is None
    assert judge(make_trial("A + {clip}", {}, 7, STEPS, ()), near_a) is not None
