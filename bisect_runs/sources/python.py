"""Python config files of plain assignments (nanoGPT style) and argparse `Namespace(...)` dumps, read with `ast`, never run."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bisect_runs.sources.loaded import SourceProblem

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_SKIPPED = (ast.Import, ast.ImportFrom, ast.Pass)
_MAX_POWER = 64  # keeps `2 ** 10 ** 9` from hanging the reader


@dataclass
class Assignment:
    """Where a top-level `name = value` sits in the file, for rewriting its value in place."""

    name: str
    line: int
    col: int
    end_line: int
    end_col: int
    stmt_line: int
    stmt_end_line: int


@dataclass
class PythonConfig:
    """Values of a Python config file and the positions of their assignments."""

    data: dict[str, Any]
    assignments: dict[str, Assignment] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    expressions: list[str] = field(default_factory=list)  # names whose value is kept as source text
    derived: dict[str, str] = field(default_factory=dict)  # name -> expression over earlier names (`learning_rate / 10`)


def parse_python_config(text: str) -> PythonConfig:
    """Read `name = literal` statements; skip imports and docstrings; refuse anything that would need running."""
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise SourceProblem(f"line {exc.lineno}, column {exc.offset}: {exc.msg}") from exc
    result = PythonConfig(data={})
    for stmt in tree.body:
        if isinstance(stmt, _SKIPPED):
            result.skipped.append(f"line {stmt.lineno}: {type(stmt).__name__.lower()}")
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # a docstring or a bare string used as a comment
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            _read_assignment(stmt, result)
        else:
            raise SourceProblem(
                f"line {stmt.lineno}: {_describe(stmt)} is not a plain assignment; "
                "only `name = value` statements are read (the file is never executed)"
            )
    if not result.data:
        raise SourceProblem("no `name = value` assignments found")
    return result


def _describe(stmt: ast.stmt) -> str:
    """Short words for a statement the reader refuses."""
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        return "a function call"
    return f"a `{type(stmt).__name__}` statement"


def _read_assignment(stmt: ast.Assign | ast.AnnAssign, result: PythonConfig) -> None:
    """Record one `name = value` (or `name: type = value`) statement."""
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
    if stmt.value is None:
        raise SourceProblem(f"line {stmt.lineno}: annotation without a value")
    if len(targets) != 1 or not isinstance(targets[0], ast.Name):
        raise SourceProblem(f"line {stmt.lineno}: only `name = value` assignments are read")
    name = targets[0].id
    if name in result.assignments:
        first = result.assignments[name].stmt_line
        raise SourceProblem(
            f"line {stmt.lineno}: '{name}' assigned again (first at line {first}); "
            "a config file sets each name once (which value would the trainer see?)"
        )
    value_node = stmt.value
    try:
        known = dict(result.data)
        result.data[name] = evaluate(value_node, known)
        if any(isinstance(n, ast.Name) and n.id in known for n in ast.walk(value_node)):
            result.derived[name] = ast.unparse(value_node)
        else:
            result.derived.pop(name, None)
    except SourceProblem:
        # `'ft-' + str(time.time())`: unknowable without running it, so compared as its text
        result.data[name] = ast.unparse(value_node)
        result.expressions.append(f"line {stmt.lineno}: {name}")
    result.assignments[name] = Assignment(
        name=name,
        line=value_node.lineno,
        col=value_node.col_offset,
        end_line=value_node.end_lineno or value_node.lineno,
        end_col=value_node.end_col_offset or value_node.col_offset,
        stmt_line=stmt.lineno,
        stmt_end_line=stmt.end_lineno or stmt.lineno,
    )


def evaluate(node: ast.expr, names: dict[str, Any]) -> Any:
    """Value of a literal expression, allowing arithmetic and names assigned earlier in the file."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = evaluate(node.operand, names)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _binop(node, names)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [evaluate(item, names) for item in node.elts]
    if isinstance(node, ast.Dict):
        keys = [k for k in node.keys if k is not None]  # `**other` entries are refused below
        if len(keys) == len(node.values):
            pairs = zip(keys, node.values, strict=True)
            return {evaluate(k, names): evaluate(v, names) for k, v in pairs}
    what = "a function call" if isinstance(node, ast.Call) else f"`{ast.unparse(node)}`"
    raise SourceProblem(
        f"line {node.lineno}, column {node.col_offset + 1}: {what} is not a literal value "
        "(config files are read, never executed)"
    )


def _binop(node: ast.BinOp, names: dict[str, Any]) -> Any:
    """Arithmetic on numbers and strings only (`5 * 8`, `'run' + name`)."""
    left, right = evaluate(node.left, names), evaluate(node.right, names)
    allowed = (int, float, str)
    if not isinstance(left, allowed) or not isinstance(right, allowed):
        raise SourceProblem(f"line {node.lineno}: arithmetic on non-numbers is not read")
    if isinstance(node.op, ast.Pow) and isinstance(right, (int, float)) and abs(right) > _MAX_POWER:
        raise SourceProblem(f"line {node.lineno}: exponent too large")
    if isinstance(node.op, ast.Mult) and (isinstance(left, str) or isinstance(right, str)):
        raise SourceProblem(f"line {node.lineno}: string repetition is not read")
    try:
        return _BINOPS[type(node.op)](left, right)
    except (TypeError, ZeroDivisionError, OverflowError) as exc:
        raise SourceProblem(f"line {node.lineno}: {exc}") from exc


def looks_like_python_config(text: str) -> bool:
    """True for text that parses as Python made only of assignments, imports and docstrings."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    has_assignment = False
    for stmt in tree.body:
        if (
            isinstance(stmt, ast.Assign)
            or isinstance(stmt, ast.AnnAssign)
            and stmt.value is not None
        ):
            has_assignment = True
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue
        elif not isinstance(stmt, _SKIPPED):
            return False  # `[table]` (TOML) or `key: value` (YAML) lines also parse as Python
    return has_assignment


def looks_like_namespace(text: str) -> bool:
    """True for an argparse dump such as `Namespace(lr=0.1, name='x')`."""
    return text.lstrip().startswith("Namespace(")


def parse_namespace(text: str) -> dict[str, Any]:
    """Keyword arguments of a `Namespace(...)` dump; non-literal values kept as their source text."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise SourceProblem(f"line {exc.lineno}, column {exc.offset}: {exc.msg}") from exc
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise SourceProblem("expected one `Namespace(key=value, ...)` expression")
    if call.args:
        raise SourceProblem("Namespace(...) dump has positional arguments; expected key=value only")
    data: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise SourceProblem("`**` in a Namespace dump is not read")
        try:
            data[keyword.arg] = ast.literal_eval(keyword.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            data[keyword.arg] = ast.unparse(
                keyword.value
            )  # e.g. device(type='cuda'): compared as text
    if not data:
        raise SourceProblem("empty Namespace() (no keys)")
    return data
