"""Two metric histories on shared steps: their first/last/best values and where they part beyond noise.

Divergence, as documented in docs/compare.md: on the shared steps, d(t) = B(t) - A(t); the
noise sigma is the robust (MAD) spread of d's point-to-point changes divided by sqrt(2); d is
smoothed by a trailing rolling mean of `smooth` points; the runs diverge at the first step
after which the smoothed |d| stays above k * sigma / sqrt(points averaged) with one sign until the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bisect_runs.runs import History


@dataclass
class SeriesStats:
    """First, last and best finite value of one run's history of one metric."""

    n: int
    first_step: int
    first: float
    last_step: int
    last: float
    best_step: int | None
    best: float | None
    nonfinite_step: int | None = None  # first NaN/inf logged, if any


@dataclass
class Divergence:
    """Where two histories part beyond noise (step None: they never do within the shared steps)."""

    step: int | None
    noise: float  # sigma of d(t) point to point, metric units
    threshold: float  # k * sigma / sqrt(window): what the smoothed difference must stay above
    shared_points: int
    note: str = ""
    gap: float | None = None  # the smoothed B - A at the last shared step, when they are apart


def series_stats(history: History, mode: str | None) -> SeriesStats:
    """First/last/best finite values; best is None when the direction is unknown."""
    finite = [(s, v) for s, v in history if math.isfinite(v)]
    bad = next((s for s, v in history if not math.isfinite(v)), None)
    if not finite:
        s0 = history[0][0]
        return SeriesStats(len(history), s0, math.nan, history[-1][0], math.nan, None, None, bad)
    best = None
    if mode is not None:
        best = min(finite, key=lambda sv: sv[1]) if mode == "min" else max(finite, key=lambda sv: sv[1])
    return SeriesStats(
        n=len(history), first_step=finite[0][0], first=finite[0][1], last_step=finite[-1][0],
        last=finite[-1][1], best_step=None if best is None else best[0],
        best=None if best is None else best[1], nonfinite_step=bad,
    )  # fmt: skip


def align(ha: History, hb: History) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both histories on shared steps: the sparser run's steps inside the overlap, the other interpolated."""
    a = _finite_arrays(ha)
    b = _finite_arrays(hb)
    if not len(a[0]) or not len(b[0]):
        return np.array([]), np.array([]), np.array([])
    lo, hi = max(a[0][0], b[0][0]), min(a[0][-1], b[0][-1])
    if lo > hi:
        return np.array([]), np.array([]), np.array([])
    in_a = (a[0] >= lo) & (a[0] <= hi)
    in_b = (b[0] >= lo) & (b[0] <= hi)
    grid = a[0][in_a] if in_a.sum() <= in_b.sum() else b[0][in_b]
    return grid, np.interp(grid, a[0], a[1]), np.interp(grid, b[0], b[1])


def find_divergence(grid: np.ndarray, d: np.ndarray, k: float = 3.0, smooth: int = 5) -> Divergence:
    """The first step after which the smoothed difference stays beyond k noise sigmas, one sign.

    The mean is trailing (step t averages t and the points before it), so a difference that
    appears at step t is never reported before t.
    """
    n = len(grid)
    if n < max(3, smooth):
        note = "no shared steps" if n == 0 else f"only {n} shared step(s): too few to tell noise from a difference"
        return Divergence(None, math.nan, math.nan, n, note)
    noise = noise_sigma(d)
    counts = np.minimum(np.arange(1, n + 1), smooth)  # the first points average fewer values
    sums = np.cumsum(d)
    smoothed = (sums - np.concatenate([np.zeros(smooth), sums[:-smooth]])[:n]) / counts
    limits = k * noise / np.sqrt(counts)
    threshold = k * noise / math.sqrt(smooth)
    sign = np.sign(smoothed[-1])
    beyond = (np.abs(smoothed) > limits) & (np.sign(smoothed) == sign) & (sign != 0)
    if not beyond[-1]:
        return Divergence(None, noise, threshold, n, "within noise at the last shared step")
    start = n - int(np.argmin(beyond[::-1])) if not beyond.all() else 0
    earliest = max(0, start - smooth + 1)  # the mean lags a sharp parting: single points beyond k sigma
    while start > earliest and np.sign(d[start - 1]) == sign and abs(d[start - 1]) > k * noise:
        start -= 1
    note = "apart from the first shared step" if start == 0 else ""
    return Divergence(int(grid[start]), noise, threshold, n, note, float(smoothed[-1]))


def noise_sigma(d: np.ndarray) -> float:
    """Robust sd of a series' point-to-point jitter: 1.4826 * MAD of first differences / sqrt(2)."""
    steps = np.diff(d)
    if not len(steps):
        return 0.0
    mad = float(np.median(np.abs(steps - np.median(steps))))
    return 1.4826 * mad / math.sqrt(2)


def _finite_arrays(h: History) -> tuple[np.ndarray, np.ndarray]:
    pairs = sorted((s, v) for s, v in h if math.isfinite(v))
    steps = np.array([s for s, _ in pairs], dtype=float)
    values = np.array([v for _, v in pairs], dtype=float)
    if len(steps):  # repeated steps (several logs per step): keep the last
        keep = np.append(steps[1:] != steps[:-1], True)
        steps, values = steps[keep], values[keep]
    return steps, values
