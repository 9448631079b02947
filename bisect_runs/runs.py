"""Finished runs: every metric history of a run directory, whatever logged it.

Reads `metrics.jsonl`, CSV and TensorBoard event files through `bisect_runs.metrics`, and
adds the two experiment trackers people keep on disk: Weights & Biases run directories
(`wandb-history.jsonl` / `wandb-summary.json`, in `files/` or the directory itself) and
MLflow run directories (`metrics/<name>` files of `timestamp value step` lines).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisect_runs.errors import RunError
from bisect_runs.metrics import MetricSpec, read_history
from bisect_runs.mlflow_runs import read_run as read_mlflow_run
from bisect_runs.mlflow_runs import run_ref
from bisect_runs.wandb_log import find_log, read_log

History = list[tuple[int, float]]
KINDS = ("jsonl", "csv", "tensorboard", "wandb", "mlflow")
WANDB_HISTORY, WANDB_SUMMARY = "wandb-history.jsonl", "wandb-summary.json"
# W&B's own counter is `_step`; a trainer's logged step (Lightning, HF) aligns runs better.
WANDB_STEP_KEYS = ("trainer/global_step", "global_step", "train/global_step", "step", "_step")
LOOKED_FOR = "metrics.jsonl, a CSV, TensorBoard events, W&B run-*.wandb or wandb-history.jsonl, MLflow metrics/"


@dataclass
class Run:
    """One finished run: where it lives, what wrote it, and its metric histories by name."""

    path: Path
    kind: str
    series: dict[str, History] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    title: str = ""  # the tracker's name for the run, when it has one

    @property
    def name(self) -> str:
        return self.title or self.path.name or str(self.path)

    def shifted(self, offset: int) -> Run:
        """The same run with `offset` added to every step (a resumed run that logged from 0)."""
        if not offset:
            return self
        series = {n: [(s + offset, v) for s, v in h] for n, h in self.series.items()}
        return Run(self.path, self.kind, series, self.problems, self.title)

    def steps(self) -> tuple[int, int] | None:
        """First and last step logged for any metric."""
        steps = [s for h in self.series.values() for s, _ in h]
        return (min(steps), max(steps)) if steps else None


def read_run(path: str | Path) -> Run:
    """Read every metric history of a run directory (or a single metrics file)."""
    run_id = run_ref(str(path))
    if run_id is not None:  # a run of the MLflow tracking store
        tracked = read_mlflow_run(run_id)
        if not tracked.series:
            raise RunError(f"{path}: the MLflow run {tracked.name!r} logged no metrics")
        return Run(path=Path(str(path)), kind="mlflow", series=tracked.series, title=tracked.name)
    p = Path(path).expanduser()
    if not p.exists():
        raise RunError(f"{p}: no such run directory or metrics file")
    kind, source = detect_run(p)
    problems: list[str] = []
    series = _READERS[kind](source, problems)
    series = {name: sorted(h, key=lambda sv: sv[0]) for name, h in series.items() if h}
    if not series:
        raise RunError(f"{p}: no metrics found in {source} ({kind})")
    return Run(path=p, kind=kind, series=series, problems=problems)


def detect_run(p: Path) -> tuple[str, Path]:
    """What wrote a run and the file or directory to read: W&B, MLflow, JSON lines, TensorBoard, CSV."""
    if p.is_file():
        return _detect_file(p)
    for where in (p / "files", p):
        if (where / WANDB_HISTORY).exists() or (where / WANDB_SUMMARY).exists():
            return "wandb", where
    if (p / "metrics").is_dir() and any(f.is_file() for f in (p / "metrics").rglob("*")):
        return "mlflow", p / "metrics"
    if (p / "metrics.jsonl").exists():
        return "jsonl", p / "metrics.jsonl"
    log = find_log(p)
    if log is not None:  # the layout W&B writes today: history only in run-*.wandb
        return "wandb", log
    if next(p.rglob("events.out.tfevents.*"), None) is not None:
        return "tensorboard", p
    csvs = sorted(p.rglob("*.csv"), key=lambda f: (f.name != "metrics.csv", len(f.parts), str(f)))
    if csvs:
        return "csv", csvs[0]
    jsonls = sorted(p.rglob("*.jsonl"), key=lambda f: (len(f.parts), str(f)))
    if jsonls:
        return "jsonl", jsonls[0]
    raise RunError(f"{p}: not a run directory (looked for {LOOKED_FOR})")


def _detect_file(p: Path) -> tuple[str, Path]:
    if p.name in (WANDB_HISTORY, WANDB_SUMMARY):
        return "wandb", p.parent
    if p.suffix == ".wandb":
        return "wandb", p
    if p.name.startswith("events.out.tfevents."):
        return "tensorboard", p.parent
    if p.suffix == ".csv":
        return "csv", p
    if p.suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl", p
    raise RunError(f"{p}: unknown metrics file (expected .jsonl, .csv, TensorBoard events or {WANDB_HISTORY})")


def _read_jsonl(path: Path, problems: list[str]) -> dict[str, History]:
    return read_history(path.parent, MetricSpec(name="-", source="jsonl", path=path.name), problems=problems)


def _read_csv(path: Path, problems: list[str]) -> dict[str, History]:
    return read_history(path.parent, MetricSpec(name="-", source="csv", path=path.name), problems=problems)


def _read_tensorboard(path: Path, problems: list[str]) -> dict[str, History]:
    return read_history(path, MetricSpec(name="-", source="tensorboard"), problems=problems)


def _read_wandb(files: Path, problems: list[str]) -> dict[str, History]:
    """W&B history lines (internal `_` keys and media dicts skipped), plus summary-only metrics."""
    if files.suffix == ".wandb":
        log = read_log(files)
        problems.extend(log.problems)
        return log.series()
    series: dict[str, History] = {}
    history = files / WANDB_HISTORY
    records = [r for r in map(_parse_json_line, _lines(history)) if r is not None]
    step_key = next((k for k in WANDB_STEP_KEYS if any(k in r for r in records)), "_step")
    step = 0
    for number, record in enumerate(records):
        step = _wandb_step(record, step_key, step if number else 0)  # a line without it: the last step seen
        for key, value in _wandb_scalars(record):
            series.setdefault(key, []).append((step, value))
    summary = _parse_json_line(" ".join(_lines(files / WANDB_SUMMARY)))
    if summary is not None:
        at = step if records else _wandb_step(summary, "_step", 0)
        for key, value in _wandb_scalars(summary):
            series.setdefault(key, [(at, value)])
    return series


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []


def _parse_json_line(line: str) -> dict[str, Any] | None:
    """One JSON object (NaN/Infinity allowed, as W&B writes them); None for a torn or other line."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _wandb_step(record: dict[str, Any], key: str, fallback: int) -> int:
    value = record.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return int(value)
    return fallback


def _wandb_scalars(record: dict[str, Any], prefix: str = "") -> list[tuple[str, float]]:
    scalars: list[tuple[str, float]] = []
    for key, value in record.items():
        name = f"{prefix}{key}"
        if key.startswith("_") or name in WANDB_STEP_KEYS:
            continue
        if isinstance(value, dict) and "_type" not in value:  # nested metrics; media/histograms skipped
            scalars.extend(_wandb_scalars(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            scalars.append((name, float(value)))
    return scalars


def _read_mlflow(metrics: Path, problems: list[str]) -> dict[str, History]:
    """One file per metric (`a/b` metrics nested as directories), lines `timestamp value step`."""
    series: dict[str, History] = {}
    for f in sorted(p for p in metrics.rglob("*") if p.is_file()):
        name = f.relative_to(metrics).as_posix()
        for number, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines()):
            parts = line.split()
            if len(parts) < 2:
                continue
            try:
                value = float(parts[1])
                step = int(parts[2]) if len(parts) > 2 else number
            except ValueError:
                continue
            series.setdefault(name, []).append((step, value))
    return series


_READERS = {
    "jsonl": _read_jsonl,
    "csv": _read_csv,
    "tensorboard": _read_tensorboard,
    "wandb": _read_wandb,
    "mlflow": _read_mlflow,
}
