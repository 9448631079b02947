"""Shared prefix: every trial resumes from one checkpoint, and only the steps after it count."""

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

from bisect_runs import checkpoint as checkpoint_module
from bisect_runs.checkpoint import Checkpoint, fingerprint
from bisect_runs.cli import cli
from bisect_runs.journal import read_journal
from bisect_runs.project import load_project, make_settings
from bisect_runs.search import Search
from bisect_runs.strategies.base import Request
from bisect_runs.trials import make_trial, prepare_launch, trial_from_json, trial_to_json

TRAINER = Path(__file__).parent / "trainers" / "curve_trainer.py"
TRAIN = f"{sys.executable} {TRAINER} --config {{config}} --run-dir {{run_dir}} --steps {{steps}} --seed {{seed}}"
COMMAND = TRAIN + " --checkpoint {checkpoint}"
GOOD = {"lr": 0.05, "weight_decay": 0.0, "clip": 1000.0, "eval_every": 4}
BAD = {"lr": 0.003, "weight_decay": 0.0, "clip": 500.0, "eval_every": 4}
STEPS, PREFIX = 40, 20


def project(tmp_path: Path, **settings: Any) -> Path:
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(GOOD))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(BAD))
    base = {"good": "good.yaml", "bad": "bad.yaml", "command": COMMAND, "metric": "val_loss", "mode": "min",
            "steps": STEPS, "parallel": 2, "out": "out", "checkpoint": "prefix/ckpt.pt", "checkpoint_step": PREFIX}  # fmt: skip
    (tmp_path / "bisect.yaml").write_text(yaml.safe_dump({**base, **settings}))
    return tmp_path


def train_prefix(root: Path, seed: int = 0) -> float:
    """Train the shared prefix (the good config's first PREFIX steps) once; return its last val_loss."""
    run = root / "prefix"
    run.mkdir(exist_ok=True)
    (run / "metrics.jsonl").unlink(missing_ok=True)
    words = TRAIN.format(config=root / "good.yaml", run_dir=run, steps=PREFIX, seed=seed).split()
    subprocess.run([*words, "--save", str(run / "ckpt.pt")], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return float(json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["val_loss"])


def search(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["search", "--project", str(root / "bisect.yaml"), *args])
    return result.exit_code, result.output


def test_trials_resume_from_the_checkpoint_and_only_their_steps_count(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    root = project(tmp_path)
    saved = train_prefix(root)
    code, output = search(root)
    assert code == 0, output
    summary = json.loads((root / "out" / "summary.json").read_text())
    assert summary["culprits"] == [["lr"]]
    trials = [e for e in read_journal(root / "out") if e.get("event") == "trial"]
    for t in trials:
        logged = (root / "out" / "trials" / t["trial"]["id"] / "run" / "metrics.jsonl").read_text().splitlines()
        first = json.loads(logged[0])
        assert first == {"step": PREFIX, "val_loss": saved}  # the trainer loaded the prefix's weights
        assert t["trial"]["checkpoint"]["step"] == PREFIX and t["outcome"]["start_step"] == PREFIX
    ran = sum(t["outcome"]["steps_run"] - PREFIX for t in trials)
    assert summary["trial_steps"] == ran <= summary["runs"] * (STEPS - PREFIX)
    assert summary["early_stop"]["full_budget_steps"] == summary["runs"] * (STEPS - PREFIX)
    assert summary["checkpoint"]["path"] == str(root / "prefix" / "ckpt.pt")
    assert f"({summary['trial_steps']} trial-steps)" in output, output
    report = (root / "out" / "report.md").read_text()
    path = root / "prefix" / "ckpt.pt"
    assert f"each resumed from checkpoint `{path}` (step {PREFIX}) and ran steps {PREFIX}-{STEPS}" in report
    assert f"{summary['trial_steps']} trial-steps" in report
    assert f"--checkpoint {path} --checkpoint-step {PREFIX}" in report  # the spelled-out rerun resumes too
    code, output = search(root, "--resume")  # the same checkpoint: every trial is reused
    assert code == 0, output
    assert len([e for e in read_journal(root / "out") if e.get("event") == "trial"]) == len(trials)
    train_prefix(root, seed=1)  # saved anew under the same path: the finished trials started from other weights
    code, output = search(root, "--resume")
    assert code == 2
    assert output.startswith(f"Error: {root / 'out'} holds another search (the content of checkpoint {path} (step {PREFIX}) changed)")


def test_a_changed_checkpoint_changes_every_trial_id(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    root = project(tmp_path)
    train_prefix(root)
    settings = make_settings(load_project(root / "bisect.yaml"), {})
    before = Search(settings).trial_for(Request(frozenset(), 0))
    train_prefix(root, seed=1)  # the same path, other weights: finished trials must not be reused on --resume
    after = Search(settings).trial_for(Request(frozenset(), 0))
    assert before.checkpoint is not None and after.checkpoint is not None
    assert before.checkpoint.fingerprint != after.checkpoint.fingerprint and before.id != after.id
    assert make_trial("A", after.changes, 0, STEPS, after.command, after.checkpoint).id == after.id


def test_a_large_checkpoint_is_known_by_size_and_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"x" * 64)
    hashed = fingerprint(ckpt)
    assert hashed.startswith("sha256:")
    (ckpt / "optimizer.pt").write_bytes(b"y")  # a directory checkpoint: every file counts
    assert fingerprint(ckpt) != hashed
    monkeypatch.setattr(checkpoint_module, "HASH_LIMIT", 10)
    mtime = max(f.stat().st_mtime_ns for f in ckpt.iterdir())
    assert fingerprint(ckpt) == f"size:65,mtime:{mtime}"


def test_checkpoint_key_writes_the_path_into_the_trials_config(tmp_path: Path) -> None:
    ckpt = Checkpoint(str(tmp_path / "step-15000.pt"), 15000, "sha256:0")
    trial = make_trial("A", {"lr": 0.1}, 0, 20000, ["train", "{config}"], ckpt)

    def write(t: Any, dest: Path) -> Path:
        path = dest / "config.yaml"
        path.write_text(yaml.safe_dump(dict(t.changes)))
        return path

    launch = prepare_launch(trial, tmp_path, write, checkpoint_key="resume_from")
    config = yaml.safe_load(Path(launch.argv[1]).read_text())
    assert config == {"lr": 0.1, "resume_from": ckpt.path}
    assert launch.env["BISECT_RUNS_CHECKPOINT"] == ckpt.path and launch.env["BISECT_RUNS_CHECKPOINT_STEP"] == "15000"
    assert trial_from_json(trial_to_json(trial)) == trial  # the journal keeps the checkpoint with the trial
    assert make_trial("A", {"lr": 0.1}, 0, 20000, ["train", "{config}"]).id != trial.id


def errors(tmp_path: Path, *args: str, **settings: Any) -> str:
    root = project(tmp_path, **settings)
    code, output = search(root, *args)
    assert code == 2, output
    assert not (root / "out").exists()  # every one of these stops before OUT_DIR exists
    return output


def a_checkpoint_file(tmp_path: Path) -> None:
    """The file the project names as its checkpoint (prefix/ckpt.pt), with any bytes."""
    (tmp_path / "prefix").mkdir()
    (tmp_path / "prefix" / "ckpt.pt").write_bytes(b"weights")


def test_checkpoint_placeholder_without_a_checkpoint(tmp_path: Path) -> None:
    output = errors(tmp_path, checkpoint=None, checkpoint_step=None)
    assert output == (
        "Error: the command template uses {checkpoint} but no checkpoint is set: "
        "pass --checkpoint PATH and --checkpoint-step N (or `checkpoint` in bisect.yaml)\n"
    )


def test_a_checkpoint_that_does_not_exist(tmp_path: Path) -> None:
    output = errors(tmp_path, "--checkpoint", "gone/step-20.pt")
    assert output == f"Error: checkpoint {tmp_path / 'gone' / 'step-20.pt'}: no such file or directory\n"


def test_a_checkpoint_without_its_step(tmp_path: Path) -> None:
    a_checkpoint_file(tmp_path)
    output = errors(tmp_path, checkpoint_step=None)
    assert output == (
        f"Error: checkpoint {tmp_path / 'prefix' / 'ckpt.pt'}: set --checkpoint-step N, the step it was taken at "
        "(or `checkpoint_step` in bisect.yaml)\n"
    )


def test_a_checkpoint_step_past_the_budget(tmp_path: Path) -> None:
    a_checkpoint_file(tmp_path)
    output = errors(tmp_path, "--checkpoint-step", "40")
    assert output == "Error: checkpoint_step 40 must be below the step budget (steps: 40)\n"


def test_a_negative_checkpoint_step(tmp_path: Path) -> None:
    output = errors(tmp_path, "--checkpoint-step", "-1")
    assert output == "Error: --checkpoint-step must be a non-negative integer (got -1)\n"


def test_a_checkpoint_the_trials_would_not_get(tmp_path: Path) -> None:
    a_checkpoint_file(tmp_path)
    output = errors(tmp_path, command=TRAIN)
    assert output == (
        f"Error: checkpoint {tmp_path / 'prefix' / 'ckpt.pt'} is set but the trials would not get it: "
        "put {checkpoint} in the command template or set checkpoint_key (the config key that takes its path)\n"
    )


def test_a_checkpoint_step_without_a_checkpoint(tmp_path: Path) -> None:
    output = errors(tmp_path, checkpoint=None, command=TRAIN)
    assert output == "Error: checkpoint_step is set but no checkpoint is: pass --checkpoint PATH (or `checkpoint` in bisect.yaml)\n"
