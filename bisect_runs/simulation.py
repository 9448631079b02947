"""An in-process simulated objective: the benchmark and the strategy tests drive the real strategies with it.

loss(point, seed) = base + main effects of the factors set to B + interaction terms + seed noise.
A = every factor at A, B = every factor at B; the scenarios normalise the regression B - A to
1 (plus small innocent effects) and the noise sd is 1/d. Every value is a pure function of
(scenario key, point, seed), so the same request always gives the same observation.

Each run also has a learning curve (`Scenario.curve`): a common decline shared by every point,
the point's effect growing to full size by half the budget (or switching on at `onset`), and
seed noise that converges on the run's final noise. `SimulatedTrials` plays a whole search's
trials with them, stopping trials early by the same rule as real searches (`bisect_runs.curves`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from bisect_runs.curves import History, reference
from bisect_runs.early_stop import EXPLORING
from bisect_runs.strategies.base import (
    CRASHED,
    DIVERGED,
    INFRA,
    OK,
    TIMEOUT,
    Observation,
    Point,
    Request,
)

SCENARIOS = ("single", "additive2", "and2", "or2", "mask", "nan_and", "null", "diffuse", "crash", "and3", "late")
CURVE_DROP = 3.0  # the common decline of every curve from step 0 to the budget, in loss units
GROWS_BY = 0.5  # share of the budget by which an effect has grown to its full size (unless `onset`)
LATE_ONSET = 0.6  # the "late" scenario: the culprit's effect switches on at 60 % of the budget
PRIORS = ("informative", "uniform", "misleading")


@dataclass
class Scenario:
    """A simulated pair of configs: effects, failure rules, noise, and the right answer."""

    n: int
    main: np.ndarray
    noise_sd: float
    interactions: dict[tuple[int, ...], float] = field(default_factory=dict)  # extra loss when all present
    diverge: dict[tuple[int, ...], float] = field(default_factory=dict)  # P(diverge) when all present
    crash_when: list[tuple[frozenset[int], frozenset[int]]] = field(default_factory=list)  # (present, absent)
    infra: float = 0.0  # chance of a transient infrastructure crash per run
    shared: float = 0.0  # share of the noise variance common to all points at the same seed
    timeout: float = 0.0  # chance that a run hangs and times out, whatever its point
    tails: float = 0.0  # degrees of freedom of Student-t noise (heavy tails); 0 = normal noise
    key: int = 0
    base: float = 1.0
    mode: str = "min"
    kind: str = "custom"
    truth: list[list[int]] = field(default_factory=list)
    reproduced: bool = True
    priors: list[float] = field(default_factory=list)
    onset: float = 0.0  # share of the budget at which every effect switches on; 0: they grow from the start

    def mean(self, point: Point) -> float:
        """Expected loss at a point (no noise, no failures)."""
        loss = self.base + float(sum(self.main[i] for i in point))
        for members, value in self.interactions.items():
            if all(i in point for i in members):
                loss += value
        return loss

    def observe(self, request: Request) -> Observation:
        point, seed = request.point, request.seed
        rng = np.random.default_rng([self.key, seed, len(point), *sorted(point)])
        shared_rng = np.random.default_rng([self.key, seed, 1 << 30])
        if rng.random() < self.infra:
            return Observation(point, seed, INFRA, None)
        if self.timeout and np.random.default_rng([self.key, seed, 7, *sorted(point)]).random() < self.timeout:
            return Observation(point, seed, TIMEOUT, None)
        if any(present <= point and not (absent & point) for present, absent in self.crash_when):
            return Observation(point, seed, CRASHED, None)
        draw = rng.random()
        for members, p in self.diverge.items():
            if all(i in point for i in members) and draw < p:
                return Observation(point, seed, DIVERGED, None)
        noise = math.sqrt(1 - self.shared) * self.draw(rng) + math.sqrt(self.shared) * self.draw(shared_rng)
        loss = self.mean(point) + self.noise_sd * noise
        return Observation(point, seed, OK, loss if self.mode == "min" else -loss)

    def draw(self, rng: np.random.Generator) -> float:
        """One unit-variance noise draw: normal, or Student-t with `tails` degrees of freedom (> 2)."""
        if not self.tails:
            return float(rng.normal())
        return float(rng.standard_t(self.tails) * math.sqrt((self.tails - 2) / self.tails))

    def evaluate(self, requests: Sequence[Request]) -> list[Observation]:
        return [self.observe(r) for r in requests]

    def curve(self, request: Request, final: float, steps: int, evals: int) -> History:
        """The run's logged values at `evals` evenly spaced steps, ending at its observed `final` value."""
        point, seed = request.point, request.seed
        sign = 1.0 if self.mode == "min" else -1.0
        effect, noise = self.mean(point) - self.base, sign * final - self.mean(point)
        rng = np.random.default_rng([self.key, seed, 11, len(point), *sorted(point)])
        history = []
        for k in range(1, evals + 1):
            f = k / evals
            grown = (f >= self.onset) if self.onset else min(1.0, f / GROWS_BY)
            near_final = noise * f + self.noise_sd * math.sqrt(1 - f * f) * float(rng.normal())
            loss = self.base + CURVE_DROP * (1 - f) + effect * grown + near_final
            history.append((round(f * steps), sign * loss))
        return history

    def correct(self, reproduced: bool, culprits: Sequence[Sequence[int]]) -> bool:
        """Exact-set accuracy: same reproduced flag and the same set of culprit sets."""
        got = {frozenset(c) for c in culprits}
        return reproduced == self.reproduced and got == {frozenset(c) for c in self.truth}


def make_scenario(
    kind: str,
    n: int,
    d: float,
    rng: np.random.Generator,
    innocent_sd: float = 0.03,
    prior: str = "informative",
    mode: str = "min",
    shared: float = 0.0,
    timeout: float = 0.0,
    tails: float = 0.0,
) -> Scenario:
    """A random instance of a benchmark scenario: culprit positions, innocent effects and priors drawn from rng.

    shared, timeout, tails: the noise share common to a seed, the chance of a random
    timeout, Student-t degrees of freedom of the noise (see `Scenario`).
    """
    if kind not in SCENARIOS:
        raise ValueError(f"unknown scenario {kind!r}; valid: {', '.join(SCENARIOS)}")
    if n < 3:
        raise ValueError("scenarios need at least 3 factors")
    main = rng.normal(0.0, innocent_sd, n)
    i, j, k = (int(x) for x in rng.choice(n, 3, replace=False))
    sc = Scenario(n, main, 1.0 / d, key=int(rng.integers(2**31)), mode=mode, kind=kind)
    sc.shared, sc.timeout, sc.tails = shared, timeout, tails
    if kind in ("single", "crash", "late"):
        main[i], sc.truth = 1.0, [[i]]
        sc.onset = LATE_ONSET if kind == "late" else 0.0
        if kind == "crash":  # a bystander that crashes whenever it runs without its companion k
            sc.crash_when = [(frozenset({j}), frozenset({k}))]
    elif kind == "additive2":
        main[i], main[j], sc.truth = 0.5, 0.5, [[i], [j]]
    elif kind in ("and2", "nan_and"):
        main[i] = main[j] = 0.0
        sc.interactions[(i, j)] = 1.0
        sc.truth = [sorted((i, j))]
        if kind == "nan_and":
            sc.diverge[(i, j)] = 0.7
    elif kind == "and3":  # +1 only when all three are present
        main[i] = main[j] = main[k] = 0.0
        sc.interactions[(i, j, k)] = 1.0
        sc.truth = [sorted((i, j, k))]
    elif kind == "or2":
        main[i], main[j] = 1.0, 1.0
        sc.interactions[(i, j)] = -1.0
        sc.truth = [[i], [j]]
    elif kind == "mask":
        main[i], main[j], sc.truth = 1.5, -0.5, [[i]]
    elif kind == "null":
        sc.reproduced = False
    elif kind == "diffuse":
        main[:] = rng.dirichlet(np.full(n, 5.0))
    sc.priors = make_priors(n, [f for c in sc.truth for f in c], prior, rng)
    return sc


def make_priors(n: int, culprits: list[int], prior: str, rng: np.random.Generator) -> list[float]:
    """Impact scores: informative ones rank each culprit first with probability 0.5, else at random."""
    scores = rng.uniform(0.0, 1.0, n)
    if prior == "informative":
        for c in culprits:
            if rng.random() < 0.5:
                scores[c] = 1.0 + rng.uniform(0.0, 0.5)
    elif prior == "misleading":
        scores[culprits] = rng.uniform(0.0, 0.1, len(culprits))
    elif prior != "uniform":
        raise ValueError(f"unknown prior {prior!r}; valid: {', '.join(PRIORS)}")
    return [float(s) for s in scores]


@dataclass
class SimulatedTrials:
    """A whole search's trials on a scenario: A and B run in full, later trials may stop early."""

    scenario: Scenario
    steps: int = 200
    evals: int = 10  # logged evaluations per run
    early_stop: bool = True
    phase: str = "screen"  # the strategy's phase of the next round: only exploring ones stop early
    trial_steps: int = 0  # steps run, summed over trials
    stops: list[int] = field(default_factory=list)  # the step each trial stopped early at
    _a: list[tuple[History, float]] = field(default_factory=list)
    _b: list[tuple[History, float]] = field(default_factory=list)

    def evaluate(self, requests: Sequence[Request]) -> list[Observation]:
        """One round: the reference is what A and B showed in earlier rounds, as in a real search."""
        sc = self.scenario
        judged = self.early_stop and self.phase in EXPLORING
        ref = reference(self._a, self._b, sc.mode, self.steps) if judged else None
        out = []
        for request in requests:
            obs, ran = sc.observe(request), self.steps
            if obs.status == OK and obs.value is not None:
                history = sc.curve(request, obs.value, self.steps, self.evals)
                full = {0: self._a, sc.n: self._b}.get(len(request.point))
                if full is not None:
                    full.append((history, obs.value))
                elif ref is not None and not request.full and (stop := ref.judge(history)) is not None:
                    obs, ran = replace(obs, value=stop.value, projected=True), stop.step
                    self.stops.append(stop.step)
            self.trial_steps += ran
            out.append(obs)
        return out
