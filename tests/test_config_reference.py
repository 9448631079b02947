"""Every bisect.yaml key is a flag of the same name and is on docs/config.md; `diff` reads bisect.yaml as `search` does."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bisect_runs.cli import cli
from bisect_runs.errors import SettingsError
from bisect_runs.project import Settings, make_settings

ROOT = Path(__file__).resolve().parents[1]
KEYS = [f.name for f in dataclasses.fields(Settings) if f.name != "base_dir"]  # base_dir: the file's own directory


def flags(command: str) -> set[str]:
    return {opt for param in cli.commands[command].params for opt in getattr(param, "opts", [])}


def test_every_key_is_on_the_reference_page() -> None:
    page = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(\w+)` \|", page, flags=re.MULTILINE))
    assert sorted(set(KEYS) - listed) == [], "add these keys to docs/config.md"
    assert sorted(listed - set(KEYS)) == [], "docs/config.md lists keys project.py does not accept"


def test_every_key_is_a_search_flag_of_the_same_name() -> None:
    missing = [key for key in KEYS if "--" + key.replace("_", "-") not in flags("search")]
    assert missing == []


def test_diff_takes_every_comparing_key_as_search_does() -> None:
    comparing = ["ignore", "aliases", "defaults", "defaults_file", "rules", "groups", "include_all", "format_good", "format_bad"]
    assert [key for key in comparing if "--" + key.replace("_", "-") not in flags("diff")] == []


def project_dir(tmp_path: Path) -> Path:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"lr": 0.1, "penalty": 0.0, "data_path": "/a", "dropout": 0.1}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"lr": 0.003, "weight_decay": 0.01, "data_path": "/b", "dropout": 0.1}))
    settings = {"good": "a.yaml", "bad": "b.yaml", "ignore": ["data_path"], "aliases": {"penalty": "weight_decay"}}
    (tmp_path / "bisect.yaml").write_text(yaml.safe_dump(settings))
    return tmp_path


def diff_keys(*args: str) -> list[str]:
    result = CliRunner().invoke(cli, ["diff", *args, "--format", "json", "--all"])
    assert result.exit_code == 1, result.output
    return [d["key"] for d in json.loads(result.output)]


def test_plain_diff_reads_bisect_yaml_in_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project_dir(tmp_path))
    paired = ["lr", "penalty -> weight_decay"]  # data_path ignored; the alias pairs the renamed key
    assert diff_keys() == paired
    assert diff_keys("a.yaml", "b.yaml") == paired  # the two files bisect.yaml names
    assert sorted(diff_keys("--no-project", "a.yaml", "b.yaml")) == ["data_path", "lr", "penalty", "weight_decay"]


def test_flags_add_to_the_files_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project_dir(tmp_path))
    assert sorted(diff_keys("--ignore", "weight_decay")) == ["data_path", "lr", "penalty"]  # the flag replaces the file's list
    assert "penalty -> weight_decay" in diff_keys("--aliases", "penalty=weight_decay", "--no-project", "a.yaml", "b.yaml")


def test_executor_parameters_as_key_value_flags() -> None:
    settings = make_settings({"slurm": {"partition": "cpu", "mem_gb": 8}}, {"slurm": ("partition=gpu", "gpus_per_node=2")})
    assert settings.slurm == {"partition": "gpu", "mem_gb": 8, "gpus_per_node": 2}
    assert make_settings({}, {"ray": ("address=auto",)}).ray == {"address": "auto"}
    with pytest.raises(SettingsError, match=r"^Invalid value for --slurm: 'gpu' is not of the form KEY=VALUE$"):
        make_settings({}, {"slurm": ("gpu",)})


def test_every_recipe_on_the_trainers_page_is_a_valid_project_file() -> None:
    page = (ROOT / "docs" / "trainers.md").read_text(encoding="utf-8")
    blocks = [part.split("```", 1)[0] for part in page.split("```yaml\n")[1:]]
    assert len(blocks) == 6
    for block in blocks:
        settings = make_settings(yaml.safe_load(block), {})
        assert settings.command and settings.metric
