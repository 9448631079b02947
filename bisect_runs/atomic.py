"""Writing files whole or not at all, and JSON that is strict (no NaN or Infinity tokens).

Every file bisect-runs writes for others to read (summary, report, outcome, launch, job
ends, trial configs) goes through `write_atomic`: a temp file in the same directory,
flushed and fsynced, then renamed over the target, so a reader or a crash never leaves
half a file. The one NaN policy: `write_json` writes NaN and infinities as null.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomic(path: Path, content: str | bytes) -> Path:
    """Write a file whole or not at all (temp file in the same directory, fsync, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def finite(value: Any) -> Any:
    """Strict JSON: NaN and infinities become None (null), inside dicts, lists and tuples too."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_json(path: Path, data: Any, default: Callable[[Any], Any] = str) -> Path:
    """Write `data` as indented strict JSON (NaN and infinities as null), atomically."""
    return write_atomic(path, json.dumps(finite(data), indent=2, allow_nan=False, default=default) + "\n")


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object this module wrote, read back; {} when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
