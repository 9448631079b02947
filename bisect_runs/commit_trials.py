"""Trials at commits: one command and config run in each commit's worktree, outcomes as observations."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
from pathlib import Path
from typing import Any

from bisect_runs.checkpoint import Checkpoint
from bisect_runs.crashes import attempt_counts
from bisect_runs.errors import SettingsError
from bisect_runs.executors.base import Launch
from bisect_runs.project import Settings
from bisect_runs.revisions import Worktrees
from bisect_runs.runner import TrialRunner
from bisect_runs.sources.loaded import LoadedConfig
from bisect_runs.strategies.base import INFRA, OK, Observation, Request
from bisect_runs.strategies.commits import position_of
from bisect_runs.trials import ENV_PREFIX, Outcome, Trial, make_trial
from bisect_runs.variants import write_variant


class CommitTrials:
    """Turns (position, seed) requests into trials of one command and config at a commit's worktree."""

    def __init__(
        self,
        settings: Settings,
        positions: list[str],
        worktrees: Worktrees,
        config: LoadedConfig | None,
        in_place: dict[str, Path] | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.settings = settings
        self.positions = positions  # sha at each position: the good commit first, the bad one last
        self.worktrees = worktrees
        self.config = config
        self.in_place = dict(in_place or {})  # shas measured in an existing checkout (judge's HEAD)
        self.command = tuple(shlex.split(settings.command or ""))
        self.fingerprint = _fingerprint(config)
        self.cwd: dict[str, Path] = {}  # trial id -> directory the trainer starts in
        self.shas: dict[str, str] = {}  # trial id -> commit
        self.checkpoint = checkpoint  # the shared prefix every commit's trial resumes from, if any

    def trial_for(self, request: Request) -> Trial:
        """The trial of `request`; its id covers the commit and the config as well as seed and budget."""
        sha = self.positions[position_of(request.point)]
        assert self.settings.steps is not None
        base = make_trial(self.label(sha), (), request.seed, self.settings.steps, self.command, self.checkpoint)
        digest = hashlib.sha256(f"{base.id}:{sha}:{self.fingerprint}".encode()).hexdigest()[:16]
        trial = dataclasses.replace(base, id=digest)
        self.cwd[trial.id] = self.in_place.get(sha) or self.worktrees.checkout(sha)
        self.shas[trial.id] = sha
        return trial

    def label(self, sha: str) -> str:
        if sha == self.positions[0]:
            return f"good {sha[:10]}"
        if sha == self.positions[-1]:
            return f"bad {sha[:10]}"
        return f"commit {sha[:10]}"

    def write_config(self, trial: Trial, dest: Path) -> Path:
        """The same config at every commit (with the budget and seed keys set, if any)."""
        if self.config is None:
            if trial.changes:
                keys = ", ".join(k for k, _ in trial.changes)
                raise SettingsError(f"steps_key/seed_key ({keys}) need a config: pass --config FILE")
            dest.mkdir(parents=True, exist_ok=True)
            return dest
        changes: dict[tuple[str | int, ...], Any] = {tuple(str(k).split(".")): v for k, v in trial.changes}
        return write_variant(self.config, changes, dest)

    def launch_for(self, trial: Trial, launch: Launch) -> Launch:
        """Start the trainer in the commit's worktree, with that tree first on PYTHONPATH."""
        cwd = self.cwd[trial.id]
        env = dict(launch.env)
        env[ENV_PREFIX + "COMMIT"] = self.shas[trial.id]
        env[ENV_PREFIX + "WORKTREE"] = str(cwd)
        env["PYTHONPATH"] = python_path(cwd)
        return dataclasses.replace(launch, cwd=str(cwd), env=env)


def python_path(tree: Path) -> str:
    """The worktree (and its src/) before anything else, so an editable install of the user's tree loses."""
    entries = [str(tree)] + ([str(tree / "src")] if (tree / "src").is_dir() else [])
    inherited = os.environ.get("PYTHONPATH")
    return os.pathsep.join(entries + ([inherited] if inherited else []))


def _fingerprint(config: LoadedConfig | None) -> str:
    if config is None:
        return "no-config"
    text = json.dumps(config.data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class CommitRunner(TrialRunner):
    """A TrialRunner whose launches start in the trial's commit worktree.

    A program missing at some commit makes that commit untestable (a crash), not the search.
    """

    start_error_fatal = False

    def __init__(self, *args: Any, commit_trials: CommitTrials, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commit_trials = commit_trials

    def _prepare(self, trial: Trial, attempt: int) -> Launch:
        return self.commit_trials.launch_for(trial, super()._prepare(trial, attempt))


def observe(requests: list[Request], outcomes: list[Outcome]) -> list[Observation]:
    """Outcomes as strategy observations (a crash that did not repeat is `infra`, not judged)."""
    return [
        Observation(r.point, r.seed, INFRA if o.infra else o.status, o.value if o.status == OK else None, *attempt_counts(o))
        for r, o in zip(requests, outcomes, strict=True)
    ]


