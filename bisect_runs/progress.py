"""Progress of a search: a live `rich` display on a terminal, plain log lines in a pipe.

Levels: "quiet" prints nothing, "normal" prints failures and rounds (and, in a pipe, one line
per finished trial), "verbose" also prints every finished trial on a terminal and the reused ones.
"""

from __future__ import annotations

import heapq
import math
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

from bisect_runs.escaping import terminal
from bisect_runs.trials import OK, Outcome, Trial

LEVELS = ("quiet", "normal", "verbose")


class Progress:
    """Counts done/running/queued/failed trials and shows them with phase, round and an ETA."""

    tick_s = 1.0  # how often the runner refreshes the live display

    def __init__(self, stream: TextIO | None = None, level: str = "normal", live: bool | None = None) -> None:
        if level not in LEVELS:
            raise ValueError(f"progress level must be one of {', '.join(LEVELS)} (got {level!r})")
        self.stream = stream if stream is not None else sys.stderr
        self.level = level
        self.live = _isatty(self.stream) if live is None else live
        self.total = self.done = self.failed = self.reused = self.pending = 0
        self.capacity = 1
        self.round = 0
        self.rounds_estimate: int | None = None
        self.phase = ""
        self.best = ""  # the current best explanation, one line
        self._walls: list[float] = []
        self._starts: dict[str, float] = {}  # trial id -> when its process started
        self._started = time.monotonic()
        self._round_started = self._started
        self._lock = threading.RLock()
        self._live: Any = None  # a rich Live while a batch runs on a terminal

    # -- a search's rounds ----------------------------------------------------------------

    def start_round(self, number: int, phase: str, estimate: int | None, trials: int) -> None:
        """Round `number` (of about `estimate`) of `phase` starts with `trials` trials."""
        self.round, self.phase, self.rounds_estimate = number, phase, estimate
        self._round_started = time.monotonic()
        if self.level != "quiet" and (not self.live or self.level == "verbose"):
            self._line(f"{self._round_name()}: {trials} trial{'s' * (trials != 1)}")

    def end_round(self, best: str) -> None:
        """The round's trials are all judged; `best` is the explanation the evidence favours now."""
        self.best = best
        if self.level == "quiet":
            return
        took = format_duration(time.monotonic() - self._round_started)
        failed = f", {self.failed} failed" if self.failed else ""
        self._line(f"{self._round_name()} done in {took}: {self.done}/{self.total} trials{failed}; {best}")

    # -- a batch of trials (called by the runner) -----------------------------------------

    def begin(self, total: int, reused: int, capacity: int) -> None:
        """A batch of `total` trials starts; `reused` of them were answered by the journal."""
        self.total, self.reused, self.done, self.failed = total, reused, reused, 0
        self.pending = total - reused
        self.capacity = max(1, capacity)
        self._started = time.monotonic()
        self._starts.clear()
        if reused and self.level == "verbose":
            self._line(f"{reused} of {total} trials reused from the journal")
        if self.live and self.level != "quiet" and self.total and self._live is None:
            self._start_live()
        self.refresh()

    def finished(self, trial: Trial, outcome: Outcome) -> None:
        """A trial finished (or was interrupted)."""
        with self._lock:
            self.done += 1
            self.pending = max(0, self.pending - 1)
            self._walls.append(outcome.wall_s)
            self._starts.pop(trial.id, None)
            failed = outcome.status != OK
            self.failed += failed
        if self.level == "verbose" or (self.level == "normal" and (failed or not self.live)):
            self._line(describe(trial, outcome) + self._where())
        self.refresh()

    def started(self, trial: Trial, job_id: str) -> None:
        """A trial's process or job started (may come from a worker thread)."""
        with self._lock:
            self._starts[trial.id] = time.monotonic()
        if self.level == "verbose":
            self._line(f"trial {trial.id} {trial.label} seed={trial.seed}: started (job {job_id})")

    def retrying(self, trial: Trial, outcome: Outcome, attempt: int) -> None:
        """A crashed trial is launched again with the same seed."""
        if self.level != "quiet":
            self._line(f"{describe(trial, outcome)}; retrying (attempt {attempt})")

    def note(self, text: str) -> None:
        """A one-line message about the search itself (not shown when quiet)."""
        if self.level != "quiet":
            self._line(text)

    def refresh(self) -> None:
        """Redraw the live display (terminals only)."""
        with self._lock:
            if self._live is not None:
                self._live.update(self._renderable(), refresh=True)

    def close(self) -> None:
        """Leave the last state of the live display on screen; later output starts below it."""
        with self._lock:
            if self._live is not None:
                self._live.update(self._renderable(), refresh=True)
                self._live.stop()
                self._live = None

    # -- what is shown --------------------------------------------------------------------

    def status_line(self) -> str:
        """Trials done/running/queued/failed and the ETA of this round (and of the search)."""
        running = min(self.pending, self.capacity)
        queued = self.pending - running
        parts = [f"trials {self.done}/{self.total} done", f"{running} running", f"{queued} queued"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        eta = self.eta_s()
        if eta is not None:
            rest = self.search_eta_s(eta)
            parts.append(f"ETA {format_duration(eta)}" + (f" (search ~{format_duration(rest)})" if rest else ""))
        return " | ".join(parts)

    def eta_s(self) -> float | None:
        """Seconds left in this batch: running trials' measured mean time left, queued ones after them."""
        with self._lock:
            if not self.pending:
                return 0.0
            if not self._walls:
                return None
            mean = sum(self._walls) / len(self._walls)
            now = time.monotonic()
            running = min(self.pending, self.capacity)
            elapsed = sorted((now - t for t in self._starts.values()), reverse=True)[:running]
            elapsed += [now - self._started] * (running - len(elapsed))
            slots = [max(mean - e, 0.0) for e in elapsed] + [0.0] * (self.capacity - running)
            heapq.heapify(slots)
            for _ in range(self.pending - running):  # each queued trial takes the slot that frees first
                heapq.heappush(slots, heapq.heappop(slots) + mean)
            return max(slots)

    def search_eta_s(self, round_eta: float) -> float | None:
        """This round's ETA plus the estimated rounds still to come at the measured round time."""
        if self.rounds_estimate is None or self.round >= self.rounds_estimate or not self._walls:
            return None
        mean = sum(self._walls) / len(self._walls)
        per_round = mean * math.ceil(max(self.total, 1) / self.capacity)
        return round_eta + (self.rounds_estimate - self.round) * per_round

    def _round_name(self) -> str:
        estimate = f" of ~{self.rounds_estimate}" if self.rounds_estimate else ""
        return f"round {self.round}{estimate} ({self.phase})" if self.phase else f"round {self.round}{estimate}"

    def _where(self) -> str:
        return f" [round {self.round}, {self.phase}]" if self.round and self.phase else ""

    def _renderable(self) -> Any:
        from rich.text import Text

        head = f"{self.phase} · round {self.round}" if self.phase else ""
        if head and self.rounds_estimate:
            head += f" of ~{self.rounds_estimate}"
        text = Text(no_wrap=True, overflow="ellipsis")
        if head:
            text.append(head + " · ", style="bold")
        text.append(self.status_line())
        if self.best:
            text.append("\n" + terminal(self.best), style="dim")
        return text

    def _start_live(self) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.stream, force_terminal=True, highlight=False)
        self._live = Live(
            self._renderable(), console=console, auto_refresh=False,
            redirect_stdout=False, redirect_stderr=False,
        )  # fmt: skip
        self._live.start()

    def _line(self, text: str) -> None:
        with self._lock:
            if self._live is not None:  # printed above the live display
                self._live.console.print(terminal(text), markup=False, highlight=False, soft_wrap=True)
                return
            self.stream.write(terminal(text) + "\n")
            self.stream.flush()


def describe(trial: Trial, outcome: Outcome) -> str:
    """One line for a finished trial: label, seed, status, value, time."""
    what = f"{trial.label} seed={trial.seed}"
    if outcome.status == OK and outcome.value is not None:
        result = f"ok {outcome.value:.6g}"
        if outcome.stopped_early is not None:
            early = outcome.stopped_early
            result += f" (projected: stopped early at step {early['step']}, near {early['like']})"
    else:
        result = outcome.status + (f" ({outcome.detail})" if outcome.detail else "")
    infra = " [infrastructure: not judged]" if outcome.infra else ""
    return f"trial {trial.id} {what}: {result} in {format_duration(outcome.wall_s)}{infra}"


def explanation_so_far(values: Sequence[tuple[frozenset[int], float]], names: Sequence[str], mode: str) -> str:
    """One line: B - A so far and the difference whose crude main effect explains most of it."""
    sign = 1.0 if mode == "min" else -1.0  # positive: worse
    n = len(names)
    a = [v for p, v in values if not p]
    b = [v for p, v in values if len(p) == n]
    if not a or not b:
        return "best explanation so far: none yet"
    gap = sign * (_mean(b) - _mean(a))
    text = f"so far B is {'worse' if gap > 0 else 'not worse'} than A by {gap:+.4g}"
    mixed = [(p, v) for p, v in values if 0 < len(p) < n]
    if not mixed or gap <= 0:
        return text
    effects = []
    for i, name in enumerate(names):
        with_i = [v for p, v in values if i in p]
        without = [v for p, v in values if i not in p]
        effects.append((sign * (_mean(with_i) - _mean(without)), name))
    effect, name = max(effects)
    return text + f"; best explanation so far: {name} ({effect:+.4g} when B has it)"


def expected_runs(strategy: str, n_factors: int, seeds: int) -> int:
    """A rough count of the trials a strategy runs on `n_factors` differences (for the round estimate)."""
    calibration = 2 * seeds
    if strategy == "oat":
        return calibration + n_factors * seeds
    if strategy == "ddmin":
        return calibration + 2 * seeds * max(1, math.ceil(math.log2(n_factors + 1)))
    return calibration + 4 * math.ceil((n_factors + 1) / 4)  # auto/screen: one two-level design


def format_duration(seconds: float) -> str:
    """12.3s, 4m05s, 2h10m."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
