"""Trainer scripts the tests run as real subprocesses, and helpers to point a runner at them."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

FAKE_TRAINER = Path(__file__).with_name("fake_trainer.py")


def fake_command(*extra: str) -> tuple[str, ...]:
    """The fake trainer's command template with every placeholder of the trainer contract."""
    return (
        sys.executable, str(FAKE_TRAINER), "--config", "{config}", "--run-dir", "{run_dir}",
        "--steps", "{steps}", "--seed", "{seed}", *extra,
    )  # fmt: skip


def yaml_writer(base: Mapping[str, Any]) -> Callable[[Any, Path], Path]:
    """A `write_config` that writes `base` with the trial's flat dotted changes as config.yaml."""

    def write(trial: Any, dest: Path) -> Path:
        data: dict[str, Any] = _deep_copy(base)
        for key, value in trial.changes:
            node = data
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            if type(value).__name__ == "_Absent":  # bisect_runs.variants.ABSENT: remove the key
                node.pop(leaf, None)
            else:
                node[leaf] = value
        path = dest / "config.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}
