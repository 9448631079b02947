"""`search`: diff two configs, run the strategy's rounds of trials, write summary.json.

The glue between the layers: the diff gives factors, the strategy asks for (point, seed)
requests, this module turns each request into a trial (a variant of the bad config), the
runner executes a whole round at once, and outcomes go back to the strategy as
observations. The decision is mapped back from factor indices to config keys.
"""

from __future__ import annotations

import math
import shlex
import time
from collections import Counter
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from bisect_runs import members
from bisect_runs.checkpoint import shared_prefix
from bisect_runs.crashes import attempt_counts
from bisect_runs.curves import Reference
from bisect_runs.diff import Factor, diff_configs
from bisect_runs.early_stop import (
    EXPLORING,
    REFERENCE_LABELS,
    STREAMED,
    cost,
    judge_for,
    reference_of,
)
from bisect_runs.errors import RunError
from bisect_runs.executors import get_executor
from bisect_runs.journal import JOURNAL_FILE, Journal, disk_space, set_aside
from bisect_runs.progress import Progress, expected_runs, explanation_so_far
from bisect_runs.project import Settings, load_project, make_settings, settings_flags
from bisect_runs.report import FIGURES_DIR, REPORT_FILES, write_report
from bisect_runs.runner import EarlyJudge, TrialRunner
from bisect_runs.search_settings import (
    check_override_keys,
    config_spec,
    executor_options,
    require,
    runner_options,
)
from bisect_runs.sources import load_config
from bisect_runs.strategies import drive, make_strategy
from bisect_runs.strategies.base import (
    INFRA,
    Decision,
    Observation,
    Point,
    Request,
    SearchContext,
    Strategy,
)
from bisect_runs.strategies.calibration import AS_GIVEN, Calibration, calibrate
from bisect_runs.strategies.evidence import Evidence
from bisect_runs.strategies.seeding import SeedCheck, check_seeds
from bisect_runs.summary import SUMMARY_FILE, SearchResult, effect_json, jsonable, write_summary
from bisect_runs.trackers import Tracking
from bisect_runs.trials import OK, Outcome, Trial, check_command, make_trial, trial_paths
from bisect_runs.variants import ABSENT, apply_changes, write_data, write_variant


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
        require(settings)
        self.good = load_config(config_spec(settings, settings.good), settings.format_good)
        self.bad = load_config(config_spec(settings, settings.bad), settings.format_bad)
        self.diff = diff_configs(self.good, self.bad, settings.diff_options())
        self.factors: list[Factor] = [  # hidden differences only with --include-all or a group naming them
            f for f in self.diff.factors if settings.include_all or f.level != "none" or f.name in settings.groups
        ]
        self.command = tuple(shlex.split(settings.command or ""))
        check_command(self.command)  # before OUT_DIR exists: a bad template leaves nothing behind
        self.checkpoint = shared_prefix(settings, self.command)  # the shared prefix trials resume from, if any
        check_override_keys(self.command, self.diff, self.factors, settings)
        self.runner_options = runner_options(settings)
        self.out_dir = settings.path(settings.out) or Path(settings.out)
        self.rounds: list[dict[str, Any]] = []
        self.outcomes: dict[tuple[Point, int], list[Outcome]] = {}
        self.observations: list[Observation] = []
        self.seed_check = SeedCheck(None)  # ignored=True: the trainer gives every seed the same value
        self.journal: Journal
        self.held_searched = False  # the held differences joined the search (the control beat B)
        self.control: dict[str, Any] | None = None  # the exact good config against B, when it ran
        self.phase = ""  # the strategy's phase of the round running now
        self.reference: Reference | None = None  # A's and B's curves that running trials are judged against
        self.tracking: Tracking

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
        if self.held_searched and len(point) < n:  # unlike the first phase's A, this A is the config as given
            missing = sorted(set(range(n)) - point)
            return AS_GIVEN if not point else "B - {" + ", ".join(self.factors[i].name for i in missing) + "}"
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
        return make_trial(self.label(request.point), changes, seed, self.settings.steps, self.command, self.checkpoint)

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
            with disk_space(self.out_dir):
                return self._run()
        except _NothingRan as exc:  # put the useless journal aside so the next search starts afresh
            journal = self.out_dir / JOURNAL_FILE
            kept = journal.with_name(f"journal-failed-{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
            journal.replace(kept)
            raise RunError(f"{exc} Fix it and run the search again (the failed trials are in {kept}).") from None

    def _run(self) -> SearchResult:
        s = self.settings
        executor = get_executor(s.executor, **executor_options(s), **({"cwd": str(self.cwd)} if self.cwd else {}))
        resume = s.resume or s.resume_changed
        with executor, Journal(self.out_dir, resume=resume, identity=self.identity(), continue_changed=s.resume_changed) as journal:
            self.keep_finished(journal.set_aside)
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
                flags=None if s.defaults else settings_flags(s, Path.cwd()),  # inline defaults have no flag
                factors=[{"name": f.name, "keys": _factor_keys(f)} for f in self.factors],
                checkpoint=None if self.checkpoint is None else self.checkpoint.to_json(), checkpoint_key=s.checkpoint_key,
            )  # fmt: skip
            self.journal = journal
            ctx = self.context(executor.capacity)
            if not self.factors:
                decision = Decision(False, [], [], "The configs do not differ in any searchable key.")
                return self.finish(decision, runner, complete=True)
            self.tracking = self.open_tracking(runner)
            try:
                decision = self.drive(make_strategy(s.strategy, ctx), runner, ctx)
            except KeyboardInterrupt:
                self.tracking.close(None, None)
                self.partial_report()
                raise
            except BaseException:
                self.tracking.close(None, None)
                raise
            complete = not ctx.out_of_time and bool(decision.details.get("complete", True))
            if complete and len(self.factors) < len(self.diff.factors):
                decision = self.with_control(decision, runner, ctx)
                complete = not ctx.out_of_time and bool(decision.details.get("complete", True))
            if complete and decision.reproduced:
                decision = self.with_members(decision, runner, ctx)
            result = self.finish(decision, runner, complete=complete)
            self.tracking.close(result.verdict, result.reproduced)
            return result

    def open_tracking(self, runner: TrialRunner) -> Tracking:
        """Group the trials in W&B and MLflow: through each trial's environment, and nested MLflow runs."""
        s = self.settings
        search = {"good": s.good, "bad": s.bad, "metric": s.metric, "mode": s.mode, "steps": s.steps,
                  "strategy": s.strategy, "seeds": s.seeds, "out": str(self.out_dir)}  # fmt: skip
        keys = [d.key_b or d.key_a for f in self.factors for d in f.differences]
        params = {k: self.diff.flat_b.values.get(k, ABSENT) for k in keys if k is not None}
        tracking = Tracking.open(self.out_dir, bool(s.resume), s.metric or "", search, params)
        runner.extra_env = tracking.env
        runner.on_finished = tracking.finished
        return tracking

    def identity(self) -> dict[str, Any]:
        """The settings a resumed journal must share (journal.IDENTITY), as its `search` line records them."""
        s = self.settings
        return {
            "good": s.good, "bad": s.bad, "metric": s.metric, "mode": s.mode, "steps": s.steps,
            "command": s.command, "differences": [d.to_json() for d in self.diff.differences],
            "checkpoint": None if self.checkpoint is None else self.checkpoint.to_json(),
        }  # fmt: skip

    def keep_finished(self, into: Path | None) -> None:
        """Move an earlier summary and report (a finished or stopped search) into OUT_DIR/previous-N:
        the search decides anew, and nothing it finished is overwritten or deleted."""
        kept = set_aside(self.out_dir, (SUMMARY_FILE, *REPORT_FILES.values(), FIGURES_DIR), into)
        if kept is not None and self.progress is not None:
            what = "search (journal, trials, summary, report)" if into is not None else "summary and report"
            self.progress.note(f"the earlier {what} kept in {kept}")

    def with_control(self, decision: Decision, runner: TrialRunner, ctx: SearchContext) -> Decision:
        """Run the good config exactly as given against B (whenever differences were held). When it beats
        B although the searched A (held differences at B's values) did not, one of the held differences
        matters: search them too."""
        searched = self.factors
        held = [f for f in self.diff.factors if f not in searched]
        self.factors, self.held_searched = list(self.diff.factors), True
        wide = self.context(ctx.parallel)
        both = self.context(2 * ctx.parallel)  # B's runs at these seeds are journaled: new A runs fill every slot
        both.runs_used = ctx.runs_used
        control = cast(Calibration, self.drive(cast(Strategy, _calibration_only(Evidence(both))), runner, both))
        wide.runs_used, wide.out_of_time = both.runs_used, both.out_of_time
        names = ", ".join(f.name for f in held)
        self.control = _control_json(control, held)
        if decision.reproduced or not control.reproduced:
            self.factors, self.held_searched = searched, False
            ctx.runs_used = wide.runs_used
        if decision.reproduced:  # the searched A already beats B: the control is on record only
            return decision
        if not control.reproduced and not control.complete:
            note = (f" The budget ran out while the good config as given ran as a control, so whether one of the "
                    f"{len(held)} held difference(s) ({names}) hides the regression is not known.")
            return replace(decision, verdict=decision.verdict + note, details={**decision.details, "complete": False})
        if not control.reproduced:
            pairs = control.test.n_a if control.test is not None else 0
            note = (f" The good config as given, run beside B as a control ({pairs} seeds each), does not beat B "
                    f"either, so the {len(held)} held difference(s) ({names}) do not hide the regression.")
            return replace(decision, verdict=decision.verdict + note)
        self.control["held_searched"] = True
        second = self.drive(make_strategy(self.settings.strategy, wide), runner, wide)
        ctx.runs_used, ctx.out_of_time = wide.runs_used, wide.out_of_time
        why = (f"The good config as given beats B, but A with the {len(held)} difference(s) judged to have no effect held at B's values ({names}) "
               "did not, so those were searched too.")
        return replace(second, verdict=f"{why} {second.verdict}")

    def with_members(self, decision: Decision, runner: TrialRunner, ctx: SearchContext) -> Decision:
        """Run each member of a culprit set of keys alone (A + key, B - key) and say what each does."""
        entries = []
        for index in reversed(members.splittable(decision, self.factors)):  # from the back: indices stay valid
            searched = self.factors
            parts = members.split(searched, index)
            seeds = members.ab_seeds(self.observations, len(searched))
            budget = None if ctx.max_runs is None else ctx.max_runs - ctx.runs_used
            if not seeds or (budget is not None and members.runs_needed(parts, seeds) > budget):
                continue
            self.factors = parts.factors
            wide = self.context(ctx.parallel)
            wide.runs_used = ctx.runs_used
            try:
                shares = self.drive(cast(Strategy, members.member_shares(Evidence(wide), parts.members, seeds)), runner, wide)
            finally:
                self.factors = searched
            ctx.runs_used = wide.runs_used
            entries.append(members.members_json(parts, cast(Any, shares), bool(self.seed_check.ignored)))
        return members.with_members(decision, entries[::-1])

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
            self.announce_round(strategy, requests, ctx)
            observations = self.run_round(requests, runner)
            ctx.out_of_time = max_s is not None and time.monotonic() - started > max_s
            if self.progress is not None:
                self.progress.end_round(self.explanation())
            return observations

        decision, _, _ = drive(strategy, evaluate, ctx)
        return decision

    def announce_round(self, strategy: Strategy, requests: list[Request], ctx: SearchContext) -> None:
        """Tell the progress display (and the trackers) which round and phase start now."""
        self.phase = strategy_phase(strategy) or self.settings.strategy
        self.tracking.phase = self.phase
        if self.progress is None:
            return
        number = len(self.rounds) + 1
        expected = expected_runs(self.settings.strategy, len(self.factors), self.settings.seeds or 2)
        estimate = max(number, math.ceil(expected / max(1, ctx.parallel)))
        self.progress.start_round(number, self.phase, estimate, len(requests))

    def explanation(self) -> str:
        """The best explanation the trials so far support, in one line (a crude main-effect reading)."""
        values = [
            (point, o.value) for (point, _), outs in self.outcomes.items() for o in outs if o.status == OK and o.value is not None
        ]  # fmt: skip
        return explanation_so_far(values, [f.name for f in self.factors], self.settings.mode)

    def early_judge(self, in_full: frozenset[str] = frozenset()) -> EarlyJudge | None:
        """The runner's early-stop judge for the next round (None: every trial runs its full budget).

        The reference is A's and B's curves of the searched differences; only exploring rounds use it
        (early_stop.EXPLORING), and not in a second search over the held differences. The trials
        labelled in `in_full` (requested in full: a verdict's numbers come from them) always run the budget.
        """
        s = self.settings
        if not s.early_stop or s.metric_source not in STREAMED or self.phase not in EXPLORING:
            return None
        if (self.control or {}).get("held_searched"):
            return None
        if not self.held_searched:
            full = frozenset(range(len(self.factors)))
            runs = [(p, o) for (p, _), outs in self.outcomes.items() for o in outs]
            a, b = ([o for p, o in runs if p == point] for point in (frozenset(), full))
            self.reference = reference_of(a, b, s.mode, int(s.steps or 0))
        return judge_for(self.reference, REFERENCE_LABELS | in_full)

    def run_round(self, requests: list[Request], runner: TrialRunner) -> list[Observation]:
        trials = [self.trial_for(r) for r in requests]
        runner.early_stop = self.early_judge(frozenset(t.label for t, r in zip(trials, requests, strict=True) if r.full))
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
            attempts, crashed = attempt_counts(outcome)
            projected = outcome.stopped_early is not None
            observations.append(Observation(request.point, request.seed, status, value, attempts, crashed, projected))
        self.observations += observations
        if self.seed_check.ignored is None:
            self.seed_check = check_seeds(self.observations)
        return observations

    # -- results ------------------------------------------------------------------------

    def finish(self, decision: Decision, runner: TrialRunner, complete: bool) -> SearchResult:
        verdict = decision.verdict
        held = [f.name for f in self.diff.factors if f not in self.factors]
        if not decision.reproduced and held and self.control is None:  # budget spent before the control ran
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
            effects=[effect_json(e, names, keys, deterministic=deterministic) for e in decision.effects],
            runs=len(self.journal.recorded_ids()),  # also trials an earlier strategy ran before a --resume
            rounds=len(self.rounds),
            verdict=verdict,
            regression=None if decision.regression is None else effect_json(decision.regression, names, keys, deterministic=deterministic),
            details={**jsonable(decision.details), "trial_rounds": self.rounds,
                     **({"control": self.control} if self.control is not None else {})},
            complete=complete,
            seeds=self.seed_check.to_json(self.settings.seed_base),
        )
        finished = [o for tid in self.journal.recorded_ids() if (o := self.journal.finished(tid)) is not None]
        result.early_stop = cost(finished, result.steps, self.reference)
        result.trial_steps = result.early_stop["trial_steps"]
        result.checkpoint = None if self.checkpoint is None else self.checkpoint.to_json()
        write_summary(self.out_dir, result)
        write_report(self.out_dir)
        return result


def _calibration_only(ev: Evidence) -> Generator[list[Request], list[Observation], Calibration]:
    """Calibration alone, driven like a strategy: the exact good config (point {}) against B."""
    return (yield from calibrate(ev, [], first=ev.ctx.seeds))


def _control_json(control: Calibration, held: list[Factor]) -> dict[str, Any]:
    """What summary.json says about the control run of the good config as given."""
    test = control.test
    return {
        "label": AS_GIVEN,
        "beats_b": control.reproduced,
        "effect": None if test is None else test.diff,
        "p_value": None if test is None else test.p,
        "seeds": 0 if test is None else test.n_a,
        "held": [f.name for f in held],
        "complete": control.complete,
        "held_searched": False,  # True once the held differences joined the search
    }


class _NothingRan(Exception):
    """Not one trial of the first round finished: the command, metric or budget is wrong."""


def strategy_phase(strategy: Strategy) -> str | None:
    """The phase a suspended strategy asked its round in: the `phase` of the innermost `ask` it waits in."""
    phase = None
    gen: Any = strategy
    while gen is not None:  # strategies are generators delegating with `yield from` down to `rounds.ask`
        frame = getattr(gen, "gi_frame", None)
        named = frame.f_locals.get("phase") if frame is not None else None
        phase = named if isinstance(named, str) else phase
        gen = getattr(gen, "gi_yieldfrom", None)
    return phase


def nothing_ran(trials: list[Trial], outcomes: list[Outcome], out_dir: Path) -> str:
    """One line on why the first round failed, naming the first failure's log."""
    counts = Counter(o.status for o in outcomes)
    how = ", ".join(f"{n} {status}" for status, n in counts.most_common())
    first = outcomes[0]
    log = trial_paths(out_dir, trials[0].id).stderr
    return f"no trial of the first round finished ({how}); the first: {first.detail or first.status} (see {log})."


def _factor_keys(factor: Factor) -> list[str]:
    return [d.key_b or d.key_a or d.key for d in factor.differences]
