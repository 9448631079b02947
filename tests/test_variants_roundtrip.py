"""Property tests: writing a variant and reading it back gives exactly the changed values.

The oracle is independent of the library: written files are read by each format's own parser
(yaml.safe_load, json, tomllib) and compared with a reference model of the changes kept here."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from bisect_runs.errors import ConfigError
from bisect_runs.normalize import flatten
from bisect_runs.sources import load_config
from bisect_runs.sources.toml_write import emit_toml
from bisect_runs.variants import ABSENT, write_variant

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


def form(data: Any, ordered: bool = True) -> str:
    """What a parser returned, spelled out exactly: types (1, 1.0, true), NaN and, unless TOML
    moved tables last, key order; two configs are the same when their forms are."""
    return repr(_fingerprint(data, ordered))


def _fingerprint(value: Any, ordered: bool) -> Any:
    if isinstance(value, dict):
        items = [(repr(k), _fingerprint(v, ordered)) for k, v in value.items()]
        return ("mapping", items if ordered else sorted(items))
    if isinstance(value, list):
        return ("list", [_fingerprint(v, ordered) for v in value])
    return (type(value).__name__, "nan" if value != value else repr(value))


class Refused(Exception):
    """The reference model's word for a change that passes through a scalar or outside a list."""


def expected_after(data: dict[str, Any], changes: dict[tuple[str | int, ...], Any]) -> dict[str, Any]:
    """The reference semantics of a change set, written for this test: each change in order sets
    (or, as ABSENT, removes) one path; a missing or null mapping on the way is created."""
    out = copy.deepcopy(data)
    for path, value in changes.items():
        out = put(out, list(path), value)
    return out


def put(node: Any, path: list[str | int], value: Any) -> Any:
    """`node` with `value` at `path` (recursively); raises Refused where no mapping or list is."""
    segment, rest = path[0], path[1:]
    if isinstance(node, dict):
        if not rest:
            if value is ABSENT:
                node.pop(segment, None)
            else:
                node[segment] = copy.deepcopy(value)
        elif node.get(segment) is not None:
            node[segment] = put(node[segment], rest, value)
        elif value is not ABSENT:
            node[segment] = put({}, rest, value)
        return node
    if not isinstance(node, list):
        raise Refused
    inside = isinstance(segment, int) and 0 <= segment < len(node)
    if value is ABSENT and (not rest or not inside or node[segment] is None):
        if inside and not rest:
            del node[segment]
        return node
    if rest and inside and node[segment] is not None:
        node[segment] = put(node[segment], rest, value)
        return node
    new = put({}, rest, value) if rest else copy.deepcopy(value)
    if inside:
        node[segment] = new
    elif isinstance(segment, int) and segment == len(node):
        node.append(new)
    else:
        raise Refused
    return node


PARSERS = {".yaml": yaml.safe_load, ".json": json.loads, ".toml": tomllib.loads}


def parse_written(path: Path) -> dict[str, Any]:
    """A written config read with its format's own parser; a directory as {file stem: its data}."""
    if path.is_dir():
        return {f.stem: PARSERS[f.suffix](f.read_text(encoding="utf-8")) for f in sorted(path.iterdir())}
    data: dict[str, Any] = PARSERS[path.suffix](path.read_text(encoding="utf-8"))
    return data


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


def round_trip(source: Path, changes: dict[tuple[str | int, ...], Any]) -> None:
    """The two properties, judged by the formats' own parsers: empty changes reproduce the
    source; changes read back as the reference model says."""
    base = load_config(source)
    original = parse_written(source)
    ordered = base.format in ("yaml", "json")  # TOML writes a table's own keys before its sub-tables
    if form(original, ordered) != form(base.data, ordered):
        reject()  # PyYAML and bisect-runs read this source differently (YAML quirks such as `0e0:`)
    with tempfile.TemporaryDirectory() as tmp:
        unchanged = parse_written(write_variant(base, {}, Path(tmp) / "same"))
        assert form(unchanged, ordered) == form(original, ordered)
        try:
            expected = expected_after(original, changes)
        except Refused:  # a change through a scalar: write_variant must refuse it too
            with pytest.raises(ConfigError, match="cannot change"):
                write_variant(base, changes, Path(tmp) / "refused")
            return
        if base.format == "dir" and not all(isinstance(v, dict) for v in expected.values()):
            return  # a directory holds one file per top-level mapping; nothing else to write
        written = parse_written(write_variant(base, changes, Path(tmp) / "changed"))
        assert form(written, ordered) == form(expected, ordered), (written, expected)


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
        round_trip(file, draw_changes(data, parse_written(file), scalars(), keys))


@SETTINGS
@given(configs(scalars()), st.sampled_from([None, 2, 4]), st.data())
def test_json_round_trip(config: dict[str, Any], indent: int | None, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "train.json"
        file.write_text(json.dumps(config, indent=indent))
        round_trip(file, draw_changes(data, parse_written(file), scalars(), keys))


@SETTINGS
@given(configs(scalars(nulls=False)), st.data())
def test_toml_round_trip(config: dict[str, Any], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "train.toml"
        file.write_text(emit_toml(config))
        round_trip(file, draw_changes(data, parse_written(file), scalars(nulls=False), keys))


@SETTINGS
@given(configs(scalars(nulls=False)))
def test_fallback_toml_emitter_reads_back(config: dict[str, Any]) -> None:
    assert form(tomllib.loads(emit_toml(config)), ordered=False) == form(config, ordered=False)


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
        changes = draw_changes(data, parse_written(root), scalars(nulls=False), plain_keys)
        round_trip(root, {k: v for k, v in changes.items() if k[0] != "added" or len(k) > 2})


def test_yaml_unicode_line_breaks_read_back(tmp_path: Path) -> None:
    """PyYAML writes NEL raw in single quotes, where it reads back as a space: we double-quote."""
    path = tmp_path / "train.yaml"
    path.write_text("# generated\n'0': null\nname: run\n")
    for text in ("\x85", "a\x85b", "line\u2028sep", "x\n\x85"):
        round_trip(path, {("added", "0"): text, ("name",): text})
