"""Trials in the lab's trackers, with the real packages: W&B offline runs and an MLflow SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from test_search_e2e import run_search

from bisect_runs.cli import cli
from bisect_runs.journal import read_journal
from bisect_runs.trials import trial_paths

TRACKED = Path(__file__).parent / "trainers" / "tracked_trainer.py"
GOOD = {"lr": 0.02, "dropout": 0.1}
BAD = {"lr": 0.0008, "dropout": 0.2}


def tracked_project(tmp_path: Path, flag: str, **settings: Any) -> Path:
    """good/bad configs, and a bisect.yaml whose trainer logs to a tracker."""
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(GOOD))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(BAD))
    command = f"{sys.executable} {TRACKED} {{config}} {{run_dir}} {{steps}} {{seed}} {flag}"
    project = {"good": "good.yaml", "bad": "bad.yaml", "command": command, "metric": "loss", "mode": "min",
               "steps": 8, "parallel": 2, "seeds": 1, "max_runs": 4, "out": "out", **settings}  # fmt: skip
    (tmp_path / "bisect.yaml").write_text(yaml.safe_dump(project))
    return tmp_path


def trials(out: Path) -> list[dict[str, Any]]:
    """Every journaled trial with its outcome."""
    return [{**e["trial"], "outcome": e["outcome"]} for e in read_journal(out) if e.get("event") == "trial"]


def test_wandb_runs_are_grouped_by_search_named_by_variant_and_read_as_the_metric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    root = tracked_project(tmp_path, "--wandb", metric="train/loss", metric_source="wandb")
    code, _, output = run_search(root)
    assert code in (0, 1), output
    search_id = json.loads((root / "out" / "tracking.json").read_text())["search_id"]
    assert search_id.startswith("out-")
    done = trials(root / "out")
    assert {t["label"] for t in done} >= {"A", "B"}
    for t in done:
        run_dir = trial_paths(root / "out", t["id"]).run_dir
        seen = json.loads((run_dir / "wandb_run.json").read_text())  # what wandb.run itself says
        assert seen["group"] == search_id and seen["name"] == f"{t['label']} seed={t['seed']}"
        assert seen["tags"][0] == "bisect-runs" and seen["tags"][1] in ("calibrate", "screen", "confirm")
        assert seen["job_type"] == (t["label"] if t["label"] in ("A", "B") else "variant")
        assert Path(seen["dir"]).is_relative_to(run_dir)
        last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        assert t["outcome"]["value"] == pytest.approx(last["loss"])  # judged from run-*.wandb
        assert next((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    by_label = {t["label"]: next((trial_paths(root / "out", t["id"]).run_dir / "wandb").glob("offline-run-*")) for t in done}
    compared = CliRunner().invoke(cli, ["compare", str(by_label["A"]), str(by_label["B"])])
    assert compared.exit_code == 0, compared.output
    lines = compared.output.splitlines()
    assert lines[0] == f"Config differences, {by_label['A'].name} (A) vs {by_label['B'].name} (B), most impactful first"
    assert any(line.split()[:3] == ["lr", "0.02", "0.0008"] for line in lines)
    assert any(line.startswith("train/loss ") for line in lines)  # history from run-*.wandb


def test_mlflow_search_is_a_parent_run_with_a_nested_run_per_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    root = tracked_project(tmp_path, "--mlflow", max_runs=2)  # A and B: each trainer imports mlflow (slow)
    code, summary, output = run_search(root)
    assert code in (0, 1), output
    client = MlflowClient()
    experiment = client.get_experiment_by_name("bisect-runs")
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED" and parent.data.tags["bisect_runs.metric"] == "loss"
    assert parent.data.tags["mlflow.note.content"] == summary["verdict"]
    assert parent.info.run_name == json.loads((root / "out" / "tracking.json").read_text())["search_id"]
    nested = {r.data.tags["bisect_runs.trial"]: r for r in runs if r is not parent}
    done = trials(root / "out")
    assert set(nested) == {t["id"] for t in done}
    for t in done:
        run = nested[t["id"]]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_name == f"{t['label']} seed={t['seed']}"
        assert run.data.tags["bisect_runs.phase"] in ("calibrate", "screen", "confirm")
        assert run.data.tags["bisect_runs.outcome"] == "ok" and run.info.status == "FINISHED"
        expected = GOOD if t["label"] == "A" else BAD if t["label"] == "B" else None
        if expected is not None:
            assert run.data.params == {k: str(v) for k, v in expected.items()}
        assert run.data.metrics["loss"] == pytest.approx(t["outcome"]["value"])
        assert run.data.tags["trainer"] == "tracked_trainer" and "train_loss" in run.data.metrics  # the trainer's own logging

    ids = {t["label"]: nested[t["id"]].info.run_id for t in done}
    runner = CliRunner()
    diffed = runner.invoke(cli, ["diff", f"mlflow:{ids['A']}", f"runs:/{ids['B']}", "--format", "json"])
    assert diffed.exit_code == 1, diffed.output
    assert {row["key"] for row in json.loads(diffed.output)} == {"lr", "dropout"}
    compared = runner.invoke(cli, ["compare", f"mlflow:{ids['A']}", f"runs:/{ids['B']}"])
    assert compared.exit_code == 0, compared.output
    lines = compared.output.splitlines()
    assert lines[0] == "Config differences, A seed=0 (A) vs B seed=0 (B), most impactful first"
    assert any(line.split()[:3] == ["lr", "0.02", "0.0008"] for line in lines)
    assert "Metrics, A seed=0 (A) vs B seed=0 (B)" in lines
    env = lines[lines.index("Environment differences, A seed=0 (A) vs B seed=0 (B)") :]
    assert any(line.split() == ["git", "commit", "1111111", "2222222"] for line in env)
    missing = runner.invoke(cli, ["diff", "mlflow:nosuchrun", f"mlflow:{ids['B']}"])
    assert missing.exit_code == 2 and missing.output.startswith("Error: mlflow:nosuchrun: no such run in the tracking store sqlite:///")


def test_a_torn_wandb_log_keeps_what_was_written_and_says_where_it_stopped(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    from bisect_runs.wandb_log import find_log, read_log

    logs = "".join(f"run.log({{'loss': {2 - s / 10}}}, step={s})\n" for s in range(10))
    script = f"import wandb\nrun = wandb.init(project='p', config={{'lr': 0.02}})\n{logs}run.finish()\n"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
    log = find_log(tmp_path / "wandb")
    assert log is not None
    whole = read_log(log)
    assert whole.config == {"lr": 0.02} and [s for s, _ in whole.series()["loss"]] == list(range(10))
    log.write_bytes(log.read_bytes()[:-40])  # killed mid-write
    torn = read_log(log)
    assert torn.problems and "torn or corrupt record at byte" in torn.problems[0]
    assert torn.series()["loss"][:5] == whole.series()["loss"][:5]


def test_an_unusable_mlflow_store_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuch://store")
    root = tracked_project(tmp_path, "--mlflow", max_runs=2)
    code, _, output = run_search(root)
    assert code == 2 and output.startswith("Error: MLFLOW_TRACKING_URI=nosuch://store: ")
    assert len(output.splitlines()) == 1 and not (root / "out" / "trials").exists()
