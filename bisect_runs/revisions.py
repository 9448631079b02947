"""The git side of code bisection: commit ranges, commit facts, and throwaway worktrees.

Candidate commits are checked out with `git worktree add --detach` into a cache
directory under OUT_DIR, so the user's working tree, index and HEAD are never touched.
Nothing here runs `git status` (it rewrites the index's stat cache) or `git checkout`.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bisect_runs.errors import SettingsError

WORKTREE_DIR = "worktrees"


@dataclass(frozen=True)
class Commit:
    """What a report says about a commit: who, when, what it touched."""

    sha: str
    subject: str
    author: str
    date: str  # ISO 8601 author date
    files: tuple[str, ...] = field(default=())

    @property
    def short(self) -> str:
        return self.sha[:10]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["files"] = list(self.files)
        data["short"] = self.short
        return data


def open_repo(path: str | Path | None = None) -> Any:
    """The git repository holding `path` (default: the current directory)."""
    import git

    where = Path(path or os.getcwd()).expanduser()
    try:
        repo = git.Repo(where, search_parent_directories=True)
    except git.NoSuchPathError:
        raise SettingsError(f"repo: {where} does not exist") from None
    except git.InvalidGitRepositoryError:
        raise SettingsError(f"repo: {where} is not inside a git repository (use --repo DIR)") from None
    if repo.bare:
        raise SettingsError(f"repo: {where} is a bare repository; give a checkout (use --repo DIR)")
    return repo


def resolve(repo: Any, rev: str) -> str:
    """The full sha of a revision (branch, tag, `HEAD~3`, short sha, reflog `@{1}`)."""
    from bisect_runs.sources.git import commit_sha

    sha = commit_sha(repo, rev)
    if sha is None:
        raise SettingsError(f"unknown git revision '{rev}' in {repo.working_tree_dir}")
    return sha


def first_parent_range(repo: Any, good: str, bad: str) -> list[str]:
    """Shas after `good` up to and including `bad` along bad's first parents, oldest first."""
    good_sha, bad_sha = resolve(repo, good), resolve(repo, bad)
    if good_sha == bad_sha:
        raise SettingsError(f"good_rev '{good}' and bad_rev '{bad}' are the same commit ({good_sha[:10]})")
    if not repo.is_ancestor(good_sha, bad_sha):
        raise SettingsError(
            f"good_rev '{good}' ({good_sha[:10]}) is not an ancestor of bad_rev '{bad}' ({bad_sha[:10]}); "
            "bisection needs the good commit in the bad commit's history"
        )
    out = repo.git.rev_list("--first-parent", "--reverse", f"{good_sha}..{bad_sha}")
    return [line for line in out.splitlines() if line]


def commit_info(repo: Any, sha: str) -> Commit:
    """Subject, author, date and files changed (against the first parent) of one commit."""
    commit = repo.commit(sha)
    if commit.parents:
        names = repo.git.diff("--name-only", "--no-renames", commit.parents[0].hexsha, commit.hexsha)
    else:
        names = repo.git.ls_tree("-r", "--name-only", commit.hexsha)
    author = f"{commit.author.name} <{commit.author.email}>" if commit.author.email else str(commit.author.name)
    return Commit(
        sha=commit.hexsha,
        subject=str(commit.summary),
        author=author,
        date=commit.authored_datetime.isoformat(),
        files=tuple(n for n in names.splitlines() if n),
    )


def head_sha(path: str | Path | None = None) -> str:
    """The commit checked out in `path` (what `git bisect` put there)."""
    repo = open_repo(path)
    try:
        return str(repo.head.commit.hexsha)
    except ValueError:
        raise SettingsError(f"repo: {repo.working_tree_dir} has no commits yet") from None


class Worktrees:
    """Detached worktrees of one repository, one per commit, under `cache_dir`; removed on close."""

    def __init__(self, repo: Any, cache_dir: Path, keep: bool = False) -> None:
        self.repo = repo
        self.cache_dir = Path(cache_dir)
        self.keep = keep
        self._paths: dict[str, Path] = {}
        self._lock = threading.Lock()  # `git worktree add` takes repository-wide locks

    def path(self, sha: str) -> Path:
        """Where the worktree of `sha` lives (whether or not it exists yet)."""
        return (self.cache_dir / sha[:16]).resolve()

    def checkout(self, sha: str) -> Path:
        """A worktree at `sha`, created on first use and reused afterwards (also across --resume)."""
        with self._lock:
            if sha in self._paths:
                return self._paths[sha]
            path = self.path(sha)
            if not self._valid(path, sha):
                self._discard(path)
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                self._add(path, sha)
            self._paths[sha] = path
            return path

    def __iter__(self) -> Iterator[tuple[str, Path]]:
        return iter(list(self._paths.items()))

    def close(self) -> None:
        """Remove the worktrees this object created or reused (unless asked to keep them)."""
        if self.keep:
            return
        with self._lock:
            for path in self._paths.values():
                self._discard(path)
            self._paths.clear()
            self.repo.git.worktree("prune")

    def __enter__(self) -> Worktrees:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _valid(self, path: Path, sha: str) -> bool:
        """A worktree left by an earlier run is reused only if git knows it unlocked, at `sha`, with every tracked file as committed."""
        if not (path / ".git").is_file() or self._registration(path) != "unlocked":
            return False  # a kill during `git worktree add` leaves it locked ("initializing") and half made
        import git

        try:
            tree = git.Repo(path)
            if tree.head.commit.hexsha != sha:
                return False
            tree.git.diff_index("--quiet", "HEAD", "--")  # exit 1: a tracked file differs or is missing
        except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError, git.GitCommandError):
            return False
        return True

    def _registration(self, path: Path) -> str:
        """"unlocked", "locked" or "unknown": how `git worktree list` knows this path."""
        listing = self.repo.git.worktree("list", "--porcelain").split("\n\n")
        for entry in listing:
            lines = entry.splitlines()
            if lines and Path(lines[0].removeprefix("worktree ")).resolve() == path.resolve():
                return "locked" if any(line.startswith("locked") for line in lines) else "unlocked"
        return "unknown"

    def _discard(self, path: Path) -> None:
        if (path / ".git").exists():
            import git

            try:
                self.repo.git.worktree("remove", "--force", "--force", str(path))  # twice: also a locked one
            except git.GitCommandError:
                pass  # not registered any more; the directory is removed below and pruned
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        self.repo.git.worktree("prune")

    def _add(self, path: Path, sha: str) -> None:
        import git

        try:
            self.repo.git.worktree("add", "--detach", "--quiet", str(path), sha)
        except git.GitCommandError as exc:
            detail = (exc.stderr or "").strip().splitlines()
            raise SettingsError(
                f"could not check out {sha[:10]} into {path}: {detail[-1] if detail else exc}"
            ) from None
