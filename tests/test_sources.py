"""Every config source format, read from a fixture in that exact on-disk format."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bisect_runs.errors import ConfigError
from bisect_runs.sources import FORMATS, load_config

FIXTURES = Path(__file__).parent / "fixtures" / "sources"


def fixture(rel: str) -> str:
    """Path of a fixture as a string, like a user would type it."""
    return str(FIXTURES / rel)


def test_yaml_keeps_nesting_order_and_text() -> None:
    cfg = load_config(fixture("yaml/train.yaml"))
    assert cfg.format == "yaml"
    assert list(cfg.data) == ["model", "optim", "callbacks", "layers", "use_amp", "notes", "seed"]
    assert cfg.data["optim"]["lr"] == 3e-4  # plain `3e-4` is a float (a string to PyYAML's 1.1 regex)
    assert cfg.data["use_amp"] is True
    assert cfg.text is not None and cfg.text.startswith("# MDN postfix")
    assert cfg.path == FIXTURES / "yaml/train.yaml"


def test_json_with_nan_and_infinity() -> None:
    cfg = load_config(fixture("json/train.json"))
    assert cfg.format == "json"
    assert math.isnan(cfg.data["grad_clip"])
    assert cfg.data["max_norm"] == math.inf and cfg.data["min_loss"] == -math.inf
    assert cfg.data["model"] == {"d_model": 256, "layers": [64, 128]}


def test_toml_tables_and_arrays_of_tables() -> None:
    cfg = load_config(fixture("toml/train.toml"))
    assert cfg.format == "toml"
    assert cfg.data["optim"] == {"lr": 3e-4, "betas": [0.9, 0.95]}
    assert [b["name"] for b in cfg.data["model"]["blocks"]] == ["attn", "mlp"]


def test_directory_reads_each_config_file_under_its_stem() -> None:
    cfg = load_config(fixture("dir/run_cfg"))
    assert cfg.format == "dir"
    assert set(cfg.data) == {"optim", "model", "data"}  # README.md and notes.txt ignored
    assert cfg.data["model"]["n_units"] == 1024
    assert cfg.data["data"]["white_noise_sd"] == 0.8
    assert {stem: part.format for stem, part in cfg.parts.items()} == {
        "data": "toml",
        "model": "json",
        "optim": "yaml",
    }


def test_shipped_directory_configs() -> None:
    cfg = load_config("configs/e4")
    assert cfg.format == "dir" and cfg.data["train"]["seed"] == 7


@pytest.mark.parametrize("layout", ["old", "new"])
def test_wandb_config_unwrapped_and_wandb_dropped(layout: str) -> None:
    cfg = load_config(fixture(f"wandb/{layout}/config.yaml"))
    assert cfg.format == "wandb"
    assert "_wandb" not in cfg.data and "wandb_version" not in cfg.data
    assert cfg.data["model"] == {"n_layers": 5, "n_units": 1024}
    assert cfg.data["batch_size"] == 64
    assert cfg.provenance["wandb_layout"] == layout
    if layout == "old":
        assert cfg.provenance["wandb_version"] == 1
        assert cfg.data["lr"] == 0.02


def test_wandb_run_directory() -> None:
    cfg = load_config(fixture("wandb/run-20240105_101500-3kq9xz1a"))
    assert cfg.format == "wandb"
    assert cfg.data["optimizer"] == "adamw"
    assert cfg.path == FIXTURES / "wandb/run-20240105_101500-3kq9xz1a/files/config.yaml"


def test_wandb_files_directory_holding_only_config_yaml(tmp_path: Path) -> None:
    files = tmp_path / "run-x" / "files"
    files.mkdir(parents=True)
    (files / "config.yaml").write_bytes(Path(fixture("wandb/new/config.yaml")).read_bytes())
    cfg = load_config(files)
    assert cfg.format == "wandb" and cfg.data["batch_size"] == 64  # not `config.batch_size`
    assert load_config(tmp_path / "run-x").data == cfg.data


def test_hydra_output_directory_with_overrides_as_provenance() -> None:
    cfg = load_config(fixture("hydra/2024-01-05/10-15-00"))
    assert cfg.format == "hydra"
    assert cfg.data["optim"] == {"lr": 0.1, "momentum": 0.9}
    assert cfg.provenance["hydra_overrides"] == ["optim.lr=0.1", "trainer.precision=16"]


def test_hydra_config_file_given_directly() -> None:
    cfg = load_config(fixture("hydra/2024-01-05/10-15-00/.hydra/config.yaml"))
    assert cfg.format == "hydra"
    assert cfg.provenance["hydra_overrides"] == ["optim.lr=0.1", "trainer.precision=16"]


def test_lightning_hparams_python_tuple_read_as_list() -> None:
    cfg = load_config(fixture("lightning/hparams.yaml"))
    assert cfg.format == "lightning"
    assert cfg.data["image_size"] == [224, 224]
    assert cfg.data["betas"] == [0.9, 0.999]


@pytest.mark.parametrize("name", ["training_args.json", "config.json"])
def test_hugging_face_json(name: str) -> None:
    cfg = load_config(fixture(f"hf/{name}"))
    assert cfg.format == "hf"
    assert cfg.data == json.loads((FIXTURES / "hf" / name).read_text())


def test_python_config_of_assignments_is_parsed_not_run() -> None:
    cfg = load_config(fixture("python/train_shakespeare_char.py"))
    assert cfg.format == "python"
    assert cfg.data["learning_rate"] == 1e-3
    assert cfg.data["lr_decay_iters"] == 5000  # `= max_iters`: an earlier name
    assert cfg.data["tokens_per_iter"] == 64 * 256  # arithmetic on earlier names
    assert cfg.data["betas"] == [0.9, 0.99]
    assert cfg.provenance["skipped_statements"] == ["line 4: import"]


def test_argparse_namespace_dump() -> None:
    cfg = load_config(fixture("argparse/args.txt"))
    assert cfg.format == "argparse"
    assert cfg.data["lr"] == 0.0003 and cfg.data["warmup"] is None
    assert cfg.data["device"] == "device(type='cuda', index=0)"  # not a literal: kept as text
    assert cfg.data["widths"] == [64, 128]


@pytest.mark.parametrize(
    "rel",
    [
        "mlflow/0/4f2a9c1e8b7d4e0f9a1b2c3d4e5f6a7b",
        "mlflow/0/4f2a9c1e8b7d4e0f9a1b2c3d4e5f6a7b/params",
    ],
)
def test_mlflow_params_parsed_as_scalars(rel: str) -> None:
    cfg = load_config(fixture(rel))
    assert cfg.format == "mlflow"
    assert cfg.data == {
        "batch_size": 128,
        "betas": [0.9, 0.999],
        "learning_rate": 0.001,
        "optimizer": "AdamW",
        "scheduler": None,
        "use_amp": True,
    }


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        (
            "binary/args.pkl",
            {"lr": 0.02, "batch_size": 64, "optimizer": "adam", "widths": [64, 128], "seed": 0},
        ),
        ("binary/args_dict.pickle", {"lr": 0.0008, "nested": {"dropout": 0.4}, "tags": ["a", "b"]}),
        ("binary/simple_namespace.pkl", {"lr": 0.1, "steps": 100}),
    ],
)
def test_pickled_args_of_plain_values(rel: str, expected: dict[str, object]) -> None:
    cfg = load_config(fixture(rel))
    assert cfg.format == "pickle"
    assert cfg.data == expected


def test_pickle_naming_another_class_is_refused_and_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config(str(FIXTURES / "binary/evil.pkl"))
    assert str(err.value) == (
        f"{FIXTURES / 'binary/evil.pkl'}: pickle refers to posix.system; refused "
        "(only plain values, dict, argparse.Namespace and SimpleNamespace are read)"
    )
    assert not (tmp_path / "pwned-by-pickle").exists()


def test_torch_checkpoint_hyper_parameters() -> None:
    pytest.importorskip("torch")
    cfg = load_config(fixture("binary/lightning.ckpt"))
    assert cfg.format == "torch"
    assert cfg.data == {"lr": 0.001, "hidden": 32, "betas": [0.9, 0.999], "scale": 0.5}
    assert cfg.provenance["checkpoint_key"] == "hyper_parameters"


def test_torch_checkpoint_with_argparse_namespace() -> None:
    pytest.importorskip("torch")
    cfg = load_config(fixture("binary/namespace_args.pt"))
    assert cfg.data["optimizer"] == "adam" and cfg.provenance["checkpoint_key"] == "args"


def test_torch_checkpoint_without_config_names_the_keys_it_has() -> None:
    pytest.importorskip("torch")
    with pytest.raises(
        ConfigError,
        match=r"no config in checkpoint: expected one of config, args, hparams, hyper_parameters \(keys found: model, step\)$",
    ):
        load_config(fixture("binary/no_config.pth"))


def test_torch_checkpoint_with_code_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"evil\.pt: checkpoint refers to posix\.system; refused"):
        load_config(str(FIXTURES / "binary/evil.pt"))
    assert not (tmp_path / "pwned-by-pickle").exists()


@pytest.mark.parametrize(
    ("rel", "fmt", "expected"),
    [
        ("sniff/args_json", "json", {"lr": 0.001, "batch_size": 32}),
        ("sniff/nanogpt", "python", {"batch_size": 12, "block_size": 1024, "learning_rate": 6e-4}),
        ("sniff/namespace", "argparse", {"lr": 0.001, "batch_size": 32, "name": "run-7"}),
        ("sniff/tomlish", "toml", {"optim": {"lr": 0.001}}),
        ("sniff/yamlish", "yaml", {"lr": 1e-3, "batch_size": 32}),
    ],
)
def test_extensionless_files_are_sniffed(rel: str, fmt: str, expected: dict[str, object]) -> None:
    cfg = load_config(fixture(rel))
    assert (cfg.format, cfg.data) == (fmt, expected)


def test_shipped_extensionless_configs_are_yaml() -> None:
    assert load_config("configs/baseline").data["lrStart"] == 0.02
    assert load_config("configs/run11").data["weight_decay"] == 1e-4


def test_format_can_be_forced() -> None:
    cfg = load_config(fixture("wandb/new/config.yaml"), fmt="yaml")
    assert cfg.format == "yaml" and cfg.data["lr"] == {"value": 0.0008}
    assert load_config(fixture("sniff/yamlish"), "yaml").format == "yaml"


def test_formats_listed() -> None:
    assert set(FORMATS) >= {
        "yaml",
        "json",
        "toml",
        "dir",
        "wandb",
        "hydra",
        "lightning",
        "hf",
        "python",
        "argparse",
        "mlflow",
        "pickle",
        "torch",
    }


def test_hydra_dot_directory_reads_as_the_run(tmp_path: Path) -> None:
    """`run/.hydra` given instead of `run`: the composed config, not its three YAML files."""
    hydra = tmp_path / "run" / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "config.yaml").write_text("optim:\n  lr: 0.1\n")
    (hydra / "hydra.yaml").write_text("hydra:\n  run:\n    dir: x\n")
    (hydra / "overrides.yaml").write_text("- optim.lr=0.1\n")
    cfg = load_config(str(hydra))
    assert cfg.format == "hydra"
    assert cfg.data == {"optim": {"lr": 0.1}}
    assert cfg.provenance["hydra_overrides"] == ["optim.lr=0.1"]
    assert cfg.path == tmp_path / "run"
