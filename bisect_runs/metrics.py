"""Metrics: read what a trainer logged (JSON lines, stdout, CSV, TensorBoard) and reduce it to one number.

Every reader returns histories `[(step, value)]` per metric name; the target metric's history
is reduced with `last`, `min`, `max` or `mean_last:K`. Speed (steps/s) and peak GPU memory are
picked out of the same histories by their usual names. See docs/trials.md.
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisect_runs.errors import SettingsError, TrialError

History = list[tuple[int, float]]
SOURCES = ("jsonl", "regex", "csv", "tensorboard", "wandb")
DEFAULT_PATHS = {"jsonl": "metrics.jsonl", "csv": "metrics.csv", "regex": None, "tensorboard": ".", "wandb": "."}
STEP_FALLBACKS = ("step", "global_step", "trainer/global_step", "_step", "iteration", "iter")
NUMBER = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf(?:inity)?)"
_STEP_IN_LINE = re.compile(r"\b(?:step|iter(?:ation)?)\b\s*[=:#]?\s*(\d+)", re.IGNORECASE)
_PAIR = re.compile(rf"(?<![\w/.])([A-Za-z_][\w/.-]*)\s*=\s*({NUMBER})(?![\w.])", re.IGNORECASE)
_BARE_NONFINITE = re.compile(r"(?<=[:\[,\s])(-?)(nan|inf(?:inity)?)(?=\s*[,\]}])", re.IGNORECASE)

# Speed and memory by their usual names (last path component, lower case).
SPEED_NAMES = frozenset(
    {
        "steps_per_sec", "steps_per_s", "steps_per_second", "steps/s", "step/s", "steps/sec",
        "it/s", "its_per_sec", "iters_per_sec", "iter_per_sec", "iterations_per_second",
        "throughput", "train_steps_per_second",
    }
)  # fmt: skip
_MEMORY = re.compile(
    r"^(?:(?:peak|max)[_-]?(?:gpu[_-]?|cuda[_-]?)?mem(?:ory)?(?:[_-]?(?:allocated|reserved|used))?"
    r"|(?:gpu|cuda)[_-]?mem(?:ory)?(?:[_-]?(?:peak|max))?)"
    r"(?:[_-]?\(?(mb|mib|gb|gib|kb|kib|bytes|b)\)?)?$"
)
_UNIT_TO_MB = {"mb": 1.0, "mib": 1.0, "gb": 1024.0, "gib": 1024.0, "kb": 1 / 1024, "kib": 1 / 1024, "bytes": 2.0**-20, "b": 2.0**-20}
_LOG_SPEED: list[tuple[re.Pattern[str], Callable[[float], float]]] = [
    (re.compile(r"(\d+(?:\.\d+)?)\s*it/s\b"), float),  # tqdm
    (re.compile(r"(\d+(?:\.\d+)?)\s*s/it\b"), lambda v: 1 / v),  # tqdm when slower than 1 it/s
    (re.compile(r"\bsteps?[_/ ]?(?:per[_ ])?s(?:ec(?:ond)?)?\s*[=:]\s*(\d+(?:\.\d+)?)", re.IGNORECASE), float),
    (re.compile(r"(\d+(?:\.\d+)?)\s*steps?/s(?:ec)?\b", re.IGNORECASE), float),
    # nanoGPT: `iter 100: loss 2.1, time 25.15ms` is one iteration's time
    (re.compile(r"\biter(?:ation)?\s*\d+\b[^\n]*?\btime\s*[=:]?\s*(\d+(?:\.\d+)?)\s*ms\b", re.IGNORECASE),
     lambda v: 1000 / v),
]


@dataclass(frozen=True)
class MetricSpec:
    """Where the target metric comes from and how a run's history becomes one number."""

    name: str
    source: str = "jsonl"
    pattern: str | None = None  # regex source: one group (or a group named `value`) capturing the value
    path: str | None = None  # file (or glob) relative to the run directory
    reduce: str = "last"  # last | min | max | mean_last:K
    step_key: str = "step"

    def __post_init__(self) -> None:
        problems = []
        if not self.name:
            problems.append("metric name is empty")
        if self.source not in SOURCES:
            problems.append(f"metric source must be one of {', '.join(SOURCES)} (got {self.source!r})")
        if not _valid_reduce(self.reduce):
            problems.append(f"reduce must be last, min, max or mean_last:K (got {self.reduce!r})")
        if self.pattern is not None:
            try:
                compiled = re.compile(self.pattern)
            except re.error as exc:
                problems.append(f"metric pattern {self.pattern!r} is not a valid regex ({exc})")
            else:
                if compiled.groups < 1:
                    problems.append(f"metric pattern {self.pattern!r} needs a group capturing the value")
        if problems:
            raise SettingsError("; ".join(problems))

    def regex(self) -> re.Pattern[str]:
        """The stdout pattern: the given one, else `NAME=value` / `NAME: value`."""
        if self.pattern is not None:
            return re.compile(self.pattern)
        return re.compile(rf"(?<![\w/.]){re.escape(self.name)}\s*[=:]\s*({NUMBER})", re.IGNORECASE)

    def file(self, run_dir: Path) -> Path | None:
        """The file this source reads, relative paths and globs resolved in `run_dir`."""
        rel = self.path if self.path is not None else DEFAULT_PATHS[self.source]
        return None if rel is None else _resolve(run_dir, rel)


@dataclass
class MetricRead:
    """Everything read from one run: the target's history, all series, speed and memory."""

    history: History
    series: dict[str, History] = field(default_factory=dict)
    steps_per_s: float | None = None
    peak_gpu_mem_mb: float | None = None
    where: str = ""  # the file read, for messages
    problems: list[str] = field(default_factory=list)  # lines skipped, unreadable files


def read_metric(run_dir: Path, spec: MetricSpec, log_path: Path | None = None) -> MetricRead:
    """Read the target metric and the speed/memory a run reported."""
    series, where, problems = _read_series(Path(run_dir), spec, log_path)
    history = lookup(series, spec.name) or []
    return MetricRead(
        history=history,
        series=series,
        steps_per_s=speed_from_series(series),
        peak_gpu_mem_mb=memory_from_series(series),
        where=where,
        problems=problems,
    )


def read_history(
    run_dir: str | Path,
    spec: MetricSpec | None = None,
    log_path: Path | None = None,
    problems: list[str] | None = None,
) -> dict[str, History]:
    """All metric histories of a run directory (the spec's source, else whatever is there);
    lines or files that could not be read are added to `problems` when given."""
    run_dir = Path(run_dir)
    if spec is None:
        spec = MetricSpec(name="-", source=detect_source(run_dir))
    series, _, found = _read_series(run_dir, spec, log_path)
    if problems is not None:
        problems.extend(found)
    return series


def detect_source(run_dir: Path) -> str:
    """Guess a run directory's metric source: metrics.jsonl, then TensorBoard events, then a CSV."""
    if (run_dir / "metrics.jsonl").exists():
        return "jsonl"
    if next(run_dir.rglob("events.out.tfevents.*"), None) is not None:
        return "tensorboard"
    if (run_dir / "metrics.csv").exists() or next(run_dir.rglob("metrics.csv"), None) is not None:
        return "csv"
    return "jsonl"


def lookup(series: dict[str, History], name: str) -> History | None:
    """A metric's history by name; `val.per` and `val/per` name the same metric."""
    for candidate in (name, name.replace(".", "/"), name.replace("/", ".")):
        if candidate in series:
            return series[candidate]
    return None


def reduce_history(history: History, how: str = "last") -> float | None:
    """One number for a run: last, min, max or mean of the last K finite values."""
    values = [v for _, v in history if math.isfinite(v)]
    if not values:
        return None
    if how == "last":
        return values[-1]
    if how == "min":
        return min(values)
    if how == "max":
        return max(values)
    k = int(how.partition(":")[2])
    tail = values[-k:]
    return sum(tail) / len(tail)


def first_nonfinite(history: History) -> tuple[int, float] | None:
    """The first (step, value) that is NaN or infinite."""
    return next(((s, v) for s, v in history if not math.isfinite(v)), None)


def speed_from_series(series: dict[str, History]) -> float | None:
    """The median steps/s the trainer reported under a usual name."""
    for name, history in series.items():
        if _is_speed(name):
            values = [v for _, v in history if math.isfinite(v) and v > 0]
            if values:
                return float(statistics.median(values))
    return None


def memory_from_series(series: dict[str, History]) -> float | None:
    """The peak GPU memory in MB the trainer reported under a usual name (units from the suffix)."""
    peaks = []
    for name, history in series.items():
        match = _MEMORY.match(_leaf(name))
        values = [v for _, v in history if math.isfinite(v) and v >= 0]
        if match and values:
            peaks.append(_to_mb(max(values), match.group(1)))
    return max(peaks) if peaks else None


def speed_from_log(text: str) -> float | None:
    """The median steps/s of progress lines (tqdm's `it/s` or `s/it`, `steps/s`, per-iteration `time 25ms`)."""
    readings = [
        to_steps(float(match.group(1)))
        for pattern, to_steps in _LOG_SPEED
        for match in pattern.finditer(text)
        if float(match.group(1)) > 0
    ]
    return float(statistics.median(readings)) if readings else None


# -- readers ---------------------------------------------------------------------------


def _read_series(run_dir: Path, spec: MetricSpec, log_path: Path | None) -> tuple[dict[str, History], str, list[str]]:
    if spec.source == "regex":
        log = log_path if spec.path is None and log_path is not None else spec.file(run_dir)
        log = log if log is not None else run_dir / "stdout.log"
        return _read_regex(log, spec), str(log), []
    path = spec.file(run_dir)
    assert path is not None
    if spec.source == "tensorboard":
        return _read_tensorboard(path), str(path), []
    if spec.source == "wandb":
        return _read_wandb_log(path)
    if not path.exists():
        return {}, str(path), []
    problems: list[str] = []
    reader = _read_jsonl if spec.source == "jsonl" else _read_csv
    return reader(path, spec.step_key, problems), str(path), problems


def _read_wandb_log(where: Path) -> tuple[dict[str, History], str, list[str]]:
    """The newest W&B run log (`run-*.wandb`) under the run directory (the trainer's WANDB_DIR)."""
    from bisect_runs.wandb_log import find_log, read_log

    log = find_log(where)
    if log is None:
        return {}, str(where / "wandb"), []
    run = read_log(log)
    return run.series(), str(log), run.problems


def _read_jsonl(path: Path, step_key: str, problems: list[str]) -> dict[str, History]:
    """JSON lines; a torn last line and NaN/Infinity (also bare nan/inf) are tolerated."""
    series: dict[str, History] = {}
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        record = _parse_json_line(line)
        if record is None:
            if line.strip() and number < len(lines):
                problems.append(f"{path}:{number}: not a JSON object, skipped")
            continue
        _add_record(series, _flatten(record), step_key, number)
    return series


def _parse_json_line(line: str) -> dict[str, Any] | None:
    if not line.strip():
        return None
    for text in (line, _BARE_NONFINITE.sub(lambda m: m.group(1) + ("NaN" if m.group(2).lower() == "nan" else "Infinity"), line)):
        try:
            record = json.loads(text)
        except ValueError:
            continue
        return record if isinstance(record, dict) else None
    return None


def _read_csv(path: Path, step_key: str, problems: list[str]) -> dict[str, History]:
    """A CSV with a header row; empty cells (sparse loggers like Lightning's) are skipped."""
    series: dict[str, History] = {}
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        try:
            for number, row in enumerate(csv.DictReader(f), 2):
                _add_record(series, {k: v for k, v in row.items() if k is not None}, step_key, number)
        except csv.Error as exc:
            problems.append(f"{path}: {exc}")
    return series


def _add_record(series: dict[str, History], record: dict[str, Any], step_key: str, fallback: int) -> None:
    step = _step_of(record, step_key, fallback)
    for key, raw in record.items():
        if key in (step_key, *STEP_FALLBACKS):
            continue
        value = _number(raw)
        if value is not None:
            series.setdefault(key, []).append((step, value))


def _step_of(record: dict[str, Any], step_key: str, fallback: int) -> int:
    for key in (step_key, *STEP_FALLBACKS):
        value = _number(record.get(key))
        if value is not None and math.isfinite(value):
            return int(value)
    return fallback


def _read_regex(path: Path, spec: MetricSpec) -> dict[str, History]:
    """Every match of the pattern in a log (step from a `step` group or the line), plus all
    `name=value` pairs of the log as other series (speed, memory, losses)."""
    if not path.exists():
        return {}
    pattern = spec.regex()
    history: History = []
    series: dict[str, History] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        for match in pattern.finditer(line):
            value = _number(match.group("value") if "value" in pattern.groupindex else match.group(1))
            if value is not None:
                history.append((_regex_step(match, line, len(history) + 1), value))
        for pair in _PAIR.finditer(line):
            value = _number(pair.group(2))
            if value is not None:
                step = _STEP_IN_LINE.search(line)
                series.setdefault(pair.group(1), []).append((int(step.group(1)) if step else number, value))
    series.pop(spec.name, None)
    if history:
        series[spec.name] = history
    return series


def _regex_step(match: re.Match[str], line: str, fallback: int) -> int:
    if "step" in match.re.groupindex and match.group("step"):
        return int(float(match.group("step")))
    found = _STEP_IN_LINE.search(line)
    return int(found.group(1)) if found else fallback


def _read_tensorboard(root: Path) -> dict[str, History]:
    """Scalars (and one-element tensors) from every event file under `root`."""
    try:
        from tensorboard.backend.event_processing import event_accumulator as ea
        from tensorboard.util import tensor_util
    except ImportError:
        raise TrialError(
            "the tensorboard metric source needs the tensorboard package: pip install 'bisect-runs[tensorboard]'"
        ) from None
    series: dict[str, History] = {}
    dirs = sorted({p.parent for p in root.rglob("events.out.tfevents.*")}) if root.exists() else []
    for directory in dirs:
        acc = ea.EventAccumulator(str(directory), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
        acc.Reload()
        tags = acc.Tags()
        for tag in tags.get("scalars", []):
            series.setdefault(tag, []).extend((e.step, float(e.value)) for e in acc.Scalars(tag))
        for tag in tags.get("tensors", []):
            for event in acc.Tensors(tag):
                array = tensor_util.make_ndarray(event.tensor_proto)
                if array.size == 1 and array.dtype.kind in "fiu":
                    series.setdefault(tag, []).append((event.step, float(array.reshape(-1)[0])))
    return {tag: sorted(h, key=lambda sv: sv[0]) for tag, h in series.items()}


# -- small pieces ----------------------------------------------------------------------


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become `outer/inner` keys, as metric loggers name them."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        flat.update(_flatten(value, f"{prefix}{key}/") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip():
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _resolve(run_dir: Path, rel: str) -> Path:
    """A path relative to the run directory; a glob picks the most recently written match."""
    if any(ch in rel for ch in "*?["):
        matches = sorted(run_dir.glob(rel), key=lambda p: p.stat().st_mtime)
        return matches[-1] if matches else run_dir / rel
    return run_dir / rel


def _leaf(name: str) -> str:
    return name.rsplit("/", 1)[-1].lower()


def _is_speed(name: str) -> bool:
    lower = name.lower()
    leaf = _leaf(name)  # also prefixed names such as train_steps_per_s
    return leaf in SPEED_NAMES or any(lower == s or lower.endswith("/" + s) or leaf.endswith("_" + s) for s in SPEED_NAMES)


def _to_mb(value: float, unit: str | None) -> float:
    if unit is None:  # no unit: bytes when implausibly large for MB (torch.cuda.max_memory_allocated)
        return value / 2**20 if value > 1e5 else value
    return value * _UNIT_TO_MB[unit]


def _valid_reduce(how: str) -> bool:
    head, _, k = str(how).partition(":")
    return how in ("last", "min", "max") or (head == "mean_last" and k.isdigit() and int(k) > 0)
