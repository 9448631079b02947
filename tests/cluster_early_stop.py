"""The early-stopping search of test_search_early_stop on a cluster executor, and the checks every executor passes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def search_stopping_early(root: Path, executor: str, **section: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the curve-trainer search with `--early-stop` on `executor` and check it; its summary and stopped trials."""
    from test_search_early_stop import STEPS, project, search  # skips without torch

    root.mkdir()
    code, summary, trials, output = search(project(root, executor=executor, **section))
    assert code == 0, output
    assert summary["culprits"] == [["lr"]] and summary["reproduced"] is True  # the verdict without early stopping
    outcomes = [t["outcome"] for t in trials]
    assert len(outcomes) == summary["runs"]
    assert all((o["status"], o["attempt"], o["infra"]) == ("ok", 1, False) for o in outcomes), output  # none lost
    stopped = [t for t in trials if t["outcome"]["stopped_early"] is not None]
    assert stopped and summary["early_stop"]["stopped_early"] == len(stopped), output
    for t in stopped:
        outcome, early = t["outcome"], t["outcome"]["stopped_early"]
        assert t["trial"]["label"] not in ("A", "B") and outcome["detail"].startswith("stopped early at step")
        assert early["step"] <= outcome["steps_run"] < STEPS and outcome["value"] == early["projected"]
        metrics = root / "out" / "trials" / t["trial"]["id"] / "run" / "metrics.jsonl"
        assert json.loads(metrics.read_text().splitlines()[-1])["step"] < STEPS  # the trainer really stopped
    assert summary["trial_steps"] < summary["runs"] * STEPS
    return summary, stopped
