"""The report's "How to reproduce": the command as typed and the same search with every setting spelled out."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_search_e2e import project, run_search


def test_the_report_spells_out_the_whole_command_when_bisect_yaml_supplied_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path, {"value": "1.0 + (lr < 0.01)", "noise": 0.05}, seeds=1, max_runs=2)
    monkeypatch.chdir(root)  # paths in the command are relative to where the search ran
    run_search(root)
    report = (root / "out" / "report.md").read_text()
    assert "The same search with every setting spelled out (configs, trainer command, metric, mode, steps, strategy):" in report
    full = next(line for line in report.splitlines() if line.startswith("bisect-runs search --good"))
    assert full.startswith("bisect-runs search --good good.yaml --bad bad.yaml --command ")
    assert full.endswith(" --metric loss --mode min --steps 10 --strategy auto --out out")


def test_the_report_says_what_per_is_and_not_for_a_plain_loss(tmp_path: Path) -> None:
    (tmp_path / "per").mkdir()
    (tmp_path / "loss").mkdir()
    root = project(tmp_path / "per", {"value": "0.2 + 0.1 * (lr < 0.01)", "noise": 0.01, "metric": "val_per"}, metric="val_per", seeds=1, max_runs=2)
    run_search(root)
    report = (root / "out" / "report.md").read_text()
    assert "*What `val_per` is:* PER is the phoneme error rate: the edit distance (substitutions + deletions + insertions)" in report
    assert "can score above 1.0." in report
    plain = project(tmp_path / "loss", {"value": "1.0", "noise": 0.01}, seeds=1, max_runs=2)
    run_search(plain)
    assert "*What `" not in (plain / "out" / "report.md").read_text()
