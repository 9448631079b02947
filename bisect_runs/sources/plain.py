"""Turning values read from Python objects (pickles, checkpoints, ast) into plain config data."""

from __future__ import annotations

import argparse
import types
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from bisect_runs.sources.loaded import SourceProblem

_MAX_DEPTH = 100
MAX_NODES = 1_000_000  # as for YAML aliases: far above any config, far below a self-sharing list's expansion


def to_plain(value: Any, depth: int = 0) -> Any:
    """Mappings, lists and scalars only: tuples become lists, namespaces dicts, 0-d tensors numbers."""
    return _Converter().plain(value, depth)


class _Converter:
    """One conversion, counting the values it builds: `a = [a, a]` shared 40 deep is 2**40 of them."""

    def __init__(self) -> None:
        self.nodes = 0

    def plain(self, value: Any, depth: int) -> Any:
        """The plain form of one value (see `to_plain`)."""
        if depth > _MAX_DEPTH:
            raise SourceProblem("value nested too deeply (recursive structure?)")
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise SourceProblem(
                f"value expands to more than {MAX_NODES:,} entries (a structure sharing itself?); refused"
            )
        if value is None or isinstance(value, (bool, int, str, float)):
            return value
        if isinstance(value, (argparse.Namespace, types.SimpleNamespace)):
            value = vars(value)
        if isinstance(value, Mapping):
            return {_plain_key(k): self.plain(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.plain(v, depth + 1) for v in value]
        if isinstance(value, (set, frozenset)):
            return sorted((self.plain(v, depth + 1) for v in value), key=repr)
        if isinstance(value, PurePath):
            return str(value)
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        tolist = getattr(value, "tolist", None)  # tensors and numpy values, else their text
        return self.plain(tolist(), depth + 1) if callable(tolist) else str(value)


def _plain_key(key: Any) -> Any:
    """Mapping keys stay str/int/bool/float; anything else becomes its text."""
    return key if isinstance(key, (str, int, float, bool)) or key is None else str(key)
