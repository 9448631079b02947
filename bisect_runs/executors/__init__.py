"""Executors by name: `get_executor("local", parallel=2)`; cluster executors load only when asked for."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from bisect_runs.errors import SettingsError
from bisect_runs.executors.base import Executor, Launch, ProcessEnd

# name -> "module:class", imported on demand so submitit and Ray stay optional.
EXECUTORS = {
    "local": "bisect_runs.executors.local:LocalExecutor",
    "slurm": "bisect_runs.executors.slurm:SlurmExecutor",
    "ray": "bisect_runs.executors.ray:RayExecutor",
}

__all__ = ["EXECUTORS", "Executor", "Launch", "ProcessEnd", "executor_class", "get_executor"]


def executor_class(name: str) -> type[Executor]:
    """The executor class registered under `name`."""
    if name not in EXECUTORS:
        raise SettingsError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")
    module_name, _, class_name = EXECUTORS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name or str(exc)
        raise SettingsError(
            f"the {name} executor needs {missing!r}: pip install 'bisect-runs[{name}]'"
        ) from None
    cls: type[Executor] = getattr(module, class_name)
    return cls


def get_executor(name: str, **options: Any) -> Executor:
    """An executor by name; every unknown option is reported at once with the valid ones."""
    cls = executor_class(name)
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    valid = [
        p for p in params if p != "self" and params[p].kind is not inspect.Parameter.VAR_KEYWORD
    ]
    unknown = sorted(k for k in options if k not in valid)
    if unknown and not takes_any:
        raise SettingsError(
            f"{name} executor: unknown option(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
        )
    return cls(**options)
