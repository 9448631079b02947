"""A safe YAML reader: plain data only, duplicate keys and alias bombs refused, errors with line and column.

Scalars are resolved when the file is read, knowing whether they were quoted: a quoted scalar is
always a string; a plain `1e-5` is a float (YAML 1.2 spelling that PyYAML's 1.1 rules miss); plain
`yes`/`on` are booleans unless the file declares `%YAML 1.2`, whose core schema is used then.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bisect_runs.sources.loaded import SourceProblem

MAX_EXPANDED_NODES = 1_000_000  # far above any real config, far below what an alias bomb expands to
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TUPLE_TAG = "tag:yaml.org,2002:python/tuple"
_FLOAT_TAG = "tag:yaml.org,2002:float"
# `1e-5`, `5E3`: floats in YAML 1.2 (and to every trainer that casts them), strings to YAML 1.1's regex.
EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_NUMBER_START = list("-+0123456789.")
_YAML_12 = re.compile(r"\A(?:[ \t]*(?:#[^\n]*)?\n)*%YAML[ \t]+1\.2\b")
# YAML 1.2 core schema: https://yaml.org/spec/1.2.2/#1032-tag-resolution
_CORE_12: tuple[tuple[str, str, str], ...] = (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789."),
    ("null", r"^(?:~|null|Null|NULL|)$", "~nN"),
)


class _ConfigConstructing:
    """Constructor behaviour shared by the pure-Python and the libyaml loaders."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Build a mapping, refusing a key that appears twice instead of keeping the last one."""
        if isinstance(node, MappingNode):
            _check_duplicates(self, node)
        return yaml.constructor.SafeConstructor.construct_mapping(self, node, deep=deep)  # type: ignore[arg-type]


def _construct_tuple_as_list(loader: Any, node: Node) -> list[Any]:
    """`!!python/tuple [a, b]` (Lightning hparams) read as a plain list, nothing imported."""
    if not isinstance(node, SequenceNode):
        raise yaml.constructor.ConstructorError(
            None, None, "expected a sequence for !!python/tuple", node.start_mark
        )
    return list(loader.construct_sequence(node, deep=True))


def _construct_int_12(loader: Any, node: Node) -> int:
    """A YAML 1.2 integer: `017` is seventeen, `0o17` octal, `0x1F` hexadecimal."""
    text = str(loader.construct_scalar(node))
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text)


def resolve_exponent_floats(cls: Any) -> None:
    """A plain `1e-5` is a float to this loader (or dumper: a string spelled so is written quoted)."""
    cls.add_implicit_resolver(_FLOAT_TAG, EXPONENT_FLOAT, _NUMBER_START)


def _set_up(loader: Any) -> None:
    """Constructors and scalar resolution shared by every loader class of this module."""
    loader.add_constructor(_TUPLE_TAG, _construct_tuple_as_list)
    resolve_exponent_floats(loader)


def _core_12(loader: Any) -> None:
    """Replace YAML 1.1's implicit types (`yes`, `1:30`, `017`) with the YAML 1.2 core schema."""
    loader.yaml_implicit_resolvers = {}
    for name, pattern, first in _CORE_12:
        loader.add_implicit_resolver(f"tag:yaml.org,2002:{name}", re.compile(pattern), list(first))
    loader.add_constructor("tag:yaml.org,2002:int", _construct_int_12)


class ConfigLoader(_ConfigConstructing, yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and reads Lightning's `!!python/tuple` as a list."""


class ConfigLoader12(_ConfigConstructing, yaml.SafeLoader):
    """ConfigLoader for files that declare `%YAML 1.2`: the core schema's types only."""


_set_up(ConfigLoader)
_set_up(ConfigLoader12)
_core_12(ConfigLoader12)

FastConfigLoader: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = ConfigLoader
FastConfigLoader12: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = ConfigLoader12
if getattr(yaml, "__with_libyaml__", False):

    class _CConfigLoader(_ConfigConstructing, yaml.CSafeLoader):
        """The same rules on libyaml's parser: reading 10,000 keys takes a tenth of the time."""

    class _CConfigLoader12(_ConfigConstructing, yaml.CSafeLoader):
        """ConfigLoader12 on libyaml's parser."""

    _set_up(_CConfigLoader)
    _set_up(_CConfigLoader12)
    _core_12(_CConfigLoader12)
    FastConfigLoader, FastConfigLoader12 = _CConfigLoader, _CConfigLoader12


def declares_yaml_12(text: str) -> bool:
    """Whether the document starts with a `%YAML 1.2` directive (comments and blank lines aside)."""
    return _YAML_12.match(text) is not None


def _loader_class(text: str, fast: bool) -> Any:
    """The loader for this text: YAML 1.2 core schema when declared, YAML 1.1 types otherwise."""
    if declares_yaml_12(text):
        return FastConfigLoader12 if fast else ConfigLoader12
    return FastConfigLoader if fast else ConfigLoader


def _check_duplicates(loader: Any, node: MappingNode) -> None:
    """Raise on the second occurrence of a key in one mapping (merge keys `<<` excluded).

    `1:` and `"1":` are different YAML keys but the same config key once read as names.
    """
    seen: dict[Any, int] = {}
    named: dict[str, tuple[int, Node]] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            continue  # an unhashable key is reported by the constructor itself
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {seen[key]})",
                key_node.start_mark,
            )
        seen[key] = line
        if isinstance(key, (str, int, float, bool)) or key is None:
            _check_same_name(named, key_node, line)


def _check_same_name(named: dict[str, tuple[int, Node]], key_node: Node, line: int) -> None:
    """Raise when two differently typed keys (`1:`, `"1":`) name the same config key."""
    name = str(key_node.value) if isinstance(key_node, ScalarNode) else ""
    if name in named:
        first_line, first = named[name]
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"keys {_spelling(first)} (line {first_line}) and {_spelling(key_node)} (line {line}) "
            f"are both the key '{name}'; keep one",
            key_node.start_mark,
        )
    named[name] = (line, key_node)


def _spelling(node: Node) -> str:
    """How a key was written: `1` plain, `"1"` quoted."""
    style = getattr(node, "style", None)
    quote = style if style in ("'", '"') else ""
    return f"{quote}{node.value}{quote}"


def _expanded_size(node: Node, memo: dict[int, int], active: set[int]) -> int:
    """Number of nodes the document has once aliases are expanded (capped), cycles refused."""
    ident = id(node)
    if ident in memo:
        return memo[ident]
    if ident in active:
        raise SourceProblem(f"line {node.start_mark.line + 1}: recursive YAML alias")
    if isinstance(node, ScalarNode):
        return 1
    active.add(ident)
    total = 1
    children: list[Node] = []
    if isinstance(node, SequenceNode):
        children = list(node.value)
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            children += [key, value]
    for child in children:
        total += _expanded_size(child, memo, active)
        if total > MAX_EXPANDED_NODES:
            break
    active.discard(ident)
    memo[ident] = total
    return total


def compose_yaml(text: str, *, fast: bool = False) -> Node | None:
    """Compose (not construct) one YAML document, refusing alias bombs and recursive aliases.

    `fast` uses libyaml when present; its marks are not used for editing text.
    """
    loader = _loader_class(text, fast)(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    if node is None or "*" not in text:
        return node  # no alias in the text: nothing expands beyond what was parsed
    if _expanded_size(node, {}, set()) > MAX_EXPANDED_NODES:
        raise SourceProblem(
            f"YAML aliases expand to more than {MAX_EXPANDED_NODES:,} nodes (alias bomb?); refused"
        )
    return node


def construct_yaml(node: Node, *, yaml_12: bool = False) -> Any:
    """Turn a composed node into plain Python data with the safe constructors only."""
    loader = (FastConfigLoader12 if yaml_12 else FastConfigLoader)("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def yaml_error_text(exc: yaml.YAMLError) -> str:
    """One-line `line L, column C: problem` text of a PyYAML error."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if (
            isinstance(exc, yaml.constructor.ConstructorError)
            and "constructor for the tag" in problem
        ):
            tag = problem.split("tag", 1)[1].strip().strip("'")
            tag = tag.replace("tag:yaml.org,2002:", "!!")
            problem = f"unsafe or unknown YAML tag '{tag}' refused (only plain data is read)"
        problem = " ".join(problem.split())
        if mark is not None:
            return f"{_opened_at(exc)}line {mark.line + 1}, column {mark.column + 1}: {problem}"
        return problem
    return " ".join(str(exc).split())


_OPENERS = {
    "while parsing a flow sequence": "unclosed `[` opened",
    "while parsing a flow mapping": "unclosed `{` opened",
    "while scanning a quoted scalar": "unclosed quote opened",
}


def _opened_at(exc: yaml.MarkedYAMLError) -> str:
    """`unclosed `[` opened at line 3, column 10; failed at `: where the broken construct began."""
    start, fail = exc.context_mark, exc.problem_mark
    if not exc.context or start is None or fail is None or (start.line, start.column) == (fail.line, fail.column):
        return ""
    what = _OPENERS.get(exc.context)
    if what is None:
        what = exc.context.removeprefix("while ").replace("parsing ", "", 1).replace("scanning ", "", 1) + " begun"
    return f"{what} at line {start.line + 1}, column {start.column + 1}; failed at "


def load_yaml_text(text: str) -> tuple[Any, Node | None]:
    """Parse YAML text to data (and its node tree); errors as one-line SourceProblem text."""
    try:
        node = compose_yaml(text, fast=True)
        data = None if node is None else construct_yaml(node, yaml_12=declares_yaml_12(text))
    except yaml.YAMLError as exc:
        raise SourceProblem(_pure_error_text(text, exc)) from exc
    return data, node


def _pure_error_text(text: str, fast_error: yaml.YAMLError) -> str:
    """The pure-Python parser's wording of an error, the same with or without libyaml."""
    try:
        compose_yaml(text)
    except yaml.YAMLError as exc:
        return yaml_error_text(exc)
    return yaml_error_text(fast_error)
