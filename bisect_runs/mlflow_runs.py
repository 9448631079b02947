"""Runs in an MLflow tracking store, named `mlflow:RUN_ID` or `runs:/RUN_ID`, read through the MLflow client.

The store is the one MLflow itself would use (`MLFLOW_TRACKING_URI`). `diff` reads a run's
params as its config; `compare` reads its metric histories, its name and the tags that say
where it ran (`mlflow.source.git.commit`, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bisect_runs.errors import RunError

History = list[tuple[int, float]]
_REF = re.compile(r"^(?:mlflow:|runs:/)([0-9A-Za-z_-]+)/?$")
ENVIRONMENT_TAGS = {  # MLflow system tag -> what compare calls it
    "mlflow.source.git.commit": "git commit", "mlflow.source.git.branch": "git branch",
    "mlflow.source.git.repoURL": "git remote", "mlflow.source.name": "program", "mlflow.user": "user",
    "host": "host", "python": "python", "GPU": "GPU",
}  # fmt: skip


@dataclass
class MlflowRun:
    """One run of the store: its name, params, tags and metric histories."""

    run_id: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    series: dict[str, History] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        """Where the run ran, from the tags MLflow (and the trainer) set."""
        return {label: self.tags[tag] for tag, label in ENVIRONMENT_TAGS.items() if self.tags.get(tag)}


def run_ref(spec: object) -> str | None:
    """The run id of an `mlflow:RUN_ID` or `runs:/RUN_ID` reference; None for anything else."""
    match = _REF.match(spec) if isinstance(spec, str) else None
    return match.group(1) if match else None


def read_run(run_id: str, with_metrics: bool = True) -> MlflowRun:
    """A run of the tracking store; a missing run or store is a RunError naming both."""
    client = _client()
    try:
        run = client.get_run(run_id)
    except Exception as exc:  # MlflowException and the store's own errors: one message for the user
        raise RunError(f"mlflow:{run_id}: no such run in {_uri()} ({_first_line(exc)})") from None
    from bisect_runs.sources.trackers import parse_param

    tags = dict(run.data.tags)
    result = MlflowRun(run_id, run.info.run_name or tags.get("mlflow.runName") or run_id, tags=tags)
    result.params = {key: parse_param(value) for key, value in run.data.params.items()}
    if with_metrics:
        for key in run.data.metrics:
            history = client.get_metric_history(run_id, key)
            result.series[key] = sorted((int(m.step), float(m.value)) for m in history)
    return result


def _client() -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise RunError("reading mlflow:RUN_ID needs the mlflow package: pip install 'bisect-runs[mlflow]'") from None
    return MlflowClient()


def _uri() -> str:
    from mlflow import get_tracking_uri

    return f"the tracking store {get_tracking_uri()}"


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
