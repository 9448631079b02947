"""The report's content as one JSON-ready dict: verdict, differences, trials, rounds, costs.

Markdown (`markdown.py`) and `--format json` both render this dict, so the two never
disagree. Everything is computed from what the search left in OUT_DIR; nothing is rerun.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bisect_runs.report.costs import cost_section
from bisect_runs.report.estimates import regression_section, variant_groups
from bisect_runs.report.record import SearchRecord, summary_details
from bisect_runs.report.reproduce import reproduce_section
from bisect_runs.report.rows import culprit_rows, factor_rows, not_searched, round_rows, trial_rows
from bisect_runs.report.units import metric_unit
from bisect_runs.report.verdict import partial_reason, verdict_so_far


def build_content(record: SearchRecord, environment: dict[str, Any] | None) -> dict[str, Any]:
    """Everything the report says, as a dict (figures are added by the caller)."""
    s = record.summary or dict(record.settings)
    metric = str(s.get("metric") or "metric")
    mode = str(s.get("mode") or "")  # unknown without summary.json or a `search` journal event
    groups = variant_groups(record.trials)
    unit = metric_unit(metric, [t.value for t in record.trials if t.status == "ok" and t.value is not None])
    regression = regression_section(s, groups, mode, unit)
    factors = factor_rows(s, unit)
    return {
        "title": f"bisect-runs: why `{_name(s.get('bad')) or 'B'}` is worse than `{_name(s.get('good')) or 'A'}`",
        "status": "complete" if record.complete else "partial",
        "partial_reason": partial_reason(record),
        "good": s.get("good"),
        "bad": s.get("bad"),
        "metric": metric,
        "mode": mode or None,
        "steps": record.steps,
        "strategy": s.get("strategy"),
        "unit": {"scale": unit.scale, "value_suffix": unit.suffix.strip(), "difference": unit.gap.strip()},
        "verdict": {"sentence": s.get("verdict"), "paragraph": verdict_so_far(record, s, regression, factors, unit)},
        "reproduced": s.get("reproduced"),
        "regression": regression,
        "culprits": culprit_rows(s, unit),
        "differences": factors,
        "not_searched": not_searched(s),
        "trials": trial_rows(groups, unit),
        "rounds": round_rows(record.rounds, record.trials),
        "details": summary_details(s),
        "reproduce": reproduce_section(record, environment),
        "costs": cost_section(record.trials),
        "environment": environment,
        "seeds": s.get("seeds"),
    }


def _name(spec: Any) -> str | None:
    if not spec:
        return None
    text = str(spec)
    return text if ":" in text and not text.startswith("/") else (Path(text).name or text)
