"""End-to-end `bisect-runs search` through the CLI with a real subprocess trainer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from trainers import FAKE_TRAINER

from bisect_runs.cli import cli
from bisect_runs.journal import read_journal

GOOD = {"lr": 0.02, "dropout": 0.4, "batch_size": 64, "optimizer": "adam", "use_ln": False, "warmup": 100}
BAD = {"lr": 0.0008, "dropout": 0.5, "batch_size": 128, "optimizer": "adamw", "use_ln": True, "warmup": 500}
COMMAND = f"{sys.executable} {FAKE_TRAINER} --config {{config}} --run-dir {{run_dir}} --steps {{steps}} --seed {{seed}}"


def project(tmp_path: Path, fake: dict[str, Any], **settings: Any) -> Path:
    """Write good/bad configs sharing the fake trainer's behaviour, and a bisect.yaml."""
    for name, values in (("good", GOOD), ("bad", BAD)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({"fake": {"metric": "loss", **fake}, **values}))
    (tmp_path / "bisect.yaml").write_text(
        yaml.safe_dump(
            {"good": "good.yaml", "bad": "bad.yaml", "command": COMMAND, "metric": "loss", "mode": "min",
             "steps": 10, "parallel": 2, "out": "out", **settings}  # fmt: skip
        )
    )
    return tmp_path


def run_search(root: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(cli, ["search", "--project", str(root / "bisect.yaml"), *args])
    summary_path = root / "out" / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return result.exit_code, summary, result.output


def test_single_culprit(tmp_path: Path) -> None:
    root = project(tmp_path, {"value": "1.0 + (lr < 0.01)", "noise": 0.15})
    code, summary, output = run_search(root)
    assert code == 0, output
    assert summary["reproduced"] is True
    assert summary["culprits"] == [["lr"]]
    lr = next(e for e in summary["effects"] if e["keys"] == ["lr"])
    assert lr["ci_low"] <= 1.0 <= lr["ci_high"] or lr["ci_low"] > 0.6
    for field in ("good", "bad", "metric", "mode", "steps", "differences", "runs", "verdict"):
        assert field in summary
    assert summary["runs"] == len({e["trial"]["id"] for e in read_journal(root / "out") if "trial" in e})
    report = (root / "out" / "report.md").read_text()
    assert f"bisect-runs search --project {root / 'bisect.yaml'}\n" in report  # the command as typed


def test_and_pair(tmp_path: Path) -> None:
    root = project(tmp_path, {"value": "1.0 + ((lr < 0.01) and use_ln)", "noise": 0.1})
    code, summary, output = run_search(root)
    assert code == 0, output
    assert sorted(map(sorted, summary["culprits"])) == [["lr", "use_ln"]]


def test_diverging_variant_counts_as_worst(tmp_path: Path) -> None:
    root = project(tmp_path, {"value": "1.0", "noise": 0.05, "diverge": "use_ln"})
    code, summary, output = run_search(root)
    assert code == 0, output
    assert summary["culprits"] == [["use_ln"]]
    statuses = {e["outcome"]["status"] for e in read_journal(root / "out") if "outcome" in e}
    assert "diverged" in statuses


def test_flaky_crash_of_a_bystander_is_retried_not_judged(tmp_path: Path) -> None:
    marker = tmp_path / "crashed-once"
    fake = {"value": "1.0 + (lr < 0.01)", "noise": 0.1, "crash": "batch_size > 100", "crash_once": str(marker)}
    root = project(tmp_path, fake)
    code, summary, output = run_search(root)
    assert code == 0, output
    assert marker.exists()
    assert summary["culprits"] == [["lr"]]


def test_no_regression_exits_1_with_hint(tmp_path: Path) -> None:
    root = project(tmp_path, {"value": "1.0", "noise": 0.1})
    code, summary, output = run_search(root)
    assert code == 1, output
    assert summary["reproduced"] is False
    assert summary["culprits"] == []
    assert "--steps" in summary["verdict"]


def test_bad_settings_are_one_error_line(tmp_path: Path) -> None:
    root = project(tmp_path, {"value": "1.0"}, strategy="fastest")
    code, _, output = run_search(root)
    assert code == 2
    assert output.strip().splitlines()[-1].startswith("Error: ")
    assert "strategy must be one of auto, screen, oat, ddmin, bayes" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"command": "python train.py {cfg}"}, "Error: command template: unknown placeholder(s) {cfg}"),
        ({"metric_source": "regex", "metric_pattern": "loss=("}, "Error: metric pattern 'loss=(' is not a valid regex"),
    ],
)
def test_a_bad_template_or_pattern_fails_before_the_out_dir_exists(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    root = project(tmp_path, {"value": "1.0"}, **settings)
    code, _, output = run_search(root)
    assert code == 2 and output.strip().splitlines() == [output.strip().splitlines()[0]]
    assert output.startswith(message), output
    assert not (root / "out").exists()


def test_a_first_round_where_nothing_finishes_is_an_error_not_a_verdict(tmp_path: Path) -> None:
    root = project(tmp_path, {"value": "1.0 + (lr < 0.01)", "noise": 0.15}, metric="val_los")
    code, summary, output = run_search(root)
    assert code == 2 and not summary
    lines = output.strip().splitlines()
    assert lines[-1].startswith("Error: no trial of the first round finished (")
    assert "no value of 'val_los'" in lines[-1] and "Fix it and run the search again" in lines[-1]
    assert list((root / "out").glob("journal-failed-*.jsonl"))
    # the same OUT_DIR takes the corrected search without --resume
    code, summary, output = run_search(root, "--metric", "loss")
    assert code == 0, output
    assert summary["culprits"] == [["lr"]]


def test_configs_in_two_formats_give_trials_in_the_good_configs_format(tmp_path: Path) -> None:
    root = project(tmp_path, {"value": "1.0 + (lr < 0.01)", "noise": 0.05}, good="good.json")
    good = yaml.safe_load((root / "good.yaml").read_text())
    (root / "good.json").write_text(json.dumps(good, indent=2))
    code, summary, output = run_search(root)
    assert code == 0, output
    assert summary["culprits"] == [["lr"]]
    for config_dir in (root / "out" / "trials").glob("*/config"):
        [written] = config_dir.iterdir()
        assert written.name == "good.json"
        assert set(json.loads(written.read_text())) == set(good)


@pytest.mark.parametrize("how", ["--include-all", "group"])
def test_hidden_differences_are_searched_when_asked(tmp_path: Path, how: str) -> None:
    """num_workers is ranked `none` (hidden); here it is what matters."""
    settings = {"groups": {"loader": ["num_workers"]}} if how == "group" else {}
    root = project(tmp_path, {"value": "1.0 + (num_workers > 2)", "noise": 0.05}, **settings)
    for name, workers in (("good", 0), ("bad", 8)):
        config = yaml.safe_load((root / f"{name}.yaml").read_text())
        (root / f"{name}.yaml").write_text(yaml.safe_dump({**config, "num_workers": workers}))
    code, summary, output = run_search(root, *(["--include-all"] if how == "--include-all" else []))
    assert code == 0, output
    assert summary["culprits"] == [["num_workers"]]


def test_a_spent_budget_is_a_partial_answer_with_exit_1(tmp_path: Path) -> None:
    root = project(tmp_path, {"value": "1.0 + 0.5 * (lr < 0.01) + 0.5 * use_ln", "noise": 0.2})
    code, summary, output = run_search(root, "--max-runs", "6")
    assert code == 1, output
    assert summary["complete"] is False and summary["runs"] <= 6
    report = (root / "out" / "report.md").read_text()
    assert "**Partial report.**" in report
    assert f"bisect-runs search --project {root / 'bisect.yaml'} --resume\n" in report  # without --max-runs 6


def test_resume_after_kill_runs_nothing_twice(tmp_path: Path) -> None:
    counter = tmp_path / "starts.log"
    fake = {"value": "1.0 + (lr < 0.01)", "noise": 0.15, "sleep": 0.6, "counter": str(counter)}
    root = project(tmp_path, fake)
    args = [sys.executable, "-m", "bisect_runs", "search", "--project", str(root / "bisect.yaml")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _finished(root) < 5:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2.0)  # let trainers started just before the kill log their start (or die with it)
    done_before = _finished(root)
    assert done_before >= 5
    lines_before = len(counter.read_text().splitlines())

    code, summary, output = run_search(root, "--resume")
    assert code == 0, output
    assert summary["culprits"] == [["lr"]]
    finished_ids = [e["trial"]["id"] for e in read_journal(root / "out") if e.get("outcome", {}).get("status") == "ok"]
    assert len(finished_ids) == len(set(finished_ids)), "a finished trial ran twice"
    # The resumed search started exactly the trials the journal did not have.
    starts_after = [line for line in counter.read_text().splitlines()[lines_before:] if line.startswith("start")]
    assert len(starts_after) == len(finished_ids) - done_before


def test_interrupted_search_exits_130_with_a_partial_report(tmp_path: Path) -> None:
    fake = {"value": "1.0 + (lr < 0.01)", "noise": 0.15, "sleep": 0.6}
    root = project(tmp_path, fake)
    args = [sys.executable, "-m", "bisect_runs", "search", "--project", str(root / "bisect.yaml")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _finished(root) < 3:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "rerun with --resume" in output and "Traceback" not in output
    assert not (root / "out" / "summary.json").exists()
    report = (root / "out" / "report.md").read_text()
    assert "**Partial report.**" in report
    assert "`lr`" in report  # the difference table comes from the journal's search event


def _finished(root: Path) -> int:
    journal = root / "out" / "journal.jsonl"
    if not journal.exists():
        return 0
    return sum(1 for line in journal.read_text().splitlines() if '"outcome"' in line)


@pytest.mark.parametrize("strategy", ["oat", "ddmin", "screen"])
def test_baseline_strategies_find_a_clear_single_culprit(tmp_path: Path, strategy: str) -> None:
    root = project(tmp_path, {"value": "1.0 + (lr < 0.01)", "noise": 0.05}, strategy=strategy)
    code, summary, output = run_search(root)
    assert code == 0, output
    assert summary["culprits"] == [["lr"]]
    assert summary["strategy"] == strategy


def test_resume_with_other_settings_never_destroys_a_finished_search(tmp_path: Path) -> None:
    """`cp -r out X; search --steps 20 --resume --out X` must stop, not start over in the old journal."""
    root = project(tmp_path, {"value": "1.0 + (lr < 0.01)", "noise": 0.05})
    code, first, output = run_search(root)
    assert code == 0, output
    copy = root / "copy"
    shutil.copytree(root / "out", copy)
    before = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file() and p.name != ".lock"}

    args = ["search", "--project", str(root / "bisect.yaml"), "--out", str(copy), "--resume"]
    refused = CliRunner().invoke(cli, [*args, "--steps", "20", "--metric", "val_loss"])
    assert refused.exit_code == 2
    assert refused.output == (
        f"Error: {copy} holds another search (steps 10 there, 20 here; metric loss there, val_loss here): "
        "--resume continues only the same search; choose another --out, or pass --resume-changed to start "
        f"this one there (the earlier search is kept in {copy / 'previous-N'})\n"
    )
    after = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before  # nothing touched

    changed = CliRunner().invoke(cli, [*args[:-1], "--resume-changed", "--steps", "20"])
    assert changed.exit_code == 0, changed.output
    kept = copy / "previous-1"
    assert json.loads((kept / "summary.json").read_text()) == first
    assert (kept / "report.md").read_bytes() == before[Path("report.md")]
    assert (kept / "journal.jsonl").read_bytes() == before[Path("journal.jsonl")]
    assert json.loads((copy / "summary.json").read_text())["steps"] == 20
    assert all(e["trial"]["steps"] == 20 for e in read_journal(copy) if e.get("event") == "trial")


def test_resuming_the_same_finished_search_keeps_its_summary(tmp_path: Path) -> None:
    root = project(tmp_path, {"value": "1.0 + (lr < 0.01)", "noise": 0.05})
    code, first, output = run_search(root)
    assert code == 0, output
    code, again, output = run_search(root, "--resume")
    assert code == 0, output
    assert json.loads((root / "out" / "previous-1" / "summary.json").read_text()) == first
    assert again["runs"] == first["runs"] and again["culprits"] == first["culprits"]


def test_a_held_difference_that_matters_is_found_not_reported_as_not_reproduced(tmp_path: Path) -> None:
    """num_workers is ranked `none` and held at B's value, so the searched A equals B; the good
    config as given still beats B, so the held differences are searched and the verdict says why."""
    root = project(tmp_path, {"value": "1.0 + (num_workers > 2)", "noise": 0.05})
    for name, workers in (("good", 0), ("bad", 8)):
        config = yaml.safe_load((root / f"{name}.yaml").read_text())
        (root / f"{name}.yaml").write_text(yaml.safe_dump({**config, "num_workers": workers}))
    code, summary, output = run_search(root)
    assert code == 0, output
    assert summary["reproduced"] is True and summary["culprits"] == [["num_workers"]]
    assert summary["verdict"].startswith(
        "The good config as given beats B, but A with the 1 difference(s) judged to have no effect "
        "held at B's values (num_workers) did not, so those were searched too."
    )
    assert summary["details"]["control"]["beats_b"] is True
    labels = {e["trial"]["label"] for e in read_journal(root / "out") if e.get("event") == "trial"}
    assert {"A", "A (as given)", "B"} <= labels
    report = (root / "out" / "report.md").read_text()
    assert "- Control: the good config exactly as given beat B, but A with the differences judged to have no effect " in report
    assert "for A, mean ± sd" not in report or "2.02 ± 0.051 for A" not in report  # A is the config as given
    assert summary["runs"] == len({e["trial"]["id"] for e in read_journal(root / "out") if "trial" in e})


def test_not_reproduced_only_when_the_good_config_as_given_does_not_beat_b(tmp_path: Path) -> None:
    root = project(tmp_path, {"value": "1.0", "noise": 0.05})
    for name, workers in (("good", 0), ("bad", 8)):
        config = yaml.safe_load((root / f"{name}.yaml").read_text())
        (root / f"{name}.yaml").write_text(yaml.safe_dump({**config, "num_workers": workers}))
    code, summary, output = run_search(root, "--min-effect", "0.1")
    assert code == 1 and summary["reproduced"] is False, output
    assert "The good config as given, run beside B as a control" in summary["verdict"]
    assert "does not beat B either, so the 1 held difference(s) (num_workers) do not hide the regression." in summary["verdict"]
    assert summary["details"]["control"]["beats_b"] is False


def test_after_a_resume_under_another_strategy_every_output_counts_the_same_runs(tmp_path: Path) -> None:
    root = project(tmp_path, {"value": "1.0 + (lr < 0.01)", "noise": 0.05}, strategy="oat")
    code, first, output = run_search(root)
    assert code == 0, output
    code, summary, output = run_search(root, "--resume", "--strategy", "ddmin")
    assert code == 0, output
    trials = {e["trial"]["id"] for e in read_journal(root / "out") if e.get("event") == "trial"}
    assert summary["runs"] == len(trials) >= first["runs"]
    assert f"{summary['runs']} runs in {summary['rounds']} rounds; summary:" in output
    report = (root / "out" / "report.md").read_text()
    assert f"{summary['runs']} trials in {summary['rounds']} rounds" in report


def test_the_good_config_as_given_runs_as_a_control_whenever_differences_are_held(tmp_path: Path) -> None:
    root = project(tmp_path, {"value": "1.0 + (lr < 0.01)", "noise": 0.05})
    for name, workers in (("good", 0), ("bad", 8)):
        config = yaml.safe_load((root / f"{name}.yaml").read_text())
        (root / f"{name}.yaml").write_text(yaml.safe_dump({**config, "num_workers": workers}))
    code, summary, output = run_search(root)
    assert code == 0, output
    assert summary["culprits"] == [["lr"]]
    control = summary["details"]["control"]
    assert (control["beats_b"], control["held_searched"], control["held"]) == (True, False, ["num_workers"])
    labels = [e["trial"]["label"] for e in read_journal(root / "out") if e.get("event") == "trial"]
    assert labels.count("A (as given)") == control["seeds"] >= 2
    assert "- Control: the good config exactly as given, run beside B over" in (root / "out" / "report.md").read_text()


def test_launch_json_holds_the_whole_environment_the_trainer_got(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_API_KEY", "s3cret")
    monkeypatch.setenv("LAB_NOTE", "kept")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    root = project(tmp_path, {"value": "1.0 + (lr < 0.01)", "noise": 0.15})
    code, _, output = run_search(root, "--max-runs", "4")
    assert code in (0, 1), output
    launches = [json.loads(p.read_text()) for p in (root / "out" / "trials").glob("*/launch.json")]
    assert launches
    for launch in launches:
        env = launch["environment"]
        assert env["CUDA_VISIBLE_DEVICES"] == ""  # a CPU slot
        assert env["OMP_NUM_THREADS"].isdigit()
        assert env["BISECT_RUNS_SEED"] and env["BISECT_RUNS_RUN_DIR"] == launch["run_dir"]
        assert env["LAB_NOTE"] == "kept" and env["LAB_API_KEY"] == "<withheld>"
    assert "s3cret" not in "".join(p.read_text() for p in (root / "out").rglob("launch.json"))


def test_a_culprit_set_of_keys_scaled_together_says_what_each_member_does(tmp_path: Path) -> None:
    good = {"learning_rate": 3e-3, "min_lr": 3e-4, "dropout": 0.1, "batch_size": 64, "use_ln": False}
    bad = {"learning_rate": 1e-4, "min_lr": 1e-5, "dropout": 0.2, "batch_size": 128, "use_ln": True}
    fake = {"metric": "loss", "value": "1.0 + (learning_rate < 1e-3)", "noise": 0.1}
    for name, values in (("good", good), ("bad", bad)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({"fake": fake, **values}))
    (tmp_path / "bisect.yaml").write_text(yaml.safe_dump(
        {"good": "good.yaml", "bad": "bad.yaml", "command": COMMAND, "metric": "loss", "mode": "min",
         "steps": 10, "parallel": 2, "out": "out"}))  # fmt: skip
    code, summary, output = run_search(tmp_path)
    assert code == 0, output
    assert summary["culprits"] == [["learning_rate", "min_lr"]]  # one factor: both 30x lower
    [entry] = summary["details"]["members"]
    shares = {m["key"]: m for m in entry["members"]}
    assert entry["factor"] == "learning_rate+min_lr" and sorted(shares) == ["learning_rate", "min_lr"]
    assert shares["learning_rate"]["repair"]["value"] > 0.7 and shares["learning_rate"]["reproduce"]["value"] > 0.7
    assert abs(shares["min_lr"]["repair"]["value"]) < 0.3 and abs(shares["min_lr"]["reproduce"]["value"]) < 0.3
    assert "Of learning_rate+min_lr, learning_rate alone repairs" in summary["verdict"]
    assert "learning_rate alone repairs" in (tmp_path / "out" / "report.md").read_text()
    labels = {e["trial"]["label"] for e in read_journal(tmp_path / "out") if "trial" in e}
    assert {"A + {min_lr}", "B - {min_lr}", "A + {learning_rate}", "B - {learning_rate}"} <= labels
