"""The journal: `OUT_DIR/journal.jsonl`, one JSON line per finished trial, replayed by `--resume`.

Trial lines are `{"event": "trial", "time": ..., "trial": {...}, "outcome": {...}}`, appended
with flush + fsync. Other lines record search events (`submitted` job ids, `round`s, ...).
`OUT_DIR/.lock` is held (fcntl.flock) while the journal is open, so two searches never write
the same OUT_DIR; the kernel releases it when a search dies, even by `kill -9`.

`--resume` continues only the same search: the settings that decide what a trial means
(IDENTITY) must match the journal's `search` line. A changed search is started in the same
OUT_DIR only when asked (`--resume-changed`), and then the earlier journal and trials are moved,
never deleted, into `OUT_DIR/previous-N/`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from bisect_runs.errors import JournalError
from bisect_runs.trials import (
    Outcome,
    Trial,
    encode_value,
    outcome_from_json,
    outcome_to_json,
    trial_to_json,
)

JOURNAL_FILE = "journal.jsonl"
LOCK_FILE = ".lock"
TRIALS_DIR = "trials"
PREVIOUS_PREFIX = "previous-"
# Settings that change what a trial is or what its number means; "differences" stands for the configs.
IDENTITY = ("steps", "metric", "mode", "command", "good", "bad", "differences", "checkpoint")


class Journal:
    """Append-only record of a search's trials; `finished(id)` answers from it without running."""

    def __init__(
        self,
        out_dir: str | Path,
        resume: bool = False,
        identity: dict[str, Any] | None = None,
        continue_changed: bool = False,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / JOURNAL_FILE
        self.resume = resume
        self.identity = identity  # this search's IDENTITY values, checked against the journal's
        self.continue_changed = continue_changed
        self.set_aside: Path | None = None  # where an earlier, different search was moved
        self._finished: dict[str, Outcome] = {}
        self._recorded: set[str] = set()  # every trial with a line, finished or interrupted
        self._jobs: dict[str, str] = {}
        self.skipped: list[int] = []  # line numbers of unreadable lines (corrupt JSON, wrong shape)
        self._file: IO[str] | None = None
        self._lock_file: IO[str] | None = None
        self._write_lock = threading.Lock()

    def __enter__(self) -> Journal:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Take the OUT_DIR lock, replay the journal (with resume) and open it for appending."""
        with disk_space(self.out_dir):
            self._open()

    def _open(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = _take_lock(self.out_dir)
        try:
            self._open_journal()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the journal and release the OUT_DIR lock."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    def _open_journal(self) -> None:
        entries, self.skipped = _truncate_torn_tail(self.path)
        trial_lines = [e for _, e in entries if e.get("event") == "trial"]
        if trial_lines and not self.resume:
            raise JournalError(
                f"{self.out_dir} already holds a search ({len(trial_lines)} trials in {JOURNAL_FILE}): "
                "pass --resume to continue it, or choose another --out"
            )
        if not self.resume:
            self.path.write_text("", encoding="utf-8")
            self.skipped = []
        elif self.identity is not None and (changed := identity_changes([e for _, e in entries], self.identity)):
            if not self.continue_changed:
                raise JournalError(
                    f"{self.out_dir} holds another search ({'; '.join(changed)}): --resume continues only "
                    f"the same search; choose another --out, or pass --resume-changed to start this one there "
                    f"(the earlier search is kept in {self.out_dir / (PREVIOUS_PREFIX + 'N')})"
                )
            self.set_aside = set_aside(self.out_dir, (JOURNAL_FILE, TRIALS_DIR))
            entries, self.skipped = [], []
        for _, entry in entries:
            self._replay(entry)
        self._file = self.path.open("a", encoding="utf-8")

    def skipped_note(self) -> str | None:
        """'journal.jsonl: 2 unreadable lines skipped (lines 4, 9); their trials run again', or None."""
        if not self.skipped:
            return None
        lines = ", ".join(map(str, self.skipped[:10])) + (", ..." if len(self.skipped) > 10 else "")
        noun = "line" if len(self.skipped) == 1 else "lines"
        return f"{self.path}: {len(self.skipped)} unreadable {noun} skipped ({noun} {lines}); their trials run again"

    def _replay(self, entry: dict[str, Any]) -> None:
        if entry.get("event") == "trial":
            outcome = outcome_from_json(entry["outcome"])  # its shape was checked on reading
            self._jobs.pop(outcome.trial_id, None)  # its job ended: never re-attach to it
            self._recorded.add(outcome.trial_id)
            if outcome.finished:
                self._finished[outcome.trial_id] = outcome
        elif entry.get("event") == "submitted" and entry.get("job_id"):
            self._jobs[str(entry["trial_id"])] = str(entry["job_id"])

    # -- queries --------------------------------------------------------------------------

    def finished(self, trial_id: str) -> Outcome | None:
        """The recorded outcome of a finished trial (never an interrupted one)."""
        return self._finished.get(trial_id)

    def job_id(self, trial_id: str) -> str | None:
        """The last job id recorded for a trial that has not finished (to re-attach or clean up)."""
        return None if trial_id in self._finished else self._jobs.get(trial_id)

    def finished_ids(self) -> set[str]:
        return set(self._finished)

    def recorded_ids(self) -> set[str]:
        """Every trial the journal has a line for: what a search's `runs` counts, here and in the report."""
        return set(self._recorded)

    # -- writes ---------------------------------------------------------------------------

    def record(self, trial: Trial, outcome: Outcome) -> None:
        """Append a trial line (flushed and fsynced); interrupted ones are kept but run again."""
        self._append({"event": "trial", "trial": trial_to_json(trial), "outcome": outcome_to_json(outcome)}, sync=True)
        self._recorded.add(trial.id)
        if outcome.finished:
            self._finished[trial.id] = outcome
        self._jobs.pop(trial.id, None)

    def submitted(self, trial_id: str, job_id: str) -> None:
        """Note a job id as soon as it is known (flushed, not fsynced: cheap, survives kill -9)."""
        self._jobs[trial_id] = job_id
        self._append({"event": "submitted", "trial_id": trial_id, "job_id": job_id}, sync=False)

    def event(self, name: str, **fields: Any) -> None:
        """Append a search-level event, e.g. `journal.event("round", number=2, trials=[...])`."""
        self._append({"event": name, **fields}, sync=True)

    def _append(self, entry: dict[str, Any], sync: bool) -> None:
        if self._file is None:
            raise JournalError(f"{self.path}: the journal is not open")
        line = json.dumps({**entry, "time": round(time.time(), 3)}, default=encode_value, allow_nan=True)
        with self._write_lock:
            start = self._file.tell()
            try:
                self._file.write(line + "\n")
                self._file.flush()
                if sync:
                    os.fsync(self._file.fileno())
            except OSError:
                self._cut_back(start)
                raise

    def _cut_back(self, size: int) -> None:
        """After a failed append (disk full), drop whatever part of the line reached the file."""
        assert self._file is not None
        with contextlib.suppress(OSError):
            self._file.close()  # the unwritten rest of the buffer goes nowhere
        with contextlib.suppress(OSError), self.path.open("r+b") as raw:
            raw.truncate(size)
        self._file = self.path.open("a", encoding="utf-8")


@contextlib.contextmanager
def disk_space(out_dir: str | Path) -> Iterator[None]:
    """A full disk (or quota) while a search writes becomes one JournalError naming OUT_DIR and its free space."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise JournalError(no_space(Path(out_dir))) from exc


def no_space(out_dir: Path) -> str:
    """'OUT: no space left on the device (12 kB free); ...'"""
    where = next((p for p in (out_dir, *out_dir.parents) if p.exists()), Path("."))
    try:
        free = f"{shutil.disk_usage(where).free / 1000:,.0f} kB free"
    except OSError:
        free = "free space unknown"
    return (
        f"{out_dir}: no space left on the device ({free}); the journal keeps every trial finished so far: "
        "free some space and rerun with --resume, or choose another --out"
    )


def identity_changes(entries: list[dict[str, Any]], identity: dict[str, Any]) -> list[str]:
    """What differs between the journal's last `search` line and this search: `steps 200 there, 10000 here`."""
    recorded = next((e for e in reversed(entries) if e.get("event") == "search"), None)
    if recorded is None:
        return []
    changed = []
    for name in IDENTITY:
        if name not in recorded or name not in identity:
            continue
        there, here = recorded[name], json.loads(json.dumps(identity[name], default=encode_value))
        if name == "differences":
            if (keys := _changed_differences(there, here)):
                changed.append(f"the configs differ in other keys or values: {', '.join(keys)}")
        elif name == "checkpoint" and there != here:  # its fingerprint is 64 hex digits: say what changed
            changed.append(_checkpoint_change(there, here))
        elif there != here:
            changed.append(f"{name} {_shown(there)} there, {_shown(here)} here")
    return changed


def _changed_differences(there: list[dict[str, Any]], here: list[dict[str, Any]]) -> list[str]:
    """Keys whose difference (values on both sides) is not the same in both searches."""
    def pairs(items: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(str(d.get("key")), json.dumps([d.get("a"), d.get("b")], sort_keys=True)) for d in items}

    changed = pairs(there) ^ pairs(here)
    keys = sorted({k for k, _ in changed})
    return keys[:5] + ([f"... ({len(keys)} keys)"] if len(keys) > 5 else [])


def _checkpoint_change(there: Any, here: Any) -> str:
    """`checkpoint ckpt.pt (step 20) there, none here`, or `the checkpoint's content changed`."""
    def shown(c: Any) -> str:
        return f"{c.get('path')} (step {c.get('step')})" if isinstance(c, dict) else "none"

    if shown(there) == shown(here):
        return f"the content of checkpoint {shown(here)} changed"
    return f"checkpoint {shown(there)} there, {shown(here)} here"


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return repr(text) if isinstance(value, str) and (" " in text or not text) else str(text)


def set_aside(out_dir: Path, names: tuple[str, ...], into: Path | None = None) -> Path | None:
    """Move the named files and folders of OUT_DIR into `into` (or the next free OUT_DIR/previous-N);
    None when none of them exists. Nothing is deleted."""
    present = [out_dir / n for n in names if (out_dir / n).exists()]
    if not present:
        return into
    if into is None:
        n = 1
        while (out_dir / f"{PREVIOUS_PREFIX}{n}").exists():
            n += 1
        into = out_dir / f"{PREVIOUS_PREFIX}{n}"
    into.mkdir(parents=True, exist_ok=True)
    for path in present:
        path.replace(into / path.name)
    return into


def read_journal(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every readable line of a search's journal (a torn last line is skipped); no lock taken."""
    path = Path(out_dir) / JOURNAL_FILE
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return [entry for number, entry in _entries(text) if entry is not None]


def _entries(text: str) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, entry) per non-empty line; None for a line that is no JSON object."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None  # a line torn by a crash mid-write, or corrupted later
        yield number, entry if _well_formed(entry) else None


def _well_formed(entry: Any) -> bool:
    """A JSON object; a trial line also with a trial object and an outcome that reads back."""
    if not isinstance(entry, dict):
        return False
    if entry.get("event") == "trial":
        try:
            outcome_from_json(entry["outcome"])
        except (KeyError, TypeError, ValueError, AttributeError):
            return False
        return isinstance(entry.get("trial"), dict)
    return entry.get("event") != "submitted" or "trial_id" in entry


def _truncate_torn_tail(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[int]]:
    """Read the journal (numbered entries, numbers of unreadable lines); cut a torn last line so the next append starts on a fresh line."""
    if not path.exists():
        return [], []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with path.open("r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    numbered = list(_entries(data[:end].decode("utf-8", errors="replace")))
    return [(n, e) for n, e in numbered if e is not None], [n for n, e in numbered if e is None]


def _take_lock(out_dir: Path) -> IO[str]:
    """Hold an exclusive flock on OUT_DIR/.lock, or say which process holds it."""
    path = out_dir / LOCK_FILE
    handle = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise JournalError(f"{out_dir} is in use by another search (pid {holder})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
