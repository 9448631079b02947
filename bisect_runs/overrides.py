"""Override words in the style a trainer's own argument parser takes.

`{overrides}` (a trial's differences from the bad config) and `{args}` (the trial's whole
config) are written as Hydra overrides (`lr=0.1`), `--key=value` (nanoGPT's configurator,
Lightning CLI), `--key value` (argparse, Hugging Face `HfArgumentParser`), with Python or
YAML literals, dotted or leaf-only keys, and booleans as flags. See docs/trainers.md.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bisect_runs.errors import SettingsError, TrialError
from bisect_runs.trials import _is_absent, encode_value, override_words

FORMS = ("hydra", "equals", "space")
MODIFIERS = {  # word in the style setting -> (field, value)
    "python": ("literals", "python"),
    "yaml": ("literals", "yaml"),
    "leaf": ("keys", "leaf"),
    "dotted": ("keys", "dotted"),
    "flags": ("bools", "flags"),
    "store_true": ("bools", "store_true"),
}
_UNSAFE_KEY = re.compile(r"[=\s\x00-\x1f\x7f]")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass(frozen=True)
class OverrideStyle:
    """How one (key, value) becomes command-line words."""

    form: str = "hydra"  # hydra: key=value | equals: --key=value | space: --key value
    literals: str = "yaml"  # yaml: true/null/[1, 2] | python: True/None/[1, 2] (read back by literal_eval)
    keys: str = "dotted"  # dotted: model.lr | leaf: lr
    bools: str = "value"  # value: --amp=true | flags: --amp / --no-amp | store_true: --amp / nothing

    @property
    def dashed(self) -> bool:
        """True when the style itself writes `--` before each key."""
        return self.form != "hydra"


HYDRA = OverrideStyle()


def parse_style(text: str | None, where: str = "override_style") -> OverrideStyle:
    """`"equals python"` -> OverrideStyle(form="equals", literals="python"); words by space or comma."""
    words = [w for w in re.split(r"[\s,+]+", (text or "hydra").strip()) if w]
    if not words or words[0] not in FORMS:
        raise SettingsError(f"{where} must start with one of {', '.join(FORMS)} (got {text!r})")
    fields: dict[str, str] = {"form": words[0]}
    for word in words[1:]:
        if word not in MODIFIERS:
            raise SettingsError(f"{where} has an unknown word {word!r}; valid after the form: {', '.join(MODIFIERS)}")
        name, value = MODIFIERS[word]
        fields[name] = value
    style = OverrideStyle(**fields)
    if style.form == "hydra" and (style.literals != "yaml" or style.bools != "value"):
        raise SettingsError(f"{where} cannot combine hydra with python, flags or store_true (they need equals or space)")
    return style


def check_key(key: str, style: OverrideStyle) -> None:
    """Refuse a key that would become a trainer option of its own (`--run-dir`) or split a word."""
    name = display_key(key, style)
    if name.startswith(("-", "~", "+")) or _UNSAFE_KEY.search(name) or not name:
        raise TrialError(
            f"config key {key!r} cannot be written as an override word: it would start with "
            f"{name[:1]!r} or holds '=', spaces or control characters, and could be read as an option "
            "of the trainer; rename the key, add it to `ignore`, or pass the config as {config}"
        )


def display_key(key: str, style: OverrideStyle) -> str:
    """The key as the style writes it (leaf-only keys keep the last dotted part)."""
    return key.rsplit(".", 1)[-1] if style.keys == "leaf" else key


def override_words_for(
    changes: Iterable[tuple[str, Any]], style: OverrideStyle, base_keys: Container[str] | None = None
) -> list[str]:
    """`{overrides}`: the changes in `style`; a removed key only in Hydra's `~key`."""
    changes = list(changes)
    for key, _ in changes:
        check_key(key, style)
    if style.form == "hydra":
        return override_words(changes, base_keys)
    words: list[str] = []
    for key, value in _unique_leaves(changes, style):
        if _is_absent(value):
            raise TrialError(
                f"override style {style.form!r} cannot remove {key!r} on the command line; put {{args}} "
                "(the whole config, absent keys left out) or {config} in the command instead"
            )
        words += _words(key, value, style)
    return words


def args_words(values: Mapping[str, Any], changes: Iterable[tuple[str, Any]], style: OverrideStyle) -> list[str]:
    """`{args}`: every key of the trial's config (the bad config's flat values with the changes)."""
    merged = dict(values)
    for key, value in changes:
        merged[key] = value
    present = [(k, v) for k, v in merged.items() if not _is_absent(v)]
    for key, _ in present:
        check_key(key, style)
    if style.form == "hydra":
        return override_words(present)
    words: list[str] = []
    for key, value in _unique_leaves(present, style):
        words += _words(key, value, style)
    return words


def _unique_leaves(items: list[tuple[str, Any]], style: OverrideStyle) -> list[tuple[str, Any]]:
    """The items unchanged; with leaf keys, two keys ending alike are an error."""
    if style.keys != "leaf":
        return items
    seen: dict[str, str] = {}
    for key, _ in items:
        leaf = display_key(key, style)
        if leaf in seen and seen[leaf] != key:
            raise TrialError(f"override style 'leaf': keys {seen[leaf]!r} and {key!r} both become --{leaf}")
        seen[leaf] = key
    return items


def _words(key: str, value: Any, style: OverrideStyle) -> list[str]:
    """One key's words: `--key=value`, `--key value`, or a bare boolean flag."""
    name = "--" + display_key(key, style)
    if isinstance(value, bool) and style.bools != "value":
        if value:
            return [name]
        return [] if style.bools == "store_true" else ["--no-" + name[2:]]
    text = literal(value, style.literals)
    if style.form == "space" and not (text.startswith("-") and not _NUMBER.fullmatch(text)):
        return [name, text]
    return [f"{name}={text}"]  # a value such as "-x" stays glued to its key: never an option of its own


def literal(value: Any, literals: str) -> str:
    """A value as the trainer's parser reads it back: strings bare unless they would read as another type."""
    if literals == "python":
        if isinstance(value, str):
            return value if _python_reads_as_string(value) else repr(value)
        return _python_text(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=encode_value)


def _python_text(value: Any) -> str:
    """Python source for a value (`True`, `None`, `[1, 'a']`)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_python_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_python_text(k)}: {_python_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return repr(value)
    return repr(value)


def _python_reads_as_string(text: str) -> bool:
    """True when literal_eval fails on `text` (nanoGPT's configurator then keeps it as a string)."""
    try:
        ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return True
    return False


__all__ = ["FORMS", "HYDRA", "OverrideStyle", "args_words", "check_key", "literal", "override_words_for", "parse_style"]
