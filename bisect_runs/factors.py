"""Factors: the units a search toggles (a key, keys that change together, or a named group).

`build_factors` puts named groups first, then families of keys that change alike, then single keys,
ranked by their most impactful member. See docs/diff.md.
"""

from __future__ import annotations

import fnmatch
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bisect_runs.impact import LEVELS, Rules, assess, leaf, parent, side_state, snake, words
from bisect_runs.normalize import value_text, values_equal

if TYPE_CHECKING:
    from bisect_runs.diff import Difference

SCALED = ("scale", "auto")  # rules whose numbers are judged by their ratio
RATIO_TOLERANCE = 0.01  # |log ratio| apart: 30x and 29.8x are one change; 30x and 25x are not


@dataclass
class Factor:
    """Differences that are toggled together: one key, keys moving together, or a named group."""

    name: str
    differences: list[Difference]
    level: str
    score: float
    category: str
    reason: str = ""

    @property
    def keys(self) -> list[str]:
        """Flat keys of the bad config this factor sets."""
        return [d.flat_key for d in self.differences]


# -- factors -------------------------------------------------------------------------------


def build_factors(differences: list[Difference], groups: dict[str, list[str]], rules: Rules, order: dict[str, int]) -> list[Factor]:
    """Named groups first, then families of keys that change alike (identically, or by one ratio), then single keys."""
    taken: set[int] = set()
    members: list[tuple[str, list[Difference]]] = []
    for name, patterns in groups.items():
        chosen = [d for d in differences if id(d) not in taken and _in_group(d, patterns)]
        if chosen:
            taken.update(id(d) for d in chosen)
            members.append((name, chosen))
    rest = [d for d in differences if id(d) not in taken]
    for family in _same_ratio(_families(rest, rules), rules):
        family.sort(key=lambda d: order.get(d.flat_key, 0))
        members.append(("+".join(d.key for d in family), family))
    factors = [_make_factor(name, ds, rules) for name, ds in members]
    factors.sort(key=lambda f: (-f.score, LEVELS.index(f.level), min(order.get(d.flat_key, 0) for d in f.differences)))
    return factors


def _in_group(d: Difference, patterns: Iterable[str]) -> bool:
    keys = [k for k in (d.key_a, d.key_b) if k]
    return any(key_matches(k, p) for k in keys for p in patterns)


def _families(differences: list[Difference], rules: Rules) -> list[list[Difference]]:
    """Keys in one section, under one rule, with the same change, whose names share a word."""
    buckets: dict[Any, list[Difference]] = defaultdict(list)
    for d in differences:
        signature = (
            parent(d.flat_key),
            rules.index_for(d.flat_key),
            d.kind,
            value_key(d.a),
            value_key(d.b),
            d.a_default,
            d.b_default,
            d.key_a is None,
            d.key_b is None,
        )
        buckets[signature].append(d)
    families: list[list[Difference]] = []
    for bucket in buckets.values():
        families.extend(_word_components(bucket))
    return families


def _same_ratio(families: list[list[Difference]], rules: Rules) -> list[list[Difference]]:
    """Join families of keys under one scale rule whose numbers all changed by the same ratio
    (`learning_rate` 3e-3 -> 1e-4 with `min_lr` 3e-4 -> 1e-5): one decision scaled them together."""
    joined: list[list[Difference]] = []
    by_rule: dict[int, list[tuple[float, list[Difference]]]] = defaultdict(list)
    for family in families:
        ratio = _log_ratio(family[0], rules)
        if ratio is None or any(_log_ratio(d, rules) != ratio for d in family[1:]):
            joined.append(family)
            continue
        bucket = by_rule[rules.index_for(family[0].flat_key)]
        match = next((entry for entry in bucket if abs(entry[0] - ratio) <= RATIO_TOLERANCE), None)
        if match is None:
            bucket.append((ratio, family))
            joined.append(family)
        else:
            match[1].extend(family)  # the list is already in `joined`
    return joined


def _log_ratio(d: Difference, rules: Rules) -> float | None:
    """log(B / A) of a number under a scale rule changed on both sides, else None."""
    if d.kind != "changed" or rules.index_for(d.flat_key) < 0 or rules.rule_for(d.flat_key).kind_of_value not in SCALED:
        return None
    a, b = d.a, d.b
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (a, b)):
        return None
    if a == 0 or b == 0 or (a > 0) != (b > 0):
        return None
    return round(math.log(b / a), 6)


def _word_components(bucket: list[Difference]) -> list[list[Difference]]:
    """Split a bucket into groups whose leaf names are linked by shared words."""
    groups: list[tuple[set[str], list[Difference]]] = []
    for d in bucket:
        w = set(words(leaf(d.flat_key)))
        linked = [g for g in groups if g[0] & w]
        merged_words, merged = w, [d]
        for g in linked:
            merged_words |= g[0]
            merged = g[1] + merged
            groups.remove(g)
        groups.append((merged_words, merged))
    return [g[1] for g in groups]


def _make_factor(name: str, differences: list[Difference], rules: Rules) -> Factor:
    """A factor takes its level, score and category from its most impactful difference."""
    top = max(differences, key=lambda d: (d.score, -LEVELS.index(d.level)))
    for d in differences:
        d.factor = name
    return Factor(name, differences, top.level, top.score, top.category, _factor_reason(differences, rules))


def _factor_reason(differences: list[Difference], rules: Rules) -> str:
    """One reason for the factor: the shared one, or one naming all keys of a family."""
    reasons = list(dict.fromkeys(d.reason for d in differences))
    if len(reasons) == 1:
        return reasons[0]
    first = differences[0]
    if all(rules.index_for(d.flat_key) == rules.index_for(first.flat_key) for d in differences) and all(
        values_equal(d.a, first.a) and values_equal(d.b, first.b) for d in differences
    ):
        subject = ", ".join(leaf(d.flat_key) for d in differences)
        return assess(
            rules, first.flat_key, first.a, first.b,
            a_state=side_state(first.key_a, first.a_default), b_state=side_state(first.key_b, first.b_default),
            type_only=first.kind == "type" and values_equal(first.a, first.b), subject=subject,
        ).reason
    return "; ".join(reasons)


def value_key(value: Any) -> Any:
    """A hashable key under which equal values (3 and 3.0, not true and 1) meet."""
    if value is None or isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return ("n", int(value))  # exact: seeds 1234567890123456 and ...457 do not meet
    if isinstance(value, float):
        return ("n", "nan" if value != value else value)
    if isinstance(value, str):
        return ("s", value)
    return ("o", value_text(value))


def key_matches(key: str, pattern: str) -> bool:
    """Glob on the whole key, case-insensitively; a pattern without a dot also matches the leaf name
    or a leading section (`--ignore logging` skips `logging.*`)."""
    k, p = key.lower(), pattern.lower()
    if fnmatch.fnmatchcase(k, p) or fnmatch.fnmatchcase(k, p + ".*"):
        return True
    if "." in p:
        return False
    return fnmatch.fnmatchcase(leaf(key).lower(), p) or fnmatch.fnmatchcase(snake(leaf(key)), snake(pattern))
