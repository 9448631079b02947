"""Turning values read from Python objects (pickles, checkpoints, ast) into plain config data."""

from __future__ import annotations

import argparse
import types
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from bisect_runs.sources.loaded import SourceProblem

_MAX_DEPTH = 100


def to_plain(value: Any, depth: int = 0) -> Any:
    """Mappings, lists and scalars only: tuples become lists, namespaces dicts, 0-d tensors numbers."""
    if depth > _MAX_DEPTH:
        raise SourceProblem("value nested too deeply (recursive structure?)")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, (argparse.Namespace, types.SimpleNamespace)):
        value = vars(value)
    if isinstance(value, Mapping):
        return {_plain_key(k): to_plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((to_plain(v, depth + 1) for v in value), key=repr)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return _array_like(value, depth)


def _plain_key(key: Any) -> Any:
    """Mapping keys stay str/int/bool/float; anything else becomes its text."""
    return key if isinstance(key, (str, int, float, bool)) or key is None else str(key)


def _array_like(value: Any, depth: int) -> Any:
    """Tensors and numpy values (via `tolist`) or, failing that, their text."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return to_plain(tolist(), depth + 1)
    return str(value)
