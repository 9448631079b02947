"""Editing YAML text in place: new values spliced at the nodes' marks, so key order and comments stay.

The plan is a list of text edits computed by walking the composed node tree beside the old
and the new data. The result is read back and compared with the new data; when splicing
cannot express a change (merge keys, anchors, odd layouts) a plain dump is written instead.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bisect_runs.errors import ConfigError
from bisect_runs.sources.plain import to_plain
from bisect_runs.sources.yaml_safe import (
    compose_yaml,
    construct_yaml,
    load_yaml_text,
    resolve_exponent_floats,
)

_WIDTH = 1 << 30
_LINE_BREAKS = ("\x85", "\u2028", "\u2029")


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, double-quoting strings with Unicode line breaks.

    PyYAML writes NEL (U+0085) raw inside a single-quoted scalar, where reading folds it to a
    space; in double quotes it is escaped and reads back exactly.
    """

    def represent_str(self, data: str) -> ScalarNode:
        style = '"' if any(c in data for c in _LINE_BREAKS) else None
        return self.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _Dumper.represent_str)
# A string spelled `1e-5` is written quoted: the loader reads plain `1e-5` as a float.
resolve_exponent_floats(_Dumper)


def _dump(value: Any, flow: bool) -> str:
    """YAML text of a value in the data's key order, block or flow style."""
    return yaml.dump(
        value,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=flow,
        width=_WIDTH,
    )


def _double_quoted(text: str) -> str:
    """A YAML double-quoted scalar of `text` (JSON escapes, Unicode line breaks escaped too)."""
    out = json.dumps(text, ensure_ascii=False)
    for c in _LINE_BREAKS:
        out = out.replace(c, f"\\u{ord(c):04x}")
    return out


class _CannotSplice(Exception):
    """The change cannot be expressed as a local text edit."""


@dataclass(frozen=True)
class _Edit:
    """Replace text[start:end] with `text`; `order` keeps insertions at one spot in request order."""

    start: int
    end: int
    text: str
    order: int


def same_value(a: Any, b: Any) -> bool:
    """Equal with equal types, recursively (True is not 1, 3 is not 3.0); NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def edit_yaml(text: str, new: dict[str, Any]) -> str:
    """`text` rewritten to hold `new`, keeping comments and layout wherever possible."""
    try:
        old = to_plain(_parse(text))
        if same_value(old, new):
            return text
        root = compose_yaml(text)
        if not isinstance(root, MappingNode) or root.flow_style is True:
            raise _CannotSplice
        edits: list[_Edit] = []
        _Planner(text, edits, root).mapping(root, old, new)
        result = _apply(text, edits)
        if same_value(to_plain(_parse(result)), new):
            return result
    except (_CannotSplice, ConfigError, yaml.YAMLError):
        pass
    return dump_yaml(new, header=_header_comments(text))


def dump_yaml(data: dict[str, Any], header: str = "") -> str:
    """Plain block-style YAML in the data's key order."""
    return header + _dump(data, flow=False)


def _parse(text: str) -> Any:
    """Data of YAML text with the project's safe loader."""
    return load_yaml_text(text)[0]


def _header_comments(text: str) -> str:
    """The comment lines at the top of a file, kept even when the body must be re-dumped."""
    lines = []
    for line in text.splitlines(keepends=True):
        if not line.startswith("#"):
            break
        lines.append(line if line.endswith("\n") else line + "\n")
    return "".join(lines)


def flow_text(value: Any) -> str:
    """One-line YAML for a value, safe to put wherever a node stood ('; rm -rf ~' comes out quoted)."""
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        return _double_quoted(value)
    out = _dump(value, flow=True)
    out = out.removesuffix("\n").removesuffix("\n...").removesuffix("...").rstrip("\n")
    return out if "\n" not in out else _quoted_flow(value)


def _quoted_flow(value: Any) -> str:
    """Flow YAML with every string double-quoted (JSON escapes), for values holding multi-line text."""
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{_quoted_flow(k)}: {_quoted_flow(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list):
        return "[" + ", ".join(_quoted_flow(v) for v in value) + "]"
    if isinstance(value, str):
        return _double_quoted(value)
    text = flow_text(value)
    if "\n" in text:
        raise _CannotSplice
    return text


def _block_entry(key: Any, value: Any, indent: int) -> str:
    """`key: value` lines in block style, indented to sit inside a mapping."""
    out = _dump({key: value}, flow=False)
    pad = " " * indent
    return "".join(pad + line for line in out.splitlines(keepends=True))


def _apply(text: str, edits: list[_Edit]) -> str:
    """Apply non-overlapping edits from the end of the text backwards."""
    for edit in sorted(edits, key=lambda e: (e.start, e.order), reverse=True):
        text = text[: edit.start] + edit.text + text[edit.end :]
    return text


def _node_end(node: Node) -> int:
    """Index just after a node's last character (block collections end at their last leaf, not the next token)."""
    if isinstance(node, MappingNode) and node.flow_style is not True and node.value:
        return (
            _node_end(node.value[-1][1])
            if not _is_empty_scalar(node.value[-1][1])
            else node.value[-1][0].end_mark.index
        )
    if isinstance(node, SequenceNode) and node.flow_style is not True and node.value:
        return _node_end(node.value[-1])
    return node.end_mark.index


def _shared_nodes(root: Node) -> set[int]:
    """Ids of nodes reached more than once (anchored and aliased), which must not be edited in place."""
    seen: set[int] = set()
    shared: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            shared.add(id(node))
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            stack.extend(n for pair in node.value for n in pair)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
    return shared


def _is_empty_scalar(node: Node) -> bool:
    """A `key:` with nothing after it (null written as nothing)."""
    return isinstance(node, ScalarNode) and node.value == "" and node.style is None


def _is_block(node: Node) -> bool:
    """A block-style (indented) mapping or sequence."""
    return isinstance(node, (MappingNode, SequenceNode)) and node.flow_style is not True


class _Planner:
    """Walks nodes beside old and new data and collects the text edits."""

    def __init__(self, text: str, edits: list[_Edit], root: Node) -> None:
        self.text = text
        self.edits = edits
        self.shared = _shared_nodes(root)

    def add(self, start: int, end: int, text: str) -> None:
        """Queue one edit."""
        self.edits.append(_Edit(start, end, text, len(self.edits)))

    def mapping(self, node: MappingNode, old: dict[Any, Any], new: dict[Any, Any]) -> None:
        """Edits turning a block mapping holding `old` into one holding `new`."""
        pairs = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _CannotSplice
            pairs[to_plain(construct_yaml(key_node))] = (key_node, value_node)
        if list(pairs) != list(old):
            raise _CannotSplice
        for key in old:
            key_node, value_node = pairs[key]
            if key not in new:
                self.delete(key_node, value_node)
            else:
                self.value(key_node, value_node, old[key], new[key])
        added = [key for key in new if key not in old]
        if added:
            self.append(node, [(key, new[key]) for key in added])

    def value(self, key_node: Node | None, node: Node, old: Any, new: Any) -> None:
        """Edits turning one value node holding `old` into `new`, as locally as possible."""
        if same_value(old, new):
            return
        if id(node) in self.shared:
            raise _CannotSplice  # an anchor: other places alias this node
        if (
            isinstance(old, dict)
            and isinstance(new, dict)
            and new
            and isinstance(node, MappingNode)
            and _is_block(node)
        ):
            self.mapping(node, old, new)
        elif (
            isinstance(old, list)
            and isinstance(new, list)
            and len(old) == len(new)
            and isinstance(node, SequenceNode)
            and _is_block(node)
        ):
            for item_node, a, b in zip(node.value, old, new, strict=True):
                self.value(None, item_node, a, b)
        else:
            self.replace(key_node, node, new)

    def replace(self, key_node: Node | None, node: Node, new: Any) -> None:
        """Put `new` (as one-line YAML) where `node` stood."""
        text = flow_text(new)
        if _is_empty_scalar(node):
            self.add(node.start_mark.index, node.end_mark.index, " " + text)
        elif _is_block(node) and key_node is not None:
            colon = self.text.index(":", key_node.end_mark.index)
            self.add(colon, _node_end(node), ": " + text)
        elif _is_block(node) and node.start_mark.line == 0 and node.start_mark.column == 0:
            raise _CannotSplice
        else:
            start, end = node.start_mark.index, _node_end(node)
            while end > start and self.text[end - 1] in " \t\r\n":
                end -= 1  # a block scalar (`|`) ends after its newline; keep that newline
            self.add(start, end, text)

    def delete(self, key_node: Node, value_node: Node) -> None:
        """Remove a `key: value` entry's lines from a block mapping."""
        line_start = self.text.rfind("\n", 0, key_node.start_mark.index) + 1
        if self.text[line_start : key_node.start_mark.index].strip():
            raise _CannotSplice  # something precedes the key on its line (`- key:` or flow)
        end = key_node.end_mark.index if _is_empty_scalar(value_node) else _node_end(value_node)
        self.add(line_start, self._line_end(end), "")

    def append(self, node: MappingNode, entries: list[tuple[Any, Any]]) -> None:
        """Add entries at the end of a block mapping, indented like its keys."""
        indent = node.value[0][0].start_mark.column
        last_key, last_value = node.value[-1]
        end = self._line_end(
            last_key.end_mark.index if _is_empty_scalar(last_value) else _node_end(last_value)
        )
        prefix = "" if end == 0 or self.text[end - 1] == "\n" else "\n"
        body = "".join(_block_entry(key, value, indent) for key, value in entries)
        self.add(end, end, prefix + body)

    def _line_end(self, index: int) -> int:
        """Index after the newline that ends the line holding text[index - 1]."""
        if index > 0 and self.text[index - 1] == "\n":
            return index
        newline = self.text.find("\n", index)
        return len(self.text) if newline < 0 else newline + 1
