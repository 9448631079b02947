"""Search benchmark: exact-set accuracy, runs and rounds of each strategy on simulated regressions.

Pure in-process: `bisect_runs.simulation` plays the trainer and the real strategy code
runs through `bisect_runs.strategies.drive`. Each cell (scenario, n, d) is repeated with
random culprit positions, small random effects (sd 0.03) on innocent factors and
informative-but-imperfect prior scores (each culprit ranked first with probability 0.5).

    python benchmarks/search_suite.py                 # n=12, d in {1,2,4,8}, 200 reps, --jobs 2
    python benchmarks/search_suite.py --n 30 --d 4 --reps 300
    python benchmarks/search_suite.py --quick         # a CI-sized smoke run
    python benchmarks/search_suite.py --early-stop both   # each strategy with early stopping off and on
    python benchmarks/search_suite.py --sweep --strategies auto bayes   # beside random sweeps of equal runs

Trials log 10 evaluations (`--evals`); with `--early-stop on` (as `search` does by default),
A and B run in full and later trials stop once their outcome is clear (bisect_runs.curves), so
a cell's trial-steps can be fewer than runs x steps.

`--sweep` (needs the `bench` extra: scikit-learn, optuna) also runs, on each cell's scenarios, a
random sweep of as many runs as the strategy's mean there, analysed by random-forest importance,
correlation, fANOVA and OLS (benchmarks/sweep.py), told the culprit count and not told it.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bisect_runs.search import strategy_phase
from bisect_runs.simulation import PRIORS, SCENARIOS, Scenario, SimulatedTrials, make_scenario
from bisect_runs.strategies import STRATEGIES, drive, make_strategy
from bisect_runs.strategies.base import Decision, Observation, Request, SearchContext, Strategy

GRID_SCENARIOS = ("single", "additive2", "and2", "or2", "mask", "nan_and", "null", "late")
MIN_EFFECT = 0.25  # the smallest regression worth chasing: a quarter of the gap, as users set --min-effect


@dataclass(frozen=True)
class Cell:
    scenario: str
    n: int
    d: float
    strategy: str
    reps: int
    parallel: int
    prior: str
    shared: float = 0.0
    timeout: float = 0.0
    tails: float = 0.0
    innocent_sd: float = 0.03
    steps: int = 200
    early_stop: bool = True
    evals: int = 10
    sweep: bool = False


@dataclass(frozen=True)
class Score:
    cell: Cell
    accuracy: float
    runs: float
    rounds: float
    seconds: float
    steps: float = 0.0  # mean trial-steps per search
    sweep: dict[str, tuple[float | None, float]] = field(default_factory=dict)  # analysis -> told, not told
    sweep_runs: int = 0


def run_cell(cell: Cell) -> Score:
    """Repeat one cell; the same repetition index gives the same scenario for every strategy."""
    started = time.perf_counter()
    correct, runs, rounds, steps = 0, 0, 0, 0
    scenarios = []
    for rep in range(cell.reps):
        tag = zlib.crc32(f"{cell.scenario}/{cell.n}/{cell.d}".encode())
        rng = np.random.default_rng([rep, tag])
        sc = make_scenario(
            cell.scenario, cell.n, cell.d, rng, innocent_sd=cell.innocent_sd, prior=cell.prior,
            shared=cell.shared, timeout=cell.timeout, tails=cell.tails,
        )
        scenarios.append(sc)
        ctx = SearchContext(
            n_factors=cell.n,
            factor_names=[f"f{i}" for i in range(cell.n)],
            parallel=cell.parallel,
            min_effect=MIN_EFFECT,
            prior_scores=sc.priors,
            seed_base=rep * 1000,
        )
        trials = SimulatedTrials(sc, cell.steps, cell.evals, cell.early_stop)
        decision, r, k = drive_phased(make_strategy(cell.strategy, ctx), trials, ctx)
        correct += sc.correct(decision.reproduced, decision.culprits)
        runs += r
        rounds += k
        steps += trials.trial_steps
    n = cell.reps
    sweep_runs = round(runs / n) if cell.sweep else 0
    sweep = run_sweeps(cell, scenarios, sweep_runs) if cell.sweep else {}
    return Score(cell, correct / n, runs / n, rounds / n, time.perf_counter() - started, steps / n, sweep, sweep_runs)


def run_sweeps(cell: Cell, scenarios: Sequence[Scenario], runs: int) -> dict[str, tuple[float | None, float]]:
    """Each sweep analysis's accuracy told the culprit count (None: nothing to name) and not told it."""
    from sweep import ANALYSES, Noise, score_sweep  # scikit-learn and optuna: only with --sweep

    noise = Noise(cell.d, cell.innocent_sd, cell.shared, cell.timeout, cell.tails)
    tag = zlib.crc32(f"sweep/{cell.scenario}/{cell.n}/{cell.d}".encode())
    results = [
        score_sweep(sc, runs, np.random.default_rng([rep, tag]), noise, seed=rep) for rep, sc in enumerate(scenarios)
    ]
    out: dict[str, tuple[float | None, float]] = {}
    for name in ANALYSES:
        told = [r[name][0] for r in results]
        hits = None if None in told else sum(bool(t) for t in told) / len(told)
        out[name] = (hits, sum(r[name][1] for r in results) / len(results))
    return out


def drive_phased(strategy: Strategy, trials: SimulatedTrials, ctx: SearchContext) -> tuple[Decision, int, int]:
    """Drive a strategy, telling the trials each round's phase as a search tells its runner."""

    def evaluate(requests: list[Request]) -> list[Observation]:
        trials.phase = strategy_phase(strategy) or "screen"
        return trials.evaluate(requests)

    return drive(strategy, evaluate, ctx)


def table(scores: Sequence[Score], strategies: Sequence[str], early: Sequence[bool] = (True,)) -> str:
    """A Markdown table: one row per (n, d, scenario), accuracy / runs / rounds / trial-steps per column
    (a strategy, with early stopping off and on side by side when both ran)."""
    by = {(s.cell.n, s.cell.d, s.cell.scenario, s.cell.strategy, s.cell.early_stop): s for s in scores}
    keys = sorted({(s.cell.n, s.cell.d, s.cell.scenario) for s in scores}, key=lambda k: (k[0], k[1], scenario_order(k[2])))
    columns = [(st, e) for st in strategies for e in early]
    names = [st + ("" if len(early) == 1 else " early stop " + ("on" if e else "off")) for st, e in columns]
    lines = ["| n | d | scenario | " + " | ".join(names) + " |", "|" + "---|" * (3 + len(columns))]
    for n, d, scenario in keys:
        cells = []
        for strategy, e in columns:
            s = by.get((n, d, scenario, strategy, e))
            cells.append("" if s is None else f"{s.accuracy:.1%} / {s.runs:.1f} / {s.rounds:.1f} / {s.steps:.0f}")
        lines.append(f"| {n} | {d:g} | {scenario} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_table(scores: Sequence[Score], strategies: Sequence[str]) -> str:
    """A Markdown table: each strategy's accuracy / runs beside each sweep analysis (told / not told) at its runs."""
    from sweep import ANALYSES

    rank = {st: k for k, st in enumerate(strategies)}
    rows = sorted(
        (s for s in scores if s.sweep),
        key=lambda s: (s.cell.n, s.cell.d, scenario_order(s.cell.scenario), rank[s.cell.strategy], s.cell.early_stop),
    )
    lines = [
        "| n | d | scenario | strategy | accuracy / runs | sweep runs | " + " | ".join(ANALYSES) + " |",
        "|" + "---|" * (6 + len(ANALYSES)),
    ]
    for s in rows:
        cells = [("—" if told is None else f"{told:.1%}") + f" / {untold:.1%}" for told, untold in (s.sweep[a] for a in ANALYSES)]
        lines.append(
            f"| {s.cell.n} | {s.cell.d:g} | {s.cell.scenario} | {s.cell.strategy} | {s.accuracy:.1%} / {s.runs:.1f} "
            f"| {s.sweep_runs} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def scenario_order(scenario: str) -> int:
    return SCENARIOS.index(scenario)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=200, help="repetitions per cell (default 200)")
    p.add_argument("--n", type=int, nargs="+", default=[12], help="numbers of factors (default 12)")
    p.add_argument("--d", type=float, nargs="+", default=[1, 2, 4, 8], help="effect / noise sd (default 1 2 4 8)")
    p.add_argument("--scenarios", nargs="+", default=list(GRID_SCENARIOS), choices=SCENARIOS)
    p.add_argument("--strategies", nargs="+", default=["auto", "oat", "ddmin"], choices=STRATEGIES)
    p.add_argument("--parallel", type=int, default=4, help="slots P (default 4)")
    p.add_argument("--prior", default="informative", choices=PRIORS, help="prior scores given to the strategies")
    p.add_argument("--shared", type=float, default=0.0, help="share of the noise variance common to a seed")
    p.add_argument("--timeouts", type=float, default=0.0, help="chance that any trial times out (default 0)")
    p.add_argument("--tails", type=float, default=0.0, help="Student-t degrees of freedom of the noise (0: normal)")
    p.add_argument("--innocent-sd", type=float, default=0.03, help="sd of the innocent factors' effects (0.03)")
    p.add_argument("--steps", type=int, default=200, help="step budget of a trial (200)")
    p.add_argument("--evals", type=int, default=10, help="evaluations a trial logs, evenly spaced (10)")
    p.add_argument("--early-stop", choices=("on", "off", "both"), default="off",
                   help="stop trials early: off (the tables of docs/search.md), on, or both side by side")
    p.add_argument("--sweep", action="store_true",
                   help="also score random sweeps of each strategy's mean runs (needs scikit-learn, optuna)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes over cells (default 2)")
    p.add_argument("--quick", action="store_true", help="20 reps, n=12, d in {2, 8}: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.reps, args.n, args.d = 20, [12], [2.0, 8.0]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    early = {"on": [True], "off": [False], "both": [False, True]}[args.early_stop]
    cells = [
        Cell(sc, n, d, st, args.reps, args.parallel, args.prior, args.shared, args.timeouts, args.tails,
             args.innocent_sd, args.steps, e, args.evals, args.sweep)
        for n, d, sc, st, e in itertools.product(args.n, args.d, args.scenarios, args.strategies, early)
    ]
    started = time.perf_counter()
    if args.jobs > 1:
        with multiprocessing.Pool(args.jobs) as pool:
            scores = pool.map(run_cell, cells, chunksize=1)
    else:
        scores = [run_cell(c) for c in cells]
    noise = f"shared {args.shared:g}, timeouts {args.timeouts:g}, tails {args.tails:g}, innocent sd {args.innocent_sd:g}"
    print(f"accuracy / mean runs / mean rounds / mean trial-steps (budget {args.steps}, {args.evals} evaluations), "
          f"P={args.parallel}, {args.reps} reps, priors {args.prior}, {noise}\n")
    print(table(scores, args.strategies, early))
    if args.sweep:
        print("\nrandom sweep of the strategy's mean runs (A, B, then each factor at B with probability 1/2): "
              "exact-set accuracy told the culprit count / not told it\n")
        print(sweep_table(scores, args.strategies))
    print(f"\n{len(cells)} cells in {time.perf_counter() - started:.1f} s with {args.jobs} job(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
