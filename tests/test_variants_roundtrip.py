"""Property tests: writing a variant and reading it back gives exactly the changed values."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from bisect_runs.errors import ConfigError
from bisect_runs.normalize import flatten
from bisect_runs.sources import LoadedConfig, load_config
from bisect_runs.sources.toml_write import emit_toml
from bisect_runs.variants import ABSENT, apply_changes, write_variant

SETTINGS = settings(
    max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

keys = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=6
)
plain_keys = st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=6)
strings = st.one_of(
    st.text(max_size=10),
    st.sampled_from(
        ["; rm -rf ~", "yes", "null", "1e-5", "- x", "a: b", "#c", "'q'", '"d"', "", " ", "x\ny"]
    ),
)


def scalars(*, nulls: bool = True, nan: bool = True) -> st.SearchStrategy[Any]:
    """Leaf values a config holds."""
    options = [st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=nan), strings]
    return st.one_of(st.none(), *options) if nulls else st.one_of(*options)


def configs(
    leaf: st.SearchStrategy[Any], key: st.SearchStrategy[str] = keys
) -> st.SearchStrategy[dict[str, Any]]:
    """Nested configs of scalars, lists and mappings."""
    value = st.recursive(
        leaf,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(key, inner, min_size=1, max_size=3)
        ),
        max_leaves=10,
    )
    return st.dictionaries(key, value, min_size=1, max_size=6)


def same(a: Any, b: Any, ordered: bool = True) -> bool:
    """Equal with types (and key order unless TOML moved tables last); NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        keys_match = list(a) == list(b) if ordered else set(a) == set(b)
        return keys_match and all(same(a[k], b[k], ordered) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y, ordered) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def draw_changes(
    data: st.DataObject,
    base: dict[str, Any],
    leaf: st.SearchStrategy[Any],
    key: st.SearchStrategy[str],
) -> dict[tuple[str | int, ...], Any]:
    """Random changes of existing keys, removals, and additions (with new intermediate mappings)."""
    paths = list(flatten(base).paths.values())
    changes: dict[tuple[str | int, ...], Any] = {}
    for path in (
        data.draw(st.lists(st.sampled_from(paths), max_size=4, unique=True)) if paths else []
    ):
        if path:
            changes[path] = data.draw(st.one_of(leaf, st.just(ABSENT), configs(leaf, key)))
    for new_path in data.draw(st.lists(st.lists(key, min_size=1, max_size=3), max_size=3)):
        changes[("added", *new_path)] = data.draw(leaf)
    return changes


def round_trip(base: LoadedConfig, changes: dict[tuple[str | int, ...], Any]) -> None:
    """The two properties: empty changes reproduce the base; changes read back exactly."""
    ordered = base.format in (
        "yaml",
        "json",
    )  # TOML writes a table's own keys before its sub-tables
    with tempfile.TemporaryDirectory() as tmp:
        same_out = load_config(write_variant(base, {}, Path(tmp) / "same"))
        assert same(same_out.data, base.data, ordered)
        assert same(flatten(same_out.data).values, flatten(base.data).values, ordered)
        try:
            expected = apply_changes(base.data, changes)
        except ConfigError:  # a change through a scalar: write_variant must refuse it too
            with pytest.raises(ConfigError, match="cannot change"):
                write_variant(base, changes, Path(tmp) / "refused")
            return
        if base.format == "dir" and not all(isinstance(v, dict) for v in expected.values()):
            return
        out = load_config(write_variant(base, changes, Path(tmp) / "changed"))
        assert same(out.data, expected, ordered), (out.data, expected)


def yaml_text(data: dict[str, Any], flow: bool) -> str:
    """A YAML file as people write it: a comment, then the data."""
    body = yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True, default_flow_style=None if flow else False
    )
    return "# generated\n" + body


@SETTINGS
@given(configs(scalars()), st.booleans(), st.data())
def test_yaml_round_trip(config: dict[str, Any], flow: bool, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "train.yaml"
        file.write_text(yaml_text(config, flow))
        base = load_config(file, "yaml")
    round_trip(base, draw_changes(data, base.data, scalars(), keys))


@SETTINGS
@given(configs(scalars()), st.sampled_from([None, 2, 4]), st.data())
def test_json_round_trip(config: dict[str, Any], indent: int | None, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "train.json"
        file.write_text(json.dumps(config, indent=indent))
        base = load_config(file)
    round_trip(base, draw_changes(data, base.data, scalars(), keys))


@SETTINGS
@given(configs(scalars(nulls=False)), st.data())
def test_toml_round_trip(config: dict[str, Any], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "train.toml"
        file.write_text(emit_toml(config))
        base = load_config(file)
    round_trip(base, draw_changes(data, base.data, scalars(nulls=False), keys))


@SETTINGS
@given(configs(scalars(nulls=False)))
def test_fallback_toml_emitter_reads_back(config: dict[str, Any]) -> None:
    assert same(tomllib.loads(emit_toml(config)), config, ordered=False)


@SETTINGS
@given(
    st.dictionaries(plain_keys, configs(scalars(nulls=False), plain_keys), min_size=1, max_size=3),
    st.data(),
)
def test_directory_round_trip(files: dict[str, dict[str, Any]], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cfg"
        root.mkdir()
        for index, (stem, config) in enumerate(files.items()):
            kind = ("yaml", "json", "toml")[index % 3]
            text = {"yaml": lambda c: yaml_text(c, False), "json": json.dumps, "toml": emit_toml}[
                kind
            ](config)
            (root / f"{stem}.{kind}").write_text(text)
        base = load_config(root)
    changes = draw_changes(data, base.data, scalars(nulls=False), plain_keys)
    round_trip(base, {k: v for k, v in changes.items() if k[0] != "added" or len(k) > 2})


def test_yaml_unicode_line_breaks_read_back(tmp_path: Path) -> None:
    """PyYAML writes NEL raw in single quotes, where it reads back as a space: we double-quote."""
    path = tmp_path / "train.yaml"
    path.write_text("# generated\n'0': null\nname: run\n")
    base = load_config(path)
    for text in ("\x85", "a\x85b", "line\u2028sep", "x\n\x85"):
        round_trip(base, {("added", "0"): text, ("name",): text})
