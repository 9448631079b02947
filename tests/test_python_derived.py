"""Python configs (nanoGPT style): a name computed from earlier names is derived, and variants keep the expression."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bisect_runs.cli import cli
from bisect_runs.sources import load_config
from bisect_runs.sources.python import parse_python_config
from bisect_runs.variants import write_variant

GOOD = """\
learning_rate = 1e-3
min_lr = learning_rate / 10
max_iters = 5000
lr_decay_iters = max_iters
warmup_iters = 100
"""
BAD = GOOD.replace("learning_rate = 1e-3", "learning_rate = 3e-3").replace("warmup_iters = 100", "warmup_iters = 10")


def test_same_expression_on_both_sides_is_not_a_difference(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(GOOD)
    (tmp_path / "b.py").write_text(BAD)
    result = CliRunner().invoke(cli, ["diff", str(tmp_path / "a.py"), str(tmp_path / "b.py"), "--format", "json", "--no-project"])
    assert result.exit_code == 1, result.output
    assert sorted(item["key"] for item in json.loads(result.output)) == ["learning_rate", "warmup_iters"]


def test_a_changed_expression_is_a_difference(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(GOOD)
    (tmp_path / "b.py").write_text(BAD.replace("min_lr = learning_rate / 10", "min_lr = 1e-5"))
    result = CliRunner().invoke(cli, ["diff", str(tmp_path / "a.py"), str(tmp_path / "b.py"), "--format", "json", "--no-project"])
    assert "min_lr" in {item["key"] for item in json.loads(result.output)}


def test_variant_keeps_derived_expressions_so_they_follow(tmp_path: Path) -> None:
    (tmp_path / "b.py").write_text(BAD)
    bad = load_config(str(tmp_path / "b.py"))
    path = write_variant(bad, {("learning_rate",): 1e-3, ("max_iters",): 300}, tmp_path / "out")
    text = path.read_text()
    assert "min_lr = learning_rate / 10\n" in text and "lr_decay_iters = max_iters\n" in text
    assert parse_python_config(text).data == {
        "learning_rate": 1e-3, "min_lr": 1e-4, "max_iters": 300, "lr_decay_iters": 300, "warmup_iters": 10,
    }  # fmt: skip


def test_variant_setting_a_derived_name_writes_its_value(tmp_path: Path) -> None:
    (tmp_path / "b.py").write_text(BAD)
    path = write_variant(load_config(str(tmp_path / "b.py")), {("lr_decay_iters",): 600}, tmp_path / "out")
    assert parse_python_config(path.read_text()).data["lr_decay_iters"] == 600
