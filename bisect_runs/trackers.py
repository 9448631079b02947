"""A search in the lab's trackers: W&B grouping through each trial's environment, MLflow runs.

W&B: every trial's environment names the search as `WANDB_RUN_GROUP`, the variant and seed as
`WANDB_NAME`, `bisect-runs` and the phase as `WANDB_TAGS`, the variant's role (A, B, variant)
as `WANDB_JOB_TYPE`, and puts `WANDB_DIR` inside the trial's run directory, so a trainer that
calls `wandb.init()` lands in one group the lab can Compare. MLflow (only with
`MLFLOW_TRACKING_URI` set): the search is a parent run and each trial a nested run
(params = the trial's differences, tags = label, seed, phase, outcome, metric = the judged
value); the trial's environment carries `MLFLOW_RUN_ID`, so the trainer's own
`mlflow.start_run()` logs into that nested run. `OUT_DIR/tracking.json` keeps the ids for --resume.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisect_runs.atomic import read_json_object
from bisect_runs.errors import SettingsError
from bisect_runs.trials import OK, Outcome, Trial, trial_paths
from bisect_runs.variants import ABSENT

TRACKING_FILE = "tracking.json"
TAG_PREFIX = "bisect_runs."
PARAM_CHARS = 6000  # MLflow refuses longer param values


@dataclass
class Tracking:
    """The search's identity in the trackers and the MLflow runs opened for it."""

    out_dir: Path
    search_id: str
    metric: str
    phase: str = ""
    mlflow: MlflowSearch | None = None
    runs: dict[str, str] = field(default_factory=dict)  # trial id -> its nested MLflow run id
    params: dict[str, Any] = field(default_factory=dict)  # every searched key at B's value

    @classmethod
    def open(cls, out_dir: Path, resume: bool, metric: str, search: dict[str, Any], params: dict[str, Any]) -> Tracking:
        """The search's tracking ids: reused from tracking.json on --resume, new otherwise."""
        saved = read_json_object(out_dir / TRACKING_FILE) if resume else {}
        search_id = saved.get("search_id") or f"{out_dir.resolve().name}-{time.strftime('%Y%m%d-%H%M%S')}"
        tracking = cls(out_dir, search_id, metric, params=params)
        if os.environ.get("MLFLOW_TRACKING_URI"):
            tracking.mlflow = MlflowSearch.start(search_id, saved.get("mlflow_parent"), search)
        tracking.save()
        return tracking

    def save(self) -> None:
        data = {"search_id": self.search_id, "mlflow_parent": self.mlflow.parent if self.mlflow else None}
        tmp = self.out_dir / (TRACKING_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.out_dir / TRACKING_FILE)

    def env(self, trial: Trial) -> dict[str, str]:
        """What the trial's environment adds for the trackers (and opens its nested MLflow run)."""
        env = {
            "WANDB_RUN_GROUP": self.search_id,
            "WANDB_NAME": f"{trial.label} seed={trial.seed}",
            "WANDB_TAGS": ",".join(t for t in ("bisect-runs", self.phase) if t),
            "WANDB_JOB_TYPE": role(trial.label),
            "WANDB_DIR": str(trial_paths(self.out_dir, trial.id).run_dir),
        }
        if self.mlflow is not None:
            superseded = self.runs.get(trial.id)
            if superseded:  # a retried crash: the earlier attempt's run ends as failed
                self.mlflow.end(superseded, "FAILED")
            self.runs[trial.id] = self.mlflow.trial_run(trial, self.phase, {**self.params, **dict(trial.changes)})
            env["MLFLOW_RUN_ID"] = self.runs[trial.id]
        return env

    def finished(self, trial: Trial, outcome: Outcome) -> None:
        """A trial was judged: its nested run gets the outcome and the judged value."""
        run_id = self.runs.pop(trial.id, None)
        if self.mlflow is not None and run_id:
            self.mlflow.judged(run_id, self.metric, trial, outcome)

    def close(self, verdict: str | None, reproduced: bool | None) -> None:
        """The search ended (verdict None: interrupted): the parent run ends too."""
        if self.mlflow is not None:
            for run_id in self.runs.values():
                self.mlflow.end(run_id, "KILLED")
            self.mlflow.close(verdict, reproduced)


@dataclass
class MlflowSearch:
    """The parent MLflow run of a search and the client that writes its nested runs."""

    client: Any
    experiment_id: str
    parent: str

    @classmethod
    def start(cls, search_id: str, parent: str | None, search: dict[str, Any]) -> MlflowSearch:
        """Open (or, on --resume, reopen) the search's parent run in MLFLOW_TRACKING_URI."""
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise SettingsError(
                "MLFLOW_TRACKING_URI is set but the mlflow package is not installed: pip install 'bisect-runs[mlflow]' "
                "(or unset MLFLOW_TRACKING_URI)"
            ) from None
        try:
            return cls._start(MlflowClient(), search_id, parent, search)
        except Exception as exc:  # MlflowException, the store's driver errors: one line naming the store
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SettingsError(f"MLFLOW_TRACKING_URI={os.environ.get('MLFLOW_TRACKING_URI')}: {text}") from None

    @classmethod
    def _start(cls, client: Any, search_id: str, parent: str | None, search: dict[str, Any]) -> MlflowSearch:
        experiment_id = _experiment(client)
        if parent:
            client.update_run(parent, status="RUNNING")
            return cls(client, experiment_id, parent)
        tags = {TAG_PREFIX + k: str(v) for k, v in search.items() if v is not None}
        run = client.create_run(experiment_id, run_name=search_id, tags={**tags, TAG_PREFIX + "search": search_id})
        for key in ("metric", "mode", "steps", "strategy", "seeds"):
            if search.get(key) is not None:
                client.log_param(run.info.run_id, key, str(search[key]))
        return cls(client, experiment_id, run.info.run_id)

    def trial_run(self, trial: Trial, phase: str, values: dict[str, Any]) -> str:
        """A nested run for one trial: params are the searched keys' values, tags its label, seed and phase."""
        tags = {
            "mlflow.parentRunId": self.parent, TAG_PREFIX + "label": trial.label, TAG_PREFIX + "seed": str(trial.seed),
            TAG_PREFIX + "phase": phase, TAG_PREFIX + "trial": trial.id, TAG_PREFIX + "role": role(trial.label),
        }  # fmt: skip
        run = self.client.create_run(self.experiment_id, run_name=f"{trial.label} seed={trial.seed}", tags=tags)
        from mlflow.entities import Param

        params = [Param(_param_key(key), _param(value)) for key, value in values.items()]
        self.client.log_batch(run.info.run_id, params=params)
        return str(run.info.run_id)

    def judged(self, run_id: str, metric: str, trial: Trial, outcome: Outcome) -> None:
        self.client.set_tag(run_id, TAG_PREFIX + "outcome", outcome.status)
        if outcome.status == OK and outcome.value is not None:
            self.client.log_metric(run_id, metric, outcome.value, step=trial.steps)
        self.client.log_metric(run_id, "bisect_runs.wall_s", outcome.wall_s)
        self.end(run_id, "FINISHED" if outcome.status == OK else "FAILED")

    def end(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)

    def close(self, verdict: str | None, reproduced: bool | None) -> None:
        if verdict is None:
            self.end(self.parent, "KILLED")
            return
        self.client.set_tag(self.parent, "mlflow.note.content", verdict)
        self.client.set_tag(self.parent, TAG_PREFIX + "reproduced", str(reproduced))
        self.end(self.parent, "FINISHED")


def role(label: str) -> str:
    """A trial's part in the search: the good config (A), the bad one (B) or a variant between."""
    return label if label in ("A", "B") else "variant"


def _experiment(client: Any) -> str:
    """MLFLOW_EXPERIMENT_ID, else MLFLOW_EXPERIMENT_NAME, else an experiment called bisect-runs."""
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "bisect-runs"
    found = client.get_experiment_by_name(name)
    return str(found.experiment_id) if found is not None else str(client.create_experiment(name))


def _param_key(key: str) -> str:
    """A config key as an MLflow param name (letters, digits, `_-. /` only)."""
    return re.sub(r"[^\w\-. /]", "_", key)[:250]


def _param(value: Any) -> str:
    text = "<absent>" if value is ABSENT else str(value)
    return text[:PARAM_CHARS]


