"""The git side: first-parent ranges, commit facts, worktrees that never touch the user's checkout."""

from __future__ import annotations

from pathlib import Path

import pytest
from commit_repos import dirty, git, make_repo

from bisect_runs.errors import SettingsError
from bisect_runs.revisions import (
    Worktrees,
    commit_info,
    first_parent_range,
    head_sha,
    open_repo,
    resolve,
)


def test_first_parent_range_skips_the_commits_of_merged_branches(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, commits=3, culprit=9, broken=None)
    git(repo.path, "checkout", "-q", "-b", "feature", repo.shas[1])
    (repo.path / "feature.txt").write_text("x\n")
    git(repo.path, "add", "feature.txt")
    git(repo.path, "commit", "-q", "-m", "feature work")
    side = git(repo.path, "rev-parse", "HEAD")
    git(repo.path, "checkout", "-q", "main")
    git(repo.path, "merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    merge = git(repo.path, "rev-parse", "HEAD")
    shas = first_parent_range(open_repo(repo.path), "good", "main")
    assert shas == [*repo.shas[1:], merge]
    assert side not in shas


def test_range_errors_name_the_revisions(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, commits=2, culprit=9, broken=None)
    r = open_repo(repo.path)
    with pytest.raises(SettingsError, match="unknown git revision 'nope'"):
        first_parent_range(r, "nope", "HEAD")
    with pytest.raises(SettingsError, match="is not an ancestor of bad_rev 'good'"):
        first_parent_range(r, "HEAD", "good")
    with pytest.raises(SettingsError, match="are the same commit"):
        first_parent_range(r, "HEAD", "main")


def test_open_repo_outside_git(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="is not inside a git repository"):
        open_repo(tmp_path)
    with pytest.raises(SettingsError, match="does not exist"):
        open_repo(tmp_path / "missing")


def test_commit_info_has_subject_author_date_and_files(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, commits=3, culprit=2, broken=None)
    r = open_repo(repo.path)
    info = commit_info(r, repo.culprit)
    assert info.subject == "raise the base loss"
    assert info.author == "Ada Lovelace <ada@example.org>"
    assert info.date == "2025-01-02T03:04:05+00:00"
    assert info.files == ("NOTES.md", "train.py")
    assert info.to_json()["short"] == repo.culprit[:10]
    root = commit_info(r, repo.shas[0])
    assert root.files == ("NOTES.md", "train.py")  # the root commit: every file it added
    assert resolve(r, "good") == repo.shas[0]
    assert head_sha(repo.path) == repo.shas[-1]


def test_worktrees_check_out_commits_and_leave_the_checkout_alone(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, commits=3, culprit=2, broken=None)
    dirty(repo)
    before = repo.state()
    cache = tmp_path / "out" / "worktrees"
    with Worktrees(open_repo(repo.path), cache) as trees:
        old = trees.checkout(repo.shas[0])
        assert "VERSION = 0" in (old / "train.py").read_text()
        assert not (old / "scratch.txt").exists()  # staged work stays in the user's index only
        assert trees.checkout(repo.shas[0]) == old
        new = trees.checkout(repo.shas[2])
        assert "VERSION = 2" in (new / "train.py").read_text()
        assert git(old, "rev-parse", "HEAD") == repo.shas[0]
    assert not old.exists() and not new.exists()
    assert repo.state() == before


def test_worktrees_left_by_a_killed_search_are_reused_or_replaced(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, commits=2, culprit=1, broken=None)
    cache = tmp_path / "worktrees"
    kept = Worktrees(open_repo(repo.path), cache, keep=True)
    path = kept.checkout(repo.shas[1])
    kept.close()
    assert path.exists()  # as after kill -9
    (path / "leftover.txt").write_text("from the killed run\n")
    with Worktrees(open_repo(repo.path), cache) as trees:
        assert trees.checkout(repo.shas[1]) == path
    git(repo.path, "worktree", "add", "-q", "--detach", str(cache / repo.shas[0][:16]), repo.shas[1])
    with Worktrees(open_repo(repo.path), cache) as trees:  # a tree at the wrong commit is replaced
        fixed = trees.checkout(repo.shas[0])
        assert git(fixed, "rev-parse", "HEAD") == repo.shas[0]
    assert git(repo.path, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_a_half_made_locked_worktree_is_replaced_not_reused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, commits=2, culprit=1, broken=None)
    cache = tmp_path / "worktrees"
    path = cache / repo.shas[1][:16]
    # what a kill -9 during `git worktree add` leaves: registered, locked as initializing, files missing
    git(repo.path, "worktree", "add", "-q", "--lock", "--reason", "initializing", "--detach", str(path), repo.shas[1])
    (path / "train.py").unlink()
    with Worktrees(open_repo(repo.path), cache) as trees:
        fixed = trees.checkout(repo.shas[1])
        assert fixed == path.resolve() and (fixed / "train.py").is_file()
        assert "\nlocked" not in git(repo.path, "worktree", "list", "--porcelain")
    assert git(repo.path, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_a_worktree_whose_tracked_files_changed_is_replaced(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, commits=2, culprit=1, broken=None)
    cache = tmp_path / "worktrees"
    kept = Worktrees(open_repo(repo.path), cache, keep=True)
    path = kept.checkout(repo.shas[1])
    (path / "train.py").write_text("raise SystemExit(1)\n")
    with Worktrees(open_repo(repo.path), cache) as trees:
        assert trees.checkout(repo.shas[1]) == path
        assert "SystemExit" not in (path / "train.py").read_text()
