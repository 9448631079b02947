"""Shared prefix: every trial resumes from one checkpoint instead of training the common steps again.

When A and B only differ after some step, a lab trains that prefix once and starts each trial
from its checkpoint (`checkpoint`, taken at `checkpoint_step`). The trainer gets the path as
`{checkpoint}` in its command, in its config under `checkpoint_key`, and as
`BISECT_RUNS_CHECKPOINT`; a trial then costs `steps - checkpoint_step` steps. The checkpoint's
fingerprint (a content hash, or size and mtime for large ones) is part of every trial's id, so a
changed checkpoint is never mistaken for a finished trial on `--resume`. See docs/search.md.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bisect_runs.errors import SettingsError

if TYPE_CHECKING:
    from bisect_runs.project import Settings

HASH_LIMIT = 100 * 2**20  # checkpoints up to 100 MB are hashed; larger ones are known by size and mtime
PLACEHOLDER = "{checkpoint}"


@dataclass(frozen=True)
class Checkpoint:
    """The checkpoint every trial resumes from: its absolute path, its step, its fingerprint."""

    path: str
    step: int
    fingerprint: str  # "sha256:<hex>" of the content, or "size:<bytes>,mtime:<ns>" above HASH_LIMIT

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "step": self.step, "fingerprint": self.fingerprint}

    @classmethod
    def from_json(cls, data: Any) -> Checkpoint | None:
        """A checkpoint read back from a journal's trial line (None when the trial had none)."""
        if not isinstance(data, dict) or "path" not in data:
            return None
        return cls(str(data["path"]), int(data.get("step", 0)), str(data.get("fingerprint", "")))


def shared_prefix(s: Settings, command: Sequence[str]) -> Checkpoint | None:
    """The search's checkpoint from its settings, checked before OUT_DIR exists (None without one)."""
    uses = any(PLACEHOLDER in word for word in command)
    if s.checkpoint in (None, ""):
        for name, given in (("checkpoint_step", s.checkpoint_step is not None), ("checkpoint_key", bool(s.checkpoint_key))):
            if given:
                raise SettingsError(f"{name} is set but no checkpoint is: pass --checkpoint PATH (or `checkpoint` in bisect.yaml)")
        if uses:
            raise SettingsError(
                "the command template uses {checkpoint} but no checkpoint is set: "
                "pass --checkpoint PATH and --checkpoint-step N (or `checkpoint` in bisect.yaml)"
            )
        return None
    path = s.path(s.checkpoint)
    assert path is not None
    if not path.exists():
        raise SettingsError(f"checkpoint {path}: no such file or directory")
    if s.checkpoint_step is None:
        raise SettingsError(f"checkpoint {path}: set --checkpoint-step N, the step it was taken at (or `checkpoint_step` in bisect.yaml)")
    if s.steps is not None and s.checkpoint_step >= s.steps:
        raise SettingsError(f"checkpoint_step {s.checkpoint_step} must be below the step budget (steps: {s.steps})")
    if not uses and not s.checkpoint_key:
        raise SettingsError(
            f"checkpoint {path} is set but the trials would not get it: "
            "put {checkpoint} in the command template or set checkpoint_key (the config key that takes its path)"
        )
    return Checkpoint(str(path.absolute()), s.checkpoint_step, fingerprint(path))


def fingerprint(path: Path) -> str:
    """A content hash of a file or directory up to HASH_LIMIT bytes; size and newest mtime above it."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stats = [f.stat() for f in files]
    size = sum(st.st_size for st in stats)
    if size > HASH_LIMIT:
        return f"size:{size},mtime:{max((st.st_mtime_ns for st in stats), default=0)}"
    digest = hashlib.sha256()
    for f in files:
        if path.is_dir():  # a directory's layout is part of its content
            digest.update(os.fsencode(f.relative_to(path).as_posix()) + b"\0")
        with f.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()
