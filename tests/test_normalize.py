"""Flattening to dotted keys and comparing values by meaning."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bisect_runs.errors import ConfigError
from bisect_runs.normalize import canonical, flatten, list_identity, value_text, values_equal


def test_flatten_nested_mappings_in_document_order() -> None:
    flat = flatten({"b": {"y": 1, "x": 2}, "a": 3})
    assert list(flat.values.items()) == [("b.y", 1), ("b.x", 2), ("a", 3)]
    assert flat.paths == {"b.y": ("b", "y"), "b.x": ("b", "x"), "a": ("a",)}


def test_lists_of_named_dicts_are_matched_by_identifier() -> None:
    data = {"callbacks": [{"name": "early_stop", "patience": 3}, {"name": "ckpt", "every": 5}]}
    flat = flatten(data)
    assert flat.values["callbacks[name=early_stop].patience"] == 3
    assert flat.paths["callbacks[name=ckpt].every"] == ("callbacks", 1, "every")


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([{"name": "a"}, {"name": "b"}], "name"),
        ([{"id": 1}, {"id": 2}], "id"),
        ([{"type": "conv", "k": 3}, {"type": "pool"}], "type"),
        ([{"name": "a"}, {"name": "a"}], None),  # not unique
        ([{"name": "a"}, {"k": 1}], None),  # not on every element
        ([{"name": True}, {"name": False}], None),  # booleans do not name things
    ],
)
def test_list_identity(items: list[dict[str, Any]], expected: str | None) -> None:
    assert list_identity(items) == expected


def test_lists_without_identifier_are_matched_by_position() -> None:
    flat = flatten({"layers": [{"channels": 64}, {"channels": 128}]})
    assert flat.values == {"layers.0.channels": 64, "layers.1.channels": 128}
    assert flat.paths["layers.1.channels"] == ("layers", 1, "channels")


def test_lists_of_scalars_and_empty_containers_stay_one_value() -> None:
    flat = flatten({"betas": (0.9, 1e-3), "empty": {}, "none": [], "x": None})
    assert flat.values == {"betas": [0.9, 1e-3], "empty": {}, "none": [], "x": None}


def test_directory_data_flattens_under_file_stems() -> None:
    assert flatten({"optim": {"lr": 0.02}}).values == {"optim.lr": 0.02}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1e-5", "1e-5"),  # a string here was quoted in its file; the loader made plain 1e-5 a float
        ("adamw", "adamw"),
        ("3", "3"),
        ((1, 2.5), [1, 2.5]),
    ],
)
def test_canonical(raw: Any, expected: Any) -> None:
    assert canonical(raw) == expected and type(canonical(raw)) is type(expected)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (3, 3.0),
        (0.8e-4, 8e-5),
        (True, 1),
        (float("nan"), float("nan")),
        ([1, 2.0], (1.0, 2)),
        ({"a": 1}, {"a": 1.0}),
        (None, None),
        (2**53, float(2**53)),
        (6e-4 / 10, 6e-05),  # floats by value: arithmetic round-off is the same setting
    ],
)
def test_equal_by_meaning(a: Any, b: Any) -> None:
    assert values_equal(a, b) and values_equal(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (None, "null"),
        (None, 0),
        (None, False),
        (0.4, 0.5),
        ("adam", "adamw"),
        (True, 2),
        ("yes", "true"),  # two strings: compared as text
        ([1, 2], [1, 2, 3]),
        # strings are not numbers or booleans: quoting was decided when the file was read
        ("3.10", 3.1),
        ("3", 3),
        ("no", False),
        ("on", True),
        ("1e-5", 1e-5),
        # integers compare exactly, however large
        (1234567890123456, 1234567890123457),
        (1234567890123456, 1234567890123457.0),
        (float(2**52), float(2**52 + 1)),
        ({"a": 1}, {"b": 1}),
    ],
)
def test_different_by_meaning(a: Any, b: Any) -> None:
    assert not values_equal(a, b) and not values_equal(b, a)


def test_strict_types_counts_type_only_changes() -> None:
    assert not values_equal(3, 3.0, strict_types=True)
    assert not values_equal("3", 3, strict_types=True)
    assert not values_equal(True, 1, strict_types=True)
    assert values_equal([1, 2], (1, 2), strict_types=True)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1e-5, "1e-05"),
        ("1e-5", "'1e-5'"),  # a string that reads as a number is shown quoted
        ("3.10", "'3.10'"),
        ("no", "'no'"),
        (True, "true"),
        (None, "null"),
        ([1, 2], "[1, 2]"),
        ("adamw", "adamw"),
        ({"a": False}, "{a: false}"),
        (0.0008, "0.0008"),
        (" x", "' x'"),
        (6e-4 / 10, "6e-05"),  # nanoGPT's `min_lr = learning_rate / 10`: no arithmetic noise
        (0.1 + 0.2, "0.3"),
        (0.0, "0.0"),
        (1 / 3, "0.333333333333"),
    ],
)
def test_value_text(value: Any, text: str) -> None:
    assert value_text(value) == text


def test_value_text_shortens() -> None:
    assert value_text("x" * 100, max_len=10) == "x" * 9 + "…"


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)


@given(
    st.recursive(
        scalars,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
        max_leaves=12,
    )
)
def test_every_value_equals_itself(value: Any) -> None:
    assert values_equal(value, value)
    assert values_equal(value, value, strict_types=True)


@given(st.integers(min_value=-(2**63), max_value=2**63), st.integers(min_value=1, max_value=1000))
def test_integers_compare_exactly(n: int, step: int) -> None:
    assert not values_equal(n, n + step)
    assert values_equal(n, n) and (abs(n) > 2**53 or values_equal(n, float(n)))


def test_empty_top_level_mapping_has_no_keys() -> None:
    assert flatten({}).values == {}
    assert flatten({"opts": {}}).values == {"opts": {}}


def test_a_key_spelled_twice_is_refused() -> None:
    """`optim.lr: 0.1` beside `optim: {lr: 0.2}` must not silently keep one of them."""
    with pytest.raises(ConfigError, match=r"key 'optim.lr' is set twice: as a name with dots and as nested sections \('optim.lr' and optim > lr\)"):
        flatten({"optim.lr": 0.1, "optim": {"lr": 0.2}})
