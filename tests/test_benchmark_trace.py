"""The bayes trace benchmark: when the true answer led for good, beside the runs the search used."""

from __future__ import annotations

import bisect_runs.strategies.bayes as bayes_module
from benchmarks.bayes_trace import trace


def test_a_strong_single_culprit_leads_before_the_search_stops() -> None:
    update = bayes_module.update
    row = trace("single", 12, 8.0, rep=0, prior="informative", parallel=4)
    assert row["correct"] is True
    assert row["settled"] is not None and row["settled"] < row["runs"]  # the confirming rounds come after
    assert isinstance(row["top_is_culprit"], bool)
    runs, leading = row["answers"][-1]
    assert runs == row["runs"] and leading[0][1] >= 0.95  # the stop: the leading answer at CONFIDENCE
    assert bayes_module.update is update  # the tracing hook is taken out again
