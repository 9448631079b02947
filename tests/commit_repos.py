"""Real git repositories for the commit-bisection tests: a noisy trainer that changes across commits."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TRAINER = '''\
"""A tiny trainer: val_loss = BASE * config scale + seed noise (different at every commit)."""
import argparse
import json
import pathlib
import random

VERSION = {version}
BASE = {base}

p = argparse.ArgumentParser()
p.add_argument("--config")
p.add_argument("--run-dir", required=True)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--steps", type=int, default=10)
a = p.parse_args()
scale = 1.0
if a.config:
    scale = float(json.loads(pathlib.Path(a.config).read_text())["scale"])
rng = random.Random(a.seed * 1000003 + VERSION)
value = BASE * scale + rng.gauss(0.0, {noise})
with open(pathlib.Path(a.run_dir) / "metrics.jsonl", "w") as f:
    f.write(json.dumps({{"step": a.steps, "val_loss": value}}) + "\\n")
'''

BROKEN = "def oops(:\n"  # a syntax error: the trainer does not start at this commit


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Ada Lovelace",
        "GIT_AUTHOR_EMAIL": "ada@example.org",
        "GIT_COMMITTER_NAME": "Ada Lovelace",
        "GIT_COMMITTER_EMAIL": "ada@example.org",
        "GIT_AUTHOR_DATE": "2025-01-02T03:04:05+00:00",
        "GIT_COMMITTER_DATE": "2025-01-02T03:04:05+00:00",
    }
    done = subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@dataclass
class CommitRepo:
    path: Path
    shas: list[str]  # every commit, oldest first; shas[0] is the good revision
    culprit: str  # the commit that raised the loss
    broken: str | None  # the commit that does not start

    def state(self) -> tuple[str, str, bytes, float, str]:
        """HEAD, `git status --porcelain`, the index's hash and mtime, the worktree list."""
        index = self.path / ".git" / "index"
        return (
            git(self.path, "rev-parse", "HEAD"),
            git(self.path, "--no-optional-locks", "status", "--porcelain"),
            hashlib.sha256(index.read_bytes()).digest(),
            index.stat().st_mtime,
            git(self.path, "worktree", "list", "--porcelain"),
        )


def make_repo(
    root: Path,
    commits: int = 20,
    culprit: int = 13,
    broken: int | None = 6,
    good: float = 1.0,
    bad: float = 1.5,
    noise: float = 0.05,
    missing: int | None = None,
) -> CommitRepo:
    """Commit 0 is good; commit `culprit` raises BASE from `good` to `bad`; commit `broken` has a syntax error.

    train.py is an executable script; at commit `missing` it is renamed away (`./train.py` cannot start).
    """
    repo = root / "trainer-repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    shas = []
    for i in range(commits + 1):
        base = bad if i >= culprit else good
        text = TRAINER.format(version=i, base=base, noise=noise)
        if i == broken:
            text += BROKEN
        script = repo / ("moved.py" if i == missing else "train.py")
        for old in ("train.py", "moved.py"):
            if (repo / old).exists():
                git(repo, "rm", "-q", old)
        script.write_text(f"#!{sys.executable}\n" + text)
        script.chmod(0o755)
        (repo / "NOTES.md").write_text(f"change {i}\n")
        git(repo, "add", script.name, "NOTES.md")
        subject = "raise the base loss" if i == culprit else f"change {i}"
        git(repo, "commit", "-q", "-m", subject)
        shas.append(git(repo, "rev-parse", "HEAD"))
    git(repo, "tag", "good", shas[0])
    culprit_sha = shas[culprit] if culprit <= commits else ""  # beyond the range: no regression
    untestable = broken if broken is not None else missing
    return CommitRepo(repo, shas, culprit_sha, shas[untestable] if untestable is not None else None)


def dirty(repo: CommitRepo) -> None:
    """Leave uncommitted work in the user's tree: a staged file and an unstaged edit."""
    (repo.path / "scratch.txt").write_text("staged\n")
    git(repo.path, "add", "scratch.txt")
    (repo.path / "NOTES.md").write_text("edited, not committed\n")


SCRIPT_COMMAND = "./train.py --config {config} --run-dir {run_dir} --seed {seed} --steps {steps}"
COMMAND = f"{sys.executable} train.py --config {{config}} --run-dir {{run_dir}} --seed {{seed}} --steps {{steps}}"
