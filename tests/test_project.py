"""Settings: bisect.yaml merged with flags, and every invalid value reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from bisect_runs.errors import SettingsError
from bisect_runs.project import load_project, make_settings, parse_parallel


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_flags_override_project_file(tmp_path: Path) -> None:
    project = load_project(write(tmp_path / "bisect.yaml", "steps: 100\nmetric: val_loss\nmode: min\n"))
    settings = make_settings(project, {"steps": 300, "metric": None})
    assert settings.steps == 300
    assert settings.metric == "val_loss"


def test_relative_paths_resolve_against_project_dir(tmp_path: Path) -> None:
    project = load_project(write(tmp_path / "bisect.yaml", "good: configs/a.yaml\n"))
    settings = make_settings(project, {})
    assert settings.path(settings.good) == tmp_path.resolve() / "configs/a.yaml"


def test_defaults_may_name_a_file(tmp_path: Path) -> None:
    settings = make_settings(load_project(write(tmp_path / "bisect.yaml", "defaults: d.yaml\n")), {})
    assert settings.defaults_file == "d.yaml" and settings.defaults == {}


def test_aliases_as_list_or_mapping(tmp_path: Path) -> None:
    assert make_settings({}, {"aliases": ["l2_decay=weight_decay"]}).aliases == {"l2_decay": "weight_decay"}
    assert make_settings({"aliases": {"lr": "learning_rate"}}, {}).aliases == {"lr": "learning_rate"}
    with pytest.raises(SettingsError, match="--alias: 'oops' is not of the form OLD=NEW"):
        make_settings({}, {"aliases": ["oops"]})


def test_unknown_keys_listed_with_valid_names(tmp_path: Path) -> None:
    project = load_project(write(tmp_path / "bisect.yaml", "stpes: 3\nmetirc: x\n"))
    with pytest.raises(SettingsError) as info:
        make_settings(project, {})
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'bisect.yaml'}: unknown setting(s) metirc, stpes; valid: ")
    assert "steps" in message


def test_all_invalid_values_in_one_error() -> None:
    with pytest.raises(SettingsError) as info:
        make_settings({}, {"mode": "lowest", "steps": -1, "reduce": "median", "parallel": 0})
    message = str(info.value)
    for part in ("--mode must be one of min, max", "--steps must be a positive integer",
                 "reduce must be last, min, max or mean_last:K", "parallel must be a positive integer"):
        assert part in message


def test_yaml_errors_name_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "bisect.yaml", "steps: 3\nmetric: [unclosed\n")
    with pytest.raises(SettingsError, match=r"bisect.yaml: line \d+, column \d+: invalid YAML"):
        load_project(path)


def test_missing_explicit_project_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no such project file"):
        load_project(tmp_path / "nope.yaml")


def test_parse_parallel() -> None:
    assert parse_parallel("auto") == "auto"
    assert parse_parallel("3") == 3
    with pytest.raises(SettingsError, match="--parallel must be a positive integer or 'auto'"):
        parse_parallel("many")


def test_shipped_project_file_is_valid() -> None:
    root = Path(__file__).resolve().parents[1]
    settings = make_settings(load_project(root / "bisect.yaml"), {})
    assert settings.metric == "val_per" and settings.mode == "min"
    assert Path(settings.path(settings.good) or "").exists()


def test_a_bad_value_is_named_where_it_was_given(tmp_path: Path) -> None:
    project = tmp_path / "bisect.yaml"
    project.write_text("steps: 0\nseeds: 3\n")
    with pytest.raises(SettingsError, match=r"bisect.yaml: steps must be a positive integer \(got 0\)$"):
        make_settings(load_project(project), {})
    with pytest.raises(SettingsError, match=r"^--seeds must be a positive integer \(got 0\)$"):
        make_settings(load_project(project), {"steps": 5, "seeds": 0})


def test_strategy_and_executor_names_come_from_the_registries() -> None:
    """bisect.yaml's check and the CLI's choices list the registries' names, so a new one is added once."""
    from click.testing import CliRunner

    from bisect_runs.cli import cli
    from bisect_runs.executors import EXECUTORS
    from bisect_runs.strategies import STRATEGIES

    with pytest.raises(SettingsError) as info:
        make_settings({"strategy": "greedy", "executor": "k8s"}, {})
    message = str(info.value)
    assert f"strategy must be one of {', '.join(STRATEGIES)} (got 'greedy')" in message
    assert f"executor must be one of {', '.join(EXECUTORS)} (got 'k8s')" in message
    help_text = CliRunner().invoke(cli, ["search", "--help"], terminal_width=200).output
    assert f"[{'|'.join(STRATEGIES)}]" in help_text
    assert f"[{'|'.join(EXECUTORS)}]" in help_text
