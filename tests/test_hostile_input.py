"""Hostile and broken input: nothing written outside a trial, no escape code reaches a terminal, one Error line per odd file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner
from trainers import FAKE_TRAINER

from bisect_runs.cli import cli

COMMAND = f"{sys.executable} {FAKE_TRAINER} --config {{config}} --run-dir {{run_dir}} --steps {{steps}} --seed {{seed}}"


def invoke(*args: str) -> tuple[int, str]:
    """Run the CLI; exit code and everything it printed (stdout and stderr)."""
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


# -- 1: a variant writes only inside its trial's config directory ------------------------


def test_a_key_that_would_be_written_outside_the_trial_is_an_error(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    train = {"fake": {"metric": "loss", "value": "1.0 + (lr < 0.01)"}, "lr": 0.02}
    (good / "train.yaml").write_text(yaml.safe_dump(train))
    victim = tmp_path / "victim"
    planted = {"command": "touch pwned"}
    bad = {"train": {**train, "lr": 0.001}, str(victim): planted, "../../../../bisect": planted}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    out = tmp_path / "deep" / "er" / "out"
    code, output = invoke("search", str(good), str(tmp_path / "bad.json"), "--command", COMMAND,
                          "--metric", "loss", "--mode", "min", "--steps", "5", "--seeds", "2", "--out", str(out))  # fmt: skip
    assert code == 2, output
    assert output.startswith(f"Error: {good}: key "), output
    assert "cannot be written as a file of the directory config" in output
    assert len(output.strip().splitlines()) == 1
    assert not victim.with_suffix(".yaml").exists()
    assert not list(tmp_path.rglob("bisect.yaml"))
