"""diff_configs: pairing across renames and moves, defaults, ignore, factors; fixture triples."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from bisect_runs.diff import DiffOptions, DiffResult, diff_configs, load_defaults
from bisect_runs.errors import ConfigError
from bisect_runs.sources import load_config

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "diff"
CASES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _diff(tmp_path: Path, a: str, b: str, **options: Any) -> DiffResult:
    pa, pb = _write(tmp_path / "a.yaml", a), _write(tmp_path / "b.yaml", b)
    return diff_configs(load_config(pa), load_config(pb), DiffOptions(**options))


def _by_key(result: DiffResult) -> dict[str, Any]:
    return {d.key: d for d in result.differences}


def _options(case: Path) -> DiffOptions:
    path = case / "options.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    return DiffOptions(**data)


@pytest.mark.parametrize("case", CASES)
def test_fixture_triples(case: str) -> None:
    """a.yaml, b.yaml (and options.yaml) give expected.json; UPDATE_GOLDEN=1 rewrites it."""
    folder = FIXTURES / case
    result = diff_configs(load_config(folder / "a.yaml"), load_config(folder / "b.yaml"), _options(folder))
    got = [d.to_json() for d in result.differences]
    expected_path = folder / "expected.json"
    if os.environ.get("UPDATE_GOLDEN"):
        expected_path.write_text(json.dumps(got, indent=2) + "\n", encoding="utf-8")
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    assert got == expected, f"{expected_path} is out of date; if the change is intended, rerun with UPDATE_GOLDEN=1"


# -- the lab's speech pair -----------------------------------------------------------------


@pytest.fixture(scope="module")
def speech() -> DiffResult:
    options = DiffOptions(defaults=load_defaults(ROOT / "configs" / "speech_defaults.yaml"))
    return diff_configs(load_config(ROOT / "configs" / "baseline"), load_config(ROOT / "configs" / "run11"), options)


def test_speech_learning_rate_is_the_critical_top_factor(speech: DiffResult) -> None:
    top = speech.factors[0]
    assert top.name == "lrStart+lrEnd"
    assert (top.level, top.category, top.reason) == ("critical", "optimization", "25x lower learning rate")
    assert [d.key for d in speech.differences[:2]] == ["lrStart", "lrEnd"]


def test_speech_rows_with_defaults(speech: DiffResult) -> None:
    names = {f.name: f for f in speech.factors if f.level != "none"}
    assert set(names) == {
        "lrStart+lrEnd", "optimizer", "l2_decay -> weight_decay", "whiteNoiseSD", "constantOffsetSD",
        "time_mask_prob+freq_mask_prob", "use_layer_norm", "grad_clip_norm", "use_plateau_scheduler",
    }
    assert names["l2_decay -> weight_decay"].reason == "10x higher weight decay"
    assert names["optimizer"].reason == "optimizer adam -> adamw"
    assert names["whiteNoiseSD"].reason == "white noise augmentation turned off (0.8 -> 0.0)"
    assert names["use_layer_norm"].reason == "LayerNorm added"
    optimizer = names["optimizer"].differences[0]
    assert (optimizer.kind, optimizer.a, optimizer.a_default, optimizer.key_a) == ("added", "adam", True, None)


def test_speech_runtime_keys_are_none_and_hidden_factors(speech: DiffResult) -> None:
    """Hidden differences form factors of level none: searched only with --include-all."""
    by_key = _by_key(speech)
    for key in ("num_workers", "outputDir", "datasetPath"):
        assert by_key[key].level == "none"
        assert by_key[key].category == "runtime"
        assert by_key[key].factor == key
    hidden = [f for f in speech.factors if f.level == "none"]
    assert {f.name for f in hidden} == {"num_workers", "outputDir", "datasetPath"}
    assert speech.factors[-len(hidden):] == hidden  # ranked last


def test_speech_keys_equal_to_their_defaults_give_no_row(speech: DiffResult) -> None:
    keys = {k for d in speech.differences for k in (d.key_a, d.key_b)}
    assert "input_dropout" not in keys and "use_amp" not in keys
    assert "l2_decay" not in {d.key for d in speech.differences}  # paired, not "removed"


def test_speech_without_defaults_marks_one_sided_keys(tmp_path: Path) -> None:
    result = diff_configs(load_config(ROOT / "configs" / "baseline"), load_config(ROOT / "configs" / "run11"))
    use_amp = _by_key(result)["use_amp"]
    assert (use_amp.kind, use_amp.a, use_amp.key_a, use_amp.a_default) == ("added", None, None, False)
    assert result.factors[0].name == "lrStart+lrEnd"


# -- pairing -------------------------------------------------------------------------------


def test_synonym_pairing_wins_over_defaults(tmp_path: Path) -> None:
    result = _diff(tmp_path, "l2_decay: 1e-5\n", "weight_decay: 1e-4\n", defaults={"l2_decay": 0.0, "weight_decay": 0.0})
    [d] = result.differences
    assert (d.key, d.key_a, d.key_b, d.kind) == ("l2_decay -> weight_decay", "l2_decay", "weight_decay", "changed")


def test_move_between_sections_is_one_row(tmp_path: Path) -> None:
    result = _diff(tmp_path, "training:\n  warmup_steps: 500\n", "lr_scheduler:\n  warmup_steps: 500\n")
    [d] = result.differences
    assert d.key == "training.warmup_steps -> lr_scheduler.warmup_steps"
    assert d.level == "none" and d.reason == "renamed; same value"


def test_listed_synonyms_with_an_equal_value_stay_a_rename(tmp_path: Path) -> None:
    """Issue example: `giou`/`box` are listed as synonyms, so an equal value is a rename, not a removal and an addition."""
    result = _diff(tmp_path, "lr: 0.1\nloss:\n  giou: 0.05\n", "lr: 0.1\nloss:\n  box: 0.05\n")
    [d] = result.differences
    assert (d.key, d.level, d.reason) == ("loss.giou -> loss.box", "none", "renamed; same value")


def test_trivial_equal_values_under_unrelated_names_stay_apart(tmp_path: Path) -> None:
    result = _diff(tmp_path, "use_amp: false\n", "bidirectional: false\n")
    assert sorted((d.key, d.kind) for d in result.differences) == [("bidirectional", "added"), ("use_amp", "removed")]


def test_ambiguous_equal_values_are_not_paired(tmp_path: Path) -> None:
    result = _diff(tmp_path, "alpha_x: 0.37\n", "beta_y: 0.37\ngamma_z: 0.37\n")
    assert {d.kind for d in result.differences} == {"added", "removed"}


def test_alias_forces_a_pairing(tmp_path: Path) -> None:
    a, b = "peak: 0.1\n", "top: 0.5\n"
    assert len(_diff(tmp_path, a, b).differences) == 2
    [d] = _diff(tmp_path, a, b, aliases={"peak": "top"}).differences
    assert (d.key_a, d.key_b, d.reason) == ("peak", "top", "5x higher top")


def test_alias_written_backwards_and_section_alias(tmp_path: Path) -> None:
    [d] = _diff(tmp_path, "peak: 0.1\n", "top: 0.5\n", aliases={"top": "peak"}).differences
    assert (d.key_a, d.key_b) == ("peak", "top")
    result = _diff(tmp_path, "optim:\n  lr: 0.1\n  wd: 0.0\n", "optimizer:\n  lr: 0.2\n  wd: 0.0\n", aliases={"optim": "optimizer"})
    assert [(d.key_a, d.key_b) for d in result.differences if d.level != "none"] == [("optim.lr", "optimizer.lr")]


def test_alias_naming_unknown_keys_warns(tmp_path: Path) -> None:
    result = _diff(tmp_path, "lr: 0.1\n", "lr: 0.1\n", aliases={"l2_decay": "weight_decay"})
    assert result.identical
    assert result.warnings == ["alias l2_decay=weight_decay: neither config has key 'l2_decay' or 'weight_decay'"]


def test_alias_with_default_on_the_missing_side(tmp_path: Path) -> None:
    result = _diff(tmp_path, "l2_decay: 1e-5\n", "lr: 1\n", aliases={"l2_decay": "weight_decay"}, defaults={"weight_decay": 1e-5, "lr": 1})
    assert result.identical


# -- defaults ------------------------------------------------------------------------------


def test_default_equal_to_other_side_is_no_difference(tmp_path: Path) -> None:
    assert _diff(tmp_path, "x: 1\n", "x: 1\nuse_amp: false\n", defaults={"use_amp": False}).identical


def test_default_differing_reads_as_absent_with_default(tmp_path: Path) -> None:
    [d] = _diff(tmp_path, "x: 1\n", "x: 1\nuse_layer_norm: true\n", defaults={"use_layer_norm": False}).differences
    assert (d.kind, d.a, d.a_default, d.b, d.reason) == ("added", False, True, True, "LayerNorm added")
    [d] = _diff(tmp_path, "x: 1\nuse_layer_norm: true\n", "x: 1\n", defaults={"use_layer_norm": False}).differences
    assert (d.kind, d.b, d.b_default, d.reason) == ("removed", False, True, "LayerNorm removed")


def test_null_default_differs_from_absent(tmp_path: Path) -> None:
    [d] = _diff(tmp_path, "x: 1\n", "x: 1\ngrad_clip_norm: 1.5\n", defaults={"grad_clip_norm": None}).differences
    assert d.a is None and d.a_default and d.reason == "gradient clipping turned on (null -> 1.5)"


def test_dotted_and_leaf_defaults(tmp_path: Path) -> None:
    a, b = "model:\n  d: 1\n", "model:\n  d: 1\n  aux_loss_diagonal: false\n  use_bias: true\n"
    assert _diff(tmp_path, a, b, defaults={"model.aux_loss_diagonal": False, "use_bias": True}).identical


def test_load_defaults_nested_and_dotted(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.yaml", "model:\n  aux: false\ntrain.steps: 5\n")
    assert load_defaults(path) == {"model.aux": False, "train.steps": 5}
    with pytest.raises(ConfigError, match="no such defaults file"):
        load_defaults(tmp_path / "missing.yaml")


# -- values, ignore, factors ---------------------------------------------------------------


def test_values_compared_by_meaning(tmp_path: Path) -> None:
    assert _diff(tmp_path, "wd: 1e-5\nn: 3\nflag: yes\n", "wd: 1.0e-05\nn: 3.0\nflag: true\n").identical


def test_quoted_strings_are_not_numbers_or_booleans(tmp_path: Path) -> None:
    """Quoting decides the type when the file is read: "3.10" is not 3.1, "no" is not false."""
    a = 'python_version: "3.10"\nsave_strategy: "no"\nmode: \'on\'\nwd: "1e-5"\n'
    b = "python_version: 3.1\nsave_strategy: false\nmode: true\nwd: 1e-5\n"
    result = _diff(tmp_path, a, b)
    assert sorted((d.key, d.kind) for d in result.differences) == [
        ("mode", "type"), ("python_version", "type"), ("save_strategy", "type"), ("wd", "type")
    ]


def test_yaml_12_files_read_yes_as_a_string(tmp_path: Path) -> None:
    """`yes` is a boolean to YAML 1.1 (PyYAML) and a string under a `%YAML 1.2` directive."""
    assert _diff(tmp_path, "flag: yes\n", "flag: true\n").identical
    [d] = _diff(tmp_path, "%YAML 1.2\n---\nflag: yes\n", "flag: true\n").differences
    assert (d.a, d.b, d.kind) == ("yes", True, "type")


def test_integers_compare_exactly(tmp_path: Path) -> None:
    [d] = _diff(tmp_path, "seed: 1234567890123456\n", "seed: 1234567890123457\n").differences
    assert (d.a, d.b) == (1234567890123456, 1234567890123457)


def test_equal_values_under_unrelated_names_are_not_a_rename(tmp_path: Path) -> None:
    """warmup_steps: 500 and eval_every: 500 are two settings: a removed row and an added row."""
    result = _diff(tmp_path, "lr: 0.1\nwarmup_steps: 500\n", "lr: 0.1\neval_every: 500\n")
    assert [(d.key, d.kind) for d in result.differences] == [("warmup_steps", "removed"), ("eval_every", "added")]
    assert result.differences[0].level == "low"


def test_a_move_never_hides_a_removal(tmp_path: Path) -> None:
    """The encoder keeps its section but loses its dropout: that must be said, not paired away."""
    result = _diff(tmp_path, "encoder: {dropout: 0.1, layers: 4}\n", "encoder: {layers: 4}\ndecoder: {dropout: 0.3}\n")
    assert sorted((d.key, d.kind) for d in result.differences) == [
        ("decoder.dropout", "added"), ("encoder.dropout", "removed")
    ]
    swapped = _diff(tmp_path, "encoder: {layers: 4}\ndecoder: {dropout: 0.3}\n", "encoder: {dropout: 0.1, layers: 4}\n")
    assert sorted((d.key, d.kind) for d in swapped.differences) == [
        ("decoder.dropout", "removed"), ("encoder.dropout", "added")
    ]


def test_a_renamed_section_is_still_a_move(tmp_path: Path) -> None:
    [d] = _diff(tmp_path, "optim: {lr: 0.1}\nmodel: {n: 1}\n", "optimizer: {lr: 0.2}\nmodel: {n: 1}\n").differences
    assert d.key == "optim.lr -> optimizer.lr"


def test_unknown_keys_are_ranked_by_the_change_alone(tmp_path: Path) -> None:
    by_key = {d.key: d for d in _diff(tmp_path, "foo_knob: 10\nbaz_q: 1.0\n", "foo_knob: 250\nbaz_q: 1.1\n").differences}
    assert {d.category for d in by_key.values()} == {"unknown"}
    assert (by_key["foo_knob"].level, by_key["baz_q"].level) == ("high", "low")


def test_type_only_change_needs_strict_types(tmp_path: Path) -> None:
    a, b = "n_layers: 3\n", "n_layers: 3.0\n"
    assert _diff(tmp_path, a, b).identical
    [d] = _diff(tmp_path, a, b, strict_types=True).differences
    assert d.kind == "type" and d.level == "low" and "type changed (int -> float)" in d.reason


def test_string_to_number_is_a_type_change(tmp_path: Path) -> None:
    [d] = _diff(tmp_path, "warmup: auto\n", "warmup: 100\n").differences
    assert d.kind == "type"


def test_ignore_globs(tmp_path: Path) -> None:
    a, b = "logging:\n  dir: /a\nlr: 1\npaths_x: 1\n", "logging:\n  dir: /b\nlr: 2\npaths_x: 2\n"
    result = _diff(tmp_path, a, b, ignore=["logging", "PATHS_*"])
    assert [d.key for d in result.differences] == ["lr"]


def test_keys_moving_together_form_one_factor(tmp_path: Path) -> None:
    a = "lr_start: 0.02\nlr_end: 0.02\ntime_mask_prob: 0\nfreq_mask_prob: 0\nuse_ln: false\nuse_sched: false\n"
    b = "lr_start: 0.01\nlr_end: 0.01\ntime_mask_prob: 0.1\nfreq_mask_prob: 0.1\nuse_ln: true\nuse_sched: true\n"
    names = [f.name for f in _diff(tmp_path, a, b).factors]
    assert "lr_start+lr_end" in names and "time_mask_prob+freq_mask_prob" in names
    assert "use_ln" in names and "use_sched" in names  # "use" alone does not make a family


def test_keys_changing_differently_are_separate_factors(tmp_path: Path) -> None:
    result = _diff(tmp_path, "lr_start: 0.02\nlr_end: 0.01\n", "lr_start: 0.002\nlr_end: 0.002\n")
    assert sorted(f.name for f in result.factors) == ["lr_end", "lr_start"]


def test_keys_of_one_kind_scaled_by_one_ratio_form_one_factor(tmp_path: Path) -> None:
    a = "learning_rate: 3.0e-3\nmin_lr: 3.0e-4\nweight_decay: 0.1\nbeta2: 0.99\n"
    b = "learning_rate: 1.0e-4\nmin_lr: 1.0e-5\nweight_decay: 0.01\nbeta2: 0.95\n"
    result = _diff(tmp_path, a, b)
    factors = {f.name: f for f in result.factors}
    assert sorted(factors) == ["beta2", "learning_rate+min_lr", "weight_decay"]  # weight decay: another rule
    assert factors["learning_rate+min_lr"].keys == ["learning_rate", "min_lr"]
    assert factors["learning_rate+min_lr"].reason == "30x lower learning rate"


def test_other_ratios_or_signs_stay_apart(tmp_path: Path) -> None:
    a = "head_lr: 3.0e-3\nbody_lr: 3.0e-4\ntail_lr: 0.5\nneck_lr: -1.0\n"
    b = "head_lr: 1.0e-4\nbody_lr: 1.2e-5\ntail_lr: 0\nneck_lr: 1.0\n"  # 30x, 25x, switched off, sign flip
    assert sorted(f.name for f in _diff(tmp_path, a, b).factors) == ["body_lr", "head_lr", "neck_lr", "tail_lr"]


def test_a_named_group_takes_a_key_before_its_ratio_partner(tmp_path: Path) -> None:
    a, b = "lr: 3.0e-3\nmin_lr: 3.0e-4\n", "lr: 1.0e-4\nmin_lr: 1.0e-5\n"
    result = _diff(tmp_path, a, b, groups={"floor": ["min_lr"]})
    assert sorted(f.name for f in result.factors) == ["floor", "lr"]


def test_explicit_groups_take_none_level_keys_too(tmp_path: Path) -> None:
    result = _diff(tmp_path, "a_dir: /x\nlr: 1\n", "a_dir: /y\nlr: 2\n", groups={"paths": ["*_dir"]})
    assert {f.name: f.level for f in result.factors} == {"lr": "medium", "paths": "none"}
    assert {d.key: d.factor for d in result.differences} == {"lr": "lr", "a_dir": "paths"}


def test_ranking_is_by_score(tmp_path: Path) -> None:
    result = _diff(tmp_path, "dropout: 0.4\nlr: 0.02\nnum_workers: 2\n", "dropout: 0.5\nlr: 0.0008\nnum_workers: 8\n")
    assert [(d.key, d.level) for d in result.differences] == [("lr", "critical"), ("dropout", "low"), ("num_workers", "none")]
    assert [d.score for d in result.differences] == sorted((d.score for d in result.differences), reverse=True)


def test_json_of_absent_side_and_non_finite(tmp_path: Path) -> None:
    result = _diff(tmp_path, "x: .nan\n", "x: 1.0\ny: 2\n")
    items = {d.key: d.to_json() for d in result.differences}
    assert items["x"]["a"] == "nan"
    assert (items["y"]["a"], items["y"]["kind"], items["y"]["key_a"]) == (None, "added", None)
    json.dumps(list(items.values()), allow_nan=False)


def test_directory_configs(tmp_path: Path) -> None:
    result = diff_configs(load_config(ROOT / "configs" / "e4"), load_config(ROOT / "configs" / "e5"),
                          DiffOptions(defaults=load_defaults(ROOT / "configs" / "mdn_defaults.yaml")))
    keys = [d.key for d in result.differences if d.level != "none"]
    assert set(keys) == {"eval.eval_perm_average", "eval.eval_slot_id_mode", "model.aux_loss_diagonal",
                         "train.perm_warmup_steps", "train.patience"}
    assert _by_key(result)["eval.eval_slot_id_mode"].category == "evaluation"


def test_an_empty_section_is_not_a_row_where_the_other_side_fills_it(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("lr: 1\nsched: {}\n")
    (tmp_path / "b.yaml").write_text("lr: 1\nsched:\n  kind: cos\n")
    result = diff_configs(load_config(tmp_path / "a.yaml"), load_config(tmp_path / "b.yaml"))
    assert [(d.key, d.kind) for d in result.differences] == [("sched.kind", "added")]
    (tmp_path / "c.yaml").write_text("lr: 1\n")  # an empty section against nothing is a row
    result = diff_configs(load_config(tmp_path / "a.yaml"), load_config(tmp_path / "c.yaml"))
    assert [(d.key, d.kind) for d in result.differences] == [("sched", "removed")]
