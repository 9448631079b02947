"""What a search left in OUT_DIR, read back: summary.json (if any), the journal's trials, launches.

Reading needs no lock and runs nothing, so a report can be (re)written while a search is
still running, after it was interrupted, or years later.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisect_runs.atomic import read_json_object
from bisect_runs.errors import RunError
from bisect_runs.journal import JOURNAL_FILE
from bisect_runs.summary import SUMMARY_FILE

UNFINISHED = "interrupted"
# what a `search` journal event may tell about a search that never wrote summary.json
SETTINGS = (
    "good", "bad", "metric", "mode", "steps", "strategy", "command", "executor", "factors",
    "differences", "cwd", "invocation", "invoked_in", "flags", "checkpoint_key",
)  # fmt: skip


@dataclass
class TrialRecord:
    """One trial as the journal recorded it (the last line for its id wins)."""

    id: str
    label: str
    seed: int
    steps: int
    command: list[str]
    changes: list[list[Any]]
    status: str
    value: float | None
    wall_s: float
    steps_per_s: float | None = None
    peak_gpu_mem_mb: float | None = None
    history: list[tuple[int, float]] = field(default_factory=list)
    infra: bool = False
    gpus: int = 0
    argv: list[str] = field(default_factory=list)  # the substituted command, from launch.json
    time: float | None = None
    cwd: str | None = None  # where the trainer ran, when the executor recorded it
    steps_run: int | None = None  # the step the trainer reached (below `steps` when stopped early)
    start_step: int = 0  # the step it resumed from (its checkpoint's)
    checkpoint: dict[str, Any] | None = None  # the shared prefix it resumed from: path, step, fingerprint
    stopped_early: dict[str, Any] | None = None  # where it stopped and its projection (curves.EarlyStop)


@dataclass
class SearchRecord:
    """A search's OUT_DIR: its summary (None when the search never finished) and trials."""

    out_dir: Path
    summary: dict[str, Any] | None
    trials: list[TrialRecord]
    rounds: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)  # from a `search` journal event, if written

    @property
    def complete(self) -> bool:
        return self.summary is not None and bool(self.summary.get("complete", True))

    @property
    def steps(self) -> int | None:
        """The step budget: as the search recorded it, else the one most trials ran with."""
        recorded = (self.summary or self.settings).get("steps")
        budgets = [t.steps for t in self.trials]
        return recorded or (statistics.mode(budgets) if budgets else None)


def load_search(out_dir: str | Path) -> SearchRecord:
    """Read summary.json, journal.jsonl and each trial's launch.json from OUT_DIR."""
    out = Path(out_dir)
    if not out.is_dir():
        raise RunError(f"{out}: no such search output directory")
    summary = _read_summary(out / SUMMARY_FILE)
    entries = _read_journal(out / JOURNAL_FILE)
    if summary is None and not entries:
        if (out / JOURNAL_FILE).exists():
            raise RunError(f"{out / JOURNAL_FILE}: no readable journal line (and no {SUMMARY_FILE})")
        raise RunError(f"{out}: neither {SUMMARY_FILE} nor {JOURNAL_FILE} found: is this a search's --out directory?")
    trials = _trials(entries, out)
    rounds = _rounds(summary, entries)
    for folder in part_folders(summary):  # code and configs searched together: both parts' trials
        part = out / folder
        part_entries = _read_journal(part / JOURNAL_FILE)
        trials += _trials(part_entries, part)
        rounds += _rounds(_read_summary(part / SUMMARY_FILE), part_entries)
    rounds = [{**r, "round": i + 1} for i, r in enumerate(rounds)]
    return SearchRecord(out, summary, trials, rounds, _settings(entries))


def part_folders(summary: dict[str, Any] | None) -> list[str]:
    """Sub-folders of OUT_DIR holding the parts of a combined search (details.parts.*.out)."""
    parts = ((summary or {}).get("details") or {}).get("parts")
    if not isinstance(parts, dict):
        return []
    folders = [p.get("out") for p in parts.values() if isinstance(p, dict)]
    return [f for f in folders if isinstance(f, str) and f and "/" not in f and f not in (".", "..")]


def _read_summary(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise RunError(f"{path}: expected a search summary (a non-empty JSON object)")
    return data


def _read_journal(path: Path) -> list[dict[str, Any]]:
    """Journal lines; a line torn by a crash mid-write is skipped."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def _trials(entries: list[dict[str, Any]], out: Path) -> list[TrialRecord]:
    """Trial lines in first-recorded order; a finished line replaces an interrupted one."""
    by_id: dict[str, TrialRecord] = {}
    for entry in entries:
        if entry.get("event", "trial") != "trial" or not isinstance(entry.get("trial"), dict) or not isinstance(entry.get("outcome"), dict):
            continue
        record = _trial_record(entry, out)
        previous = by_id.get(record.id)
        if previous is None or record.status != UNFINISHED or previous.status == UNFINISHED:
            by_id[record.id] = record
    return list(by_id.values())


def _trial_record(entry: dict[str, Any], out: Path) -> TrialRecord:
    trial, outcome = entry["trial"], entry.get("outcome") or {}
    launch = read_json_object(out / "trials" / str(trial.get("id", "")) / "launch.json")
    return TrialRecord(
        id=str(trial.get("id", "")),
        label=str(trial.get("label", "?")),
        seed=int(trial.get("seed", 0)),
        steps=int(trial.get("steps", 0)),
        command=[str(a) for a in trial.get("command", [])],
        changes=list(trial.get("changes", [])),
        status=str(outcome.get("status", "crashed")),
        value=as_float(outcome.get("value")),
        wall_s=as_float(outcome.get("wall_s")) or 0.0,
        steps_per_s=as_float(outcome.get("steps_per_s")),
        peak_gpu_mem_mb=as_float(outcome.get("peak_gpu_mem_mb")),
        history=_history(outcome.get("history") or []),
        infra=bool(outcome.get("infra", False)),
        gpus=int(launch.get("gpus") or 0),
        argv=[str(a) for a in launch.get("argv", [])],
        time=as_float(entry.get("time")),
        cwd=str(launch["cwd"]) if launch.get("cwd") else None,
        steps_run=int(outcome["steps_run"]) if isinstance(outcome.get("steps_run"), int) else None,
        start_step=int(outcome["start_step"]) if isinstance(outcome.get("start_step"), int) else 0,
        checkpoint=trial["checkpoint"] if isinstance(trial.get("checkpoint"), dict) else None,
        stopped_early=outcome.get("stopped_early") if isinstance(outcome.get("stopped_early"), dict) else None,
    )


def _history(pairs: list[Any]) -> list[tuple[int, float]]:
    history = []
    for pair in pairs:
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            step, value = as_float(pair[0]), as_float(pair[1])
            if step is not None and value is not None:
                history.append((int(step), value))
    return history


def _rounds(summary: dict[str, Any] | None, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The decision sequence: summary.details.trial_rounds, else `round` events of the journal."""
    details = (summary or {}).get("details") or {}
    rounds = details.get("trial_rounds") if isinstance(details, dict) else None
    if isinstance(rounds, list) and rounds:
        return [r for r in rounds if isinstance(r, dict)]
    events = [e for e in entries if e.get("event") == "round" and isinstance(e.get("trials"), list)]
    return [{"round": e.get("number", i + 1), "trials": e["trials"]} for i, e in enumerate(events)]


def _settings(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The search's settings (good, bad, metric, factors, ...) from its `search`/`start` journal event, if any."""
    for entry in entries:
        if entry.get("event") in ("search", "start", "settings"):
            nested = entry.get("settings")
            data: dict[str, Any] = nested if isinstance(nested, dict) else entry
            return {k: data[k] for k in SETTINGS if k in data}
    return {}


def as_float(value: Any) -> float | None:
    """A number from JSON (NaN kept as NaN, strings such as "NaN" parsed); None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def summary_details(s: dict[str, Any]) -> dict[str, Any]:
    """summary.details without the rounds (the report shows those as its own table)."""
    details = s.get("details")
    if not isinstance(details, dict):
        return {}
    return {k: v for k, v in details.items() if k != "trial_rounds"}


def label_set(label: str) -> set[str] | None:
    """The factor names inside a trial label `A + {...}` / `B - {...}`; None for other labels."""
    match = re.fullmatch(r"\s*[AB]\s*[-+]\s*\{(.*)\}\s*", label)
    return None if match is None else {part.strip() for part in match.group(1).split(",") if part.strip()}


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
