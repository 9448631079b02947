"""The trainer side of the bisect-runs contract: arguments, config reading, metrics.jsonl.

Flags win over the BISECT_RUNS_* environment variables; the config is an extension-less
YAML file or a directory of YAML files (each file's keys under its stem).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bisect_runs.errors import BisectError, ConfigError

SCALES = ("tiny", "small", "full")


@dataclass(frozen=True)
class RunArgs:
    """Where a trainer reads its config, writes its run and for how long it trains."""

    config: Path
    run_dir: Path
    steps: int | None  # None: the config's own step count
    seed: int | None  # None: the config's own seed
    scale: str
    eval_every: int | None
    data_seed: int
    device: str | None


def parse_args(argv: Sequence[str] | None, prog: str, description: str) -> RunArgs:
    """Read the contract's flags, falling back to BISECT_RUNS_CONFIG/RUN_DIR/STEPS/SEED."""
    env = os.environ
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", default=env.get("BISECT_RUNS_CONFIG"), help="YAML file or directory of YAML files")
    p.add_argument("--run-dir", default=env.get("BISECT_RUNS_RUN_DIR"), help="where metrics.jsonl is written")
    p.add_argument("--steps", type=int, default=_env_int("BISECT_RUNS_STEPS"), help="training steps (overrides the config)")
    p.add_argument("--seed", type=int, default=_env_int("BISECT_RUNS_SEED"), help="seed (overrides the config)")
    p.add_argument("--scale", choices=SCALES, default="full", help="shrink the model and data for CPU runs")
    p.add_argument("--eval-every", type=int, default=None, help="evaluate every N steps")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic data set (fixed across trials)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    ns = p.parse_args(argv)
    if not ns.config or not ns.run_dir:
        p.error("--config and --run-dir (or BISECT_RUNS_CONFIG and BISECT_RUNS_RUN_DIR) are required")
    if ns.steps is not None and ns.steps <= 0:
        p.error(f"--steps must be positive (got {ns.steps})")
    if ns.eval_every is not None and ns.eval_every <= 0:
        p.error(f"--eval-every must be positive (got {ns.eval_every})")
    return RunArgs(Path(ns.config), Path(ns.run_dir), ns.steps, ns.seed, ns.scale, ns.eval_every, ns.data_seed, ns.device)


def _env_int(name: str) -> int | None:
    """An integer environment variable, or None when unset or empty."""
    value = os.environ.get(name, "").strip()
    return int(value) if value else None


def read_config(path: Path) -> dict[str, Any]:
    """A YAML file's mapping, or a directory's YAML files as {stem: mapping}."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            raise ConfigError(f"{path}: directory holds no .yaml files")
        return {f.stem: _read_yaml(f) for f in files}
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file or directory")
    return _read_yaml(path)


def _read_yaml(path: Path) -> dict[str, Any]:
    """One YAML mapping (an empty file is an empty mapping)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


class Options:
    """Typed access to a flat config with defaults; errors name the file and the key."""

    def __init__(self, data: Mapping[str, Any], source: Path) -> None:
        self.data = data
        self.source = source

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def optional_number(self, key: str, default: float | None) -> float | None:
        """A number; YAML reads `1e-5` as a string, so strings holding numbers are accepted."""
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool):
            raise self._error(key, value, "a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise self._error(key, value, "a number") from None

    def number(self, key: str, default: float) -> float:
        """A number that must be present or defaulted."""
        value = self.optional_number(key, default)
        return default if value is None else value

    def integer(self, key: str, default: int) -> int:
        """An integer (2.0 is accepted as 2)."""
        value = self.number(key, default)
        if value != int(value):
            raise self._error(key, value, "an integer")
        return int(value)

    def flag(self, key: str, default: bool) -> bool:
        """A boolean (true/false, yes/no, 1/0)."""
        value = self.data.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.strip().lower() in ("true", "yes", "on", "1")
        raise self._error(key, value, "true or false")

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        """One of a fixed set of names (case-insensitive)."""
        value = self.data.get(key, default)
        value = default if value is None else str(value).strip().lower()
        if value not in choices:
            raise self._error(key, value, "one of " + ", ".join(choices))
        return value

    def _error(self, key: str, value: Any, expected: str) -> ConfigError:
        return ConfigError(f"{self.source}: key {key!r} is {value!r}, expected {expected}")


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys: {"model": {"a": 1}} -> {"model.a": 1}."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


class MetricsLog:
    """Appends one JSON object per line to metrics.jsonl, flushed and fsynced line by line."""

    FILE = "metrics.jsonl"

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / self.FILE
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        """Write one record; NaN and inf are kept (written as NaN/Infinity), never hidden."""
        self._handle.write(json.dumps(dict(record)) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def finite(value: float) -> bool:
    """True for a real number (not NaN, not +-inf)."""
    return math.isfinite(value)


def cpu_threads() -> int:
    """Torch CPU threads: BISECT_RUNS_DEMO_THREADS, else 1 (trials run side by side)."""
    value = os.environ.get("BISECT_RUNS_DEMO_THREADS", "").strip()
    return max(1, int(value)) if value else 1


def choose_device(requested: str | None) -> Any:
    """The requested torch device, else CUDA when available, else CPU."""
    import torch  # the contract module itself needs no torch

    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def start_run(args: RunArgs, config_seed: int) -> tuple[int, Any]:
    """The run's seed (the flag over the config's) and device; seeds torch and sets its CPU threads."""
    import torch

    seed = config_seed if args.seed is None else args.seed
    device = choose_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads())
    torch.manual_seed(seed)
    return seed, device


def peak_gpu_mem_mb(device: Any) -> float | None:
    """Peak memory allocated on a CUDA device in MiB; None on the CPU."""
    import torch

    if device.type != "cuda":
        return None
    return float(torch.cuda.max_memory_allocated(device)) / 2**20


def main(argv: Sequence[str] | None, prog: str, description: str, train: Callable[[RunArgs], int]) -> int:
    """A demo trainer's entry point: parse the contract's flags, train, report errors in one line."""
    args = parse_args(argv, prog, description)
    try:
        return train(args)
    except BisectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
