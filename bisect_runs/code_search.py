"""Bisect code commits under seed noise: which commit between a good and a bad revision regressed.

Commits are factors in the strategy protocol of `bisect_runs.strategies.base`: factor i is
the i-th commit after the good revision (oldest first), and position k (the code at the
k-th commit) is the point `frozenset(range(k))`; position 0 is the good revision, position
n the bad one. `bisect_commits` is a strategy generator like the config strategies, so
the same driving code runs it on real trials or on a simulated objective. See docs/commits.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shlex
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisect_runs import stats
from bisect_runs.crashes import attempt_counts
from bisect_runs.errors import SettingsError
from bisect_runs.executors import get_executor
from bisect_runs.executors.base import Launch
from bisect_runs.journal import Journal, disk_space
from bisect_runs.progress import Progress
from bisect_runs.project import Settings
from bisect_runs.report import write_report
from bisect_runs.revisions import (
    WORKTREE_DIR,
    Worktrees,
    commit_info,
    first_parent_range,
    head_sha,
    open_repo,
    resolve,
)
from bisect_runs.runner import TrialRunner
from bisect_runs.search import SearchResult, _spec, executor_options, runner_options, write_summary
from bisect_runs.sources import load_config
from bisect_runs.sources.loaded import LoadedConfig
from bisect_runs.strategies import drive
from bisect_runs.strategies.base import (
    CRASHED,
    DIVERGED,
    INFRA,
    OK,
    TIMEOUT,
    Decision,
    Effect,
    Observation,
    Point,
    Request,
    SearchContext,
    Strategy,
)
from bisect_runs.trials import ENV_PREFIX, Outcome, Trial, check_command, make_trial
from bisect_runs.variants import write_variant

GOOD, BAD, SKIP, UNDECIDED = "good", "bad", "skip", "undecided"
_UNRUNNABLE = frozenset({CRASHED, TIMEOUT})
FAILURE_MARGIN_SD = 3.0  # a failed run counts this many noise sd beyond the worst finished one


def point_at(position: int) -> Point:
    """The point of the code at `position`: every commit up to it applied."""
    return frozenset(range(position))


def position_of(point: Point) -> int:
    """Inverse of `point_at`."""
    return len(point)


@dataclass
class BisectOptions:
    """Seeds per commit: how many to start with, how many at most before calling it undecided."""

    seeds: int = 2
    calibration_seeds: int = 3
    max_seeds: int = 8
    verify_seeds: int = 4  # runs at each of the two commits around the boundary before concluding


@dataclass
class Verdict:
    """How one commit compares with the good and the bad revision."""

    status: str  # good | bad | skip | undecided
    p_worse: float = 1.0  # one-sided t-test p: worse than the good side
    p_better: float = 1.0  # one-sided t-test p: better than the bad side


@dataclass
class Measurements:
    """Everything measured at one position, in badness units (higher = worse)."""

    values: list[float] = field(default_factory=list)  # ok runs
    failed: list[str] = field(default_factory=list)  # statuses of diverged/crashed/timeout runs
    next_seed: int = 0
    verdict: Verdict | None = None

    @property
    def runs(self) -> int:
        return len(self.values) + len(self.failed)

    def unrunnable(self) -> bool:
        """No run gave a metric and none diverged: the trainer does not start or crashes every time."""
        return not self.values and bool(self.failed) and all(s in _UNRUNNABLE for s in self.failed)


class CommitBisection:
    """State of a noise-aware k-section over positions 0..n (0 good, n bad)."""

    def __init__(self, ctx: SearchContext, options: BisectOptions) -> None:
        self.ctx = ctx
        self.options = options
        self.n = ctx.n_factors
        self.data: dict[int, Measurements] = {}
        self.crash_is_bad = False  # the bad revision itself never runs: look for where it stopped running
        self.rounds = 0

    # -- measurements ---------------------------------------------------------------------

    def at(self, position: int) -> Measurements:
        return self.data.setdefault(position, Measurements())

    def requests(self, position: int, count: int) -> list[Request]:
        """`count` fresh seeds at `position`; the same seed list at every commit (paired design)."""
        m = self.at(position)
        seeds = range(m.next_seed, m.next_seed + count)
        m.next_seed += count
        return [Request(point_at(position), self.ctx.seed_base + s) for s in seeds]

    def record(self, observations: list[Observation]) -> None:
        for obs in observations:
            m = self.at(position_of(obs.point))
            value = obs.value if obs.value is not None and math.isfinite(obs.value) else None
            if obs.status in (OK, INFRA) and value is not None:  # INFRA with a value: the retry ran fine
                m.values.append(self.badness(value))
            elif obs.status != INFRA:  # an INFRA crash that did not repeat is not the code's doing
                m.failed.append(obs.status if obs.status != OK else DIVERGED)

    def badness(self, value: float) -> float:
        return value if self.ctx.mode == "min" else -value

    def sample(self, position: int) -> list[float]:
        """Values for statistics: failed runs count as the failure value (the worst outcome)."""
        m = self.at(position)
        counted = [s for s in m.failed if s == DIVERGED or self.crash_is_bad or m.values]
        return m.values + [self.failure_badness()] * len(counted)

    def failure_badness(self) -> float:
        """The configured failure value, else the worst finished run plus three noise sd (as in config search)."""
        if self.ctx.failure_value is not None:
            return self.badness(self.ctx.failure_value)
        seen = [v for m in self.data.values() for v in m.values]
        if not seen:
            return 1.0
        sd = stats.pooled_sd([m.values for m in self.data.values()])[0]
        if not math.isfinite(sd) or sd == 0.0:
            sd = (max(seen) - min(seen)) or abs(max(seen)) or 1.0
        return max(seen) + FAILURE_MARGIN_SD * sd

    # -- decisions --------------------------------------------------------------------------

    def noise(self) -> tuple[float, int]:
        """Seed noise sd pooled over every position measured, and its degrees of freedom."""
        return stats.pooled_sd([self.sample(k) for k in self.data])

    def compare(self, worse: list[float], better: list[float]) -> Comparison:
        return compare(worse, better, *self.noise())

    def regression(self) -> Comparison:
        """Bad vs good, in badness units."""
        return self.compare(self.sample(self.n), self.sample(0))

    def judge(self, position: int) -> Verdict:
        """Bad only if significantly worse than the good side; good only if better than the bad side."""
        m = self.at(position)
        if m.unrunnable() and not self.crash_is_bad:
            return Verdict(SKIP)
        values = self.sample(position)
        good, bad = self.reference(GOOD), self.reference(BAD)
        p_worse, p_better = self.compare(values, good).p, self.compare(bad, values).p
        alpha = self.decision_alpha()
        worse = p_worse < alpha and _mean(values) - _mean(good) >= self.ctx.min_effect
        better = p_better < alpha
        if worse and (not better or p_worse <= p_better):
            return Verdict(BAD, p_worse, p_better)
        if better:
            return Verdict(GOOD, p_worse, p_better)
        return Verdict(UNDECIDED, p_worse, p_better)

    def decision_alpha(self) -> float:
        """Per-commit level: about log2(n) decisions lie on a bisection path (Bonferroni over them)."""
        return self.ctx.alpha / max(1, math.ceil(math.log2(self.n + 1)))

    def reference(self, side: str) -> list[float]:
        """All runs at positions already judged `side` beyond the interval (monotone model), ends included."""
        lo, hi = self.interval()
        if side == GOOD:
            keep = [k for k in self.data if k == 0 or k <= lo and self._is(k, GOOD)]
        else:
            keep = [k for k in self.data if k == self.n or k >= hi and self._is(k, BAD)]
        return [v for k in sorted(keep) for v in self.sample(k)]

    def _is(self, position: int, status: str) -> bool:
        verdict = self.data[position].verdict
        return verdict is not None and verdict.status == status

    def interval(self) -> tuple[int, int]:
        """(last good position, first bad position) under the monotone model."""
        bad = [k for k, m in self.data.items() if m.verdict and m.verdict.status == BAD]
        hi = min(bad + [self.n])
        good = [k for k, m in self.data.items() if m.verdict and m.verdict.status == GOOD and k < hi]
        return max(good + [0]), hi

    def open_positions(self) -> tuple[list[int], list[int]]:
        """Inside the interval: (never measured, measured but still undecided with seeds left)."""
        lo, hi = self.interval()
        fresh, pending = [], []
        for k in range(lo + 1, hi):
            m = self.data.get(k)
            if m is None or m.runs == 0 and m.verdict is None:
                fresh.append(k)
            elif m.verdict and m.verdict.status == UNDECIDED and m.runs < self.options.max_seeds:
                pending.append(k)
        return fresh, pending

    def plan(self, slots: int | None = None) -> list[Request]:
        """One round: more seeds for undecided commits, then new commits k-secting the interval."""
        fresh, pending = self.open_positions()
        slots = max(1, self.ctx.parallel) if slots is None else slots
        requests: list[Request] = []
        for k in pending:
            requests += self.requests(k, min(self.options.seeds, self.options.max_seeds - self.at(k).runs))
        spare = slots - len(requests)
        if fresh and (spare >= self.options.seeds or not requests):
            count = max(1, spare // self.options.seeds)
            chosen = k_section(fresh, *self.interval(), count)
            per = max(self.options.seeds, spare // len(chosen))
            for k in chosen:
                requests += self.requests(k, min(per, self.options.max_seeds))
        return requests or self.verification()

    def verification(self) -> list[Request]:
        """Once the interval has closed: top up both boundary commits, so one unlucky verdict cannot stand."""
        lo, hi = self.interval()
        requests: list[Request] = []
        for k in (lo, hi):
            if 0 < k < self.n and self.at(k).runs < self.options.verify_seeds:
                requests += self.requests(k, self.options.verify_seeds - self.at(k).runs)
        return requests

    def settle(self) -> None:
        """(Re)judge every measured commit: references and the noise estimate grow each round."""
        for k in sorted(self.data):
            if 0 < k < self.n:
                self.at(k).verdict = self.judge(k)  # undecided at max seeds: treated like a skip


@dataclass(frozen=True)
class Comparison:
    """mean(worse) - mean(better) with a one-sided p (is it really worse?) and a 95% interval."""

    diff: float
    p: float
    ci_low: float
    ci_high: float


def compare(worse: list[float], better: list[float], sd: float, df: int) -> Comparison:
    """A t-test of `worse` against `better` using the noise sd pooled over every commit measured.

    Seed noise is the trainer's, the same at every commit, so pooling it gives the test far
    more degrees of freedom than a two-run Welch test would have.
    """
    if not worse or not better:
        return Comparison(math.nan, 1.0, -math.inf, math.inf)
    diff = _mean(worse) - _mean(better)
    if df <= 0 or not math.isfinite(sd):
        return Comparison(diff, 1.0, -math.inf, math.inf)
    se = sd * math.sqrt(1 / len(worse) + 1 / len(better))
    if se == 0.0:  # a deterministic trainer: any difference is certain
        return Comparison(diff, 0.0 if diff > 0 else 1.0, diff, diff)
    low, high = stats.t_interval(diff, se, df)
    return Comparison(diff, stats.t_p_value(diff / se, df, "greater"), low, high)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def k_section(candidates: list[int], lo: int, hi: int, count: int) -> list[int]:
    """Up to `count` candidates nearest the points splitting (lo, hi) into equal parts."""
    chosen: list[int] = []
    left = sorted(candidates)
    for i in range(1, count + 1):
        if not left:
            break
        target = lo + (hi - lo) * i / (count + 1)
        best = min(left, key=lambda k: (abs(k - target), k))
        chosen.append(best)
        left.remove(best)
    return sorted(chosen)


def bisect_commits(ctx: SearchContext, options: BisectOptions | None = None) -> Strategy:
    """Strategy generator: calibrate good vs bad, then k-sect the commits with adaptive seeds."""
    state = CommitBisection(ctx, options or BisectOptions())
    reproduced = yield from _calibrate(state)
    if reproduced is not None:
        return reproduced
    state.settle()
    while not _exhausted(state):
        requests = state.plan()
        if not requests:
            break
        observations = yield requests
        state.rounds += 1
        state.record(observations)
        state.settle()
    return conclude(state)


def _calibrate(state: CommitBisection) -> Generator[list[Request], list[Observation], Decision | None]:
    """Measure both ends until bad is significantly worse than good, or max seeds say it is not."""
    opts, n = state.options, state.n
    count = max(opts.calibration_seeds, 2)
    while True:
        requests = state.requests(0, count - state.at(0).runs) + state.requests(n, count - state.at(n).runs)
        if state.rounds == 0 and state.ctx.parallel - len(requests) >= opts.seeds:
            requests += state.plan(state.ctx.parallel - len(requests))  # idle slots start the k-section
        observations = yield requests
        state.rounds += 1
        state.record(observations)
        failed = _calibration_failure(state)
        if failed is not None:
            return failed
        regression = state.regression()
        if regression.p < state.ctx.alpha and regression.diff >= state.ctx.min_effect:
            return None
        if count >= opts.max_seeds or _exhausted(state):
            return not_reproduced(state)
        count = min(opts.max_seeds, count * 2)


def _calibration_failure(state: CommitBisection) -> Decision | None:
    good, bad = state.at(0), state.at(state.n)
    if good.unrunnable():
        verdict = "The good revision does not run (every trial crashed); nothing to compare against."
        return Decision(False, [], [], verdict, details=_details(state))
    if bad.unrunnable():
        state.crash_is_bad = True  # the regression is "it stopped running": crashing commits are bad
    return None


def _exhausted(state: CommitBisection) -> bool:
    left = state.ctx.budget_left()
    return state.ctx.out_of_time or (left is not None and left <= 0)


def not_reproduced(state: CommitBisection) -> Decision:
    regression = _effect(state, tuple(range(state.n)), 0, state.n)
    verdict = (
        f"The regression did not reproduce at this budget: bad - good = {regression.effect:+.4g} "
        f"(95% CI {regression.ci_low:+.4g} to {regression.ci_high:+.4g}, p = {regression.p_value:.3g}); "
        "try more steps or seeds."
    )
    return Decision(False, [], [], verdict, regression=regression, details=_details(state))


def conclude(state: CommitBisection) -> Decision:
    """The first bad commit if the interval closed on one, else the candidates left."""
    lo, hi = state.interval()
    regression = _effect(state, tuple(range(state.n)), 0, state.n)
    candidates = list(range(lo + 1, hi + 1))
    details = _details(state)
    details["candidates"] = [k - 1 for k in candidates]
    if len(candidates) == 1:
        culprit = _effect(state, (hi - 1,), lo, hi)
        if regression.effect:
            culprit.explained_fraction = culprit.effect / regression.effect
        verdict = f"Commit {state.ctx.factor_names[hi - 1]} is the first bad commit."
        if state.crash_is_bad:
            verdict = f"Commit {state.ctx.factor_names[hi - 1]} is the first commit at which the trainer no longer runs."
        return Decision(True, [[hi - 1]], [culprit], verdict, regression=regression, details=details)
    names = ", ".join(state.ctx.factor_names[k - 1] for k in candidates)
    why = "the budget ran out" if _exhausted(state) else "the commits between could not be tested or decided"
    verdict = f"The first bad commit is one of {len(candidates)}: {names} ({why})."
    return Decision(True, [], [], verdict, regression=regression, details=details)


def _effect(state: CommitBisection, factors: tuple[int, ...], lo: int, hi: int) -> Effect:
    """Effect of going from position lo to hi, in badness units, with a Welch 95% interval."""
    before, after = state.sample(lo), state.sample(hi)
    c = state.compare(after, before)
    return Effect(factors, c.diff, c.ci_low, c.ci_high, p_value=c.p, n=len(before) + len(after))


def _details(state: CommitBisection) -> dict[str, Any]:
    tested = []
    for k in sorted(state.data):
        m = state.data[k]
        values = state.sample(k)
        tested.append(
            {
                "position": k,
                "commit": state.ctx.factor_names[k - 1] if k else "good",
                "status": GOOD if k == 0 else BAD if k == state.n else (m.verdict.status if m.verdict else None),
                "mean": state.badness(_mean(values)) if values else None,  # back in metric units
                "runs": m.runs,
                "failed": len(m.failed),
                "p_worse_than_good": m.verdict.p_worse if m.verdict else None,
                "p_better_than_bad": m.verdict.p_better if m.verdict else None,
            }
        )
    return {"method": "commit k-section", "positions": tested, "crash_is_bad": state.crash_is_bad}


# -- real trials at real commits ----------------------------------------------------------

COMMIT_KEY = "commit:"  # culprits and effect keys name commits as "commit:<sha>"


class CommitTrials:
    """Turns (position, seed) requests into trials of one command and config at a commit's worktree."""

    def __init__(
        self,
        settings: Settings,
        positions: list[str],
        worktrees: Worktrees,
        config: LoadedConfig | None,
        in_place: dict[str, Path] | None = None,
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

    def trial_for(self, request: Request) -> Trial:
        """The trial of `request`; its id covers the commit and the config as well as seed and budget."""
        sha = self.positions[position_of(request.point)]
        assert self.settings.steps is not None
        base = make_trial(self.label(sha), (), request.seed, self.settings.steps, self.command)
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


class CodeSearch:
    """Bisect the first-parent commits between good_rev and bad_rev with one config and command."""

    def __init__(self, settings: Settings, progress: Progress | None = None) -> None:
        _require(settings, ("good_rev", "bad_rev", "command", "metric", "steps"))
        self.settings = settings
        self.progress = progress
        self.repo = open_repo(settings.path(settings.repo) if settings.repo else Path.cwd())
        self.good_sha = resolve(self.repo, str(settings.good_rev))
        self.shas = first_parent_range(self.repo, self.good_sha, str(settings.bad_rev))
        self.subjects = subjects(self.repo, self.shas)
        self.config = load_config(_spec(settings, settings.config), config_format(settings)) if settings.config else None
        check_command(shlex.split(settings.command or ""))  # before OUT_DIR exists
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
            trials = CommitTrials(s, self.positions, worktrees, self.config)
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
            result = self.result(decision, runner.runs, complete=not _exhausted_ctx(ctx))
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
            effects=[effect_json(e, names, keys) for e in decision.effects],
            runs=runs,
            rounds=len(self.trial_rounds),
            verdict=decision.verdict,
            regression=None if decision.regression is None else effect_json(decision.regression, names, keys),
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


def effect_json(e: Effect, names: list[str], keys: list[list[str]]) -> dict[str, Any]:
    """An effect as summary.json writes it (keys of its factors; non-finite bounds as null)."""
    factor_keys = [k for i in e.factors for k in keys[i]]
    whole = len(e.factors) == len(keys) and len(keys) > 1
    return {
        "key": "bad vs good" if whole or not factor_keys else ", ".join(factor_keys),
        "keys": [] if whole else factor_keys,
        "factors": [] if whole else [names[i] for i in e.factors],
        **_effect_fields(e),
        "n": e.n,
    }


def _effect_fields(e: Effect) -> dict[str, Any]:
    return {
        "effect": _finite(e.effect),
        "ci_low": _finite(e.ci_low),
        "ci_high": _finite(e.ci_high),
        "explained_fraction": _finite(e.explained_fraction),
        "p_value": _finite(e.p_value),
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _exhausted_ctx(ctx: SearchContext) -> bool:
    left = ctx.budget_left()
    return ctx.out_of_time or (left is not None and left <= 0)


def _require(s: Settings, names: tuple[str, ...]) -> None:
    missing = [name for name in names if getattr(s, name) in (None, "")]
    if missing:
        flags = ", ".join("--" + m.replace("_", "-") for m in missing)
        raise SettingsError(f"bisecting commits needs {flags} (as flags or in bisect.yaml)")


# -- configs and code together ------------------------------------------------------------

CONFIG_PART, CODE_PART = "config-at-bad", "code"


def run_code_search(settings: Settings, progress: Progress | None = None) -> SearchResult:
    """`search --good-rev --bad-rev`: bisect the code; with two configs and no --config, both parts.

    Combined mode first searches the config differences at the bad commit (do they explain
    the regression?), then bisects the code with the good config, and reports both parts.
    """
    _require(settings, ("good_rev", "bad_rev"))
    with disk_space(settings.path(settings.out) or Path(settings.out)):
        if settings.config or not (settings.good and settings.bad):
            config = settings.config or settings.good or settings.bad
            return CodeSearch(dataclasses.replace(settings, config=config), progress).run()
        return CombinedSearch(settings, progress).run()


class CombinedSearch:
    """Good config at good rev vs bad config at bad rev: a config search at bad rev, then the code."""

    def __init__(self, settings: Settings, progress: Progress | None = None) -> None:
        self.settings = settings
        self.progress = progress
        self.out_dir = settings.path(settings.out) or Path(settings.out)
        self.repo = open_repo(settings.path(settings.repo) if settings.repo else Path.cwd())

    def run(self) -> SearchResult:
        s = self.settings
        config_part = self.config_part()
        code_settings = dataclasses.replace(
            s, out=str(self.out_dir / CODE_PART), config=s.good
        )
        code_part = CodeSearch(code_settings, self.progress).run()
        result = combine(s, config_part, code_part)
        write_summary(self.out_dir, result)
        write_report(self.out_dir)
        return result

    def config_part(self) -> SearchResult | None:
        """The config search with the trainer at the bad commit (None when the configs do not differ)."""
        from bisect_runs.search import Search

        s = self.settings
        bad_sha = resolve(self.repo, str(s.bad_rev))
        part = dataclasses.replace(s, out=str(self.out_dir / CONFIG_PART), good_rev=None, bad_rev=None)
        with Worktrees(self.repo, self.out_dir / WORKTREE_DIR) as worktrees:
            search = Search(part, progress=self.progress, cwd=worktrees.checkout(bad_sha))
            return search.run() if search.factors else None


def combine(s: Settings, config: SearchResult | None, code: SearchResult) -> SearchResult:
    """One summary for both parts: config culprits first, then the first bad commit."""
    parts = [p for p in (config, code) if p is not None]
    config_verdict = config.verdict if config else "The configs do not differ in any searchable key."
    return SearchResult(
        good=f"{s.good} at {s.good_rev}",
        bad=f"{s.bad} at {s.bad_rev}",
        metric=code.metric,
        mode=code.mode,
        steps=code.steps,
        strategy=f"{config.strategy}+commits" if config else "commits",
        reproduced=any(p.reproduced for p in parts),
        differences=config.differences if config else [],
        factors=[f for p in parts for f in p.factors],
        culprits=[c for p in parts for c in p.culprits],
        effects=[e for p in parts for e in p.effects],
        runs=sum(p.runs for p in parts),
        rounds=sum(p.rounds for p in parts),
        verdict=f"Configs at the bad commit: {config_verdict} Code with the good config: {code.verdict}",
        regression=None,
        details={
            "code": code.details.get("code"),
            "parts": {
                "config": None if config is None else _part_json(config, CONFIG_PART),
                "code": _part_json(code, CODE_PART),
            },
        },
        complete=all(p.complete for p in parts),
    )


def _part_json(part: SearchResult, folder: str) -> dict[str, Any]:
    keep = ("reproduced", "culprits", "effects", "regression", "verdict", "runs", "rounds", "strategy")
    return {"out": folder, **{k: getattr(part, k) for k in keep}}


# -- judge: one step of `git bisect run` ---------------------------------------------------

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
    _require(settings, ("command", "metric", "steps"))
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
        self.config = load_config(_spec(settings, settings.config), config_format(settings)) if settings.config else None
        self.out_dir = settings.path(settings.out) or Path(settings.out)

    def run(self, good_values: list[float], bad_values: list[float]) -> JudgeResult:
        s = self.settings
        executor = get_executor(s.executor, **executor_options(s))
        worktrees = Worktrees(self.repo, self.out_dir / WORKTREE_DIR)
        with executor, Journal(self.out_dir, resume=True) as journal, worktrees:
            trials = CommitTrials(s, [self.good, self.head, self.bad], worktrees, self.config,
                                  in_place={self.head: Path(str(self.repo.working_tree_dir))})
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
        mean = f"{_mean(values):.4g}" if values else "no value"
        refs = f"good {state.badness(_mean(state.sample(0))):.4g}, bad {state.badness(_mean(state.sample(2))):.4g}"
        text = {
            GOOD: f"good: {self.settings.metric} {mean} over {len(values)} seeds is like good ({refs}; p = {verdict.p_better:.3g})",
            BAD: f"bad: {self.settings.metric} {mean} over {len(values)} seeds is worse than good ({refs}; p = {verdict.p_worse:.3g})",
            SKIP: f"skip: the trainer does not run at {self.head[:10]} ({len(here.failed)} of {here.runs} trials failed)",
            UNDECIDED: f"skip: undecided after {here.runs} seeds ({self.settings.metric} {mean}; {refs})",
        }[verdict.status]
        return JudgeResult(code, verdict.status, self.head, text, values, runs)
