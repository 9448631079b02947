"""End-to-end searches against trainers built on the ecosystem's own argument handling, unmodified.

Each trainer in tests/trainers/ takes its config the way its library does (argparse flags,
nanoGPT's configurator, Hydra, `HfArgumentParser`, `LightningCLI`); each search has one
planted culprit, a learning rate about 30x lower, among six or seven differences, and must
name it. Commands and override styles are the recipes of docs/trainers.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from bisect_runs.cli import cli

pytest.importorskip("torch")
TRAINERS = Path(__file__).parent / "trainers"
FAST = {"steps": 40, "seeds": 2, "parallel": 2, "metric_source": "regex", "out": "out"}


def search(root: Path, **settings: Any) -> tuple[int, dict[str, Any], str]:
    """Write bisect.yaml in `root`, run `bisect-runs search` on it, return exit code, summary and output."""
    (root / "bisect.yaml").write_text(yaml.safe_dump({**FAST, **settings}, sort_keys=False))
    result = CliRunner().invoke(cli, ["search", "--project", str(root / "bisect.yaml")])
    path = root / "out" / "summary.json"
    return result.exit_code, json.loads(path.read_text()) if path.exists() else {}, result.output


def write_json(path: Path, data: dict[str, Any]) -> str:
    path.write_text(json.dumps(data, indent=2))
    return path.name


def launches(root: Path) -> list[dict[str, Any]]:
    """Every trial's launch.json."""
    return [json.loads(p.read_text()) for p in sorted((root / "out" / "trials").glob("*/launch.json"))]


def assert_found(code: int, summary: dict[str, Any], output: str, culprit: list[str]) -> None:
    assert code == 0, output
    assert summary["reproduced"] is True
    assert summary["culprits"] == [culprit], summary["verdict"]
    assert "causes the regression" in summary["verdict"]


ARGPARSE_GOOD = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "hidden": 32, "dropout": 0.0, "batch_size": 64,
                 "use_amp": False, "log_interval": 10, "steps": 1000, "seed": 0, "out": "runs/baseline"}
ARGPARSE_BAD = {**ARGPARSE_GOOD, "lr": 0.003, "weight_decay": 1e-4, "dropout": 0.05, "batch_size": 128,
                "use_amp": True, "log_interval": 5, "out": "runs/exp7"}


def test_argparse_trainer_with_store_true_flags(tmp_path: Path) -> None:
    code, summary, output = search(
        tmp_path,
        good=write_json(tmp_path / "good_args.json", ARGPARSE_GOOD),
        bad=write_json(tmp_path / "bad_args.json", ARGPARSE_BAD),
        command=f"{{python}} {TRAINERS / 'argparse_trainer.py'} {{args}} --out {{run_dir}}",
        override_style="space store_true", steps_key="steps", seed_key="seed", metric="val_loss",
    )
    assert_found(code, summary, output, ["lr"])
    argvs = [launch["argv"] for launch in launches(tmp_path)]
    assert any("--use_amp" in argv for argv in argvs) and any("--use_amp" not in argv for argv in argvs)
    assert all("False" not in argv and "false" not in argv for argv in argvs)  # store_true: absent, not --use_amp false


NANOGPT_GOOD = """# tiny char-level run, nanoGPT style
out_dir = 'out-tiny'
eval_interval = 20
log_interval = 10
eval_iters = 4
batch_size = 16
block_size = 16
n_layer = 1
n_head = 2
n_embd = 16
dropout = 0.0
bias = False
learning_rate = 3e-3
max_iters = 1000
lr_decay_iters = max_iters
min_lr = learning_rate / 10
beta2 = 0.99
weight_decay = 1e-1
grad_clip = 1.0
"""
NANOGPT_BAD = (
    NANOGPT_GOOD.replace("log_interval = 10", "log_interval = 5").replace("dropout = 0.0", "dropout = 0.1")
    .replace("bias = False", "bias = True").replace("learning_rate = 3e-3", "learning_rate = 1e-4")
    .replace("beta2 = 0.99", "beta2 = 0.95").replace("weight_decay = 1e-1", "weight_decay = 0.0")
    .replace("grad_clip = 1.0", "grad_clip = 0.5")
)


def test_nanogpt_configurator_that_fixes_its_own_seed(tmp_path: Path) -> None:
    (tmp_path / "train_good.py").write_text(NANOGPT_GOOD)
    (tmp_path / "train_bad.py").write_text(NANOGPT_BAD)
    code, summary, output = search(
        tmp_path, good="train_good.py", bad="train_bad.py",
        command=f"{{python}} {TRAINERS / 'nanogpt_trainer.py'} {tmp_path / 'train_bad.py'} {{overrides}} --out_dir={{run_dir}}",
        override_style="equals python", steps_key="max_iters", metric="val_loss",
        metric_pattern=r"step (?P<step>\d+): train loss \S+, val loss (?P<value>\S+)",
    )
    assert_found(code, summary, output, ["learning_rate"])
    assert summary["seeds"]["ignored"] is True
    assert "Warning: the trainer ignores the seed" in summary["verdict"]
    assert "CI" not in summary["verdict"]  # deterministic runs: no made-up intervals
    assert "min_lr" not in {d["key"] for d in summary["differences"]}  # the same expression on both sides
    argvs = [launch["argv"] for launch in launches(tmp_path)]
    assert all("--max_iters=40" in argv for argv in argvs)  # steps_key, as an override of the bad config
    assert any("--bias=False" in argv for argv in argvs)  # Python literals, as literal_eval reads them


HYDRA_GOOD = {"seed": 0, "model": {"hidden": 32, "activation": "relu", "dropout": 0.0},
              "optim": {"lr": 0.01, "weight_decay": 0.0, "grad_clip": 1.0},
              "data": {"batch_size": 64}, "trainer": {"max_steps": 1000, "log_every": 10}}
HYDRA_BAD = {"seed": 0, "model": {"hidden": 32, "activation": "relu", "dropout": 0.05},
             "optim": {"lr": 0.0003, "weight_decay": 1e-5, "grad_clip": 5.0},
             "data": {"batch_size": 32}, "trainer": {"max_steps": 1000, "log_every": 5}}


def test_hydra_app_with_overrides_and_its_outputs_in_the_run_dir(tmp_path: Path) -> None:
    pytest.importorskip("hydra")
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(HYDRA_GOOD))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(HYDRA_BAD))
    command = (f"{{python}} {TRAINERS / 'hydra_trainer.py'} --config-path {tmp_path} --config-name bad "
               "hydra.run.dir={run_dir} {overrides}")
    code, summary, output = search(
        tmp_path, good="good.yaml", bad="bad.yaml", command=command, steps_key="trainer.max_steps",
        seed_key="seed", metric="val_loss", metric_source="jsonl", steps=100,
    )
    assert_found(code, summary, output, ["optim.lr"])
    run = next(Path(launch["run_dir"]) for launch in launches(tmp_path) if "optim.lr=0.01" in launch["argv"])
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    assert "optim.lr=0.01" in overrides and "trainer.max_steps=100" in overrides
    assert yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["optim"]["lr"] == 0.01


HF_GOOD = {"n_layer": 1, "n_embd": 16, "n_head": 2, "vocab_size": 32, "seq_len": 16, "learning_rate": 3e-3,
           "weight_decay": 0.0, "warmup_steps": 0, "per_device_train_batch_size": 16, "logging_steps": 10,
           "max_steps": 1000, "seed": 0, "output_dir": "runs/baseline", "report_to": "none", "use_cpu": True,
           "save_strategy": "no", "disable_tqdm": True, "dataloader_num_workers": 0}
HF_BAD = {**HF_GOOD, "learning_rate": 1e-4, "weight_decay": 0.01, "warmup_steps": 2, "logging_steps": 5,
          "adam_beta2": 0.98, "lr_scheduler_type": "constant", "output_dir": "runs/exp3"}


def hf_configs(root: Path) -> dict[str, str]:
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # the Trainer needs it on PyTorch
    return {"good": write_json(root / "good.json", HF_GOOD), "bad": write_json(root / "bad.json", HF_BAD)}


def test_hf_trainer_with_hfargumentparser_flags(tmp_path: Path) -> None:
    code, summary, output = search(
        tmp_path, **hf_configs(tmp_path), command=f"{{python}} {TRAINERS / 'hf_trainer.py'} {{args}}",
        override_style="space", steps_key="max_steps", seed_key="seed", run_dir_key="output_dir", metric="eval_loss",
    )
    assert_found(code, summary, output, ["learning_rate"])
    argv = launches(tmp_path)[0]["argv"]
    assert argv[argv.index("--use_cpu") + 1] == "true" and argv[argv.index("--max_steps") + 1] == "40"
    for launch in launches(tmp_path):
        assert (Path(launch["run_dir"]) / "eval_results.json").exists()  # output_dir is each trial's own


def test_hf_trainer_with_a_json_file(tmp_path: Path) -> None:
    """`python run_clm.py args.json`: the trial's JSON file carries max_steps, seed and output_dir (two runs)."""
    code, summary, output = search(
        tmp_path, **hf_configs(tmp_path), command=f"{{python}} {TRAINERS / 'hf_trainer.py'} {{config}}",
        steps_key="max_steps", seed_key="seed", run_dir_key="output_dir", metric="eval_loss", max_runs=2,
    )
    assert code == 1 and summary["complete"] is False and summary["runs"] == 2, output  # A and B at seed 0
    values = {}
    for launch in launches(tmp_path):
        config = json.loads(Path(launch["argv"][-1]).read_text())
        assert config["output_dir"] == launch["run_dir"] and config["max_steps"] == 40
        values[config["learning_rate"]] = json.loads((Path(launch["run_dir"]) / "eval_results.json").read_text())["eval_loss"]
    assert values[1e-4] > values[3e-3] + 0.2  # B's learning rate is worse at this budget


LIGHTNING_GOOD = {
    "seed_everything": 0,
    "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 1000, "enable_checkpointing": False,
                "enable_progress_bar": False, "enable_model_summary": False, "log_every_n_steps": 5,
                "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "logs"}}},
    "model": {"hidden": 32, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "dropout": 0.0},
    "data": {"batch_size": 32, "train_size": 320, "num_workers": 0},
}


def test_lightning_cli_with_config_and_csv_logger(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    pytest.importorskip("jsonargparse")  # LightningCLI's parser (lightning[pytorch-extra])
    bad = json.loads(json.dumps(LIGHTNING_GOOD))
    bad["model"].update(lr=0.003, weight_decay=1e-4, dropout=0.05, momentum=0.95)
    bad["trainer"]["log_every_n_steps"] = 2
    bad["data"]["num_workers"] = 0
    bad["trainer"]["logger"]["init_args"]["save_dir"] = "logs-run2"
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(LIGHTNING_GOOD, sort_keys=False))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
    command = (f"{{python}} {TRAINERS / 'lightning_trainer.py'} fit --config {{config}} --trainer.max_steps={{steps}} "
               "--seed_everything={seed} --trainer.logger.init_args.save_dir={run_dir}")
    code, summary, output = search(
        tmp_path, good="good.yaml", bad="bad.yaml", command=command, metric="val_loss",
        metric_source="csv", metric_file="lightning_logs/*/metrics.csv",
    )
    assert_found(code, summary, output, ["model.lr"])
    for launch in launches(tmp_path):  # LightningCLI saved the config it parsed beside the CSV
        saved = yaml.safe_load(next(Path(launch["run_dir"]).glob("lightning_logs/*/config.yaml")).read_text())
        assert saved["trainer"]["max_steps"] == 40
