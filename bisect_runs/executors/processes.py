"""Process groups as Linux /proc shows them: members, their environments, whether they live."""

from __future__ import annotations

from pathlib import Path


def group_members(pgid: int) -> list[int]:
    """Pids whose process group is `pgid` (Linux /proc; elsewhere none are found)."""
    members: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return members
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[-1].split()
            if len(fields) > 2 and fields[2] == str(pgid):
                members.append(int(entry.name))
    return members


def environ_of(pid: int) -> bytes:
    """The environment a process started with, as /proc shows it (empty when it cannot be read)."""
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
