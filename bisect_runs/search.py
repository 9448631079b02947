"""`search`: diff two configs, run the strategy's rounds of trials, write summary.json.

The glue between the layers: the diff gives factors, the strategy asks for (point, seed)
requests, this module turns each request into a trial (a variant of the bad config), the
runner executes a whole round at once, and outcomes go back to the strategy as
observations. The decision is mapped back from factor indices to config keys.
"""

from __future__ import annotations

import json
import math
import shlex
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bisect_runs.diff import DiffOptions, Factor, diff_configs
from bisect_runs.errors import RunError, SettingsError
from bisect_runs.executors import get_executor
from bisect_runs.journal import JOURNAL_FILE, Journal
from bisect_runs.metrics import MetricSpec
from bisect_runs.overrides import check_key, parse_style
from bisect_runs.progress import Progress
from bisect_runs.project import Settings, load_project, make_settings
from bisect_runs.report import write_report
from bisect_runs.runner import TrialRunner
from bisect_runs.sources import load_config
from bisect_runs.strategies import drive, make_strategy
from bisect_runs.strategies.base import (
    INFRA,
    Decision,
    Effect,
    Observation,
    Point,
    Request,
    SearchContext,
    Strategy,
)
from bisect_runs.strategies.seeding import SeedCheck, check_seeds
from bisect_runs.trials import (
    OK,
    Outcome,
    Trial,
    check_command,
    make_trial,
    trial_paths,
    uses_placeholder,
)
from bisect_runs.variants import ABSENT, apply_changes, write_data, write_variant

SUMMARY_FILE = "summary.json"


@dataclass
class SearchResult:
    """What a search found; `summary.json` is its JSON form."""

    good: str
    bad: str
    metric: str
    mode: str
    steps: int
    strategy: str
    reproduced: bool
    differences: list[dict[str, Any]]
    factors: list[dict[str, Any]]
    culprits: list[list[str]]
    effects: list[dict[str, Any]]
    runs: int
    rounds: int
    verdict: str
    regression: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    complete: bool = True  # False when a budget ran out or the search was interrupted
    seeds: dict[str, Any] | None = None  # whether the trainer used the seed (strategies.seeding.SeedCheck)

    @property
    def exit_code(self) -> int:
        """0 culprit(s) found, 1 regression not reproduced or not localized.

        A best answer from a search that ran out of budget is not a finding: exit 1.
        """
        return 0 if self.reproduced and self.culprits and self.complete else 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def search(settings: Settings | None = None, /, **flags: Any) -> SearchResult:
    """Run a whole search; `flags` override bisect.yaml in the current directory."""
    if settings is None:
        settings = make_settings(load_project(), flags)
    return Search(settings).run()


class Search:
    """One search over one OUT_DIR: builds trials from points and drives the strategy."""

    def __init__(
        self,
        settings: Settings,
        progress: Progress | None = None,
        cwd: str | Path | None = None,
        invocation: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.progress = progress
        self.cwd = cwd  # where trainers start (a commit's worktree when code is bisected too); None: here
        self.invocation = invocation  # the command line that started the search, when the CLI did
        _require(settings)
        self.good = load_config(_spec(settings, settings.good), settings.format_good)
        self.bad = load_config(_spec(settings, settings.bad), settings.format_bad)
        self.diff = diff_configs(self.good, self.bad, diff_options(settings))
        self.factors: list[Factor] = [  # hidden differences only with --include-all or a group naming them
            f for f in self.diff.factors if settings.include_all or f.level != "none" or f.name in settings.groups
        ]
        self.command = tuple(shlex.split(settings.command or ""))
        check_command(self.command)  # before OUT_DIR exists: a bad template leaves nothing behind
        check_override_keys(self.command, self.diff, self.factors, settings)
        self.runner_options = runner_options(settings)
        self.out_dir = settings.path(settings.out) or Path(settings.out)
        self.rounds: list[dict[str, Any]] = []
        self.outcomes: dict[tuple[Point, int], list[Outcome]] = {}
        self.observations: list[Observation] = []
        self.seed_check = SeedCheck(None)  # ignored=True: the trainer gives every seed the same value
        self.journal: Journal

    # -- points -> trials -------------------------------------------------------------

    def changes_for(self, point: Point) -> dict[str, Any]:
        """The flat-key changes to the bad config that put every factor outside `point` at A."""
        changes: dict[str, Any] = {}
        for index, factor in enumerate(self.factors):
            if index in point:
                continue
            for d in factor.differences:
                key = d.key_b or d.key_a
                assert key is not None
                changes[key] = ABSENT if d.key_a is None or d.a_default else self.diff.flat_a.values[d.key_a]
        return changes

    def label(self, point: Point) -> str:
        n = len(self.factors)
        if not point:
            return "A"
        if len(point) == n:
            return "B"
        if len(point) <= n / 2:
            return "A + {" + ", ".join(self.factors[i].name for i in sorted(point)) + "}"
        missing = sorted(set(range(n)) - point)
        return "B - {" + ", ".join(self.factors[i].name for i in missing) + "}"

    def trial_for(self, request: Request) -> Trial:
        changes = tuple(sorted(self.changes_for(request.point).items(), key=lambda kv: kv[0]))
        assert self.settings.steps is not None
        seed = self.settings.seed_base if self.seed_check.ignored else request.seed  # deterministic: one run per point
        return make_trial(self.label(request.point), changes, seed, self.settings.steps, self.command)

    def write_config(self, trial: Trial, dest: Path) -> Path:
        """Write the trial's variant of the bad config into `dest`; return the path for {config}.

        The variant keeps the bad config's layout and comments; when the two configs are in
        different formats it is written in the good config's format, as the contract says.
        """
        paths: dict[tuple[str | int, ...], Any] = {}
        for key, value in trial.changes:
            path = self.diff.flat_b.paths.get(key) or self.diff.flat_a.paths.get(key)
            paths[path if path is not None else tuple(key.split("."))] = value
        if self.good.format == self.bad.format:
            return write_variant(self.bad, paths, dest)
        return write_data(self.good, apply_changes(self.bad.data, paths), dest)

    # -- driving ------------------------------------------------------------------------

    def context(self, parallel: int) -> SearchContext:
        s = self.settings
        return SearchContext(
            n_factors=len(self.factors),
            factor_names=[f.name for f in self.factors],
            mode=s.mode,
            min_effect=s.min_effect,
            parallel=parallel,
            max_runs=s.max_runs,
            failure_value=s.failure_value,
            prior_scores=[f.score for f in self.factors],
            seeds=s.seeds,
            seed_base=s.seed_base,
        )

    def run(self) -> SearchResult:
        try:
            return self._run()
        except _NothingRan as exc:  # put the useless journal aside so the next search starts afresh
            journal = self.out_dir / JOURNAL_FILE
            kept = journal.with_name(f"journal-failed-{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
            journal.replace(kept)
            raise RunError(f"{exc} Fix it and run the search again (the failed trials are in {kept}).") from None

    def _run(self) -> SearchResult:
        s = self.settings
        executor = get_executor(s.executor, **executor_options(s), **({"cwd": str(self.cwd)} if self.cwd else {}))
        with executor, Journal(self.out_dir, resume=s.resume) as journal:
            runner = TrialRunner(
                self.out_dir, executor, journal, self.write_config, progress=self.progress,
                base_keys=frozenset(self.diff.flat_b.values), base_values=self.diff.flat_b.values,
                **self.runner_options,
            )  # fmt: skip
            journal.event(
                "search", good=s.good, bad=s.bad, metric=s.metric, mode=s.mode, steps=s.steps,
                strategy=s.strategy, command=s.command, executor=s.executor,
                differences=[d.to_json() for d in self.diff.differences],
                invocation=self.invocation, invoked_in=str(Path.cwd()),
                factors=[{"name": f.name, "keys": _factor_keys(f)} for f in self.factors],
            )  # fmt: skip
            self.journal = journal
            (self.out_dir / SUMMARY_FILE).unlink(missing_ok=True)  # a resumed search decides anew
            ctx = self.context(executor.capacity)
            if not self.factors:
                decision = Decision(False, [], [], "The configs do not differ in any searchable key.")
                return self.finish(decision, runner, complete=True)
            try:
                decision = self.drive(make_strategy(s.strategy, ctx), runner, ctx)
            except KeyboardInterrupt:
                self.partial_report()
                raise
            complete = not ctx.out_of_time and bool(decision.details.get("complete", True))
            return self.finish(decision, runner, complete=complete)

    def partial_report(self) -> None:
        """An interrupted search still leaves a report of what finished, marked partial."""
        try:
            write_report(self.out_dir)
        except Exception as exc:  # the journal is what matters; a report is a courtesy here
            if self.progress is not None:
                self.progress.note(f"could not write the partial report: {exc}")

    def drive(self, strategy: Strategy, runner: TrialRunner, ctx: SearchContext) -> Decision:
        """Run the strategy's rounds as real trials until it decides or a budget runs out."""
        max_s = None if self.settings.max_hours is None else self.settings.max_hours * 3600
        started = time.monotonic()

        def evaluate(requests: list[Request]) -> list[Observation]:
            observations = self.run_round(requests, runner)
            ctx.out_of_time = max_s is not None and time.monotonic() - started > max_s
            return observations

        decision, _, _ = drive(strategy, evaluate, ctx)
        return decision

    def run_round(self, requests: list[Request], runner: TrialRunner) -> list[Observation]:
        trials = [self.trial_for(r) for r in requests]
        outcomes = runner.run(trials)
        if not self.rounds and not any(o.status == OK for o in outcomes):
            raise _NothingRan(nothing_ran(trials, outcomes, self.out_dir))
        self.rounds.append(
            {"round": len(self.rounds) + 1, "trials": [[t.label, t.seed, t.id] for t in trials]}
        )
        self.journal.event("round", number=len(self.rounds), trials=self.rounds[-1]["trials"])
        observations = []
        for request, outcome in zip(requests, outcomes, strict=True):
            self.outcomes.setdefault((request.point, request.seed), []).append(outcome)
            status = INFRA if getattr(outcome, "infra", False) else outcome.status
            value = outcome.value if outcome.status == OK else None
            observations.append(Observation(request.point, request.seed, status, value))
        self.observations += observations
        if self.seed_check.ignored is None:
            self.seed_check = check_seeds(self.observations)
        return observations

    # -- results ------------------------------------------------------------------------

    def finish(self, decision: Decision, runner: TrialRunner, complete: bool) -> SearchResult:
        verdict = decision.verdict
        held = [f.name for f in self.diff.factors if f not in self.factors]
        if not decision.reproduced and held:  # maybe one of them matters after all
            verdict += (
                f" {len(held)} difference(s) judged to have no effect were held at B's values in every "
                f"trial ({', '.join(held)}); --include-all searches them too."
            )
        names = [f.name for f in self.factors]
        keys = [_factor_keys(f) for f in self.factors]
        deterministic = bool(self.seed_check.ignored)
        if deterministic:
            verdict += " " + self.seed_check.note(self.settings.seed_base)
        result = SearchResult(
            good=str(self.settings.good),
            bad=str(self.settings.bad),
            metric=str(self.settings.metric),
            mode=self.settings.mode,
            steps=int(self.settings.steps or 0),
            strategy=self.settings.strategy,
            reproduced=decision.reproduced,
            differences=[d.to_json() for d in self.diff.differences],
            factors=[{"name": n, "keys": k} for n, k in zip(names, keys, strict=True)],
            culprits=[[key for i in c for key in keys[i]] for c in decision.culprits],
            effects=[_effect_json(e, names, keys, deterministic) for e in decision.effects],
            runs=runner.runs,
            rounds=len(self.rounds),
            verdict=verdict,
            regression=None if decision.regression is None else _effect_json(decision.regression, names, keys, deterministic),
            details={**_jsonable(decision.details), "trial_rounds": self.rounds},
            complete=complete,
            seeds=self.seed_check.to_json(self.settings.seed_base),
        )
        write_summary(self.out_dir, result)
        write_report(self.out_dir)
        return result


class _NothingRan(Exception):
    """Not one trial of the first round finished: the command, metric or budget is wrong."""


def nothing_ran(trials: list[Trial], outcomes: list[Outcome], out_dir: Path) -> str:
    """One line on why the first round failed, naming the first failure's log."""
    counts = Counter(o.status for o in outcomes)
    how = ", ".join(f"{n} {status}" for status, n in counts.most_common())
    first = outcomes[0]
    log = trial_paths(out_dir, trials[0].id).stderr
    return f"no trial of the first round finished ({how}); the first: {first.detail or first.status} (see {log})."


def _factor_keys(factor: Factor) -> list[str]:
    return [d.key_b or d.key_a or d.key for d in factor.differences]


def _effect_json(e: Effect, names: list[str], keys: list[list[str]], deterministic: bool = False) -> dict[str, Any]:
    """An effect for summary.json; a trainer that ignores the seed has no intervals or p-values to give."""
    factor_keys = [k for i in e.factors for k in keys[i]]
    if deterministic:
        return {"key": ", ".join(factor_keys) if factor_keys else "B vs A", "keys": factor_keys,
                "factors": [names[i] for i in e.factors], "effect": e.effect, "ci_low": None, "ci_high": None,
                "explained_fraction": e.explained_fraction, "p_value": None, "n": e.n, "deterministic": True}  # fmt: skip
    return {
        "key": ", ".join(factor_keys) if factor_keys else "B vs A",
        "keys": factor_keys,
        "factors": [names[i] for i in e.factors],
        "effect": e.effect,
        "ci_low": e.ci_low,
        "ci_high": e.ci_high,
        "explained_fraction": e.explained_fraction,
        "p_value": e.p_value,
        "n": e.n,
    }


def _jsonable(value: Any) -> Any:
    """Make strategy details JSON-safe (frozensets and tuples to lists)."""
    return json.loads(json.dumps(value, default=lambda o: sorted(o) if isinstance(o, (set, frozenset)) else str(o)))


def _finite(value: Any) -> Any:
    """Strict JSON: an unbounded interval end (inf) or an undefined number (nan) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_summary(out_dir: Path, result: SearchResult) -> Path:
    """Write summary.json atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / SUMMARY_FILE
    tmp = path.with_suffix(".json.tmp")
    text = json.dumps(_finite(result.to_json()), indent=2, allow_nan=False, default=str)
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def check_override_keys(command: tuple[str, ...], diff: Any, factors: list[Factor], s: Settings) -> None:
    """Before any trial: every key the template writes as an override word must be safe in its style."""
    style = parse_style(s.override_style)
    keys: list[str] = []
    if uses_placeholder(command, "overrides"):
        keys = [k for f in factors for k in f.keys] + [k for k in (s.steps_key, s.seed_key) if k]
    if uses_placeholder(command, "args"):
        keys += [*diff.flat_b.values, *diff.flat_a.values] + [k for k in (s.steps_key, s.seed_key) if k]
    for key in dict.fromkeys(keys):
        check_key(key, style)


def diff_options(s: Settings) -> DiffOptions:
    return s.diff_options()


def runner_options(s: Settings) -> dict[str, Any]:
    """What a TrialRunner takes from the settings: budget, metric, limits, config keys, GPUs."""
    return {
        "steps": s.steps,
        "metric": metric_spec(s),
        "timeout_s": s.timeout,
        "retries": s.retries,
        "steps_key": s.steps_key,
        "seed_key": s.seed_key,
        "gpus_per_trial": s.gpus_per_trial,
        "override_style": parse_style(s.override_style),
    }


def metric_spec(s: Settings) -> MetricSpec:
    assert s.metric is not None
    return MetricSpec(name=s.metric, source=s.metric_source, pattern=s.metric_pattern, path=s.metric_file, reduce=s.reduce)


def executor_options(s: Settings) -> dict[str, Any]:
    if s.executor == "slurm":
        return {"folder": (s.path(s.out) or Path(s.out)) / "slurm", **s.slurm}
    if s.executor == "ray":
        return dict(s.ray)
    return {"parallel": s.parallel, "gpus_per_trial": s.gpus_per_trial}


def _spec(s: Settings, value: str | None) -> str:
    assert value is not None
    if ":" in value and not Path(value).exists():  # REV:PATH is read from git history
        return value
    return str(s.path(value))


def _require(s: Settings) -> None:
    missing = [name for name in ("good", "bad", "command", "metric", "steps") if getattr(s, name) in (None, "")]
    if missing:
        flags = ", ".join("--" + m for m in missing)
        raise SettingsError(f"search needs {flags} (as flags or in bisect.yaml)")

