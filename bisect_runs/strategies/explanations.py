"""Sparse explanations of a regression: which factors cause it, and how they combine.

Each explanation turns the 0/1 incidence of its factors at a point (1 = at B's value) into
a few regression columns; the loss is an intercept plus those columns times coefficients
of a known sign. `docs/search.md` ("`bayes`") lists the kinds and their prior weights.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Prior mass of each kind (the pair kinds share theirs among the pairs they consider).
KIND_PRIOR = {
    "null": 0.2,
    "single": 0.4,
    "additive": 0.08,
    "and": 0.08,
    "or": 0.08,
    "mask": 0.06,
    "and3": 0.04,
    "diffuse": 0.06,
}
PRIOR_TEMPER = 0.5  # weight of the impact ranking in the per-factor prior; the rest is uniform
RANK_SPREAD = 2.0  # the top-ranked factor is exp(RANK_SPREAD) times as likely as the last before tempering
PAIR_POOL = 6  # pairs, masks and triples are formed among this many leading suspects
MASKED = 2  # the leading suspects whose masks are formed with every other factor as the helper


@dataclass(frozen=True)
class Explanation:
    """One hypothesis: a kind and its factors (for `mask`: the harmful one, then the helper)."""

    kind: str
    factors: tuple[int, ...] = ()

    def columns(self, x: np.ndarray) -> np.ndarray:
        """Regression columns at the rows of incidence matrix x (runs x factors)."""
        f = list(self.factors)
        if self.kind == "null":
            return np.zeros((len(x), 0))
        if self.kind in ("single", "additive", "mask"):
            return x[:, f]
        if self.kind in ("and", "and3"):
            return np.prod(x[:, f], axis=1, keepdims=True)
        if self.kind == "or":
            return np.max(x[:, f], axis=1, keepdims=True)
        return x  # diffuse: every factor a little

    @property
    def signs(self) -> tuple[int, ...]:
        """Sign each coefficient must have (+1 harmful, -1 helpful, 0 free)."""
        if self.kind == "mask":
            return (1, -1)
        if self.kind in ("null", "diffuse"):
            return ()
        return (1,) * (2 if self.kind == "additive" else 1)

    @property
    def culprits(self) -> list[list[int]]:
        """The culprit sets this explanation names (the masking helper is not one)."""
        if self.kind in ("single", "mask"):
            return [[self.factors[0]]]
        if self.kind in ("additive", "or"):
            return [[i] for i in sorted(self.factors)]
        if self.kind in ("and", "and3"):
            return [sorted(self.factors)]
        return []

    @property
    def touched(self) -> frozenset[int]:
        """T: the factors whose A + T and B - T runs must confirm the explanation."""
        return frozenset(i for c in self.culprits for i in c)

    @property
    def answer(self) -> tuple[str, frozenset[frozenset[int]]]:
        """What a verdict from this explanation claims: its classification and culprit sets.

        A masked culprit and a lone one claim the same answer: the helper is a note beside it,
        made when a mask leads the answer's explanations (with that mask's own probability).
        """
        return self.classification, frozenset(frozenset(c) for c in self.culprits)

    @property
    def classification(self) -> str:
        names = {"single": "single", "mask": "single", "additive": "additive", "and": "AND", "or": "OR"}
        return names.get(self.kind, {"and3": "combination", "diffuse": "diffuse"}.get(self.kind, "not reproduced"))

    def bad(self, x: np.ndarray) -> np.ndarray:
        """Whether each row is predicted to carry at least half the regression (for the failure channel)."""
        if self.kind == "null":
            return np.zeros(len(x), dtype=bool)
        if self.kind == "diffuse":
            return x.mean(axis=1) >= 0.5
        f = list(self.factors)
        if self.kind in ("single", "mask"):
            return x[:, f[0]] > 0.5
        if self.kind in ("additive", "or"):
            return x[:, f].max(axis=1) > 0.5
        return x[:, f].min(axis=1) > 0.5


def factor_weights(scores: Sequence[float], n: int) -> np.ndarray:
    """Per-factor prior from the impact scores: rank-based, tempered towards uniform, summing to 1."""
    uniform = np.full(n, 1.0 / n)
    if len(scores) != n or n < 2 or len(set(scores)) < 2:
        return uniform
    ranks = np.argsort(np.argsort(-np.asarray(scores, dtype=float), kind="stable"), kind="stable")
    ranked = np.exp(-RANK_SPREAD * ranks / (n - 1))
    return PRIOR_TEMPER * ranked / ranked.sum() + (1 - PRIOR_TEMPER) * uniform


def hypotheses(n: int, pool: Sequence[int]) -> list[Explanation]:
    """Null, every single, diffuse, the pair/mask/triple kinds among `pool`, and masks of its first MASKED by any helper.

    A helper is no suspect of harm (it helps), so it would rarely make the pool: each of the
    leading suspects is paired with every other factor as its helper.
    """
    out = [Explanation("null"), *(Explanation("single", (i,)) for i in range(n))]
    ranked = list(dict.fromkeys(pool))
    pool = sorted(ranked[:PAIR_POOL])
    for i, j in itertools.combinations(pool, 2):
        out += [Explanation("additive", (i, j)), Explanation("and", (i, j)), Explanation("or", (i, j))]
        out += [Explanation("mask", (i, j)), Explanation("mask", (j, i))]
    out += [Explanation("mask", (i, j)) for i in ranked[:MASKED] for j in range(n) if j != i and j not in pool]
    out += [Explanation("and3", t) for t in itertools.combinations(pool, 3)]
    if n > 2:
        out.append(Explanation("diffuse"))
    return out


def log_priors(hyps: Sequence[Explanation], weights: np.ndarray) -> np.ndarray:
    """Log prior of each hypothesis: its kind's mass shared among all n-factor sets of that kind.

    Pairs and triples outside the pool are not scored, so the priors of those that are sum to
    less than their kind's mass; the posterior is normalised over the hypotheses scored.
    """
    p1, p2, p3 = (float(np.sum(weights**k)) for k in (1, 2, 3))
    e2, e3 = (p1**2 - p2) / 2, (p1**3 - 3 * p1 * p2 + 2 * p3) / 6
    total = {"null": 1.0, "single": p1, "diffuse": 1.0, "additive": e2, "and": e2, "or": e2, "mask": 2 * e2, "and3": e3}
    raw = np.array([KIND_PRIOR[h.kind] * float(np.prod(weights[list(h.factors)])) / total[h.kind] for h in hyps])
    with np.errstate(divide="ignore"):
        return np.log(raw)
