"""The report's "How to reproduce": the command as typed and the same search with every setting spelled out."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from test_search_e2e import project, run_search

from bisect_runs.cli import cli, search_command
from bisect_runs.journal import read_journal
from bisect_runs.project import Settings, make_settings, parse_parallel, settings_flags


def test_the_report_spells_out_the_whole_command_when_bisect_yaml_supplied_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path, {"value": "1.0 + (lr < 0.01)", "noise": 0.05}, seeds=1, max_runs=2,
                   ignore=["warmup"], groups={"regularisation": ["dropout", "batch_size"]}, defaults="defaults.yaml")  # fmt: skip
    (root / "defaults.yaml").write_text("label_smoothing: 0.0\n")
    monkeypatch.chdir(root)  # paths in the command are relative to where the search ran
    run_search(root)
    report = (root / "out" / "report.md").read_text()
    assert ("The same search with every setting spelled out (configs, trainer command, metric, mode, steps, strategy "
            "and every other setting that is not a default; bisect.yaml is not read):") in report
    full = next(line for line in report.splitlines() if line.startswith("bisect-runs search --no-project"))
    assert full.startswith("bisect-runs search --no-project --good good.yaml --bad bad.yaml --command ")
    assert full.endswith(" --metric loss --mode min --steps 10 --strategy auto --seeds 1 --parallel 2 --max-runs 2 "
                         "--ignore warmup --defaults-file defaults.yaml --groups regularisation=dropout,batch_size --out out")

    # Run as printed, beside a bisect.yaml that now says otherwise: it is the same search, so
    # --resume replays the journal and runs nothing new.
    (root / "bisect.yaml").write_text(yaml.safe_dump({**yaml.safe_load((root / "bisect.yaml").read_text()), "ignore": [], "groups": {}}))
    trials = sum("trial" in e for e in read_journal(root / "out"))
    again = CliRunner().invoke(cli, [*shlex.split(full)[1:], "--resume"])
    assert again.exit_code in (0, 1), again.output
    assert sum("trial" in e for e in read_journal(root / "out")) == trials


def test_settings_flags_give_the_same_settings_back_through_the_command_line(tmp_path: Path) -> None:
    settings = make_settings({"_file": str(tmp_path / "bisect.yaml")}, {
        "format_good": "yaml", "metric_source": "regex", "metric_pattern": r"loss=(\S+)", "reduce": "mean_last:3",
        "steps_key": "max_iters", "seed_key": "seed", "run_dir_key": "out_dir", "seeds": 3, "seed_base": 10,
        "parallel": 4, "gpus_per_trial": 1, "executor": "slurm", "timeout": 90.5, "retries": 2, "early_stop": True,
        "min_effect": 0.01, "max_runs": 40, "max_hours": 1.5, "failure_value": 9.0, "aliases": ["l2=weight_decay"],
        "ignore": ["out*", "data_dir"], "defaults_file": str(tmp_path / "d.yaml"), "rules": str(tmp_path / "r.yaml"),
        "groups": ["lr=lr_start,lr_end"], "include_all": True, "slurm": ["partition=gpu", "time=01:00:00", "mem=4G"],
        "ray": ["num_cpus=2"], "override_style": "equals python",
    })  # fmt: skip
    words = settings_flags(settings, tmp_path)
    assert "--defaults-file" in words and words[words.index("--defaults-file") + 1] == "d.yaml"
    params = search_command.make_context("search", [*words, "--metric", "loss"]).params
    flags = {k: v for k, v in params.items() if k not in ("good_bad", "project", "no_project", "quiet", "verbose")}
    flags["parallel"] = parse_parallel(flags["parallel"])
    back = make_settings({"_file": str(tmp_path / "bisect.yaml")}, flags)
    for name in Settings.__dataclass_fields__:
        if name in ("defaults_file", "rules"):  # relative to the directory the command runs in
            assert tmp_path / getattr(back, name) == Path(getattr(settings, name)), name
        elif name not in ("metric", "base_dir"):
            assert getattr(back, name) == getattr(settings, name), name


def test_the_report_says_what_per_is_and_not_for_a_plain_loss(tmp_path: Path) -> None:
    (tmp_path / "per").mkdir()
    (tmp_path / "loss").mkdir()
    root = project(tmp_path / "per", {"value": "0.2 + 0.1 * (lr < 0.01)", "noise": 0.01, "metric": "val_per"}, metric="val_per", seeds=1, max_runs=2)
    run_search(root)
    report = (root / "out" / "report.md").read_text()
    assert "*What `val_per` is:* PER is the phoneme error rate: the edit distance (substitutions + deletions + insertions)" in report
    assert "can score above 1.0." in report
    plain = project(tmp_path / "loss", {"value": "1.0", "noise": 0.01}, seeds=1, max_runs=2)
    run_search(plain)
    assert "*What `" not in (plain / "out" / "report.md").read_text()
