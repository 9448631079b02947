"""Progress of a batch of trials: a live status line on a terminal, plain log lines in a pipe.

Levels: "quiet" prints nothing, "normal" prints failures (and, in a pipe, one line per finished
trial), "verbose" also prints every finished trial on a terminal and the reused ones.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from bisect_runs.escaping import terminal
from bisect_runs.trials import OK, Outcome, Trial

LEVELS = ("quiet", "normal", "verbose")
_CLEAR = "\x1b[K"


class Progress:
    """Counts done/running/queued/failed trials and shows them with an ETA."""

    tick_s = 1.0  # how often the runner refreshes the live line

    def __init__(self, stream: TextIO | None = None, level: str = "normal", live: bool | None = None) -> None:
        if level not in LEVELS:
            raise ValueError(f"progress level must be one of {', '.join(LEVELS)} (got {level!r})")
        self.stream = stream if stream is not None else sys.stderr
        self.level = level
        self.live = _isatty(self.stream) if live is None else live
        self.total = self.done = self.failed = self.reused = self.pending = 0
        self.capacity = 1
        self._walls: list[float] = []
        self._started = time.monotonic()
        self._shown = False
        self._lock = threading.Lock()

    def begin(self, total: int, reused: int, capacity: int) -> None:
        """A batch of `total` trials starts; `reused` of them were answered by the journal."""
        self.total, self.reused, self.done, self.failed = total, reused, reused, 0
        self.pending = total - reused
        self.capacity = max(1, capacity)
        self._started = time.monotonic()
        if reused and self.level == "verbose":
            self._line(f"{reused} of {total} trials reused from the journal")
        self.refresh()

    def finished(self, trial: Trial, outcome: Outcome) -> None:
        """A trial finished (or was interrupted)."""
        self.done += 1
        self.pending = max(0, self.pending - 1)
        self._walls.append(outcome.wall_s)
        failed = outcome.status != OK
        self.failed += failed
        if self.level == "verbose" or (self.level == "normal" and (failed or not self.live)):
            self._line(describe(trial, outcome))
        self.refresh()

    def started(self, trial: Trial, job_id: str) -> None:
        """A trial's process or job started (printed when verbose; may come from a worker thread)."""
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
        """Redraw the live line (terminals only)."""
        if self.live and self.level != "quiet" and self.total:
            self.stream.write("\r" + self.status_line() + _CLEAR)
            self.stream.flush()
            self._shown = True

    def close(self) -> None:
        """End the live line so later output starts on a fresh line."""
        if self._shown:
            self.stream.write("\r" + self.status_line() + _CLEAR + "\n")
            self.stream.flush()
            self._shown = False

    def status_line(self) -> str:
        running = min(self.pending, self.capacity)
        queued = self.pending - running
        parts = [f"trials {self.done}/{self.total} done", f"{running} running", f"{queued} queued"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        eta = self.eta_s()
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        return " | ".join(parts)

    def eta_s(self) -> float | None:
        """Seconds left: pending trials times the mean trial time, spread over the slots."""
        if not self._walls or not self.pending:
            return None if self.pending else 0.0
        mean = sum(self._walls) / len(self._walls)
        return mean * self.pending / min(self.capacity, self.pending)

    def _line(self, text: str) -> None:
        with self._lock:
            prefix = "\r" + _CLEAR if self._shown else ""
            self.stream.write(prefix + terminal(text) + "\n")
            self.stream.flush()


def describe(trial: Trial, outcome: Outcome) -> str:
    """One line for a finished trial: label, seed, status, value, time."""
    what = f"{trial.label} seed={trial.seed}"
    if outcome.status == OK and outcome.value is not None:
        result = f"ok {outcome.value:.6g}"
    else:
        result = outcome.status + (f" ({outcome.detail})" if outcome.detail else "")
    infra = " [infrastructure: not judged]" if outcome.infra else ""
    return f"trial {trial.id} {what}: {result} in {format_duration(outcome.wall_s)}{infra}"


def format_duration(seconds: float) -> str:
    """12.3s, 4m05s, 2h10m."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
