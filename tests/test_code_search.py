"""Commit bisection: simulated k-section under noise, and real trials at real commits of a git repo."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from commit_repos import COMMAND, SCRIPT_COMMAND, dirty, make_repo

from bisect_runs.cli import cli
from bisect_runs.code_search import (
    BisectOptions,
    CodeSearch,
    bisect_commits,
    k_section,
    point_at,
    position_of,
)
from bisect_runs.journal import read_journal
from bisect_runs.project import make_settings
from bisect_runs.strategies import drive
from bisect_runs.strategies.base import CRASHED, DIVERGED, OK, Observation, Request, SearchContext


@pytest.fixture(autouse=True)
def no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU slots only (no GPU discovery)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


# -- simulated ------------------------------------------------------------------------------


def simulate(
    n: int,
    culprit: int,
    skips: set[int] = frozenset(),  # type: ignore[assignment]
    d: float = 8.0,
    parallel: int = 2,
    seed: int = 0,
    mode: str = "min",
    diverge_from: int | None = None,
    effect: float = 1.0,
    max_runs: int | None = None,
):
    """Positions >= culprit are worse by `effect`; noise sd 1/d; skipped positions crash."""
    rng = random.Random(seed)
    ctx = SearchContext(n_factors=n, factor_names=[f"c{i}" for i in range(n)], parallel=parallel, mode=mode,
                        max_runs=max_runs)

    def evaluate(requests: list[Request]) -> list[Observation]:
        out = []
        for r in requests:
            k = position_of(r.point)
            if k in skips:
                out.append(Observation(r.point, r.seed, CRASHED, None))
            elif diverge_from is not None and k >= diverge_from:
                out.append(Observation(r.point, r.seed, DIVERGED, None))
            else:
                loss = (effect if k >= culprit else 0.0) + rng.gauss(0.0, 1.0 / d)
                out.append(Observation(r.point, r.seed, OK, loss if mode == "min" else -loss))
        return out

    return drive(bisect_commits(ctx, BisectOptions()), evaluate, ctx)


def test_points_are_prefixes_of_the_commit_list() -> None:
    assert point_at(0) == frozenset()
    assert point_at(3) == frozenset({0, 1, 2})
    assert position_of(point_at(7)) == 7


def test_k_section_spreads_test_points_over_the_interval() -> None:
    assert k_section(list(range(1, 20)), 0, 20, 1) == [10]
    assert k_section(list(range(1, 20)), 0, 20, 3) == [5, 10, 15]
    assert k_section([1, 2, 18, 19], 0, 20, 1) == [2]  # nearest testable neighbour of the midpoint
    assert k_section([4], 0, 20, 3) == [4]


@pytest.mark.parametrize("culprit", [1, 7, 13, 20])
def test_finds_the_first_bad_commit_with_few_runs(culprit: int) -> None:
    decision, runs, rounds = simulate(20, culprit, skips={5} if culprit != 6 else set(), seed=culprit)
    assert decision.reproduced
    assert decision.culprits == [[culprit - 1]]
    assert runs < 20 * 2  # a linear scan needs at least two seeds at each of the 20 commits
    effect = decision.effects[0]
    assert effect.ci_low < 1.0 < effect.ci_high
    assert effect.explained_fraction == pytest.approx(1.0, abs=0.25)


def test_mode_max_flips_the_direction() -> None:
    decision, _, _ = simulate(20, 9, mode="max", seed=3)
    assert decision.culprits == [[8]]
    assert decision.effects[0].effect > 0  # positive = worse, whatever the direction


def test_untestable_commit_next_to_the_culprit_leaves_both_as_candidates() -> None:
    decision, _, _ = simulate(20, 9, skips={8}, seed=4)
    assert decision.reproduced and decision.culprits == []
    assert decision.details["candidates"] == [7, 8]
    assert "one of 2" in decision.verdict


def test_no_regression_is_reported_honestly() -> None:
    decision, runs, _ = simulate(20, 99, seed=5)
    assert not decision.reproduced and decision.culprits == []
    assert "did not reproduce" in decision.verdict
    assert runs <= 2 * BisectOptions().max_seeds


def test_divergence_counts_as_the_worst_outcome() -> None:
    decision, _, _ = simulate(20, 99, diverge_from=11, seed=6)
    assert decision.culprits == [[10]]


def test_more_slots_mean_fewer_rounds() -> None:
    rounds = {}
    for parallel in (2, 8):
        results = [simulate(30, c, parallel=parallel, seed=c) for c in (4, 11, 17, 26)]
        assert all(dec.culprits == [[c - 1]] for (dec, _, _), c in zip(results, (4, 11, 17, 26), strict=True))
        rounds[parallel] = sum(r for _, _, r in results)
    assert rounds[8] < rounds[2]


def test_noisy_accuracy_over_many_repetitions() -> None:
    """d = 4 (effect four noise sd): the culprit is found nearly always, never a wrong one often."""
    right = wrong = 0
    for rep in range(60):
        rng = random.Random(1000 + rep)
        culprit = rng.randint(1, 20)
        decision, _, _ = simulate(20, culprit, d=4.0, parallel=4, seed=rep)
        right += decision.culprits == [[culprit - 1]]
        wrong += bool(decision.culprits) and decision.culprits != [[culprit - 1]]
    assert right >= 54 and wrong <= 3


def test_budget_stops_with_the_current_interval() -> None:
    decision, runs, _ = simulate(20, 13, max_runs=10, seed=7)
    assert runs <= 14
    assert 12 in decision.details["candidates"] and len(decision.details["candidates"]) > 1


# -- real commits --------------------------------------------------------------------------


def settings_for(repo_path: Path, out: Path, config: Path | None, **extra: object):
    flags = {
        "good_rev": "good",
        "bad_rev": "HEAD",
        "repo": str(repo_path),
        "command": COMMAND,
        "metric": "val_loss",
        "steps": 5,
        "parallel": 2,
        "out": str(out),
        "config": str(config) if config else None,
        **extra,
    }
    return make_settings({}, flags)


@pytest.fixture()
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "cfg.json"
    path.write_text('{"scale": 1.0}\n')
    return path


def test_real_bisection_finds_the_commit_and_leaves_the_user_tree_alone(tmp_path: Path, config_file: Path) -> None:
    repo = make_repo(tmp_path, commits=20, culprit=13, broken=6)
    dirty(repo)
    before = repo.state()
    out = tmp_path / "out"
    result = CodeSearch(settings_for(repo.path, out, config_file)).run()
    assert repo.state() == before
    assert result.reproduced and result.exit_code == 0
    assert result.culprits == [[f"commit:{repo.culprit}"]]
    assert result.runs < 20 * 3  # a linear scan: three seeds at each of 20 commits
    summary = json.loads((out / "summary.json").read_text())
    assert summary["culprits"] == [[f"commit:{repo.culprit}"]]
    first = summary["details"]["code"]["first_bad"]
    assert first["sha"] == repo.culprit and first["subject"] == "raise the base loss"
    assert first["author"] == "Ada Lovelace <ada@example.org>"
    assert first["date"].startswith("2025-01-02T03:04:05")
    assert first["files"] == ["NOTES.md", "train.py"]
    assert first["ci_low"] < 0.5 < first["ci_high"]
    assert summary["effects"][0]["key"] == f"commit:{repo.culprit}"
    assert not (out / "worktrees").exists() or not any((out / "worktrees").iterdir())


def test_trial_ids_name_the_commit_and_resume_reuses_them(tmp_path: Path, config_file: Path) -> None:
    repo = make_repo(tmp_path, commits=8, culprit=5, broken=None)
    out = tmp_path / "out"
    first = CodeSearch(settings_for(repo.path, out, config_file)).run()
    lines = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    trials = [entry["trial"] for entry in lines if entry.get("event") == "trial"]
    assert len({t["id"] for t in trials}) == len(trials) == first.runs
    assert {t["label"].split()[0] for t in trials} <= {"good", "bad", "commit"}
    again = CodeSearch(settings_for(repo.path, out, config_file, resume=True)).run()
    assert again.culprits == first.culprits
    lines_after = (out / "journal.jsonl").read_text().splitlines()
    assert sum('"event": "trial"' in line or '"event":"trial"' in line for line in lines_after) == len(trials)


def test_untestable_commits_are_skipped(tmp_path: Path, config_file: Path) -> None:
    """The broken commit sits where bisection would look first; its neighbours are tested instead."""
    repo = make_repo(tmp_path, commits=10, culprit=8, broken=5)
    result = CodeSearch(settings_for(repo.path, tmp_path / "out", config_file)).run()
    assert result.culprits == [[f"commit:{repo.culprit}"]]
    tested = {row["sha"]: row["status"] for row in result.details["code"]["tested"]}
    assert tested.get(repo.broken) == "skip"


def test_a_program_missing_at_a_commit_makes_it_untestable_not_the_search(tmp_path: Path, config_file: Path) -> None:
    repo = make_repo(tmp_path, commits=10, culprit=8, broken=None, missing=5)
    settings = settings_for(repo.path, tmp_path / "out", config_file, command=SCRIPT_COMMAND)
    result = CodeSearch(settings).run()
    assert result.culprits == [[f"commit:{repo.culprit}"]]
    tested = {row["sha"]: row["status"] for row in result.details["code"]["tested"]}
    assert tested.get(repo.broken) == "skip"


def test_no_config_and_a_trainer_that_reads_none(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, commits=6, culprit=2, broken=None)
    settings = settings_for(repo.path, tmp_path / "out", None)
    settings.command = COMMAND.replace("--config {config} ", "")
    result = CodeSearch(settings).run()
    assert result.culprits == [[f"commit:{repo.culprit}"]]


# -- the search command ----------------------------------------------------------------------


def search_args(repo: Path, out: Path, *extra: str) -> list[str]:
    return [
        "search", "--repo", str(repo), "--command", COMMAND, "--metric", "val_loss",
        "--steps", "5", "--parallel", "2", "--out", str(out), *extra,
    ]  # fmt: skip


def test_cli_bisects_code_with_one_config(tmp_path: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    repo = make_repo(tmp_path, commits=10, culprit=4, broken=7)
    args = search_args(repo.path, tmp_path / "out", "--good-rev", "good", "--bad-rev", "main", "--config", str(config_file))
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"Commit {repo.culprit[:10]} (raise the base loss) is the first bad commit." in result.output


def test_project_file_keys_name_the_revisions(tmp_path: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path, commits=6, culprit=3, broken=None)
    (tmp_path / "bisect.yaml").write_text(
        f"good_rev: good\nbad_rev: main\nrepo: {repo.path.name}\nconfig: {config_file.name}\n"
        f"command: {COMMAND}\nmetric: val_loss\nsteps: 5\nparallel: 2\nout: out\n"
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["search", "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["culprits"] == [[f"commit:{repo.culprit}"]]


def test_cli_no_regression_exits_1(tmp_path: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    repo = make_repo(tmp_path, commits=4, culprit=99, broken=None)
    args = search_args(repo.path, tmp_path / "out", "--good-rev", "good", "--bad-rev", "main", "--config", str(config_file))
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert "did not reproduce" in result.output


def test_cli_needs_both_revisions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    repo = make_repo(tmp_path, commits=2, culprit=1, broken=None)
    result = CliRunner().invoke(cli, search_args(repo.path, tmp_path / "out", "--good-rev", "good"))
    assert result.exit_code == 2
    assert result.output == "Error: bisecting commits needs --bad-rev (as flags or in bisect.yaml)\n"
    result = CliRunner().invoke(cli, search_args(repo.path, tmp_path / "o2", "--good-rev", "v9", "--bad-rev", "main"))
    assert result.exit_code == 2
    assert result.output == f"Error: unknown git revision 'v9' in {repo.path}\n"


def test_combined_mode_reports_the_config_culprit_and_the_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Good config at good rev vs bad config at bad rev: both a config key and a commit regressed."""
    monkeypatch.chdir(tmp_path)
    repo = make_repo(tmp_path, commits=8, culprit=6, broken=3)
    (tmp_path / "good.json").write_text('{"scale": 1.0, "label": "a"}\n')
    (tmp_path / "bad.json").write_text('{"scale": 1.3, "label": "b"}\n')
    before = repo.state()
    args = search_args(repo.path, tmp_path / "out", "--good", "good.json", "--bad", "bad.json",
                       "--good-rev", "good", "--bad-rev", "main", "--include-all")  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["culprits"] == [["scale"], [f"commit:{repo.culprit}"]]
    parts = summary["details"]["parts"]
    assert parts["config"]["culprits"] == [["scale"]] and parts["code"]["culprits"] == [[f"commit:{repo.culprit}"]]
    assert (tmp_path / "out" / "config-at-bad" / "summary.json").exists()
    assert (tmp_path / "out" / "code" / "journal.jsonl").exists()
    assert summary["details"]["code"]["first_bad"]["subject"] == "raise the base loss"
    assert repo.state() == before
    report = (tmp_path / "out" / "report.md").read_text()
    assert '"raise the base loss" by Ada Lovelace' in report
    assert "([report](config-at-bad/report.md))" in report and "([report](code/report.md))" in report
    part_trials = sum(
        1 for part in ("config-at-bad", "code") for _ in (tmp_path / "out" / part / "trials").iterdir()
    )
    assert f"{part_trials} trials in" in report  # the trials of both parts, listed on the one page


def test_when_the_bad_revision_never_runs_the_first_commit_that_stops_running_is_found() -> None:
    decision, _, _ = simulate(20, 99, skips=set(range(9, 21)), seed=8)
    assert decision.culprits == [[8]]
    assert "no longer runs" in decision.verdict


def test_a_good_revision_that_never_runs_is_an_answer_not_a_crash() -> None:
    decision, _, _ = simulate(20, 5, skips={0}, seed=9)
    assert not decision.reproduced
    assert decision.verdict.startswith("The good revision does not run")


def test_commit_trials_resume_from_a_shared_checkpoint(tmp_path: Path, config_file: Path) -> None:
    repo = make_repo(tmp_path, commits=6, culprit=3, broken=None)
    ckpt = tmp_path / "step-2.pt"
    ckpt.write_bytes(b"weights of the shared prefix")
    out = tmp_path / "out"
    extra = {"checkpoint": str(ckpt), "checkpoint_step": 2, "checkpoint_key": "resume_from"}
    result = CodeSearch(settings_for(repo.path, out, config_file, **extra)).run()
    assert result.culprits == [[f"commit:{repo.culprit}"]]
    trials = [e for e in read_journal(out) if e.get("event") == "trial"]
    for t in trials:
        assert t["trial"]["checkpoint"]["path"] == str(ckpt) and t["outcome"]["start_step"] == 2
        config = json.loads((out / "trials" / t["trial"]["id"] / "config" / "cfg.json").read_text())
        assert config["resume_from"] == str(ckpt)


def test_cli_checkpoint_placeholder_without_a_checkpoint_when_bisecting_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    repo = make_repo(tmp_path, commits=2, culprit=1, broken=None)
    args = search_args(repo.path, tmp_path / "out", "--good-rev", "good", "--bad-rev", "main")
    args[args.index("--command") + 1] = COMMAND + " --resume {checkpoint}"
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert result.output == (
        "Error: the command template uses {checkpoint} but no checkpoint is set: "
        "pass --checkpoint PATH and --checkpoint-step N (or `checkpoint` in bisect.yaml)\n"
    )
    assert not (tmp_path / "out").exists()
