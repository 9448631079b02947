"""`bisect-runs judge`: exit 0 good, 1 bad, 125 skip, 128 abort; driven by a real `git bisect run`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from commit_repos import COMMAND, git, make_repo

from bisect_runs.cli import cli


@pytest.fixture(autouse=True)
def no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU slots only, and no GPU discovery (importing torch) on every `judge` call."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


def judge_args(repo: Path, out: Path, *extra: str) -> list[str]:
    return [
        "judge", "--repo", str(repo), "--command", COMMAND.replace("--config {config} ", ""),
        "--metric", "val_loss", "--steps", "5", "--parallel", "2", "--out", str(out), *extra,
    ]  # fmt: skip


def test_exit_codes_at_good_bad_and_broken_commits(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, commits=8, culprit=5, broken=3)
    out = tmp_path / "judge-out"
    refs = ["--good-value", "1.0", "--good-value", "0.98", "--bad-rev", repo.shas[-1]]
    expected = {repo.shas[2]: 0, repo.shas[3]: 125, repo.shas[5]: 1, repo.shas[7]: 1}
    for sha, code in expected.items():
        git(repo.path, "checkout", "-q", "--detach", sha)
        result = CliRunner().invoke(cli, judge_args(repo.path, out, *refs, "-q"))
        assert result.exit_code == code, (sha, result.output)
        assert result.output.startswith({0: "good:", 1: "bad:", 125: "skip:"}[code])


def test_reference_revision_is_measured_once_and_cached(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, commits=4, culprit=2, broken=None)
    out = tmp_path / "judge-out"
    args = judge_args(repo.path, out, "--good-rev", "good", "--bad-value", "1.5")
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 1, first.output
    trials = len(list((out / "trials").iterdir()))
    git(repo.path, "checkout", "-q", "--detach", repo.shas[1])
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0, second.output
    assert len(list((out / "trials").iterdir())) == trials + 2  # only the new checkout's two seeds ran


def test_errors_abort_git_bisect_instead_of_meaning_bad(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, commits=2, culprit=1, broken=None)
    result = CliRunner().invoke(cli, judge_args(repo.path, tmp_path / "o", "--bad-value", "1.5"))
    assert result.exit_code == 128
    assert result.output == "Error: judge needs the good reference: --good-value X (repeatable) or --good-rev REV\n"
    usage = CliRunner().invoke(cli, ["judge", "--good-value", "x"])
    assert usage.exit_code == 128


def test_git_bisect_run_finds_the_culprit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, commits=12, culprit=9, broken=4)
    out = tmp_path / "judge-out"
    git(repo.path, "bisect", "start", repo.shas[-1], repo.shas[0])
    script = [sys.executable, "-m", "bisect_runs", *judge_args(repo.path, out, "--good-rev", repo.shas[0],
                                                              "--bad-rev", repo.shas[-1])]
    done = subprocess.run(["git", "bisect", "run", *script], cwd=repo.path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{repo.culprit} is the first bad commit" in done.stdout
    git(repo.path, "bisect", "reset")
