"""Override styles: `{overrides}` and `{args}` in the words each trainer's own parser takes."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from trainers import yaml_writer

from bisect_runs.cli import cli
from bisect_runs.errors import SettingsError, TrialError
from bisect_runs.overrides import args_words, override_words_for, parse_style
from bisect_runs.trials import make_trial, prepare_launch
from bisect_runs.variants import ABSENT

CHANGES = [("beta2", 0.99), ("bias", False), ("init_from", "scratch"), ("model.lr", 1e-4), ("tag", "1e-5")]


@pytest.mark.parametrize(
    ("style", "words"),
    [
        ("hydra", ["beta2=0.99", "bias=false", "init_from=scratch", "model.lr=0.0001", "tag='1e-5'"]),
        ("equals python", ["--beta2=0.99", "--bias=False", "--init_from=scratch", "--model.lr=0.0001", "--tag='1e-5'"]),
        ("equals", ["--beta2=0.99", "--bias=false", "--init_from=scratch", "--model.lr=0.0001", "--tag=1e-5"]),
        ("space leaf", ["--beta2", "0.99", "--bias", "false", "--init_from", "scratch", "--lr", "0.0001", "--tag", "1e-5"]),
        ("space flags", ["--beta2", "0.99", "--no-bias", "--init_from", "scratch", "--model.lr", "0.0001", "--tag", "1e-5"]),
        ("space store_true", ["--beta2", "0.99", "--init_from", "scratch", "--model.lr", "0.0001", "--tag", "1e-5"]),
    ],
)
def test_styles(style: str, words: list[str]) -> None:
    assert override_words_for(CHANGES, parse_style(style)) == words


def test_python_literals_read_back_as_the_values() -> None:
    """nanoGPT's configurator runs literal_eval on the text after `=` and keeps a string when it fails."""
    values = {"a": True, "b": None, "c": [1, 2.5], "d": "gpt2", "e": "3", "f": 7}
    for word in args_words(values, [], parse_style("equals python")):
        key, _, text = word[2:].partition("=")
        try:
            back = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            back = text
        assert back == values[key]


def test_store_true_args_leave_false_flags_out() -> None:
    words = args_words({"lr": 0.1, "use_amp": False, "name": "x"}, [("use_amp", True), ("lr", 0.2)], parse_style("space store_true"))
    assert words == ["--lr", "0.2", "--use_amp", "--name", "x"]


def test_a_value_starting_with_a_dash_stays_glued_to_its_key() -> None:
    assert override_words_for([("note", "-x"), ("lr", -0.5)], parse_style("space")) == ["--note=-x", "--lr", "-0.5"]


def test_removed_key_needs_hydra_or_args() -> None:
    with pytest.raises(TrialError, match="cannot remove 'wd' on the command line"):
        override_words_for([("wd", ABSENT)], parse_style("equals"))
    assert args_words({"wd": 0.1, "lr": 1}, [("wd", ABSENT)], parse_style("equals")) == ["--lr=1"]


def test_two_leaves_alike_are_an_error() -> None:
    with pytest.raises(TrialError, match="keys 'model.lr' and 'optim.lr' both become --lr"):
        override_words_for([("model.lr", 1), ("optim.lr", 2)], parse_style("space leaf"))


@pytest.mark.parametrize(("text", "message"), [
    ("dashes", "override_style must start with one of hydra, equals, space (got 'dashes')"),
    ("equals loud", "override_style has an unknown word 'loud'; valid after the form: python, yaml, leaf, dotted, flags, store_true"),
    ("hydra python", "override_style cannot combine hydra with python, flags or store_true (they need equals or space)"),
])
def test_bad_style_names_the_setting(text: str, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        parse_style(text)
    assert str(err.value) == message


@pytest.mark.parametrize("style", ["hydra", "equals", "space"])
def test_a_key_starting_with_a_dash_is_refused_in_every_style(style: str) -> None:
    with pytest.raises(TrialError, match="config key '--run-dir' cannot be written as an override word"):
        override_words_for([("--run-dir", "/elsewhere")], parse_style(style))


def test_python_placeholder_is_this_interpreter(tmp_path: Path) -> None:
    trial = make_trial("A", {"lr": 1}, 0, 5, ("{python}", "-m", "train", "{args}"))
    launch = prepare_launch(trial, tmp_path, yaml_writer({"lr": 2, "wd": 0}), style=parse_style("equals"), base_values={"lr": 2, "wd": 0})
    assert launch.argv == (sys.executable, "-m", "train", "--lr=1", "--wd=0")


def test_shipped_demo_runs_with_the_interpreter_of_bisect_runs() -> None:
    shipped = yaml.safe_load((Path(__file__).resolve().parent.parent / "bisect.yaml").read_text())
    assert shipped["command"].startswith("{python} -m bisect_runs.demo.speech ")


def _dash_key_project(tmp_path: Path, style: str) -> Path:
    (tmp_path / "good.yaml").write_text('lr: 0.1\n"--run-dir": /tmp/a\n')
    (tmp_path / "bad.yaml").write_text('lr: 0.2\n"--run-dir": /elsewhere\n')
    (tmp_path / "bisect.yaml").write_text(yaml.safe_dump({
        "good": "good.yaml", "bad": "bad.yaml", "metric": "loss", "steps": 2, "out": "out", "override_style": style,
        "command": "{python} train.py --run-dir {run_dir} {overrides}", "include_all": True,
    }))  # fmt: skip
    return tmp_path


@pytest.mark.parametrize("style", ["hydra", "equals"])
def test_search_refuses_a_key_that_would_become_a_trainer_option(tmp_path: Path, style: str) -> None:
    root = _dash_key_project(tmp_path, style)
    result = CliRunner().invoke(cli, ["search", "--project", str(root / "bisect.yaml")])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "Error: config key '--run-dir' cannot be written as an override word: it would start with '-' or holds "
        "'=', spaces or control characters, and could be read as an option of the trainer; rename the key, add it "
        "to `ignore`, or pass the config as {config}"
    ]
    assert not (root / "out").exists()  # refused before anything ran


def test_bad_style_in_bisect_yaml_and_as_flag(tmp_path: Path) -> None:
    root = _dash_key_project(tmp_path, "dashes")
    result = CliRunner().invoke(cli, ["search", "--project", str(root / "bisect.yaml")])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"Error: {root / 'bisect.yaml'}: override_style must start with one of hydra, equals, space (got 'dashes')"
    ]
    result = CliRunner().invoke(cli, ["search", "--project", str(root / "bisect.yaml"), "--override-style", "space loud"])
    assert result.output.splitlines()[-1].startswith("Error: --override-style has an unknown word 'loud'")
