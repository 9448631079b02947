"""What `compare` shows around the metrics: the runs' ranked config differences and where they ran.

A run's config comes from what its tracker or trainer recorded (MLflow params, W&B
`config.yaml` or `run-*.wandb`, Hydra `.hydra/`, Lightning `hparams.yaml`, a config file beside
`metrics.jsonl`); its environment from W&B's `wandb-metadata.json` or run log, or MLflow's tags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisect_runs.errors import ConfigError, RunError
from bisect_runs.mlflow_runs import run_ref
from bisect_runs.sources import LoadedConfig, load_config
from bisect_runs.wandb_log import find_log, read_log

GENERIC_NAMES = frozenset({"run", "files", "latest-run", "metrics", "logs"})
BESIDE = ("hparams.yaml", "config.yaml", "config.yml", "config.json", "config.toml", "config/config.yaml")
METADATA = {"git.commit": "git commit", "git.remote": "git remote", "host": "host", "python": "python",
            "os": "os", "gpu": "GPU", "gpu_count": "GPU count", "cuda": "CUDA", "program": "program"}  # fmt: skip


@dataclass
class RunContext:
    """Config differences and environment differences of two runs (empty when nothing was recorded)."""

    differences: list[dict[str, Any]] = field(default_factory=list)
    config_found: tuple[bool, bool] = (False, False)
    environment: list[tuple[str, str, str]] = field(default_factory=list)  # (what, A, B) where they differ


def run_title(spec: str, tracker_name: str = "") -> str:
    """How headings name a run: the tracker's name, else its directory (with the parent for `run`)."""
    if tracker_name:
        return tracker_name
    path = Path(spec)
    return f"{path.parent.name}/{path.name}" if path.name in GENERIC_NAMES and path.parent.name else path.name or spec


def run_context(spec_a: str, spec_b: str) -> RunContext:
    """Ranked config differences (as `diff` ranks them) and differing environment entries."""
    from bisect_runs.diff import DiffOptions, diff_configs

    a, b = find_config(spec_a), find_config(spec_b)
    context = RunContext(config_found=(a is not None, b is not None))
    if a is not None and b is not None:
        context.differences = [d.to_json() for d in diff_configs(a, b, DiffOptions()).differences]
    env_a, env_b = environment(spec_a), environment(spec_b)
    for what in sorted(set(env_a) | set(env_b)):
        va, vb = env_a.get(what, "—"), env_b.get(what, "—")
        if va != vb:
            context.environment.append((what, va, vb))
    return context


def find_config(spec: str) -> LoadedConfig | None:
    """The config a run recorded, or None when it recorded none that can be read."""
    candidates: list[str | Path] = [spec]
    if run_ref(spec) is None:
        path = Path(spec)
        candidates = [path, *(path / name for name in BESIDE), *(path.parent / name for name in BESIDE)]
    for candidate in candidates:
        if isinstance(candidate, Path) and not candidate.exists():
            continue
        try:
            loaded = load_config(candidate)
        except ConfigError:
            continue
        if loaded.data:
            return loaded
    return None


def environment(spec: str) -> dict[str, str]:
    """Git commit, host, GPU, Python ... as the run's tracker recorded them."""
    run_id = run_ref(spec)
    if run_id is not None:
        from bisect_runs.mlflow_runs import read_run

        try:
            return read_run(run_id, with_metrics=False).environment()
        except RunError:
            return {}
    path = Path(spec)
    for meta in (path / "files" / "wandb-metadata.json", path / "wandb-metadata.json"):
        if meta.is_file():
            return _metadata(meta)
    log = find_log(path) if path.is_dir() else None
    if log is not None:
        try:
            return read_log(log).environment
        except RunError:
            return {}
    return {}


def _metadata(file: Path) -> dict[str, str]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    flat = {f"git.{k}": v for k, v in (data.get("git") or {}).items()} | data
    return {label: str(flat[key]) for key, label in METADATA.items() if flat.get(key) not in (None, "")}
