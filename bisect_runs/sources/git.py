"""`REV:PATH` sources: a config file or directory as it was at a git revision."""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from bisect_runs.errors import ConfigError
from bisect_runs.sources.loaded import LoadedConfig

_MAX_BLOB_BYTES = 64 * 1024 * 1024


class AbsentAtRevision(ConfigError):
    """REV:PATH names a path the revision does not have (the caller may compare it as empty)."""

    def __init__(self, message: str, spec: str, rev: str, commit: str) -> None:
        super().__init__(message)
        self.spec, self.rev, self.commit = spec, rev, commit

    def as_empty(self) -> LoadedConfig:
        """An empty config standing for the absent path, saying so in its provenance."""
        provenance = {"git_rev": self.rev, "git_commit": self.commit, "absent_at_revision": True}
        return LoadedConfig({}, self.spec, "yaml", None, provenance)


def split_rev_path(spec: str) -> tuple[str, str] | None:
    """`HEAD~3:configs/train.yaml` -> ("HEAD~3", "configs/train.yaml"); None if not of that form."""
    rev, sep, path = spec.partition(":")
    if not sep or not rev or not path or len(rev) == 1 and rev.isalpha():
        return None  # `C:\...` is a Windows drive, not a revision
    return rev, path


def load_git(
    spec: str, fmt: str | None, load_path: Callable[[Path, str | None, str], LoadedConfig]
) -> LoadedConfig:
    """Read REV:PATH from the repository holding the current directory, then parse it like a path."""
    rev, path = split_rev_path(spec) or ("", "")
    try:
        import git
    except ImportError as exc:  # pragma: no cover - GitPython is a core dependency
        raise ConfigError(f"{spec}: reading REV:PATH needs GitPython") from exc
    try:
        repo = git.Repo(os.getcwd(), search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise ConfigError(
            f"{spec}: no such file, and the current directory is not in a git repository"
        ) from exc
    sha = commit_sha(repo, rev)
    if sha is None:
        raise ConfigError(f"{spec}: unknown git revision '{rev}'")
    commit = repo.commit(sha)
    repo_path = _repo_relative(repo.working_tree_dir, path)
    if repo_path is None:
        raise ConfigError(f"{spec}: '{path}' is outside the repository ({repo.working_tree_dir})")
    try:
        obj = commit.tree / repo_path if repo_path else commit.tree
    except KeyError as exc:
        raise AbsentAtRevision(
            f"{spec}: '{repo_path}' does not exist at {rev} ({commit.hexsha[:10]}); "
            "--absent-as-empty compares it as an empty config",
            spec, rev, commit.hexsha,
        ) from exc
    with tempfile.TemporaryDirectory(prefix="bisect-runs-git-") as tmp:
        target = Path(tmp) / (PurePosixPath(repo_path).name or "root")
        _materialize(obj, target, spec)
        loaded = load_path(target, fmt, spec)
    _detach(loaded, spec, target)
    loaded.provenance.update({"git_rev": rev, "git_commit": commit.hexsha, "git_path": repo_path})
    return loaded


def commit_sha(repo: Any, rev: str) -> str | None:
    """Full sha of any revision git understands (`HEAD~3`, `@{-1}`, `main@{1.week.ago}`); None if none."""
    import git

    try:
        out = repo.git.rev_parse("--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    except git.GitCommandError:
        return None
    return str(out).strip() or None


def _repo_relative(root: Any, path: str) -> str | None:
    """Git's rule: PATH is from the repo root, unless it starts with ./ or ../ (from the current dir); None outside."""
    if path.startswith(("./", "../")) and root:
        absolute = (Path.cwd() / path).resolve()
        if not absolute.is_relative_to(Path(root).resolve()):
            return None
        return absolute.relative_to(Path(root).resolve()).as_posix().strip(".")
    inside = posixpath.normpath(path.strip("/"))
    return None if inside == ".." or inside.startswith("../") else inside.strip(".")


def _materialize(obj: Any, target: Path, spec: str) -> None:
    """Write a blob or a tree from git into a temporary directory."""
    if obj.type == "blob":
        if obj.size > _MAX_BLOB_BYTES:
            raise ConfigError(f"{spec}: file too large for a config ({obj.size:,} bytes)")
        target.write_bytes(obj.data_stream.read())
        return
    if obj.type != "tree":
        raise ConfigError(f"{spec}: not a file or directory (a git {obj.type})")
    target.mkdir(parents=True, exist_ok=True)
    for child in obj:
        if child.type in ("blob", "tree"):
            _materialize(child, target / child.name, spec)


def _detach(loaded: LoadedConfig, source: str, tmp_root: Path) -> None:
    """Point a config read from a temporary checkout at its REV:PATH instead of the deleted files."""
    if loaded.path is not None:
        rel = (
            loaded.path.relative_to(tmp_root) if loaded.path.is_relative_to(tmp_root) else Path(".")
        )
        loaded.name = loaded.name or loaded.path.name
        loaded.source = source if rel == Path(".") else f"{source.rstrip('/')}/{rel.as_posix()}"
        loaded.path = None
    for part in loaded.parts.values():
        _detach(part, source, tmp_root)
