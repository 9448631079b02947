"""Impact ranking: how likely a config difference is to change results, from a readable rules file.

The knowledge lives in `impact_rules.yaml` (key patterns -> category, prior weight, kind of
value, rationale) plus synonyms used to pair renamed keys; `--rules FILE` adds rules that
are tried first. A difference scores `weight x size`, where the size of the change depends on
the kind of value (log-ratio for scales, absolute change for probabilities, flips for
booleans and choices). See docs/diff.md.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from bisect_runs.errors import ConfigError
from bisect_runs.normalize import value_text

RULES_FILE = Path(__file__).with_name("impact_rules.yaml")
CATEGORIES = (
    "optimization",
    "architecture",
    "regularization",
    "augmentation",
    "data",
    "objective",
    "evaluation",
    "numerics",
    "runtime",
    "unknown",  # no rule recognises the key; ranked by the size of the change alone
)
KINDS = ("scale", "count", "probability", "boolean", "choice", "path", "text", "auto")
LEVELS = ("critical", "high", "medium", "low", "none")
DEFAULT_LEVELS = {"critical": 1.0, "high": 0.6, "medium": 0.3}
# Words too common in key names to say two keys are about the same thing.
STOP_WORDS = frozenset(
    "use n num is do enable enabled disable with max min the of to for and no not has apply total".split()
)
_RULE_FIELDS = ("pattern", "category", "weight", "kind_of_value", "why", "noun", "verbs")
_CAMEL_1 = re.compile(r"([a-z0-9])([A-Z])")
_CAMEL_2 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_INDEX = re.compile(r"\[[^\]]*\]")

# States of one side of a difference.
PRESENT, DEFAULT, ABSENT = "present", "default", "absent"


# -- key names -----------------------------------------------------------------------------


@lru_cache(maxsize=65536)
def snake(name: str) -> str:
    """`whiteNoiseSD` -> `white_noise_sd`: the form rules are matched against."""
    s = _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", name))
    return re.sub(r"[-\s]+", "_", s).lower()


def squash(name: str) -> str:
    """Name without case or underscores, so `lrStart`, `lr_start` and `lrstart` compare equal."""
    return snake(name).replace("_", "")


def leaf(key: str) -> str:
    """Last meaningful segment of a dotted key (list indices skipped)."""
    parts = [p for p in _INDEX.sub("", key).split(".") if p and not p.isdigit()]
    return parts[-1] if parts else key


def parent(key: str) -> str:
    """The section a dotted key lives in ('' at the top level)."""
    return key.rpartition(".")[0]


def words(name: str) -> frozenset[str]:
    """The meaningful words of a leaf name, for telling whether two keys are related."""
    return frozenset(w for w in snake(name).split("_") if len(w) > 1 and w not in STOP_WORDS)


# -- rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One rule of the rules file: which keys it covers and how changes to them are judged."""

    patterns: tuple[str, ...]
    category: str
    weight: float
    kind_of_value: str = "auto"
    why: str = ""
    noun: str = ""
    verbs: tuple[str, str] = ("turned on", "turned off")
    origin: str = ""  # "FILE: rules[N]", for messages and docs

    def __post_init__(self) -> None:
        compiled = [_compile(p) for p in self.patterns]
        object.__setattr__(self, "_leaf", _alternation([rx for where, rx in compiled if where == "leaf"]))
        object.__setattr__(self, "_key", _alternation([rx for where, rx in compiled if where == "key"]))
        object.__setattr__(self, "_search", [re.compile(rx, re.IGNORECASE) for where, rx in compiled if where == "re"])

    @property
    def on_whole_key(self) -> bool:
        """Whether some pattern looks beyond the leaf name (a dotted glob or a regex)."""
        return self._key is not None or bool(self._search)  # type: ignore[attr-defined]

    def matches(self, key_snake: str, leaf_snake: str) -> bool:
        """Whether this rule covers a key (given in snake_case)."""
        if self._leaf is not None and self._leaf.fullmatch(leaf_snake):  # type: ignore[attr-defined]
            return True
        if self._key is not None and self._key.fullmatch(key_snake):  # type: ignore[attr-defined]
            return True
        return any(rx.search(key_snake) for rx in self._search)  # type: ignore[attr-defined]


def _compile(pattern: str) -> tuple[str, str]:
    """A pattern as (what it is matched against: leaf, key or re, regex source)."""
    if pattern.startswith("re:"):
        re.compile(pattern[3:])  # report a bad regex now, naming the rule
        return "re", pattern[3:]
    glob = snake(pattern)
    return ("key" if "." in glob else "leaf"), fnmatch.translate(glob)


def _alternation(sources: list[str]) -> re.Pattern[str] | None:
    """One regex matching any of several (for speed: one call per rule, not per pattern)."""
    return re.compile("|".join(f"(?:{s})" for s in sources)) if sources else None


@dataclass
class Rules:
    """The rules in force: user rules first, then the shipped ones; synonyms; level thresholds."""

    rules: list[Rule]
    synonyms: dict[str, int] = field(default_factory=dict)  # squashed name -> synonym set
    levels: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LEVELS))
    _cache: dict[str, int] = field(default_factory=dict, repr=False)
    _leaf_rx: re.Pattern[str] | None = field(default=None, repr=False)
    _key_rules: list[int] = field(default_factory=list, repr=False)

    def index_for(self, key: str) -> int:
        """Index of the first rule covering a flat key."""
        if self._leaf_rx is None:
            self._compile()
        leaf_snake = snake(leaf(key))
        cache_key = key if self._key_rules else leaf_snake  # leaf-only rules: one lookup per leaf name
        hit = self._cache.get(cache_key)
        if hit is None:
            hit = self._first_match(key, leaf_snake)
            self._cache[cache_key] = hit
        return hit

    def _compile(self) -> None:
        """One regex over every rule's leaf patterns (its first matching group names the rule)."""
        parts = [f"(?P<r{i}>{r._leaf.pattern})" for i, r in enumerate(self.rules) if r._leaf is not None]  # type: ignore[attr-defined]
        self._leaf_rx = re.compile("|".join(parts) or "(?!)")
        self._key_rules = [i for i, r in enumerate(self.rules) if r.on_whole_key]

    def _first_match(self, key: str, leaf_snake: str) -> int:
        assert self._leaf_rx is not None
        m = self._leaf_rx.fullmatch(leaf_snake)
        hit = int(m.lastgroup[1:]) if m is not None and m.lastgroup else len(self.rules)
        key_snake = snake(_INDEX.sub("", key))
        hit = next((i for i in self._key_rules if i < hit and self.rules[i].matches(key_snake, leaf_snake)), hit)
        return hit if hit < len(self.rules) else -1

    def rule_for(self, key: str) -> Rule:
        """The first rule covering a flat key (a neutral rule when none does)."""
        i = self.index_for(key)
        return self.rules[i] if i >= 0 else _FALLBACK

    def synonym_set(self, key: str) -> int | None:
        """Which synonym set a key's leaf name belongs to, if any."""
        return self.synonyms.get(squash(leaf(key)))

    def level_of(self, score: float) -> str:
        """Level for a score from a rule with a non-zero weight."""
        for name in ("critical", "high", "medium"):
            if score >= self.levels[name]:
                return name
        return "low"


_FALLBACK = Rule(("*",), "unknown", 0.5, "auto", "no rule recognises this key")


def load_rules(extra: Path | str | None = None) -> Rules:
    """The shipped rules, with a user rules file's rules and synonyms tried first."""
    shipped = _shipped()
    if extra is None:
        return Rules(list(shipped.rules), dict(shipped.synonyms), dict(shipped.levels))
    user = _parse_rules(_read_rules_file(Path(extra)), str(extra))
    synonyms = dict(user.synonyms)
    offset = max(synonyms.values(), default=-1) + 1
    for name, group in shipped.synonyms.items():
        synonyms.setdefault(name, group + offset)
    return Rules(user.rules + shipped.rules, synonyms, {**shipped.levels, **user.levels})


@lru_cache(maxsize=1)
def _shipped() -> Rules:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: a tenth of the start-up time
    data = yaml.load(RULES_FILE.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader
    return _parse_rules(data, str(RULES_FILE))


def _read_rules_file(path: Path) -> Any:
    """Read a user rules file through the config loader (line/column errors, duplicate keys)."""
    from bisect_runs.sources import load_config

    if not path.is_file():
        raise ConfigError(f"{path}: no such rules file")
    return load_config(path, "yaml").data


def _parse_rules(data: Any, origin: str) -> Rules:
    """Validate a rules document; every problem is reported in one ConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping with rules, synonyms, levels")
    problems = [f"unknown section {k!r} (valid: levels, rules, synonyms)" for k in data if k not in ("rules", "synonyms", "levels")]
    rules = [_parse_rule(r, f"rules[{i}]", origin, problems) for i, r in enumerate(_as_list(data.get("rules"), "rules", problems))]
    synonyms = _parse_synonyms(data.get("synonyms"), problems)
    levels = _parse_levels(data.get("levels"), problems)
    if problems:
        raise ConfigError(f"{origin}: " + "; ".join(problems))
    return Rules([r for r in rules if r is not None], synonyms, levels)


def _as_list(value: Any, where: str, problems: list[str]) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{where} must be a list")
        return []
    return value


def _parse_rule(raw: Any, where: str, origin: str, problems: list[str]) -> Rule | None:
    """One rule mapping -> Rule, appending problems instead of raising."""
    if not isinstance(raw, dict):
        problems.append(f"{where} must be a mapping with pattern, category, weight")
        return None
    bad = len(problems)
    problems.extend(f"{where}: unknown field {k!r} (valid: {', '.join(_RULE_FIELDS)})" for k in raw if k not in _RULE_FIELDS)
    patterns = raw.get("pattern")
    patterns = [patterns] if isinstance(patterns, str) else patterns
    if not patterns or not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        problems.append(f"{where}: pattern must be a string or a list of strings")
    category = raw.get("category")
    if category not in CATEGORIES:
        problems.append(f"{where}: category must be one of {', '.join(CATEGORIES)} (got {category!r})")
    weight = raw.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf:
        problems.append(f"{where}: weight must be a number >= 0 (got {weight!r})")
    kind = raw.get("kind_of_value", "auto")
    if kind not in KINDS:
        problems.append(f"{where}: kind_of_value must be one of {', '.join(KINDS)} (got {kind!r})")
    verbs = raw.get("verbs", ["turned on", "turned off"])
    if not (isinstance(verbs, list) and len(verbs) == 2 and all(isinstance(v, str) for v in verbs)):
        problems.append(f"{where}: verbs must be a list of two strings [on, off]")
    for name in ("why", "noun"):
        if not isinstance(raw.get(name, ""), str):
            problems.append(f"{where}: {name} must be a string")
    if len(problems) > bad:
        return None
    assert isinstance(patterns, list) and isinstance(category, str) and isinstance(weight, (int, float))
    for p in patterns:
        try:
            _compile(p)
        except re.error as exc:
            problems.append(f"{where}: invalid regex {p!r} ({exc})")
            return None
    return Rule(tuple(patterns), category, float(weight), kind, raw.get("why", ""), raw.get("noun", ""),
                (verbs[0], verbs[1]), f"{origin}: {where}")


def _parse_synonyms(value: Any, problems: list[str]) -> dict[str, int]:
    """Synonym sets (lists of names) -> squashed name -> set number (first set naming a name wins)."""
    out: dict[str, int] = {}
    for i, names in enumerate(_as_list(value, "synonyms", problems)):
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            problems.append(f"synonyms[{i}] must be a list of key names")
            continue
        for n in names:
            out.setdefault(squash(n), i)
    return out


def _parse_levels(value: Any, problems: list[str]) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append("levels must be a mapping of critical, high, medium to scores")
        return {}
    out: dict[str, float] = {}
    for name, score in value.items():
        if name not in DEFAULT_LEVELS:
            problems.append(f"levels: unknown level {name!r} (valid: critical, high, medium)")
        elif isinstance(score, bool) or not isinstance(score, (int, float)) or score < 0:
            problems.append(f"levels.{name} must be a number >= 0 (got {score!r})")
        else:
            out[name] = float(score)
    return out


# -- scoring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assessment:
    """How much one difference is likely to matter, and why, in words."""

    level: str
    score: float
    reason: str
    category: str
    rule: int  # index of the rule that matched (-1: none did)


REASON_WIDTH = 160  # characters; the values themselves are in the difference's `a` and `b`


def assess(
    rules: Rules,
    key: str,
    a: Any,
    b: Any,
    *,
    a_state: str = PRESENT,
    b_state: str = PRESENT,
    type_only: bool = False,
    subject: str | None = None,
) -> Assessment:
    """Score the change of `key` from `a` to `b` with the first rule that covers the key."""
    index = rules.index_for(key)
    rule = rules.rules[index] if index >= 0 else _FALLBACK
    noun = subject or rule.noun or leaf(key)
    if rule.weight == 0:
        return Assessment("none", 0.0, rule.why or "judged to have no effect", rule.category, index)
    if type_only:
        size, reason = 0.2, f"{noun}: type changed ({_type_name(a)} -> {_type_name(b)}), same value"
    elif ABSENT in (a_state, b_state):
        size, reason = _one_sided(noun, b if a_state == ABSENT else a, added=a_state == ABSENT)
    else:
        size, reason = measure(rule, noun, a, b)
    score = round(rule.weight * size, 4)
    return Assessment(rules.level_of(score), score, _short(reason), rule.category, index)


def _short(reason: str) -> str:
    """A reason stays a short text even when it quotes a value of megabytes."""
    return reason if len(reason) <= REASON_WIDTH else reason[: REASON_WIDTH - 1] + "…"


def _one_sided(noun: str, value: Any, *, added: bool) -> tuple[float, str]:
    """A key only one side has and no default is known for: its effect is uncertain."""
    side = "only in B" if added else "only in A"
    size = 0.25 if _is_off(value) else 0.5
    return size, f"{noun} {side} ({value_text(value)}; no default known)"


def measure(rule: Rule, noun: str, a: Any, b: Any) -> tuple[float, str]:
    """Size of a change (1.0 = a big, qualitative change) and a short reason, by kind of value."""
    if _number_lists(rule.kind_of_value, a, b):
        return _elementwise_change(rule, noun, a, b)
    kind = _effective_kind(rule.kind_of_value, a, b)
    if kind == "boolean":
        return 1.0, f"{noun} {rule.verbs[0] if b else rule.verbs[1]}"
    if kind in ("scale", "count"):
        return _ratio_change(kind, noun, a, b, rule.verbs)
    if kind == "probability":
        return _probability_change(noun, a, b, rule.verbs)
    if kind in ("path", "text"):
        return 1.0, f"{noun} changed"
    if kind == "choice" and _is_unset(a) != _is_unset(b):  # `scheduler: null -> cosine`
        return 1.0, f"{noun} {rule.verbs[1] if _is_unset(b) else rule.verbs[0]} ({value_text(a)} -> {value_text(b)})"
    return 1.0, f"{noun} {value_text(a)} -> {value_text(b)}"


def _number_lists(declared: str, a: Any, b: Any) -> bool:
    """Two equally long lists of numbers under a numeric rule (`betas`, `image_size`)."""
    if declared not in ("scale", "count", "probability", "auto"):
        return False
    if not (isinstance(a, list) and isinstance(b, list) and a and len(a) == len(b)):
        return False
    return all(_is_number(v) for v in (*a, *b))


def _elementwise_change(rule: Rule, noun: str, a: list[Any], b: list[Any]) -> tuple[float, str]:
    """The largest change among the elements; the reason names the element when only one moved."""
    changed = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    if not changed:
        return 0.0, f"{noun} {value_text(a)} -> {value_text(b)}"
    sizes = [measure(rule, f"{noun}[{i}]", a[i], b[i]) for i in changed]
    size, reason = max(sizes, key=lambda sr: sr[0])
    if len(changed) > 1:
        reason = f"{noun} {value_text(a)} -> {value_text(b)}"
    return size, reason


def _effective_kind(declared: str, a: Any, b: Any) -> str:
    """The rule's kind of value when the values fit it, else one inferred from the values."""
    numbers = all(_is_number(v) or v is None for v in (a, b)) and not (a is None and b is None)
    if declared in ("scale", "count") and numbers:
        return declared
    if declared == "probability" and numbers and all(v is None or 0 <= v <= 1 for v in (a, b)):
        return declared
    if declared == "boolean" and all(isinstance(v, bool) for v in (a, b)):
        return declared
    if declared in ("choice", "path", "text"):
        return declared
    if all(isinstance(v, bool) or v is None for v in (a, b)) and (isinstance(a, bool) or isinstance(b, bool)):
        return "boolean"
    if numbers:
        return "count" if all(isinstance(v, int) or v is None for v in (a, b)) else "scale"
    return "choice"


def _ratio_change(kind: str, noun: str, a: Any, b: Any, verbs: tuple[str, str]) -> tuple[float, str]:
    """Log-ratio size for scale (10x = 1) and count (4x = 1) values; 0/null on one side is a switch."""
    change = f"({value_text(a)} -> {value_text(b)})"
    a_off, b_off = _is_off(a), _is_off(b)
    if a_off and b_off:
        return 0.1, f"{noun} {value_text(a)} -> {value_text(b)}"
    if a_off or b_off:
        return 1.0, f"{noun} {verbs[1] if b_off else verbs[0]} {change}"
    if (a < 0) != (b < 0):
        return 1.0, f"{noun} changed sign {change}"
    try:
        ratio = abs(b / a)
    except OverflowError:  # integers beyond float range
        ratio = math.inf
    if not (math.isfinite(ratio) and ratio > 0):
        return 1.0, f"{noun} {value_text(a)} -> {value_text(b)}"
    if kind == "scale" and all(0.9 <= v < 1 for v in (a, b)):
        return _memory_change(noun, a, b)
    if kind == "scale":
        size = min(2.0, abs(math.log10(ratio)))
        higher, lower = "higher", "lower"
    else:
        size = min(1.5, abs(math.log2(ratio)) / 2)
        higher, lower = "more", "fewer"
    word, factor = (higher, ratio) if ratio >= 1 else (lower, 1 / ratio)
    if kind == "scale":
        return size, f"{_ratio_text(factor)} {word} {noun}"
    return size, f"{noun} {value_text(a)} -> {value_text(b)} ({_ratio_text(factor)} {word})"


def _memory_change(noun: str, a: float, b: float) -> tuple[float, str]:
    """Momentum, betas, EMA decay near 1: what matters is the ratio of 1 - value (the memory length)."""
    ratio = (1 - a) / (1 - b)
    word, factor = ("longer", ratio) if ratio >= 1 else ("shorter", 1 / ratio)
    size = min(2.0, abs(math.log10(ratio)))
    return size, f"{noun} {value_text(a)} -> {value_text(b)} ({_ratio_text(factor)} {word} memory)"


def _ratio_text(ratio: float) -> str:
    """25.000000001 -> '25x', 2.5 -> '2.5x', 1.2 -> '20%', 1.0009 -> '0.09%'."""
    if ratio >= 10:
        return f"{round(ratio)}x"
    if ratio >= 1.5:
        return f"{ratio:.2g}x"
    percent = (ratio - 1) * 100
    return f"{round(percent)}%" if percent >= 1 else f"{percent:.1g}%"


def _probability_change(noun: str, a: Any, b: Any, verbs: tuple[str, str]) -> tuple[float, str]:
    """Absolute-change size for probabilities; going from or to 0 is at least a medium switch."""
    x, y = a or 0.0, b or 0.0
    size = min(1.0, 2.5 * abs(y - x))
    change = f"{value_text(a)} -> {value_text(b)}"
    if (x == 0) != (y == 0):
        return max(size, 0.6), f"{noun} {verbs[1] if y == 0 else verbs[0]} ({change})"
    return size, f"{noun} {'raised' if y > x else 'lowered'} {change}"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_off(v: Any) -> bool:
    """Values that usually mean "this feature is not used"."""
    return v is None or v is False or (_is_number(v) and v == 0) or v in ("", "none", "None", [], {})


def _is_unset(v: Any) -> bool:
    """A choice that is not made (`scheduler: null`, `"none"`); unlike `_is_off`, 0 is a real choice."""
    return v is None or (isinstance(v, str) and v.strip().lower() in ("", "none", "null"))


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def side_state(key: str | None, from_default: bool) -> str:
    """Whether a side has the key, takes it from defaults, or lacks it."""
    if key is not None:
        return PRESENT
    return DEFAULT if from_default else ABSENT
