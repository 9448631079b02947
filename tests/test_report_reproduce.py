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
