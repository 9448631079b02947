"""Writing report files: atomically (temp file + rename), so a reader never sees half a page."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str) -> Path:
    """Write text through a temp file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write JSON (no NaN tokens: they are not JSON) atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False, default=str) + "\n")
