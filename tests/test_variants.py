"""Writing variant configs in the base's own format and layout."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from bisect_runs.errors import ConfigError
from bisect_runs.sources import load_config
from bisect_runs.variants import ABSENT, apply_changes, write_variant

FIXTURES = Path(__file__).parent / "fixtures" / "sources"

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


def python_literals(text: str) -> dict[str, Any]:
    """`name = literal` statements of a Python config, read with ast.literal_eval."""
    values: dict[str, Any] = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:  # an expression (`lr_decay_iters = max_iters`): not a literal
                continue
    return values


def test_apply_changes_sets_inserts_and_removes() -> None:
    data = {"a": {"b": 1}, "l": [1, 2], "c": 3}
    new = apply_changes(
        data, {("a", "b"): 2, ("x", "y", "z"): 1, ("c",): ABSENT, ("l", 2): 3, ("gone",): ABSENT}
    )
    assert new == {"a": {"b": 2}, "l": [1, 2, 3], "x": {"y": {"z": 1}}}
    assert data == {"a": {"b": 1}, "l": [1, 2], "c": 3}  # the base is not touched


def test_apply_changes_through_a_scalar_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"cannot change c\.d: c is a int, not a mapping"):
        apply_changes({"c": 3}, {("c", "d"): 1})


def test_absent_is_a_singleton() -> None:
    import copy
    import pickle

    assert copy.deepcopy(ABSENT) is ABSENT and pickle.loads(pickle.dumps(ABSENT)) is ABSENT
    assert repr(ABSENT) == "ABSENT"


def test_yaml_keeps_comments_order_and_untouched_lines(tmp_path: Path) -> None:
    base = load_config(FIXTURES / "yaml/train.yaml")
    out = write_variant(
        base,
        {
            ("optim", "lr"): 0.02,
            ("model", "dropout"): ABSENT,
            ("optim", "grad_clip"): 1.5,
            ("seed",): 0,
            ("callbacks", 0, "patience"): 10000,
            ("new_section", "warmup"): 100,
        },
        tmp_path,
    )
    assert out == tmp_path / "train.yaml"
    text = out.read_text()
    assert text == (
        "# MDN postfix, E4 settings\n"
        "model:\n"
        "  n_layers: 4   # depth\n"
        "  d_model: 256\n"
        "optim:\n"
        "  name: adamw\n"
        "  lr: 0.02        # PyYAML reads this as a string\n"
        "  weight_decay: 1.0e-05\n"
        "  betas: [0.9, 0.95]\n"
        "  grad_clip: 1.5\n"
        "callbacks:\n"
        "  - name: early_stop\n"
        "    patience: 10000\n"
        "  - name: checkpoint\n"
        "    every: 500\n"
        "layers:\n"
        "  - channels: 64\n"
        "  - channels: 128\n"
        "use_amp: yes\n"
        "notes: |\n"
        "  first line\n"
        "  second line\n"
        "seed: 0\n"
        "new_section:\n"
        "  warmup: 100\n"
    )


def test_extensionless_yaml_stays_extensionless(tmp_path: Path) -> None:
    base = load_config("configs/run11")
    out = write_variant(
        base,
        {("lrStart",): 0.02, ("lrEnd",): 0.02, ("weight_decay",): ABSENT, ("l2_decay",): 1e-5},
        tmp_path,
    )
    assert out == tmp_path / "run11"
    text = out.read_text()
    assert "# augmentation: SpecAugment instead of noise\n" in text
    assert "weight_decay" not in text and text.endswith("num_workers: 4\nl2_decay: 1.0e-05\n")
    again = load_config(out)
    assert (again.data["lrStart"], again.data["l2_decay"]) == (0.02, 1e-5)


def test_shell_metacharacters_are_a_literal(tmp_path: Path) -> None:
    evil = "; rm -rf ~ && echo 'x' \"y\" $(id) # not a comment"
    for spec in (
        "configs/baseline",
        FIXTURES / "json/train.json",
        FIXTURES / "toml/train.toml",
        FIXTURES / "python/train_shakespeare_char.py",
    ):
        base = load_config(spec)
        first = next(iter(base.data))
        out = write_variant(
            base, {(first,): evil, ("added_cmd",): evil}, tmp_path / Path(str(spec)).name
        )
        data = load_config(out).data
        assert data[first] == evil and data["added_cmd"] == evil


def test_yaml_multiline_and_special_strings(tmp_path: Path) -> None:
    base = load_config(FIXTURES / "yaml/train.yaml")
    values = {
        ("notes",): "a\nb: c\n",
        ("optim", "name"): "yes",
        ("seed",): "007",
        ("use_amp",): None,
    }
    out = write_variant(base, values, tmp_path)
    data = load_config(out).data
    assert (data["notes"], data["optim"]["name"], data["seed"], data["use_amp"]) == (
        "a\nb: c\n",
        "yes",
        "007",
        None,
    )


def test_yaml_that_cannot_be_spliced_is_dumped_whole(tmp_path: Path) -> None:
    file = tmp_path / "anchors.yaml"
    file.write_text("# header\nbase: &b {lr: 1, wd: 2}\nrun:\n  <<: *b\n  lr: 3\n")
    out = write_variant(load_config(file), {("run", "wd"): 5}, tmp_path / "out")
    assert load_config(out).data == {"base": {"lr": 1, "wd": 2}, "run": {"lr": 3, "wd": 5}}
    assert out.read_text().startswith("# header\n")


def test_json_keeps_indentation_and_nan(tmp_path: Path) -> None:
    base = load_config(FIXTURES / "json/train.json")
    out = write_variant(base, {("lr",): 0.02, ("model", "layers"): [64]}, tmp_path)
    text = out.read_text()
    assert text.startswith('{\n    "lr": 0.02,\n    "batch_size": 512,\n    "grad_clip": NaN,')
    assert json.loads(text)["model"] == {"d_model": 256, "layers": [64]}


def test_toml_stays_toml(tmp_path: Path) -> None:
    base = load_config(FIXTURES / "toml/train.toml")
    out = write_variant(
        base, {("optim", "lr"): 0.1, ("model", "blocks", 1, "hidden"): 2048}, tmp_path
    )
    again = tomllib.loads(out.read_text(encoding="utf-8"))  # TOML's own parser, not the library's reader
    assert out.suffix == ".toml"
    assert again["optim"]["lr"] == 0.1 and again["model"]["blocks"][1]["hidden"] == 2048


def test_toml_cannot_hold_null(tmp_path: Path) -> None:
    base = load_config(FIXTURES / "toml/train.toml")
    with pytest.raises(
        ConfigError, match=r"TOML has no null value; cannot write optim\.lr = null$"
    ):
        write_variant(base, {("optim", "lr"): None}, tmp_path)


def test_directory_stays_a_directory_of_the_same_files(tmp_path: Path) -> None:
    base = load_config(FIXTURES / "dir/run_cfg")
    out = write_variant(
        base,
        {("optim", "lr"): 0.0008, ("model", "n_layers"): ABSENT, ("data", "batch_size"): 32},
        tmp_path,
    )
    assert out == tmp_path / "run_cfg"
    assert sorted(p.name for p in out.iterdir()) == ["data.toml", "model.json", "optim.yaml"]
    assert (out / "optim.yaml").read_text() == "# optimizer\nlr: 0.0008\nweight_decay: 1e-5\n"
    assert tomllib.loads((out / "data.toml").read_text()) == {"batch_size": 32, "white_noise_sd": 0.8}
    assert json.loads((out / "model.json").read_text()) == {"n_units": 1024, "bidirectional": True}


def test_python_config_keeps_comments_and_replaces_values(tmp_path: Path) -> None:
    base = load_config(FIXTURES / "python/train_shakespeare_char.py")
    out = write_variant(
        base, {("learning_rate",): 6e-4, ("dropout",): ABSENT, ("compile",): False}, tmp_path
    )
    text = out.read_text()
    assert out.name == "train_shakespeare_char.py"
    assert "learning_rate = 0.0006 # with baby networks can afford to go a bit higher\n" in text
    assert "dropout" not in text and text.endswith(
        "warmup_iters = 100 # not super necessary potentially\ncompile = False\n"
    )
    assert "import math\n" in text
    assigned = python_literals(text)  # Python's own parser: the literal assignments of the file
    assert assigned["learning_rate"] == 6e-4 and assigned["compile"] is False and "dropout" not in assigned


def test_python_config_derived_names_follow_their_inputs(tmp_path: Path) -> None:
    """`lr_decay_iters = max_iters` stays an expression, so a shorter budget also shortens the schedule."""
    base = load_config(FIXTURES / "python/train_shakespeare_char.py")
    out = write_variant(base, {("max_iters",): 100}, tmp_path)
    data = load_config(out).data
    assert (data["max_iters"], data["lr_decay_iters"]) == (100, 100)


@pytest.mark.parametrize("layout", ["old", "new"])
def test_wandb_keeps_value_wrappers(layout: str, tmp_path: Path) -> None:
    base = load_config(FIXTURES / f"wandb/{layout}/config.yaml")
    out = write_variant(base, {("lr",): 0.5, ("batch_size",): ABSENT, ("dropout",): 0.1}, tmp_path)
    raw = load_config(out, "yaml").data
    assert raw["lr"]["value"] == 0.5 and "_wandb" in raw and "batch_size" not in raw
    assert raw["dropout"] == ({"desc": None, "value": 0.1} if layout == "old" else {"value": 0.1})
    assert load_config(out).data["lr"] == 0.5
    if layout == "old":
        assert raw["lr"]["desc"] == "Learning rate at the start"


def test_hydra_dir_written_as_hydra_dir(tmp_path: Path) -> None:
    base = load_config(FIXTURES / "hydra/2024-01-05/10-15-00")
    out = write_variant(base, {("optim", "lr"): 0.01}, tmp_path)
    assert out == tmp_path / "10-15-00"
    assert sorted(p.name for p in (out / ".hydra").iterdir()) == [
        "config.yaml",
        "hydra.yaml",
        "overrides.yaml",
    ]
    again = load_config(out)
    assert again.format == "hydra" and again.data["optim"]["lr"] == 0.01


def test_lightning_hparams_tuple_becomes_list(tmp_path: Path) -> None:
    base = load_config(FIXTURES / "lightning/hparams.yaml")
    out = write_variant(base, {("image_size",): [128, 128]}, tmp_path)
    assert out.name == "hparams.yaml"
    assert "betas: !!python/tuple [0.9, 0.999]" in out.read_text()  # untouched lines stay
    assert load_config(out).data["image_size"] == [128, 128]


@pytest.mark.parametrize(
    "rel",
    [
        "mlflow/0/4f2a9c1e8b7d4e0f9a1b2c3d4e5f6a7b",
        "mlflow/0/4f2a9c1e8b7d4e0f9a1b2c3d4e5f6a7b/params",
    ],
)
def test_mlflow_params_files(rel: str, tmp_path: Path) -> None:
    base = load_config(FIXTURES / rel)
    out = write_variant(base, {("learning_rate",): 0.01, ("scheduler",): ABSENT}, tmp_path)
    again = load_config(out)
    assert again.format == "mlflow"
    assert again.data["learning_rate"] == 0.01 and "scheduler" not in again.data


@pytest.mark.parametrize(
    ("rel", "name"),
    [
        ("binary/args.pkl", "args.yaml"),
        ("argparse/args.txt", "args.yaml"),
        ("binary/lightning.ckpt", "lightning.yaml"),
    ],
)
def test_pickles_checkpoints_and_namespaces_are_written_as_yaml(
    rel: str, name: str, tmp_path: Path
) -> None:
    if rel.endswith(".ckpt"):
        pytest.importorskip("torch")
    base = load_config(FIXTURES / rel)
    first = next(iter(base.data))
    out = write_variant(base, {(first,): "changed"}, tmp_path)
    assert out == tmp_path / name
    again = load_config(out)
    assert again.format == "yaml" and again.data == {**base.data, first: "changed"}


def test_git_source_is_written_from_its_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import git

    repo = git.Repo.init(tmp_path / "repo")
    shutil.copy("configs/run11", tmp_path / "repo" / "run11")
    repo.index.add(["run11"])
    repo.index.commit(
        "run 11", author=git.Actor("T", "t@example.com"), committer=git.Actor("T", "t@example.com")
    )
    monkeypatch.chdir(tmp_path / "repo")
    base = load_config("HEAD:run11")
    out = write_variant(base, {("num_workers",): 8}, tmp_path / "out")
    assert out == tmp_path / "out" / "run11"
    assert out.read_text() == (tmp_path / "repo" / "run11").read_text().replace(
        "num_workers: 4", "num_workers: 8"
    )


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    write_variant(load_config("configs/e5"), {("train", "lr"): 1.0}, tmp_path)
    assert sorted(p.name for p in (tmp_path / "e5").iterdir()) == [
        "eval.yaml",
        "model.yaml",
        "train.yaml",
    ]


HAND_BASE = {"optim": {"lr": 0.001, "betas": [0.9, 0.99]}, "seed": 1, "amp": True, "name": "run"}
HAND_CHANGES: dict[tuple[str | int, ...], Any] = {
    ("optim", "lr"): 0.02,
    ("optim", "betas", 1): 0.95,
    ("amp",): ABSENT,
    ("data", "workers"): 4,
}
HAND_EXPECTED = {"optim": {"lr": 0.02, "betas": [0.9, 0.95]}, "seed": 1, "name": "run", "data": {"workers": 4}}


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml"])
def test_written_variant_read_back_by_the_formats_own_parser(fmt: str, tmp_path: Path) -> None:
    """Oracle independent of the library: the stock parser of each format and a dict written by hand."""
    import yaml

    file = tmp_path / f"train.{fmt}"
    text = {
        "yaml": "# lab config\noptim:\n  lr: 0.001\n  betas: [0.9, 0.99]\nseed: 1\namp: true\nname: run\n",
        "json": json.dumps(HAND_BASE, indent=2),
        "toml": 'seed = 1\namp = true\nname = "run"\n\n[optim]\nlr = 0.001\nbetas = [0.9, 0.99]\n',
    }[fmt]
    file.write_text(text)
    out = write_variant(load_config(file), HAND_CHANGES, tmp_path / "out")
    parse = {"yaml": yaml.safe_load, "json": json.loads, "toml": tomllib.loads}[fmt]
    assert parse(out.read_text(encoding="utf-8")) == HAND_EXPECTED
