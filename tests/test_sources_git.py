"""`REV:PATH` sources read from git history."""

from __future__ import annotations

from pathlib import Path

import git
import pytest

from bisect_runs.errors import ConfigError
from bisect_runs.sources import load_config


@pytest.fixture()
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> git.Repo:
    """A repository with three commits of configs/train.yaml and a configs/run/ directory."""
    repo = git.Repo.init(tmp_path)
    with repo.config_writer() as writer:
        writer.set_value("user", "name", "Test")
        writer.set_value("user", "email", "test@example.com")
    (tmp_path / "configs" / "run").mkdir(parents=True)
    for lr in ("0.02", "0.01", "0.0008"):
        (tmp_path / "configs" / "train.yaml").write_text(f"lr: {lr}\nbatch_size: 64\n")
        (tmp_path / "configs" / "run" / "optim.yaml").write_text(f"lr: {lr}\n")
        (tmp_path / "configs" / "run" / "model.json").write_text('{"layers": 5}\n')
        repo.index.add(["configs/train.yaml", "configs/run/optim.yaml", "configs/run/model.json"])
        repo.index.commit(f"lr {lr}")
    monkeypatch.chdir(tmp_path / "configs")
    return repo


def test_file_at_an_older_revision(repo: git.Repo) -> None:
    cfg = load_config("HEAD~2:configs/train.yaml")
    assert cfg.data == {"lr": 0.02, "batch_size": 64}
    assert (cfg.format, cfg.path, cfg.source) == ("yaml", None, "HEAD~2:configs/train.yaml")
    assert cfg.provenance["git_commit"] == repo.commit("HEAD~2").hexsha
    assert cfg.text == "lr: 0.02\nbatch_size: 64\n"
    assert cfg.file_name() == "train.yaml"


def test_path_relative_to_current_directory(repo: git.Repo) -> None:
    assert load_config("HEAD~1:./train.yaml").data["lr"] == 0.01


def test_directory_at_a_revision(repo: git.Repo) -> None:
    cfg = load_config("HEAD~1:configs/run")
    assert cfg.format == "dir" and cfg.data == {"model": {"layers": 5}, "optim": {"lr": 0.01}}
    assert cfg.parts["optim"].source == "HEAD~1:configs/run/optim.yaml"
    assert cfg.parts["optim"].file_name() == "optim.yaml"


def test_unknown_revision_and_missing_path(repo: git.Repo) -> None:
    with pytest.raises(ConfigError) as err:
        load_config("nosuchrev:configs/train.yaml")
    assert str(err.value) == "nosuchrev:configs/train.yaml: unknown git revision 'nosuchrev'"
    with pytest.raises(
        ConfigError, match=r"^HEAD:configs/nope.yaml: 'configs/nope.yaml' does not exist at HEAD \("
    ):
        load_config("HEAD:configs/nope.yaml")


def test_not_in_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    with pytest.raises(ConfigError) as err:
        load_config("HEAD:train.yaml")
    assert (
        str(err.value)
        == "HEAD:train.yaml: no such file, and the current directory is not in a git repository"
    )


def test_diff_header_names_the_commit(repo: git.Repo) -> None:
    from click.testing import CliRunner

    from bisect_runs.cli import cli

    result = CliRunner().invoke(cli, ["diff", "HEAD~2:./train.yaml", "train.yaml"])
    assert result.exit_code == 1, result.output
    sha = repo.commit("HEAD~2").hexsha[:10]
    assert result.output.splitlines()[:2] == [f"A (good): HEAD~2:./train.yaml (commit {sha})", "B (bad):  train.yaml"]
    assert "25x lower learning rate" in result.output
