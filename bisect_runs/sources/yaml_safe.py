"""A safe YAML reader: plain data only, duplicate keys and alias bombs refused, errors with line and column."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bisect_runs.sources.loaded import SourceProblem

MAX_EXPANDED_NODES = 1_000_000  # far above any real config, far below what an alias bomb expands to
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TUPLE_TAG = "tag:yaml.org,2002:python/tuple"


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


class ConfigLoader(_ConfigConstructing, yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and reads Lightning's `!!python/tuple` as a list."""


ConfigLoader.add_constructor(_TUPLE_TAG, _construct_tuple_as_list)

FastConfigLoader: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = ConfigLoader
if getattr(yaml, "__with_libyaml__", False):

    class _CConfigLoader(_ConfigConstructing, yaml.CSafeLoader):
        """The same rules on libyaml's parser: reading 10,000 keys takes a tenth of the time."""

    _CConfigLoader.add_constructor(_TUPLE_TAG, _construct_tuple_as_list)
    FastConfigLoader = _CConfigLoader


def _check_duplicates(loader: Any, node: MappingNode) -> None:
    """Raise on the second occurrence of a key in one mapping (merge keys `<<` excluded)."""
    seen: dict[Any, int] = {}
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
    loader = (FastConfigLoader if fast else ConfigLoader)(text)
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


def construct_yaml(node: Node) -> Any:
    """Turn a composed node into plain Python data with the safe constructors only."""
    loader = FastConfigLoader("")
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
            return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
        return problem
    return " ".join(str(exc).split())


def load_yaml_text(text: str) -> tuple[Any, Node | None]:
    """Parse YAML text to data (and its node tree); errors as one-line SourceProblem text."""
    try:
        node = compose_yaml(text, fast=True)
        data = None if node is None else construct_yaml(node)
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
