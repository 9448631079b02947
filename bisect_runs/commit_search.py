"""Code search: bisect the first-parent commits between good_rev and bad_rev with real trials."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

from bisect_runs.atomic import finite
from bisect_runs.checkpoint import shared_prefix
from bisect_runs.commit_trials import CommitRunner, CommitTrials, observe
from bisect_runs.executors import get_executor
from bisect_runs.journal import Journal
from bisect_runs.progress import Progress
from bisect_runs.project import Settings
from bisect_runs.report import write_report
from bisect_runs.revisions import (
    WORKTREE_DIR,
    Worktrees,
    commit_info,
    first_parent_range,
    open_repo,
    resolve,
)
from bisect_runs.search_settings import config_spec, executor_options, require, runner_options
from bisect_runs.sources import load_config
from bisect_runs.strategies import drive
from bisect_runs.strategies.base import Decision, Effect, Observation, Request, SearchContext
from bisect_runs.strategies.commits import BisectOptions, bisect_commits
from bisect_runs.strategies.rounds import budget_exhausted
from bisect_runs.summary import SearchResult, effect_json, write_summary
from bisect_runs.trials import check_command

COMMIT_KEY = "commit:"  # culprits and effect keys name commits as "commit:<sha>"


class CodeSearch:
    """Bisect the first-parent commits between good_rev and bad_rev with one config and command."""

    def __init__(self, settings: Settings, progress: Progress | None = None) -> None:
        require(settings, ("good_rev", "bad_rev", "command", "metric", "steps"), "bisecting commits")
        self.settings = settings
        self.progress = progress
        self.repo = open_repo(settings.path(settings.repo) if settings.repo else Path.cwd())
        self.good_sha = resolve(self.repo, str(settings.good_rev))
        self.shas = first_parent_range(self.repo, self.good_sha, str(settings.bad_rev))
        self.subjects = subjects(self.repo, self.shas)
        self.config = load_config(config_spec(settings, settings.config), config_format(settings)) if settings.config else None
        check_command(shlex.split(settings.command or ""))  # before OUT_DIR exists
        self.checkpoint = shared_prefix(settings, shlex.split(settings.command or ""))
        self.runner_options = runner_options(settings)
        self.out_dir = settings.path(settings.out) or Path(settings.out)
        self.trial_rounds: list[dict[str, Any]] = []

    @property
    def positions(self) -> list[str]:
        return [self.good_sha, *self.shas]

    def context(self, parallel: int) -> SearchContext:
        s = self.settings
        return SearchContext(
            n_factors=len(self.shas),
            factor_names=[f"{sha[:10]} ({subject})" for sha, subject in zip(self.shas, self.subjects, strict=True)],
            mode=s.mode,
            min_effect=s.min_effect,
            parallel=parallel,
            max_runs=s.max_runs,
            failure_value=s.failure_value,
            seed_base=s.seed_base,
        )

    def run(self) -> SearchResult:
        s = self.settings
        executor = get_executor(s.executor, **executor_options(s))
        worktrees = Worktrees(self.repo, self.out_dir / WORKTREE_DIR)
        with executor, Journal(self.out_dir, resume=s.resume) as journal, worktrees:
            trials = CommitTrials(s, self.positions, worktrees, self.config, checkpoint=self.checkpoint)
            runner = CommitRunner(
                self.out_dir, executor, journal, trials.write_config, progress=self.progress,
                commit_trials=trials, **self.runner_options,
            )  # fmt: skip
            ctx = self.context(executor.capacity)
            started = time.monotonic()

            def evaluate(requests: list[Request]) -> list[Observation]:
                batch = [trials.trial_for(r) for r in requests]
                outcomes = runner.run(batch)
                self.trial_rounds.append(
                    {"round": len(self.trial_rounds) + 1, "trials": [[t.label, t.seed, t.id] for t in batch]}
                )
                ctx.out_of_time = s.max_hours is not None and time.monotonic() - started > s.max_hours * 3600
                return observe(requests, outcomes)

            decision, _, _ = drive(bisect_commits(ctx, bisect_options(s)), evaluate, ctx)
            result = self.result(decision, runner.runs, complete=not budget_exhausted(ctx))
        write_summary(self.out_dir, result)
        write_report(self.out_dir)
        return result

    def result(self, decision: Decision, runs: int, complete: bool = True) -> SearchResult:
        """The decision in summary.json terms: commits as factors keyed `commit:<sha>`."""
        s = self.settings
        keys = [[COMMIT_KEY + sha] for sha in self.shas]
        names = [f"{sha[:10]} {subject}" for sha, subject in zip(self.shas, self.subjects, strict=True)]
        return SearchResult(
            good=str(s.good_rev),
            bad=str(s.bad_rev),
            metric=str(s.metric),
            mode=s.mode,
            steps=int(s.steps or 0),
            strategy="commits",
            reproduced=decision.reproduced,
            differences=[],
            factors=[{"name": names[i], "keys": keys[i]} for i in sorted(self._reported(decision))],  # measured ones
            culprits=[[key for i in c for key in keys[i]] for c in decision.culprits],
            effects=[finite(effect_json(e, names, keys, "bad vs good")) for e in decision.effects],
            runs=runs,
            rounds=len(self.trial_rounds),
            verdict=decision.verdict,
            regression=None if decision.regression is None else finite(effect_json(decision.regression, names, keys, "bad vs good")),
            details={"code": self.code_details(decision), "trial_rounds": self.trial_rounds},
            complete=complete,
        )

    def code_details(self, decision: Decision) -> dict[str, Any]:
        """What the report shows about commits: the range, every commit tested, the first bad one."""
        info = {i: commit_info(self.repo, self.shas[i]).to_json() for i in self._reported(decision)}
        tested = []
        for row in decision.details.get("positions", []):
            k = row["position"]
            sha = self.positions[k]
            tested.append({**row, "sha": sha, "commit": info.get(k - 1) or {"sha": sha, "short": sha[:10]}})
        first_bad = None
        if decision.culprits:
            first_bad = {**info[decision.culprits[0][0]], **_effect_fields(decision.effects[0])}
        return {
            "repo": str(self.repo.working_tree_dir),
            "good_rev": self.settings.good_rev,
            "bad_rev": self.settings.bad_rev,
            "good_sha": self.good_sha,
            "bad_sha": self.shas[-1],
            "config": self.settings.config,
            "commits_in_range": len(self.shas),
            "first_bad": first_bad,
            "candidates": [info[i] for i in decision.details.get("candidates", []) if i in info],
            "tested": tested,
            "crash_is_bad": decision.details.get("crash_is_bad", False),
        }

    def _reported(self, decision: Decision) -> set[int]:
        picked = {i for c in decision.culprits for i in c} | set(decision.details.get("candidates", []))
        picked |= {row["position"] - 1 for row in decision.details.get("positions", []) if row["position"] > 0}
        return {i for i in picked if 0 <= i < len(self.shas)}


def bisect_options(s: Settings) -> BisectOptions:
    """Seeds per commit from --seeds: that many to start (at least 2), four times as many at most."""
    seeds = max(2, s.seeds or 0)
    return BisectOptions(seeds=seeds, calibration_seeds=max(3, seeds), max_seeds=max(8, 4 * seeds), verify_seeds=2 * seeds)


def config_format(s: Settings) -> str | None:
    """--format-good/--format-bad apply when the config used at every commit is that side's."""
    return s.format_good if s.config == s.good else s.format_bad if s.config == s.bad else None


def subjects(repo: Any, shas: list[str]) -> list[str]:
    """Subject lines of many commits in one git call."""
    if not shas:
        return []
    out = repo.git.log("--no-walk=unsorted", "--format=%H%x00%s", *shas)
    by_sha = dict(line.split("\x00", 1) for line in out.splitlines() if "\x00" in line)
    return [by_sha.get(sha, "") for sha in shas]


def _effect_fields(e: Effect) -> dict[str, Any]:
    """The numbers of an effect, non-finite ones as null."""
    return finite({name: getattr(e, name) for name in ("effect", "ci_low", "ci_high", "explained_fraction", "p_value")})


