"""Differences between two configs: keys paired across renames and moves, defaults applied, ranked.

`diff_configs(good, bad)` flattens both configs, pairs keys (same key; `--alias`; a key moved
to another section; a known synonym; an equal value under a related name), fills in what a
side lacks from `defaults`, scores every difference with the impact rules and groups keys
that move together into factors (the units a search toggles). See docs/diff.md.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from bisect_runs.errors import ConfigError
from bisect_runs.factors import Factor, build_factors, key_matches, value_key
from bisect_runs.impact import LEVELS, Rules, assess, leaf, load_rules, parent, side_state, squash
from bisect_runs.normalize import FlatConfig, flatten, type_word, value_text, values_equal
from bisect_runs.sources import LoadedConfig, load_config

KINDS = ("changed", "added", "removed", "type")
_CLOSE_SPELLING = 0.8  # difflib ratio of squashed leaf names: `evaleveryn`/`evalevery` pass, `lrstart`/`lrend` do not


@dataclass
class Difference:
    """One key (or renamed pair of keys) whose value differs between A (good) and B (bad)."""

    key: str  # display key; for renames "l2_decay -> weight_decay"
    a: Any  # A's value (None when absent in A and no default is known)
    b: Any
    kind: str  # "changed" | "added" | "removed" | "type"
    key_a: str | None  # flat key in A (None if absent there)
    key_b: str | None  # flat key in B
    level: str = "low"  # critical|high|medium|low|none
    score: float = 0.0
    reason: str = ""
    category: str = ""
    factor: str = ""  # name of the factor (group) this difference belongs to
    a_default: bool = False  # A's value came from defaults (key absent in A)
    b_default: bool = False

    @property
    def flat_key(self) -> str:
        """The key a variant of the bad config sets: B's name, or A's when B lacks it."""
        return self.key_b or self.key_a or self.key

    def to_json(self) -> dict[str, Any]:
        """The JSON object of DESIGN.md (absent side: null plus kind added/removed)."""
        return {
            "key": self.key,
            "a": json_value(self.a),
            "b": json_value(self.b),
            "kind": self.kind,
            "level": self.level,
            "score": self.score,
            "reason": self.reason,
            "category": self.category,
            "key_a": self.key_a,
            "key_b": self.key_b,
            "factor": self.factor,
            "a_default": self.a_default,
            "b_default": self.b_default,
        }


@dataclass
class DiffOptions:
    """How to compare: keys to skip, forced pairings, defaults, extra rules, explicit groups."""

    ignore: list[str] = field(default_factory=list)  # glob patterns on flat keys
    aliases: dict[str, str] = field(default_factory=dict)  # OLD=NEW forced pairings (A key -> B key)
    defaults: dict[str, Any] = field(default_factory=dict)  # flat key -> value a side takes when it lacks the key
    rules_path: Path | None = None  # extra/overriding rules file (--rules)
    strict_types: bool = False
    groups: dict[str, list[str]] = field(default_factory=dict)  # explicit factor groups: name -> key globs


@dataclass
class DiffResult:
    """Both configs, their flat forms, the ranked differences and the factors built from them."""

    good: LoadedConfig
    bad: LoadedConfig
    flat_a: FlatConfig
    flat_b: FlatConfig
    differences: list[Difference]  # ranked, most impactful first; includes level "none"
    factors: list[Factor]  # ranked; hidden ("none") differences form factors of level none
    warnings: list[str] = field(default_factory=list)  # e.g. an alias naming keys neither config has
    unchanged: list[str] = field(default_factory=list)  # keys both sides hold with an equal value (`--unchanged`)

    @property
    def identical(self) -> bool:
        """No difference at all (ignored keys aside)."""
        return not self.differences


def diff_configs(good: LoadedConfig, bad: LoadedConfig, options: DiffOptions | None = None) -> DiffResult:
    """Compare A (good) with B (bad): paired, defaulted, scored, ranked differences and factors."""
    options = options or DiffOptions()
    rules = load_rules(options.rules_path)
    flat_a, flat_b = _flatten_source(good), _flatten_source(bad)
    keys_a = [k for k in flat_a.values if not (options.ignore and _ignored(k, options.ignore))]
    keys_b = [k for k in flat_b.values if not (options.ignore and _ignored(k, options.ignore))]
    keys_a, keys_b = _unshadowed(keys_a, flat_a.values, keys_b), _unshadowed(keys_b, flat_b.values, keys_a)
    pairing = _Pairing(keys_a, keys_b, flat_a.values, flat_b.values, rules)
    warnings = pairing.pair_all(options.aliases)
    defaults = _Defaults(options.defaults, options.aliases, rules)
    differences = _compare(pairing, flat_a.values, flat_b.values, defaults, options.strict_types)
    differences = [d for d in differences if not _derived_alike(d, good, bad)]
    order: dict[str, int] = {}
    for k in (*keys_b, *keys_a):
        order.setdefault(k, len(order))
    for d in differences:
        _score(d, rules)
    differences.sort(key=lambda d: (-d.score, LEVELS.index(d.level), order.get(d.flat_key, 0)))
    factors = build_factors(differences, options.groups, rules, order)
    differing = {d.key_a for d in differences}
    unchanged = [k for k, kb in pairing.pairs.items() if k == kb and k not in differing]
    return DiffResult(good, bad, flat_a, flat_b, differences, factors, warnings, unchanged)


def _derived_alike(d: Difference, good: LoadedConfig, bad: LoadedConfig) -> bool:
    """`min_lr = learning_rate / 10` on both sides: the value follows its inputs, it is no difference of its own."""
    if d.key_a is None or d.key_a != d.key_b:
        return False
    expression = good.provenance.get("derived", {}).get(d.key_a)
    return expression is not None and expression == bad.provenance.get("derived", {}).get(d.key_b)


def _flatten_source(config: LoadedConfig) -> FlatConfig:
    """Flat keys of a loaded config; a key spelled twice is reported with the source's name."""
    try:
        return flatten(config.data)
    except ConfigError as exc:
        raise ConfigError(f"{config.source}: {exc}") from exc


def load_defaults(path: str | Path | None) -> dict[str, Any]:
    """Read a defaults file (key: value, nested or dotted keys) into flat key -> value ({} for None)."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such defaults file")
    return dict(flatten(load_config(p).data).values)


# -- pairing -------------------------------------------------------------------------------


class _Pairing:
    """Pairs A's keys with B's: same key, aliases, moves, synonyms, then equal-valued renames."""

    def __init__(self, keys_a: list[str], keys_b: list[str], values_a: dict[str, Any], values_b: dict[str, Any], rules: Rules) -> None:
        self.values_a, self.values_b, self.rules = values_a, values_b, rules
        in_b = set(keys_b)
        self.pairs: dict[str, str] = {k: k for k in keys_a if k in in_b}  # A key -> B key
        self.only_a = [k for k in keys_a if k not in in_b]  # unpaired, in document order
        in_a = set(keys_a)
        self.only_b = [k for k in keys_b if k not in in_a]
        self.keys_a, self.keys_b = keys_a, keys_b
        self._paired_b: set[str] = set()
        self._sections_a, self._sections_b = _sections(keys_a), _sections(keys_b)

    def pair(self, key_a: str, key_b: str) -> None:
        self.pairs[key_a] = key_b
        self._paired_b.add(key_b)

    def free_a(self) -> list[str]:
        return [k for k in self.only_a if k not in self.pairs]

    def free_b(self) -> list[str]:
        return [k for k in self.only_b if k not in self._paired_b]

    def pair_all(self, aliases: dict[str, str]) -> list[str]:
        """Run every pairing pass in order of the strength of evidence; return warnings."""
        warnings = self._aliases(aliases)
        for depth in (1, 2, 3):
            self._unique_matches(partial(_tail, depth=depth))
        self._unique_matches(self._synonym_of, prefer_same_section=True)
        self._equal_values()
        return warnings

    def _aliases(self, aliases: dict[str, str]) -> list[str]:
        """--alias OLD=NEW: exact keys first, then OLD/NEW as section prefixes."""
        warnings: list[str] = []
        free_a, free_b = set(self.free_a()), set(self.free_b())
        for old, new in aliases.items():
            if old in free_a and new in free_b:
                self.pair(old, new)
            elif new in free_a and old in free_b:
                self.pair(new, old)
            elif not self._alias_prefix(old, new, free_a, free_b) and not self._known(old, new):
                warnings.append(f"alias {old}={new}: neither config has key {old!r} or {new!r}")
            free_a, free_b = set(self.free_a()), set(self.free_b())
        return warnings

    def _alias_prefix(self, old: str, new: str, free_a: set[str], free_b: set[str]) -> bool:
        """Pair `old.x` in A with `new.x` in B (a renamed section); True when any pair was made."""
        made = False
        for key in sorted(k for k in free_a if k.startswith(old + ".")):
            target = new + key[len(old):]
            if target in free_b:
                self.pair(key, target)
                made = True
        return made

    def _known(self, *keys: str) -> bool:
        """Whether any of the keys (or sections) occurs in either config."""
        every = (*self.keys_a, *self.keys_b)
        return any(k == key or k.startswith(key + ".") for key in keys for k in every)

    def _synonym_of(self, key: str) -> int | None:
        return self.rules.synonym_set(key)

    def _move_loses(self, key_a: str, key_b: str) -> bool:
        """Whether pairing keys of two sections would hide a change: A's section stays in B while B's
        section is new (a new component with its own setting: `encoder.dropout` lost, `decoder.dropout`
        added), or the reverse. Renamed sections, keys moved between sections both sides have, and
        top-level keys are moves."""
        src, dst = parent(key_a), parent(key_b)
        if src == dst or not src or not dst:
            return False
        return (src in self._sections_b) != (dst in self._sections_a)

    def _unique_matches(self, label: Callable[[str], Any], prefer_same_section: bool = False) -> None:
        """Pair keys whose label (leaf name, synonym set, ...) is unique among free keys on both sides."""
        by_label_a: dict[Any, list[str]] = defaultdict(list)
        by_label_b: dict[Any, list[str]] = defaultdict(list)
        for k in self.free_a():
            if (lab := label(k)) is not None:
                by_label_a[lab].append(k)
        for k in self.free_b():
            if (lab := label(k)) is not None:
                by_label_b[lab].append(k)
        for lab, cands_a in by_label_a.items():
            cands_b = by_label_b.get(lab, [])
            if len(cands_a) == 1 and len(cands_b) == 1:
                if not self._move_loses(cands_a[0], cands_b[0]):
                    self.pair(cands_a[0], cands_b[0])
            elif prefer_same_section and cands_b:
                self._pair_within_sections(cands_a, cands_b)

    def _pair_within_sections(self, cands_a: list[str], cands_b: list[str]) -> None:
        """Among several candidates, pair those alone in their section on both sides."""
        sections_a: dict[str, list[str]] = defaultdict(list)
        sections_b: dict[str, list[str]] = defaultdict(list)
        for k in cands_a:
            sections_a[parent(k)].append(k)
        for k in cands_b:
            sections_b[parent(k)].append(k)
        for section, ks in sections_a.items():
            if len(ks) == 1 and len(sections_b.get(section, [])) == 1:
                self.pair(ks[0], sections_b[section][0])

    def _equal_values(self) -> None:
        """A removed key and an added key with an equal value: a rename only when the names say it is
        the same setting (`warmup_steps: 500` and `eval_every: 500` stay a removal and an addition)."""
        by_value_b: dict[Any, list[str]] = defaultdict(list)
        for k in self.free_b():
            by_value_b[value_key(self.values_b[k])].append(k)
        by_value_a: dict[Any, list[str]] = defaultdict(list)
        for k in self.free_a():
            by_value_a[value_key(self.values_a[k])].append(k)
        for vkey, keys_a in by_value_a.items():
            for key_a in keys_a:
                value = self.values_a[key_a]
                related = [
                    k for k in by_value_b.get(vkey, [])
                    if k not in self._paired_b and self._related(key_a, k)
                    and values_equal(value, self.values_b[k]) and not self._move_loses(key_a, k)
                ]
                if len(related) == 1:
                    self.pair(key_a, related[0])

    def _related(self, key_a: str, key_b: str) -> bool:
        """Leaf names that say it is one setting: the same name, synonyms, or close spellings
        (`eval_every` / `eval_every_n`); a shared word alone (`warmup_steps`, `max_steps`) is not."""
        sa, sb = _squashed_leaf(key_a), _squashed_leaf(key_b)
        if sa == sb:
            return True
        syn = self.rules.synonym_set(key_a)
        if syn is not None and syn == self.rules.synonym_set(key_b):
            return True
        return _close_spelling(sa, sb)


@lru_cache(maxsize=1 << 17)
def _squashed_leaf(key: str) -> str:
    return squash(leaf(key))


def _close_spelling(sa: str, sb: str) -> bool:
    """Squashed names at least _CLOSE_SPELLING alike (cheap upper bounds tried first: this runs per candidate)."""
    short, long_ = sorted((len(sa), len(sb)))
    if short < 4 or 2 * short / (short + long_) < _CLOSE_SPELLING:
        return False
    matcher = SequenceMatcher(None, sa, sb, autojunk=False)
    return matcher.quick_ratio() >= _CLOSE_SPELLING and matcher.ratio() >= _CLOSE_SPELLING


def _sections(keys: list[str]) -> set[str]:
    """Every section (dotted prefix) that holds at least one of the keys."""
    out: set[str] = set()
    for key in keys:
        section = parent(key)
        while section and section not in out:
            out.add(section)
            section = parent(section)
    return out


def _tail(key: str, depth: int) -> str | None:
    """The last `depth` segments of a key, case- and underscore-insensitive (None if too short)."""
    parts = key.split(".")
    if len(parts) < depth:
        return None
    return ".".join(squash(p) for p in parts[-depth:])


# -- defaults and comparison ---------------------------------------------------------------


class _Defaults:
    """Looks up the value a key takes when a config lacks it: by key, alias, leaf or synonym."""

    def __init__(self, defaults: dict[str, Any], aliases: dict[str, str], rules: Rules) -> None:
        self.values = defaults
        self.aliases = {**{v: k for k, v in aliases.items()}, **aliases}
        self.rules = rules
        self.by_leaf: dict[str, list[str]] = defaultdict(list)
        self.by_synonym: dict[int, list[str]] = defaultdict(list)
        for k in defaults:
            self.by_leaf[squash(leaf(k))].append(k)
            syn = rules.synonym_set(k)
            if syn is not None:
                self.by_synonym[syn].append(k)

    def lookup(self, key: str) -> tuple[bool, Any]:
        """(found, value) for a key a config lacks."""
        for candidate in (key, self.aliases.get(key)):
            if candidate is not None and candidate in self.values:
                return True, self.values[candidate]
        for group in (self.by_leaf.get(squash(leaf(key)), []), self.by_synonym.get(self.rules.synonym_set(key), [])):  # type: ignore[arg-type]
            same_section = [k for k in group if parent(k) in ("", parent(key))]
            if len(same_section) == 1:
                return True, self.values[same_section[0]]
        return False, None


def _compare(pairing: _Pairing, values_a: dict[str, Any], values_b: dict[str, Any], defaults: _Defaults, strict: bool) -> list[Difference]:
    """Differences of paired keys, then of keys only one side has (defaults filling the other)."""
    out: list[Difference] = []
    for key_a, key_b in pairing.pairs.items():
        d = _compare_pair(key_a, key_b, values_a[key_a], values_b[key_b], strict)
        if d is not None:
            out.append(d)
    for key in pairing.free_a():
        found, value = defaults.lookup(key)
        if not found:
            out.append(Difference(key, values_a[key], None, "removed", key, None))
        elif not values_equal(values_a[key], value, strict_types=strict):
            out.append(Difference(key, values_a[key], value, "removed", key, None, b_default=True))
    for key in pairing.free_b():
        found, value = defaults.lookup(key)
        if not found:
            out.append(Difference(key, None, values_b[key], "added", None, key))
        elif not values_equal(value, values_b[key], strict_types=strict):
            out.append(Difference(key, value, values_b[key], "added", None, key, a_default=True))
    return out


def _compare_pair(key_a: str, key_b: str, a: Any, b: Any, strict: bool) -> Difference | None:
    """A difference for two paired keys, or None when they hold the same setting under the same name."""
    display = key_a if key_a == key_b else f"{key_a} -> {key_b}"
    if type(a) is type(b) and isinstance(a, (str, int, float)) and a == b:
        return None if key_a == key_b else Difference(display, a, b, "changed", key_a, key_b, level="none")
    if values_equal(a, b, strict_types=strict):
        return None if key_a == key_b else Difference(display, a, b, "changed", key_a, key_b, level="none")
    classes = {type_word(a), type_word(b)} - {"null"}  # null -> 0.1 is a change of value
    type_change = values_equal(a, b) or len(classes) > 1
    return Difference(display, a, b, "type" if type_change else "changed", key_a, key_b)


def _score(d: Difference, rules: Rules) -> None:
    """Fill level, score, reason and category from the impact rules."""
    key = d.flat_key
    if d.level == "none" and d.key_a != d.key_b and values_equal(d.a, d.b):
        d.score, d.reason, d.category = 0.0, "renamed; same value", rules.rule_for(key).category
        return
    result = assess(
        rules,
        key,
        d.a,
        d.b,
        a_state=side_state(d.key_a, d.a_default),
        b_state=side_state(d.key_b, d.b_default),
        type_only=d.kind == "type" and values_equal(d.a, d.b),
    )
    d.level, d.score, d.reason, d.category = result.level, result.score, result.reason, result.category


def _unshadowed(keys: list[str], values: dict[str, Any], other: list[str]) -> list[str]:
    """Drop an empty section (`sched: {}`) where the other side has plain keys right inside it
    (`sched.kind`): their own rows say what differs, and reverting them leaves `sched: {}`.
    Deeper or list contents keep the row: reverting them would leave `{sub: {}}` or `[{}]`."""
    parents = {k.rsplit(".", 1)[0] for k in other if "." in k and "[" not in k}
    return [k for k in keys if not (values[k] == {} and k in parents)]


# -- keys ----------------------------------------------------------------------------------


def _ignored(key: str, patterns: list[str]) -> bool:
    return any(key_matches(key, p) for p in patterns)


def json_value(value: Any) -> Any:
    """A value JSON can carry (non-finite floats as text)."""
    if isinstance(value, float) and not math.isfinite(value):
        return value_text(value)
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return value_text(value)
