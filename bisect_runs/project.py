"""Search settings: the project file `bisect.yaml` merged with command-line flags.

Paths in bisect.yaml are relative to the file's directory. Every invalid key or value is
reported in one `SettingsError` that lists the valid names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bisect_runs.errors import SettingsError

PROJECT_FILE = "bisect.yaml"
STRATEGIES = ("auto", "screen", "oat", "ddmin", "bayes")
EXECUTORS = ("local", "slurm", "ray")
MODES = ("min", "max")
METRIC_SOURCES = ("jsonl", "regex", "csv", "tensorboard")


@dataclass
class Settings:
    """Everything a search needs to know, after merging bisect.yaml and flags."""

    good: str | None = None
    bad: str | None = None
    format_good: str | None = None
    format_bad: str | None = None
    command: str | None = None
    metric: str | None = None
    mode: str = "min"
    metric_source: str = "jsonl"
    metric_pattern: str | None = None  # regex source: one group capturing the value
    metric_file: str | None = None  # csv source: path relative to the run directory
    reduce: str = "last"  # last | min | max | mean_last:K
    steps: int | None = None
    steps_key: str | None = None
    seed_key: str | None = None
    seeds: int | None = None  # seeds per arm for oat/ddmin and the first calibration round
    seed_base: int = 0
    parallel: int | str = "auto"
    gpus_per_trial: int = 0
    strategy: str = "auto"
    executor: str = "local"
    timeout: float | None = None
    out: str = "bisect-out"
    resume: bool = False
    retries: int = 1
    min_effect: float = 0.0
    max_runs: int | None = None
    max_hours: float | None = None
    failure_value: float | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    ignore: list[str] = field(default_factory=list)
    defaults: dict[str, Any] = field(default_factory=dict)
    defaults_file: str | None = None
    rules: str | None = None
    groups: dict[str, list[str]] = field(default_factory=dict)
    include_all: bool = False  # also search over differences ranked "none" (runtime keys)
    slurm: dict[str, Any] = field(default_factory=dict)
    ray: dict[str, Any] = field(default_factory=dict)
    good_rev: str | None = None
    bad_rev: str | None = None
    repo: str | None = None
    config: str | None = None  # config used at every commit when bisecting code
    base_dir: str = "."  # directory relative paths are resolved against

    def path(self, value: str | None) -> Path | None:
        """Resolve a path setting against the project file's directory."""
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_FILE_ONLY_ALIASES = {"format-good": "format_good", "format-bad": "format_bad"}


def load_project(path: str | Path | None = None) -> dict[str, Any]:
    """Read bisect.yaml (or return {} when there is none and none was asked for)."""
    explicit = path is not None
    p = Path(path) if path is not None else Path(PROJECT_FILE)
    if not p.exists():
        if explicit:
            raise SettingsError(f"{p}: no such project file")
        return {}
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f": line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SettingsError(f"{p}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{p}: expected a mapping of settings at the top level")
    data = {_FILE_ONLY_ALIASES.get(k, str(k).replace("-", "_")): v for k, v in data.items()}
    data.setdefault("base_dir", str(p.parent.resolve()))
    data["_file"] = str(p)
    return data


def make_settings(project: dict[str, Any], flags: dict[str, Any]) -> Settings:
    """Merge project-file values with flags (flags win; None flags are ignored) and validate."""
    source = project.get("_file", PROJECT_FILE)
    merged = {k: v for k, v in project.items() if k != "_file"}
    unknown = sorted(k for k in merged if k not in _FIELDS)
    if unknown:
        valid = ", ".join(sorted(k for k in _FIELDS if k != "base_dir"))
        raise SettingsError(f"{source}: unknown setting(s) {', '.join(unknown)}; valid: {valid}")
    given = {k: v for k, v in flags.items() if v is not None and v != () and v != []}
    merged.update(given)
    merged["aliases"] = _aliases(merged.get("aliases", {}), source)
    if isinstance(merged.get("defaults"), str):  # `defaults: FILE` names a defaults file
        merged["defaults_file"] = merged.pop("defaults")
    settings = Settings(**merged)
    _validate(settings, source, frozenset(given))
    return settings


def _aliases(value: Any, source: str) -> dict[str, str]:
    """Accept a mapping OLD: NEW or a list of 'OLD=NEW' strings."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for item in value or []:
        old, sep, new = str(item).partition("=")
        if not sep or not old or not new:
            raise SettingsError(f"{source}: alias {item!r} is not of the form OLD=NEW")
        out[old.strip()] = new.strip()
    return out


def _validate(s: Settings, source: str, flagged: frozenset[str] = frozenset()) -> None:
    """Every problem at once, each named as the user wrote it: `--steps` for a flag, else the file's key."""
    problems: list[tuple[str, str]] = []

    def choice(name: str, valid: tuple[str, ...]) -> None:
        if getattr(s, name) not in valid:
            problems.append((name, f"must be one of {', '.join(valid)} (got {getattr(s, name)!r})"))

    choice("mode", MODES)
    choice("strategy", STRATEGIES)
    choice("executor", EXECUTORS)
    choice("metric_source", METRIC_SOURCES)
    for name, least in (("steps", 1), ("seeds", 1), ("max_runs", 1), ("retries", 0), ("gpus_per_trial", 0)):
        v = getattr(s, name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < least):
            what = "a positive" if least else "a non-negative"
            problems.append((name, f"must be {what} integer (got {v!r})"))
    for name in ("timeout", "max_hours", "min_effect"):
        v = getattr(s, name)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
            problems.append((name, f"must be a non-negative number (got {v!r})"))
    if s.parallel != "auto" and (not isinstance(s.parallel, int) or s.parallel < 1):
        problems.append(("parallel", f"must be a positive integer or 'auto' (got {s.parallel!r})"))
    if not (s.reduce in ("last", "min", "max") or _is_mean_last(s.reduce)):
        problems.append(("reduce", f"must be last, min, max or mean_last:K (got {s.reduce!r})"))
    for name in ("groups", "slurm", "ray", "defaults"):
        if not isinstance(getattr(s, name), dict):
            problems.append((name, "must be a mapping"))
    if isinstance(s.groups, dict):
        for gname, keys in s.groups.items():
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                problems.append((f"groups.{gname}", "must be a list of keys"))
    if not isinstance(s.ignore, list):
        problems.append(("ignore", "must be a list of key patterns"))
    if problems:
        texts = [
            f"--{name.replace('_', '-')} {text}" if name in flagged else f"{source}: {name} {text}"
            for name, text in problems
        ]
        raise SettingsError("; ".join(texts))


def _is_mean_last(value: str) -> bool:
    head, _, k = str(value).partition(":")
    return head == "mean_last" and k.isdigit() and int(k) > 0


def parse_parallel(value: str | int | None) -> int | str | None:
    """Parse the --parallel flag: a positive integer or 'auto'."""
    if value is None or value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"--parallel must be a positive integer or 'auto' (got {value!r})") from None
