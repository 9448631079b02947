"""Choosing a round's points by what they are expected to tell about the explanations.

The criterion is a lower bound on the mutual information between the hypothesis and the
round's outcomes (Kolchinsky & Tracey's Bhattacharyya bound for a Gaussian mixture): each
plausible explanation predicts a mean loss at every point, the round shares one seed so
the part of the noise common to it cancels, and points whose predictions differ by many
noise sds between likely explanations are worth most. A local search flips factors of the
leading suspects in and out of the points, keeping a flip only when it adds at least
MIN_GAIN nats; every other factor keeps its random draw. That keeps the factors no likely
explanation involves balanced and unconfounded from round to round, so an effect none of
them names (a masking helper, a second culprit) stays estimable instead of being aliased
with the blocks of factors the first rounds tested together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from bisect_runs.strategies.base import Point
from bisect_runs.strategies.explanations import Explanation
from bisect_runs.strategies.posterior import Posterior

MAX_HYPOTHESES = 120  # the most probable ones the criterion weighs
MAX_SUSPECTS = 24  # factors the local search may flip
SWEEPS = 2
MIN_GAIN = 0.01  # nats a flip must add to be made; smaller gains are ties, left at the round's random draw


class Predictor:
    """Predicted losses of many hypotheses at once: each one's level at A, linear terms, one pair and one triple product."""

    def __init__(
        self, hyps: Sequence[Explanation], coef: Sequence[np.ndarray], n: int, level: np.ndarray | None = None
    ) -> None:
        m = len(hyps)
        self.level = np.zeros(m) if level is None else np.asarray(level, dtype=float)
        self.linear = np.zeros((m, n))
        self.idx = np.zeros((m, 3), dtype=int)
        self.pair, self.triple = np.zeros(m), np.zeros(m)
        for k, (h, c) in enumerate(zip(hyps, coef, strict=True)):
            if not len(c):
                continue
            c = oriented(h, c)
            f = list(h.factors)
            self.idx[k, : len(f)] = f
            if h.kind in ("single", "additive", "mask"):
                self.linear[k, f] = c
            elif h.kind == "diffuse":
                self.linear[k] = c
            elif h.kind == "and":
                self.pair[k] = c[0]
            elif h.kind == "or":  # x_i OR x_j = x_i + x_j - x_i x_j
                self.linear[k, f] = c[0]
                self.pair[k] = -c[0]
            elif h.kind == "and3":
                self.triple[k] = c[0]

    def __call__(self, xb: np.ndarray) -> np.ndarray:
        """Hypotheses x rows."""
        a, b, c = (xb[:, self.idx[:, j]].T for j in range(3))
        products = self.pair[:, None] * a * b + self.triple[:, None] * a * b * c
        return self.level[:, None] + self.linear @ xb.T + products


def oriented(h: Explanation, c: np.ndarray) -> np.ndarray:
    """Coefficients with the signs the hypothesis requires (its plausible version, for planning)."""
    signs = h.signs
    if not signs:
        return c
    return np.array([s * abs(v) if s else v for s, v in zip(signs, c, strict=True)])


def information(pred: np.ndarray, w: np.ndarray, sigma: float, shared: float) -> float:
    """Bhattacharyya lower bound on I(hypothesis; outcomes) in nats, for one seed-sharing round."""
    m = pred.shape[1]
    c = 1.0 - math.sqrt((1 - shared) / (1 - shared + shared * m))
    white = (pred - c * pred.mean(axis=1, keepdims=True)) / (sigma * math.sqrt(1 - shared))
    sq = np.sum(white**2, axis=1)
    dist = sq[:, None] + sq[None, :] - 2 * white @ white.T
    inner = np.exp(-np.maximum(dist, 0.0) / 8) @ w
    return float(-np.sum(w * np.log(inner)))


def choose(
    post: Posterior | None,
    n: int,
    slots: int,
    forced: Sequence[Point],
    rng: np.random.Generator,
    first: Sequence[Explanation] = (),
    first_prior: np.ndarray | None = None,
) -> list[Point]:
    """The round's points: `forced` first (repeats kept), the rest by the information criterion."""
    points = list(forced)[:slots]
    free = slots - len(points)
    if free <= 0:
        return points
    hyps, coef, level, w, sigma, shared = plan_inputs(post, first, first_prior)
    suspects = leading_suspects(hyps, w, n)
    xb = rng.random((slots, n)) < 0.5
    for k, p in enumerate(points):
        xb[k] = False
        xb[k, list(p)] = True
    xb = xb.astype(float)

    predict = Predictor(hyps, coef, n, level)

    def value(xm: np.ndarray) -> float:
        return information(predict(xm), w, sigma, shared)

    best = value(xb)
    for _ in range(SWEEPS):
        improved = False
        for row in range(len(points), slots):
            for f in suspects:
                xb[row, f] = 1.0 - xb[row, f]
                v = value(xb)
                if v > best + MIN_GAIN and distinct(xb, row):
                    best, improved = v, True
                else:
                    xb[row, f] = 1.0 - xb[row, f]
        if not improved:
            break
    return points + [frozenset(int(i) for i in np.flatnonzero(xb[row])) for row in range(len(points), slots)]


def distinct(xb: np.ndarray, row: int) -> bool:
    """Whether a row differs from every other row of the round (a repeat would need a second seed)."""
    return not any(np.array_equal(xb[row], xb[k]) for k in range(len(xb)) if k != row)


def plan_inputs(
    post: Posterior | None, first: Sequence[Explanation], first_prior: np.ndarray | None
) -> tuple[list[Explanation], list[np.ndarray], np.ndarray, np.ndarray, float, float]:
    """The hypotheses the criterion weighs, their coefficients and levels at A, weights, noise sd and shared share.

    Each hypothesis fits its own level at A: two that differ in a factor every run so far had
    at B's value predict the same losses there, so only runs that toggle it tell them apart.
    """
    if post is None:  # before any run: the prior, every culprit with a unit effect, noise half of it
        hyps = list(first)
        coef = [np.array([1.0, -0.5][: len(h.signs)]) if h.kind != "diffuse" else np.array([]) for h in hyps]
        w = np.exp(first_prior) if first_prior is not None else np.ones(len(hyps))
        return hyps, coef, np.zeros(len(hyps)), w / w.sum(), 0.5, 0.0
    order = np.argsort(-post.prob)[:MAX_HYPOTHESES]
    hyps = [post.hyps[k] for k in order]
    coef = [post.coef[k] for k in order]
    level = post.level[order] if post.level is not None else np.zeros(len(order))
    w = post.prob[order] / post.prob[order].sum()
    sigma = max(post.sigma, 1e-6 * max(1.0, float(np.max(np.abs(post.gap)))))
    return hyps, coef, level, w, sigma, min(post.shared, 0.9)


def leading_suspects(hyps: Sequence[Explanation], w: np.ndarray, n: int) -> list[int]:
    """Factors by their weight in the hypotheses weighed, heaviest first."""
    mass = np.zeros(n)
    for h, p in zip(hyps, w, strict=True):
        for i in h.factors:
            mass[i] += p
    order = [int(i) for i in np.argsort(-mass, kind="stable") if mass[i] > 0]
    return order[:MAX_SUSPECTS]
