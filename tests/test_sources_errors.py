"""Bad input: one ConfigError naming the file and the problem, nothing executed, answered fast."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bisect_runs.errors import ConfigError
from bisect_runs.sources import load_config

BAD = Path(__file__).parent / "fixtures" / "sources" / "bad"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("duplicate.yaml", "line 3, column 1: duplicate key 'lr' (first at line 1)"),
        ("duplicate.json", "line 4: duplicate key 'lr' (first at line 2)"),
        ("syntax.yaml", "line 3, column 11: mapping values are not allowed here"),
        ("syntax.json", "line 4, column 1: Expecting property name enclosed in double quotes"),
        ("bad.toml", "line 2, column 9: Cannot overwrite a value (duplicate key 'lr')"),
        ("list.yaml", "top level is a list, expected a mapping of keys"),
        ("empty.yaml", "empty file"),
        ("comments_only.yaml", "empty config (no keys)"),
        ("recursive.yaml", "line 1: recursive YAML alias"),
        (
            "unsafe.yaml",
            "line 2, column 6: unsafe or unknown YAML tag '!!python/object/apply:os.system' refused (only plain data is read)",
        ),
        (
            "unsafe_tuple_module.yaml",
            "line 2, column 6: unsafe or unknown YAML tag '!!python/name:os.system' refused (only plain data is read)",
        ),
        (
            "binary.dat",
            "binary file, not a config format bisect-runs reads (expected YAML, JSON, TOML, Python, a pickle or a torch checkpoint)",
        ),
        (
            "calls.py",
            "line 4: a function call is not a plain assignment; only `name = value` statements are read (the file is never executed)",
        ),
    ],
)
def test_bad_input_is_one_located_error(name: str, message: str) -> None:
    path = str(BAD / name)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: {message}"
    assert "\n" not in str(err.value)


def test_unsafe_yaml_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError):
        load_config(str(BAD / "unsafe.yaml"))
    assert not (tmp_path / "pwned-by-yaml").exists()


def test_alias_bomb_refused_quickly() -> None:
    start = time.perf_counter()
    with pytest.raises(
        ConfigError, match=r"alias_bomb\.yaml: YAML aliases expand to more than 1,000,000 nodes"
    ):
        load_config(str(BAD / "alias_bomb.yaml"))
    assert time.perf_counter() - start < 1.0


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("no/such/config.yaml")
    assert str(err.value) == "no/such/config.yaml: no such file or directory"


def test_unknown_format() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("configs/baseline", fmt="ini")
    assert str(err.value).startswith(
        "configs/baseline: unknown format 'ini' (expected one of yaml, json, toml, dir,"
    )


def test_directory_without_configs(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path)
    assert (
        str(err.value) == f"{tmp_path}: directory holds no config files (.yaml, .yml, .json, .toml)"
    )


def test_error_inside_a_directory_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("a: 1\n")
    (tmp_path / "bad.yaml").write_text("a: 1\na: 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path)
    assert (
        str(err.value)
        == f"{tmp_path / 'bad.yaml'}: line 2, column 1: duplicate key 'a' (first at line 1)"
    )


def test_two_files_with_one_stem(tmp_path: Path) -> None:
    (tmp_path / "optim.yaml").write_text("lr: 1\n")
    (tmp_path / "optim.json").write_text('{"lr": 2}\n')
    with pytest.raises(
        ConfigError, match=r"two config sources for 'optim' \(optim.json and optim.yaml\)"
    ):
        load_config(tmp_path)


def test_nested_duplicate_and_merge_keys(tmp_path: Path) -> None:
    merged = tmp_path / "merge.yaml"
    merged.write_text("base: &b {lr: 1, wd: 2}\nrun:\n  <<: *b\n  lr: 3\n")
    assert load_config(merged).data["run"] == {
        "lr": 3,
        "wd": 2,
    }  # a merge key override is not a duplicate
    nested = tmp_path / "nested.yaml"
    nested.write_text("optim:\n  lr: 1\n  wd: 0\n  lr: 2\n")
    with pytest.raises(
        ConfigError, match=r"line 4, column 3: duplicate key 'lr' \(first at line 2\)$"
    ):
        load_config(nested)


def test_python_config_keeps_code_in_values_as_text(tmp_path: Path) -> None:
    """nanoGPT's finetune configs name runs with `str(time.time())`: read as text, never run."""
    file = tmp_path / "cfg.py"
    marker = tmp_path / "ran"
    file.write_text(
        "import time\nlr = 0.1\nwandb_run_name = 'ft-' + str(time.time())\n"
        f"steps = open({str(marker)!r}, 'w')\nwarm = lr * 2\n"
    )
    cfg = load_config(file)
    assert cfg.data == {
        "lr": 0.1,
        "wandb_run_name": "'ft-' + str(time.time())",
        "steps": f"open({str(marker)!r}, 'w')",
        "warm": 0.2,
    }
    assert cfg.provenance["unevaluated"] == ["line 3: wandb_run_name", "line 4: steps"]
    assert not marker.exists()


def test_forced_format_that_needs_a_directory(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"format 'mlflow' is read from a directory, but this is a file"
    ):
        load_config("configs/baseline", fmt="mlflow")
    with pytest.raises(
        ConfigError, match=r"format 'toml' is read from a file, but this is a directory"
    ):
        load_config("configs/e4", fmt="toml")


def test_binary_file_with_a_checkpoint_suffix_is_not_handed_to_torch(tmp_path: Path) -> None:
    """`pytorch_model.bin`-style names do not make random bytes a checkpoint (nor load torch)."""
    file = tmp_path / "weights.bin"
    file.write_bytes(bytes(range(1, 256)) * 8)
    with pytest.raises(ConfigError) as err:
        load_config(file)
    assert str(err.value) == (
        f"{file}: binary file, not a config format bisect-runs reads "
        "(expected YAML, JSON, TOML, Python, a pickle or a torch checkpoint)"
    )


def test_text_in_a_legacy_encoding_names_the_byte(tmp_path: Path) -> None:
    file = tmp_path / "latin1.yaml"
    file.write_bytes("lr: 0.1\nname: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        load_config(file)
    assert str(err.value) == (
        f"{file}: line 2, column 10: byte 0xe9 is not UTF-8 "
        "(save the file as UTF-8; Latin-1 or Windows-1252 text is not read)"
    )


def test_toml_duplicate_table_is_named(tmp_path: Path) -> None:
    file = tmp_path / "dup.toml"
    file.write_text("[optim]\nlr = 1\n[optim]\nwd = 2\n")
    with pytest.raises(ConfigError, match=r"line 3, column 7: .*twice \(duplicate key 'optim'\)$"):
        load_config(file)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory")
def test_unlistable_directory_is_one_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "a.yaml").write_text("lr: 1\n")
    locked.chmod(0)
    try:
        with pytest.raises(ConfigError, match=r"locked: cannot read \(Permission denied\)$"):
            load_config(locked)
    finally:
        locked.chmod(0o755)


def test_hydra_multirun_root_asks_for_one_run(tmp_path: Path) -> None:
    sweep = tmp_path / "multirun" / "12-00-00"
    for job in ("0", "1", "10", "2"):
        (sweep / job / ".hydra").mkdir(parents=True)
        (sweep / job / ".hydra" / "config.yaml").write_text(f"lr: 0.{job}\n")
    (sweep / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(sweep))
    assert str(err.value) == (
        f"{sweep}: a Hydra multirun directory of 4 runs (0, 1, 2, 10); "
        f"compare one run with another, e.g. {sweep / '0'}"
    )
