"""A trainer that ignores the seed: the search says so, runs one trial per point and gives no intervals."""

from __future__ import annotations

from pathlib import Path

from test_search_e2e import project, run_search

from bisect_runs.journal import read_journal


def test_identical_values_across_seeds_are_judged_deterministic(tmp_path: Path) -> None:
    root = project(tmp_path, {"value": "1.0 + (lr < 0.01)", "noise": 0.0})  # the same value at every seed
    code, summary, output = run_search(root)
    assert code == 0, output
    assert summary["culprits"] == [["lr"]]
    assert summary["seeds"]["ignored"] is True and summary["seeds"]["seeds"] == [0, 1]
    assert "Warning: the trainer ignores the seed" in summary["verdict"]
    assert "pass {seed} in the command" in summary["verdict"]
    assert all(e["ci_low"] is None and e["p_value"] is None for e in summary["effects"])
    trials = [e["trial"] for e in read_journal(root / "out") if "trial" in e]
    assert {t["label"] for t in trials if t["seed"] != 0} <= {"A", "B"}  # only calibration tried other seeds
    report = (root / "out" / "report.md").read_text()
    assert "## Seeds\n\n> **Warning: the trainer ignores the seed" in report
    assert "the same at every seed: the trainer ignores the seed)" in report  # the gap without made-up numbers
    assert "— to —" not in report and "CI 100–100 %" not in report and "mean ± sd over 2 and 2 seeds" not in report


def test_a_trainer_that_uses_the_seed_gets_no_warning(tmp_path: Path) -> None:
    root = project(tmp_path, {"value": "1.0 + (lr < 0.01)", "noise": 0.1})
    code, summary, output = run_search(root)
    assert code == 0, output
    assert summary["seeds"]["ignored"] is False
    assert "ignores the seed" not in summary["verdict"]
    assert "## Seeds" not in (root / "out" / "report.md").read_text()
