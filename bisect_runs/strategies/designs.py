"""Two-level screening designs: full factorials for few factors, Hadamard (Plackett–Burman) for many.

Rows are points (the factors set to B); a design block is analysed with its foldover
(every row negated) so that main effects are not aliased with two-factor interactions.
"""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np

from bisect_runs.strategies.base import Point

FULL_FACTORIAL_MAX = 3
PALEY_SLACK = 1.25  # accept a Paley design this much larger than the smallest Hadamard one  # 2**3 = 8 runs: no fractional design is smaller for 3 factors


def is_prime(q: int) -> bool:
    """Whether q is prime (small q only)."""
    return q >= 2 and all(q % k for k in range(2, int(q**0.5) + 1))


def _sylvester(order: int) -> np.ndarray:
    h = np.ones((1, 1), dtype=int)
    while len(h) < order:
        h = np.block([[h, h], [h, -h]])
    return h


def _paley(q: int) -> np.ndarray:
    """Paley construction I: a Hadamard matrix of order q + 1 for a prime q = 3 mod 4."""
    residues = {(k * k) % q for k in range(1, q)}
    chi = np.array([0] + [1 if k in residues else -1 for k in range(1, q)])
    jacobsthal = np.array([[chi[(j - i) % q] for j in range(q)] for i in range(q)])
    s = np.zeros((q + 1, q + 1), dtype=int)
    s[0, 1:] = 1
    s[1:, 0] = -1
    s[1:, 1:] = jacobsthal
    return np.eye(q + 1, dtype=int) + s


@cache
def hadamard(order: int) -> np.ndarray:
    """A normalized Hadamard matrix (first column all +1) of the given order (1, 2 or a multiple of 4)."""
    if order % 4 == 0 and is_prime(order - 1) and (order - 1) % 4 == 3:
        h = _paley(order - 1)
    elif order & (order - 1) == 0:
        h = _sylvester(order)
    elif order % 8 == 0 and order // 2 in _available():
        half = hadamard(order // 2)
        h = np.block([[half, half], [half, -half]])
    else:
        raise ValueError(f"no Hadamard construction for order {order}")
    h = h * h[:, :1]  # normalize: first column all +1
    h.setflags(write=False)
    return h


@cache
def _available() -> frozenset[int]:
    found = {1, 2}
    for order in range(4, 1025, 4):
        if order & (order - 1) == 0 or (is_prime(order - 1) and (order - 1) % 4 == 3):
            found.add(order)
        elif order % 8 == 0 and order // 2 in found:
            found.add(order)
    return frozenset(found)


def design_order(n: int) -> int:
    """Order of the design for n factors: a Paley (Plackett–Burman) order when one is close to the smallest.

    Paley designs spread each two-factor interaction thinly over all columns instead of
    aliasing it fully with one other factor (as Sylvester designs do), so an AND pair does
    not make an innocent factor look guilty.
    """
    smallest = min(o for o in _available() if o >= n + 1)
    paley = [o for o in _available() if o >= n + 1 and is_prime(o - 1) and (o - 1) % 4 == 3]
    return min(paley) if paley and min(paley) <= PALEY_SLACK * smallest else smallest


def design_matrix(n: int) -> np.ndarray:
    """A two-level design for n factors, rows of ±1 (+1 = the bad config's value)."""
    if n <= FULL_FACTORIAL_MAX:
        return np.array(list(itertools.product((1, -1), repeat=n)), dtype=int).reshape(-1, n)
    h = hadamard(design_order(n))
    return np.asarray(h[:, 1 : n + 1])


def row_to_point(row: np.ndarray, factors: list[int]) -> Point:
    """The point of a design row whose columns stand for `factors`."""
    return frozenset(f for f, x in zip(factors, row, strict=True) if x > 0)


def blocks(n: int) -> itertools.cycle[np.ndarray]:
    """Design blocks to run in turn: the design, its foldover, the design again, ...

    A row with every factor at B (or, in the foldover, at A) repeats a calibration point, so it
    runs last: the rows before it, with A and B, already separate every factor.
    """
    d = design_matrix(n)
    repeats = np.abs(d.sum(axis=1)) == n
    d = np.concatenate([d[~repeats], d[repeats]])
    return itertools.cycle([d, -d])
