"""Run a batch of trials through an executor: reuse journaled ones, retry crashes, stop cleanly.

`TrialRunner.run(trials)` returns one outcome per trial, in order. Trials the journal already
finished are answered without running; the rest are prepared and submitted at once and judged
as they end. A crash is retried with the same seed (`retries` times); one that does not repeat
is marked `infra` (not judged). With `early_stop` set (and an executor that can stop one
trial), running trials' metrics are read as they grow and a trial whose outcome is already
clear is stopped and judged at its projection (`bisect_runs.curves`). Ctrl-C or SIGTERM stops
every process group, records the trials as interrupted (run again by `--resume`) and re-raises
KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

from bisect_runs.crashes import EXTRA_RETRIES, looks_like_infrastructure
from bisect_runs.curves import EarlyStop, History
from bisect_runs.errors import TrialError
from bisect_runs.executors.base import Executor, Launch, ProcessEnd
from bisect_runs.journal import Journal
from bisect_runs.metrics import MetricSpec, read_metric
from bisect_runs.outcomes import finish
from bisect_runs.overrides import OverrideStyle
from bisect_runs.progress import Progress
from bisect_runs.trials import (
    CRASHED,
    INTERRUPTED,
    START_ERROR,
    Outcome,
    Trial,
    WriteConfig,
    check_command,
    load_launch,
    make_trial,
    prepare_launch,
    trial_paths,
    write_outcome,
)

POLL_S = 0.5  # how often running trials' metrics are read while early stopping is on
EarlyJudge = Callable[[Trial, History], EarlyStop | None]  # None: let the trial run on


class TrialRunner:
    """Executes trials for a search over one OUT_DIR, journaling every outcome."""

    # A command that cannot start (no such program) is the user's error and stops the search;
    # runners whose trials run different code (commits) record it as a crash instead.
    start_error_fatal = True

    def __init__(
        self,
        out_dir: str | Path,
        executor: Executor,
        journal: Journal,
        write_config: WriteConfig,
        command: Sequence[str] | None = None,
        steps: int | None = None,
        metric: MetricSpec | None = None,
        timeout_s: float | None = None,
        retries: int = 1,
        progress: Progress | None = None,
        steps_key: str | None = None,
        seed_key: str | None = None,
        gpus_per_trial: int = 0,
        base_keys: Container[str] | None = None,
        override_style: OverrideStyle | None = None,
        base_values: Mapping[str, Any] | None = None,
        run_dir_key: str | None = None,
        checkpoint_key: str | None = None,
    ) -> None:
        if metric is None:
            raise TrialError("a metric is needed to judge trials: set `metric` in bisect.yaml or pass --metric")
        self.out_dir = Path(out_dir)
        self.executor = executor
        self.journal = journal
        self.write_config = write_config
        self.command = tuple(command or ())
        self.steps = steps
        self.metric = metric
        self.timeout_s = timeout_s or None
        self.retries = max(0, retries)
        self.progress = progress
        self.steps_key = steps_key
        self.seed_key = seed_key
        self.gpus_per_trial = gpus_per_trial
        self.base_keys = base_keys  # the base config's flat keys: {overrides} adds the others with `+`
        self.extra_env: Callable[[Trial], Mapping[str, str]] | None = None  # e.g. the trackers' grouping
        self.on_finished: Callable[[Trial, Outcome], None] | None = None  # told of every judged trial
        self.early_stop: EarlyJudge | None = None  # set per round by the search once A's and B's curves are known
        self.override_style = override_style  # how {overrides} and {args} are written (Hydra when None)
        self.base_values = base_values  # the base config's flat values, for {args}
        self.run_dir_key = run_dir_key  # config key set to the trial's {run_dir}
        self.checkpoint_key = checkpoint_key  # config key set to the path of the trial's checkpoint
        self.runs = 0  # distinct trials of this search run so far (replayed from a resumed journal too)
        self.launched = 0  # processes started by this runner, retries included
        self.flaky_seen = False  # a crash went away on retry: later crashes get more retries
        self._counted: set[str] = set()
        self._trials: dict[str, Trial] = {}
        self._started: set[str] = set()  # trials whose process or job has started
        executor.on_submitted = self._submitted
        if progress is not None and (note := journal.skipped_note()):
            progress.note(f"Warning: {note}")

    def trial(self, label: str, changes: Mapping[str, Any], seed: int) -> Trial:
        """A trial of this runner's command and step budget."""
        if self.steps is None or not self.command:
            raise TrialError("TrialRunner.trial needs the runner's command and steps")
        return make_trial(label, changes, seed, self.steps, self.command)

    def run(self, trials: Sequence[Trial]) -> list[Outcome]:
        """Outcomes of `trials` in the same order; a trial repeated in the list runs once."""
        for command in {t.command for t in trials}:
            check_command(command)
        results: dict[str, Outcome] = {}
        todo: dict[str, Trial] = {}
        for trial in trials:
            if trial.id in results or trial.id in todo:
                continue
            cached = self.journal.finished(trial.id)
            if cached is not None:
                results[trial.id] = cached
            else:
                todo[trial.id] = trial
        self._count(results)
        self._trials.update(todo)
        if self.progress is not None:
            self.progress.begin(len(results) + len(todo), len(results), self.executor.capacity)
        try:
            with interrupt_on_sigterm():
                _Batch(self, todo, results).run()
        finally:
            if self.progress is not None:
                self.progress.close()
        return [results[t.id] for t in trials]

    def _submitted(self, trial_id: str, job_id: str) -> None:
        """A process or job started: journal its id (for resume) and tell the progress display."""
        self.journal.submitted(trial_id, job_id)
        self._started.add(trial_id)
        trial = self._trials.get(trial_id)
        if self.progress is not None and trial is not None:
            self.progress.started(trial, job_id)

    def _count(self, outcomes: Mapping[str, Outcome]) -> None:
        new = set(outcomes) - self._counted
        self._counted |= new
        self.runs += len(new)

    def _prepare(self, trial: Trial, attempt: int) -> Launch:
        return prepare_launch(
            trial,
            self.out_dir,
            self.write_config,
            timeout_s=self.timeout_s,
            gpus=self.gpus_per_trial,
            steps_key=self.steps_key,
            seed_key=self.seed_key,
            attempt=attempt,
            base_keys=self.base_keys,
            extra_env=self.extra_env(trial) if self.extra_env is not None else None,
            style=self.override_style,
            base_values=self.base_values,
            run_dir_key=self.run_dir_key,
            checkpoint_key=self.checkpoint_key,
        )


class _Batch:
    """One `run` call: submit, judge ends as they come, retry crashes, clean up on interrupt."""

    def __init__(self, runner: TrialRunner, todo: dict[str, Trial], results: dict[str, Outcome]) -> None:
        self.r = runner
        self.todo = todo
        self.results = results
        self.attempt = dict.fromkeys(todo, 1)
        self.earlier: dict[str, list[Outcome]] = {tid: [] for tid in todo}
        self.left = len(todo)
        self.watch = runner.early_stop if runner.executor.supports_stop else None
        self.stopping: dict[str, EarlyStop] = {}  # trials asked to stop, with the judgement that stopped them

    def run(self) -> None:
        try:
            self._submit_all()
            while self.left > 0:
                tick = self.r.progress.tick_s if self.r.progress is not None and self.r.progress.live else None
                if self.watch is not None:
                    tick = POLL_S if tick is None else min(tick, POLL_S)
                ends = self.r.executor.wait(timeout=tick)
                for end in ends:
                    self._handle(end)
                if self.watch is not None:
                    self._watch(self.watch)
                if self.r.progress is not None and not ends:
                    self.r.progress.refresh()
        except BaseException:
            with _signals_deferred():
                self._interrupt()
            raise

    def _submit_all(self) -> None:
        fresh: list[Launch] = []
        reattach: list[tuple[Launch, str]] = []
        for tid, trial in self.todo.items():
            job_id = self.r.journal.job_id(tid)
            launch = load_launch(self.r.out_dir, tid) if job_id else None
            if job_id and launch is not None and self.r.executor.supports_reattach:
                reattach.append((launch, job_id))
                continue
            if job_id and launch is not None:
                _stop_leftover(self.r.executor, launch, job_id)
            fresh.append(self.r._prepare(trial, 1))
        if reattach:
            self.r.executor.reattach(reattach)
            self.r._started.update(launch.trial_id for launch, _ in reattach)  # watched like fresh ones
        self.r.launched += len(fresh)
        self.r.executor.submit(fresh)

    def _watch(self, judge: EarlyJudge) -> None:
        """Read the running trials' metrics; stop those whose outcome is already clear."""
        for tid in [t for t in self.r._started if t in self.todo and t not in self.results and t not in self.stopping]:
            paths = trial_paths(self.r.out_dir, tid)
            history = read_metric(paths.run_dir, self.r.metric, log_path=paths.stdout).history
            early = judge(self.todo[tid], history) if history else None
            if early is not None and self.r.executor.stop(tid):
                self.stopping[tid] = early

    def _handle(self, end: ProcessEnd) -> None:
        trial = self.todo.get(end.trial_id)
        if trial is None or trial.id in self.results:
            return  # not ours (an executor shared between runners) or already judged
        if START_ERROR in end.extra and self.r.start_error_fatal:
            raise TrialError(f"{end.extra[START_ERROR]} (command: {' '.join(trial.command)})")
        attempt = self.attempt[trial.id]
        outcome = finish(trial, end, self.r.metric, self.r.out_dir, attempt, early=self.stopping.get(trial.id))
        lost = outcome.detail.startswith("lost")  # the executor already requeued it
        if outcome.status == CRASHED and not lost and attempt <= self._retries_for(outcome):
            self._retry(trial, outcome)
            return
        self._record(trial, outcome)

    def _retries_for(self, outcome: Outcome) -> int:
        """`retries`, and a few more for a crash that looks like the machine's (see bisect_runs.crashes)."""
        if self.r.retries and looks_like_infrastructure(outcome, self.r.flaky_seen):
            return self.r.retries + EXTRA_RETRIES
        return self.r.retries

    def _retry(self, trial: Trial, outcome: Outcome) -> None:
        self.earlier[trial.id].append(outcome)
        self.attempt[trial.id] += 1
        if self.r.progress is not None:
            self.r.progress.retrying(trial, outcome, self.attempt[trial.id])
        self.r.launched += 1
        self.r.executor.submit([self.r._prepare(trial, self.attempt[trial.id])])

    def _record(self, trial: Trial, outcome: Outcome) -> None:
        earlier = self.earlier.get(trial.id, [])
        lost = outcome.status == CRASHED and outcome.detail.startswith("lost")
        if earlier or lost:
            outcome.attempts = [_attempt_summary(o) for o in earlier]
            outcome.infra = lost  # a retry that finished is a valid run: its value is kept
            self.r.flaky_seen |= bool(earlier) and outcome.status not in (CRASHED, INTERRUPTED)
            write_outcome(self.r.out_dir, outcome)
        self.r.journal.record(trial, outcome)
        self.results[trial.id] = outcome
        self.left -= 1
        if outcome.finished:
            self.r._count({trial.id: outcome})
        if self.r.on_finished is not None:
            self.r.on_finished(trial, outcome)
        if self.r.progress is not None:
            self.r.progress.finished(trial, outcome)

    def _interrupt(self) -> None:
        """Stop everything; journal what ended (interrupted trials are run again on resume)."""
        for end in self.r.executor.cancel():
            trial = self.todo.get(end.trial_id)
            if trial is None or trial.id in self.results:
                continue
            if START_ERROR in end.extra:
                continue
            outcome = finish(trial, end, self.r.metric, self.r.out_dir, self.attempt[trial.id])
            self._record(trial, outcome)


def _attempt_summary(outcome: Outcome) -> dict[str, Any]:
    data = asdict(outcome)
    for heavy in ("history", "attempts"):
        data.pop(heavy, None)
    return data


def _stop_leftover(executor: Executor, launch: Launch, job_id: str) -> None:
    """Kill what a killed earlier search left running of this trial (executors that can)."""
    stop = getattr(executor, "stop_leftover", None)
    if stop is not None:
        stop(launch, job_id)


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """While inside, SIGTERM raises KeyboardInterrupt (main thread only), like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ignore a second Ctrl-C/SIGTERM while the first one's cleanup stops the trainers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
