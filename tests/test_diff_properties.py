"""Hypothesis properties of diff_configs: a config does not differ from itself; applying B's differences to A gives B."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bisect_runs.diff import diff_configs
from bisect_runs.normalize import flatten, values_equal
from bisect_runs.sources import LoadedConfig

NAMES = st.sampled_from(
    ["lr", "learning_rate", "lrStart", "lrEnd", "l2_decay", "weight_decay", "wd", "dropout", "use_amp", "bidirectional",
     "num_workers", "seed", "batch_size", "bs", "warmup_steps", "optimizer", "time_mask_prob", "freq_mask_prob",
     "output_dir", "n_layers", "hidden_size", "ema", "alpha", "x", "y"]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5000),
    st.floats(-1e3, 1e3, allow_nan=False),
    st.sampled_from(["adam", "adamw", "sgd", "1e-5", "auto", ""]),
    st.lists(st.integers(0, 9), max_size=3),
)
CONFIGS = st.recursive(
    st.dictionaries(NAMES, SCALARS, max_size=8),
    lambda inner: st.dictionaries(st.sampled_from(["model", "optim", "training", "aug", "eval"]), inner, max_size=3),
    max_leaves=30,
)


def _loaded(data: dict[str, Any], name: str) -> LoadedConfig:
    return LoadedConfig(data=data, source=name, format="yaml", path=None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CONFIGS)
def test_a_config_does_not_differ_from_itself(data: dict[str, Any]) -> None:
    result = diff_configs(_loaded(data, "a"), _loaded(data, "a"))
    assert result.identical and result.factors == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CONFIGS, CONFIGS)
def test_applying_every_difference_to_a_gives_b(a: dict[str, Any], b: dict[str, Any]) -> None:
    result = diff_configs(_loaded(a, "a"), _loaded(b, "b"))
    values = dict(flatten(a).values)
    for d in result.differences:
        if d.key_a is not None:
            del values[d.key_a]
        if d.key_b is not None:
            values[d.key_b] = d.b
    expected = _unfilled(flatten(b).values, flatten(a).values)
    values = _unfilled(values, flatten(b).values)
    assert values.keys() == expected.keys()
    assert all(values_equal(values[k], expected[k]) for k in expected)


def _unfilled(flat: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Without empty sections the other config fills with plain keys (`model: {}` against
    `model.lr`): not a difference of their own."""
    parents = {k.rsplit(".", 1)[0] for k in other if "." in k and "[" not in k}
    return {k: v for k, v in flat.items() if not (v == {} and k in parents)}


@settings(max_examples=100, deadline=None)
@given(CONFIGS, CONFIGS)
def test_every_key_is_in_at_most_one_difference_and_ranked(a: dict[str, Any], b: dict[str, Any]) -> None:
    result = diff_configs(_loaded(a, "a"), _loaded(b, "b"))
    keys_a = [d.key_a for d in result.differences if d.key_a]
    keys_b = [d.key_b for d in result.differences if d.key_b]
    assert len(keys_a) == len(set(keys_a)) and len(keys_b) == len(set(keys_b))
    scores = [d.score for d in result.differences]
    assert scores == sorted(scores, reverse=True)
    in_factors = [id(d) for f in result.factors for d in f.differences]
    assert len(in_factors) == len(set(in_factors))
