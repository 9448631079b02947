"""The judge: one step of `git bisect run`, the checkout measured over seeds against good and bad."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bisect_runs.checkpoint import shared_prefix
from bisect_runs.commit_search import bisect_options, config_format
from bisect_runs.commit_trials import CommitRunner, CommitTrials, observe
from bisect_runs.errors import SettingsError
from bisect_runs.executors import get_executor
from bisect_runs.journal import Journal, disk_space
from bisect_runs.progress import Progress
from bisect_runs.project import Settings
from bisect_runs.revisions import WORKTREE_DIR, Worktrees, head_sha, open_repo, resolve
from bisect_runs.runner import TrialRunner
from bisect_runs.search_settings import config_spec, executor_options, require, runner_options
from bisect_runs.sources import load_config
from bisect_runs.strategies.base import Request, SearchContext
from bisect_runs.strategies.commits import (
    BAD,
    GOOD,
    SKIP,
    UNDECIDED,
    CommitBisection,
    Verdict,
    average,
)

JUDGE_GOOD, JUDGE_BAD, JUDGE_SKIP = 0, 1, 125  # git bisect run's exit codes


@dataclass
class JudgeResult:
    """How the checked-out commit compares with the good and bad references."""

    exit_code: int  # 0 good, 1 bad, 125 skip (untestable or undecided)
    status: str  # good | bad | skip | undecided
    sha: str
    verdict: str
    values: list[float]  # the metric at this commit, one per finished seed
    runs: int


def judge_checkout(
    settings: Settings,
    good_values: list[float] | None = None,
    bad_values: list[float] | None = None,
    progress: Progress | None = None,
) -> JudgeResult:
    """Run the trial at the repository's current checkout over seeds; good, bad or skip.

    References are recorded values (`good_values`, each one run's metric) or revisions
    measured in worktrees once and cached in OUT_DIR's journal, so later calls (and a
    code search with the same settings in the same OUT_DIR) reuse them.
    """
    require(settings, ("command", "metric", "steps"), "bisecting commits")
    good_values, bad_values = list(good_values or []), list(bad_values or [])
    for side, values, rev in (("good", good_values, settings.good_rev), ("bad", bad_values, settings.bad_rev)):
        if not values and not rev:
            raise SettingsError(f"judge needs the {side} reference: --{side}-value X (repeatable) or --{side}-rev REV")
    judge = Judge(settings, progress)
    with disk_space(judge.out_dir):
        return judge.run(good_values, bad_values)


class Judge:
    """Positions 0 (good), 1 (the checkout) and 2 (bad) of a two-commit bisection."""

    def __init__(self, settings: Settings, progress: Progress | None = None) -> None:
        self.settings = settings
        self.progress = progress
        self.repo = open_repo(settings.path(settings.repo) if settings.repo else Path.cwd())
        self.head = head_sha(self.repo.working_tree_dir)
        self.good = resolve(self.repo, settings.good_rev) if settings.good_rev else ""
        self.bad = resolve(self.repo, settings.bad_rev) if settings.bad_rev else ""
        self.config = load_config(config_spec(settings, settings.config), config_format(settings)) if settings.config else None
        self.out_dir = settings.path(settings.out) or Path(settings.out)
        self.checkpoint = shared_prefix(settings, shlex.split(settings.command or ""))  # as a code search's trials

    def run(self, good_values: list[float], bad_values: list[float]) -> JudgeResult:
        s = self.settings
        executor = get_executor(s.executor, **executor_options(s))
        worktrees = Worktrees(self.repo, self.out_dir / WORKTREE_DIR)
        with executor, Journal(self.out_dir, resume=True) as journal, worktrees:
            trials = CommitTrials(s, [self.good, self.head, self.bad], worktrees, self.config,
                                  in_place={self.head: Path(str(self.repo.working_tree_dir))}, checkpoint=self.checkpoint)
            runner = CommitRunner(
                self.out_dir, executor, journal, trials.write_config, progress=self.progress,
                commit_trials=trials, **runner_options(s),
            )  # fmt: skip
            ctx = SearchContext(n_factors=2, factor_names=["checkout", "bad"], mode=s.mode, min_effect=s.min_effect,
                                parallel=executor.capacity, failure_value=s.failure_value, seed_base=s.seed_base)
            state = CommitBisection(ctx, bisect_options(s))

            def measure(requests: list[Request]) -> None:
                state.record(observe(requests, runner.run([trials.trial_for(r) for r in requests])))

            self.references(state, measure, good_values, bad_values)
            return self.decide(state, measure, runner)

    def references(self, state: CommitBisection, measure: Any, good_values: list[float], bad_values: list[float]) -> None:
        """Recorded values as runs of the references, or the reference revisions measured (cached)."""
        requests: list[Request] = []
        for position, values in ((0, good_values), (2, bad_values)):
            if values:
                state.at(position).values.extend(state.badness(v) for v in values)
            else:
                requests += state.requests(position, state.options.calibration_seeds)
        if requests:
            measure(requests)
        for position, name in ((0, "good"), (2, "bad")):
            if state.at(position).unrunnable():
                rev = self.settings.good_rev if position == 0 else self.settings.bad_rev
                raise SettingsError(f"the {name} reference {rev} does not run: every trial crashed (see {self.out_dir}/trials)")

    def decide(self, state: CommitBisection, measure: Any, runner: TrialRunner) -> JudgeResult:
        """More seeds at the checkout until it is clearly like good or like bad, or max seeds."""
        here = state.at(1)
        while True:
            count = state.options.seeds if here.runs == 0 else min(state.options.seeds, state.options.max_seeds - here.runs)
            measure(state.requests(1, count))
            verdict = state.judge(1)
            if verdict.status != UNDECIDED or here.runs >= state.options.max_seeds:
                return self.result(state, verdict, runner.runs)

    def result(self, state: CommitBisection, verdict: Verdict, runs: int) -> JudgeResult:
        here = state.at(1)
        values = [state.badness(v) for v in here.values]
        code = {GOOD: JUDGE_GOOD, BAD: JUDGE_BAD}.get(verdict.status, JUDGE_SKIP)
        mean = f"{average(values):.4g}" if values else "no value"
        refs = f"good {state.badness(average(state.sample(0))):.4g}, bad {state.badness(average(state.sample(2))):.4g}"
        text = {
            GOOD: f"good: {self.settings.metric} {mean} over {len(values)} seeds is like good ({refs}; p = {verdict.p_better:.3g})",
            BAD: f"bad: {self.settings.metric} {mean} over {len(values)} seeds is worse than good ({refs}; p = {verdict.p_worse:.3g})",
            SKIP: f"skip: the trainer does not run at {self.head[:10]} ({len(here.failed)} of {here.runs} trials failed)",
            UNDECIDED: f"skip: undecided after {here.runs} seeds ({self.settings.metric} {mean}; {refs})",
        }[verdict.status]
        return JudgeResult(code, verdict.status, self.head, text, values, runs)
