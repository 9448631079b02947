"""Impact rules: matching (camelCase aware), sizes by kind of value, reasons, user rules files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bisect_runs.errors import ConfigError
from bisect_runs.impact import (
    ABSENT,
    CATEGORIES,
    DEFAULT,
    KINDS,
    RULES_FILE,
    Rule,
    assess,
    leaf,
    load_rules,
    snake,
    squash,
)


@pytest.fixture(scope="module")
def rules():
    return load_rules()


@pytest.mark.parametrize(
    ("name", "expected"),
    [("whiteNoiseSD", "white_noise_sd"), ("lrStart", "lr_start"), ("nInputFeatures", "n_input_features"),
     ("HTTPServer", "http_server"), ("batch-size", "batch_size"), ("already_snake", "already_snake")],
)
def test_snake(name: str, expected: str) -> None:
    assert snake(name) == expected


def test_leaf_and_squash() -> None:
    assert leaf("callbacks[name=ema].decay") == "decay"
    assert leaf("model.layers.0") == "layers"
    assert squash("lrStart") == squash("lr_start") == "lrstart"


@pytest.mark.parametrize(
    ("key", "category", "weight_is_zero"),
    [
        ("lrStart", "optimization", False),
        ("optim.learning_rate", "optimization", False),
        ("lr_scheduler", "optimization", False),
        ("l2_decay", "regularization", False),
        ("whiteNoiseSD", "augmentation", False),
        ("time_mask_prob", "augmentation", False),
        ("use_layer_norm", "architecture", False),
        ("dropout", "regularization", False),
        ("use_amp", "numerics", False),
        ("eval_slot_id_mode", "evaluation", False),
        ("aux_loss_diagonal", "objective", False),
        ("gaussianSmoothWidth", "data", False),
        ("per_device_train_batch_size", "optimization", False),
        ("seed", "runtime", False),
        ("num_workers", "runtime", True),
        ("outputDir", "runtime", True),
        ("datasetPath", "runtime", True),
        ("per_device_eval_batch_size", "runtime", True),
        ("wandb_project", "runtime", True),
        ("logging_steps", "runtime", True),
        ("save_strategy", "runtime", True),
        ("pin_memory", "runtime", True),
        ("trainer.log_every_n_steps", "runtime", True),
        ("run_name", "runtime", True),
        ("model_name", "architecture", False),
        ("some_unknown_knob", "unknown", False),
        # a bare `name` labels a run only at the top level or in run/logging sections
        ("name", "runtime", True),
        ("wandb.name", "runtime", True),
        ("experiment.tracking.name", "runtime", True),
        ("optimizer.name", "optimization", False),
        ("optim._target_", "optimization", False),
        ("scheduler.name", "optimization", False),
        ("model.name", "architecture", False),
        ("model.encoder.type", "architecture", False),
        ("loss.type", "objective", False),
        # path-like leaf names are file locations; rates and flags that end like them are not
        ("model.drop_path", "regularization", False),
        ("drop_path_rate", "regularization", False),
        ("model.bidir", "unknown", False),
        ("logdir", "runtime", True),
        ("data.cache_dir", "runtime", True),
        ("checkpoint_path", "runtime", True),
        ("dataset_url", "runtime", True),
        ("profile", "runtime", True),
        ("dropout_during_eval", "regularization", False),  # "uri" inside a word is not a URI
    ],
)
def test_rule_categories(rules, key: str, category: str, weight_is_zero: bool) -> None:
    rule = rules.rule_for(key)
    assert rule.category == category
    assert (rule.weight == 0) == weight_is_zero


def test_shipped_rules_are_valid_and_cover_everything(rules) -> None:
    raw = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    assert len(rules.rules) == len(raw["rules"])
    assert all(r.category in CATEGORIES and r.kind_of_value in KINDS and r.why for r in rules.rules)
    assert rules.rules[-1].patterns == ("*",)


@pytest.mark.parametrize(
    ("key", "a", "b", "level", "reason"),
    [
        ("lrStart", 0.02, 0.0008, "critical", "25x lower learning rate"),
        ("lr", 0.001, 0.002, "medium", "2x higher learning rate"),
        ("lr", 0.001, 0.0011, "low", "10% higher learning rate"),
        ("weight_decay", 1e-5, 1e-4, "high", "10x higher weight decay"),
        ("dropout", 0.4, 0.5, "low", "dropout raised 0.4 -> 0.5"),
        ("dropout", 0.1, 0.5, "high", "dropout raised 0.1 -> 0.5"),
        ("whiteNoiseSD", 0.8, 0.0, "high", "white noise augmentation turned off (0.8 -> 0.0)"),
        ("optimizer", "adam", "adamw", "high", "optimizer adam -> adamw"),
        ("use_layer_norm", False, True, "high", "LayerNorm added"),
        ("use_layer_norm", True, False, "high", "LayerNorm removed"),
        ("grad_clip_norm", None, 1.5, "medium", "gradient clipping turned on (null -> 1.5)"),
        ("momentum", 0.9, 0.99, "high", "momentum 0.9 -> 0.99 (10x longer memory)"),
        ("n_layers", 4, 8, "medium", "n_layers 4 -> 8 (2x more)"),
        ("lr", 0.1, -0.1, "critical", "learning rate changed sign (0.1 -> -0.1)"),
        ("num_workers", 0, 4, "none", "data-loading parallelism changes speed, not results"),
        ("seed", 0, 1, "low", "seed 0 -> 1"),
        # an optimizer's epsilon ranks below a 2.5x learning-rate change, not above it
        ("adam_epsilon", 1e-8, 1e-6, "medium", "100x higher adam_epsilon"),
        # a switch of LR decay is not "learning rate turned off"
        ("decay_lr", True, False, "high", "decay_lr turned off"),
        # lists of numbers are measured element by element
        ("betas", [0.9, 0.999], [0.9, 0.95], "critical", "betas[1] 0.999 -> 0.95 (50x shorter memory)"),
        ("image_size", [224, 224], [256, 256], "low", "image_size [224, 224] -> [256, 256]"),
        # a choice that was not made is turned on, not "null -> cosine"
        ("scheduler", None, "cosine", "high", "LR scheduler turned on (null -> cosine)"),
        ("lr_scheduler_type", "none", "cosine", "high", "LR scheduler turned on (none -> cosine)"),
    ],
)
def test_assess_levels_and_reasons(rules, key: str, a, b, level: str, reason: str) -> None:
    result = assess(rules, key, a, b)
    assert (result.level, result.reason) == (level, reason)


def test_bigger_changes_score_higher(rules) -> None:
    lr = [assess(rules, "lr", 0.02, x).score for x in (0.019, 0.01, 0.002, 0.0008)]
    assert lr == sorted(lr) and lr[0] < lr[-1]
    assert assess(rules, "lr", 0.02, 0.0008).score > assess(rules, "dropout", 0.4, 0.5).score


def test_one_sided_and_default_states(rules) -> None:
    added = assess(rules, "optimizer", None, "adamw", a_state=ABSENT)
    assert added.reason == "optimizer only in B (adamw; no default known)" and added.level == "medium"
    off = assess(rules, "use_amp", None, False, a_state=ABSENT)
    assert off.score < added.score
    defaulted = assess(rules, "optimizer", "adam", "adamw", a_state=DEFAULT)
    assert defaulted.reason == "optimizer adam -> adamw"


def test_values_that_do_not_fit_the_kind_are_inferred(rules) -> None:
    assert assess(rules, "lr", "auto", 0.1).reason == "learning rate auto -> 0.1"
    assert assess(rules, "dropout", 0.0, 2.0).reason == "dropout turned on (0.0 -> 2.0)"


def test_type_only_change(rules) -> None:
    result = assess(rules, "n_layers", 3, 3.0, type_only=True)
    assert result.level == "low" and result.reason == "n_layers: type changed (int -> float), same value"


def test_user_rules_come_first_and_merge_synonyms(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "levels:\n  critical: 2.0\n"
        "synonyms:\n  - [spectrum_weight, spec_w]\n"
        "rules:\n"
        "  - pattern: 'num_workers'\n    category: data\n    weight: 0.5\n    kind_of_value: count\n    why: our loader reshuffles by worker\n"
        "  - pattern: 're:^loss\\.spec'\n    category: objective\n    weight: 1.0\n    why: spectrum loss\n    noun: spectrum loss\n",
        encoding="utf-8",
    )
    rules = load_rules(path)
    assert rules.rule_for("num_workers").category == "data"
    assert rules.rule_for("loss.spectrum_weight").noun == "spectrum loss"
    assert rules.rule_for("lr").noun == "learning rate"  # shipped rules still apply
    assert rules.synonym_set("spec_w") == rules.synonym_set("spectrumWeight") is not None
    assert rules.synonym_set("l2_decay") == rules.synonym_set("weight_decay") is not None
    assert assess(rules, "lr", 0.02, 0.0008).level == "high"  # critical now needs 2.0


def test_dotted_glob_matches_whole_key(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n- pattern: 'ema.*'\n  category: optimization\n  weight: 0.9\n", encoding="utf-8")
    rules = load_rules(path)
    assert rules.rule_for("ema.decay").weight == 0.9
    assert rules.rule_for("decay").weight != 0.9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: 3\n", "rules must be a list"),
        ("rules:\n  - pattern: lr\n    category: speed\n    weight: 1\n",
         "rules[0]: category must be one of optimization, architecture, regularization, augmentation, data, "
         "objective, evaluation, numerics, runtime, unknown (got 'speed')"),
        ("rules:\n  - pattern: lr\n    category: data\n    weight: -1\n", "rules[0]: weight must be a number >= 0 (got -1)"),
        ("rules:\n  - pattern: lr\n    category: data\n    weight: 1\n    kind_of_value: log\n",
         "rules[0]: kind_of_value must be one of scale, count, probability, boolean, choice, path, text, auto (got 'log')"),
        ("rules:\n  - pattern: 're:('\n    category: data\n    weight: 1\n", "rules[0]: invalid regex 're:('"),
        ("rules:\n  - category: data\n    weight: 1\n", "rules[0]: pattern must be a string or a list of strings"),
        ("rules:\n  - pattern: lr\n    category: data\n    weight: 1\n    colour: red\n", "rules[0]: unknown field 'colour'"),
        ("extras: []\n", "unknown section 'extras'"),
        ("levels:\n  extreme: 3\n", "levels: unknown level 'extreme'"),
        ("synonyms:\n  - lr\n", "synonyms[0] must be a list of key names"),
    ],
)
def test_bad_rules_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such rules file"):
        load_rules(tmp_path / "nope.yaml")


def test_rule_matches_camel_case_patterns() -> None:
    rule = Rule(("whiteNoise*",), "augmentation", 0.7)
    assert rule.matches(snake("whiteNoiseSD"), snake("whiteNoiseSD"))
    assert rule.matches("white_noise_sd", "white_noise_sd")
    assert not rule.matches("noise", "noise")
