"""Crashes of a flaky trainer or machine are not judged as the variant's outcome; a variant's own crashes are."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner
from trainers import FAKE_TRAINER

from bisect_runs.cli import cli
from bisect_runs.crashes import binomial_tail, crashes_are_the_points_own
from bisect_runs.journal import read_journal
from bisect_runs.strategies.base import CRASHED, OK, Observation, SearchContext
from bisect_runs.strategies.evidence import Evidence

A, B, C = frozenset(), frozenset({0, 1}), frozenset({0})


def evidence(observations: list[Observation]) -> Evidence:
    ev = Evidence(SearchContext(n_factors=2, factor_names=["lr", "wd"]))
    ev.add(observations)
    return ev


def ok(point: frozenset[int], seed: int, value: float, attempts: int = 1) -> Observation:
    return Observation(point, seed, OK, value, attempts, attempts - 1)


def test_binomial_tail() -> None:
    assert binomial_tail(0, 5, 0.3) == 1.0
    assert abs(binomial_tail(2, 2, 0.2) - 0.04) < 1e-12
    assert crashes_are_the_points_own(4, 4, 0, 30) and not crashes_are_the_points_own(1, 5, 8, 40)


def test_a_crash_no_more_frequent_than_elsewhere_is_not_judged() -> None:
    # every point has crashed now and then and recovered on retry; one trial of B crashed twice
    runs = [ok(A, s, 1.0, attempts=2 if s % 2 else 1) for s in range(6)]
    runs += [ok(B, s, 2.0, attempts=2 if s % 3 == 0 else 1) for s in range(5)]
    runs += [ok(C, s, 2.0, attempts=2 if s == 1 else 1) for s in range(4)]
    runs.append(Observation(B, 9, CRASHED, None, 2, 2))
    ev = evidence(runs)
    assert ev.crashing_points() == set()
    assert ev.losses(B) == [2.0] * 5  # the crashed trial is left out
    assert ev.failure_rates()[B] == (0, 5)


def test_a_point_that_crashes_where_others_do_not_counts_its_crashes() -> None:
    runs = [ok(A, s, 1.0) for s in range(4)] + [ok(C, s, 2.0) for s in range(4)]
    runs += [Observation(B, s, CRASHED, None, 2, 2) for s in range(3)]
    ev = evidence(runs)
    assert ev.crashing_points() == {B}
    assert ev.failure_rates()[B] == (3, 3)
    assert min(ev.losses(B)) > 2.0  # judged at the failure loss, worse than any finished run


FLAKY = """\
import fcntl, os, sys
with open({counter!r}, "a+") as f:  # every fifth process this search starts crashes, whatever it runs
    fcntl.flock(f, fcntl.LOCK_EX)
    f.seek(0)
    n = len(f.read())
    f.write("x")
if n % 5 == 4:
    sys.exit(3)
os.execv(sys.executable, [sys.executable, {trainer!r}, *sys.argv[1:]])
"""


def test_a_flaky_trainer_keeps_retried_values_and_finds_the_culprit(tmp_path: Path) -> None:
    wrapper = tmp_path / "flaky.py"
    wrapper.write_text(FLAKY.format(counter=str(tmp_path / "launches"), trainer=str(FAKE_TRAINER)))
    fake = {"metric": "loss", "value": "1.0 + (lr < 0.01)", "noise": 0.05}
    good = {"fake": fake, "lr": 0.02, "wd": 0.1, "dropout": 0.1}
    bad = {"fake": fake, "lr": 0.001, "wd": 0.2, "dropout": 0.3}
    for name, data in (("good", good), ("bad", bad)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data))
    command = f"{sys.executable} {wrapper} --config {{config}} --run-dir {{run_dir}} --steps {{steps}} --seed {{seed}}"
    result = CliRunner().invoke(cli, ["search", str(tmp_path / "good.yaml"), str(tmp_path / "bad.yaml"), "--command", command,
                                      "--metric", "loss", "--mode", "min", "--steps", "5", "--seeds", "3", "--parallel", "2",
                                      "--include-all", "--out", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["culprits"] == [["lr"]], summary["verdict"]
    outcomes = [e["outcome"] for e in read_journal(tmp_path / "out") if e.get("event") == "trial"]
    retried = [o for o in outcomes if o["attempts"]]
    assert retried, "the wrapper crashed no trial"
    assert all(not o["infra"] for o in retried)
    assert any(o["status"] == OK and o["value"] is not None for o in retried)  # a retried value is kept
