"""What the searches take from the settings: required flags, configs, runner and executor options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bisect_runs.diff import DiffResult, Factor
from bisect_runs.errors import SettingsError
from bisect_runs.metrics import MetricSpec
from bisect_runs.overrides import check_key, parse_style
from bisect_runs.project import Settings
from bisect_runs.trials import uses_placeholder

SEARCH_NEEDS = ("good", "bad", "command", "metric", "steps")


def require(s: Settings, names: tuple[str, ...] = SEARCH_NEEDS, task: str = "search") -> None:
    """Raise a SettingsError naming every setting in `names` that is missing."""
    missing = [name for name in names if getattr(s, name) in (None, "")]
    if missing:
        flags = ", ".join("--" + m.replace("_", "-") for m in missing)
        raise SettingsError(f"{task} needs {flags} (as flags or in bisect.yaml)")


def config_spec(s: Settings, value: str | None) -> str:
    """A config setting that `require` has checked, as load_config takes it."""
    spec = s.config_spec(value)
    assert spec is not None
    return spec


def check_override_keys(command: tuple[str, ...], diff: DiffResult, factors: list[Factor], s: Settings) -> None:
    """Before any trial: every key the template writes as an override word must be safe in its style."""
    style = parse_style(s.override_style)
    keys: list[str] = []
    if uses_placeholder(command, "overrides"):
        keys = [k for f in factors for k in f.keys] + _set_keys(s)
    if uses_placeholder(command, "args"):
        keys += [*diff.flat_b.values, *diff.flat_a.values] + _set_keys(s)
    for key in dict.fromkeys(keys):
        check_key(key, style)


def _set_keys(s: Settings) -> list[str]:
    """The config keys every trial sets: budget, seed, run directory, checkpoint."""
    return [k for k in (s.steps_key, s.seed_key, s.run_dir_key, s.checkpoint_key) if k]


def runner_options(s: Settings) -> dict[str, Any]:
    """What a TrialRunner takes from the settings: budget, metric, limits, config keys, GPUs."""
    return {
        "steps": s.steps,
        "metric": metric_spec(s),
        "timeout_s": s.timeout,
        "retries": s.retries,
        "steps_key": s.steps_key,
        "seed_key": s.seed_key,
        "run_dir_key": s.run_dir_key,
        "checkpoint_key": s.checkpoint_key,
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
