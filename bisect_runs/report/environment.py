"""Where a search ran: the trainer repository's commit and dirty state, Python, torch, GPUs, host.

Collected once and kept in `OUT_DIR/environment.json`, so a report regenerated later still
describes the machine and code the trials ran on. torch is never imported: its version
comes from the installed package's metadata.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import platform
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from bisect_runs.atomic import write_json

ENVIRONMENT_FILE = "environment.json"
NVIDIA_SMI_TIMEOUT_S = 10


def collect_environment(repo_dir: str | Path = ".") -> dict[str, Any]:
    """A JSON-ready description of this machine and the git repository around `repo_dir`."""
    return {
        "date": dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "torch": package_version("torch"),
        "bisect_runs": package_version("bisect-runs"),
        "gpus": gpu_names(),
        "git": git_state(Path(repo_dir)),
        "cwd": str(Path.cwd()),  # where the search ran: trainers start here unless the executor says otherwise
    }


def load_or_collect(out_dir: Path, repo_dir: str | Path = ".", save: bool = True) -> dict[str, Any]:
    """The environment saved with the search, else collected now and saved beside the journal.

    With save=False (a search that has not finished) it is collected for this page only and
    marked so: the search, when it ends, records its own.
    """
    path = out_dir / ENVIRONMENT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    except (OSError, ValueError):
        pass  # absent or unreadable: collect afresh
    env = collect_environment(repo_dir)
    if not save:
        return {**env, "collected_by": "report"}
    write_json(path, env)
    return env


def package_version(name: str) -> str | None:
    """An installed distribution's version without importing it."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def gpu_names() -> list[str]:
    """`name, memory, driver` per GPU from nvidia-smi; empty when there is none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    query = [exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def git_state(path: Path) -> dict[str, Any] | None:
    """Commit, branch, dirty flag and changed files of the repository containing `path`, if any."""
    try:
        import git
    except ImportError:
        return None
    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None
    with repo:
        try:
            commit = repo.head.commit
        except ValueError:  # a repository without commits
            return {"root": str(repo.working_tree_dir), "commit": None, "dirty": repo.is_dirty(untracked_files=True)}
        diffs = [*repo.index.diff(None), *repo.index.diff("HEAD")]
        changed = sorted({str(d.a_path or d.b_path) for d in diffs})
        return {
            "root": str(repo.working_tree_dir),
            "commit": commit.hexsha,
            "subject": commit.summary if isinstance(commit.summary, str) else commit.summary.decode(),
            "branch": None if repo.head.is_detached else repo.active_branch.name,
            "dirty": bool(changed) or bool(repo.untracked_files),
            "changed_files": changed[:20],
            "untracked_files": len(repo.untracked_files),
        }


def commit_info(sha: str, repo_dir: str | Path = ".") -> dict[str, Any] | None:
    """Subject, author, date and files of a commit (for `commit:<sha>` culprits); None if not found."""
    try:
        import git
        from gitdb.exc import BadName, BadObject
    except ImportError:
        return None
    try:
        with git.Repo(repo_dir, search_parent_directories=True) as repo:
            commit = repo.commit(sha)
            return {
                "sha": commit.hexsha,
                "subject": str(commit.summary),
                "author": str(commit.author.name),
                "date": commit.committed_datetime.isoformat(timespec="seconds"),
                "files": sorted(str(f) for f in commit.stats.files)[:20],
            }
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, BadName, BadObject, ValueError):
        return None  # not a repository or an unknown sha: the report shows the sha alone
