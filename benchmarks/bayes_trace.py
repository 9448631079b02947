"""Where `bayes` spends its runs: finding the answer, or becoming sure of it.

    python benchmarks/bayes_trace.py --scenario additive2 --d 2          # 30 reps, uniform prior
    python benchmarks/bayes_trace.py --scenario single --d 4 --prior informative

For each repetition of one benchmark cell (the same scenarios as `search_suite.py`), it follows
the posterior after every round and prints the runs at which the true culprit sets first
became the leading answer (any classification) and stayed so to the end, beside the runs the
search used. The runs after that point are spent on certainty: on the classification (additive,
OR or AND), on ruling out a second culprit, and on the confirming runs. With `--prior
informative` it also splits the runs by whether the ranking put a culprit first. `--show K`
also prints repetition K round by round: the four leading answers and their posterior.

    python benchmarks/bayes_trace.py --scenario additive2 --d 2 --reps 2 --show 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_suite import MIN_EFFECT, drive_phased  # noqa: E402

import bisect_runs.strategies.bayes as bayes_module  # noqa: E402
from bisect_runs.simulation import PRIORS, SCENARIOS, SimulatedTrials, make_scenario  # noqa: E402
from bisect_runs.strategies import make_strategy  # noqa: E402
from bisect_runs.strategies.base import SearchContext  # noqa: E402


def trace(kind: str, n: int, d: float, rep: int, prior: str, parallel: int) -> dict[str, Any]:
    """One search of the cell's repetition `rep` (the scenario `search_suite.py` draws for it)."""
    rng = np.random.default_rng([rep, zlib.crc32(f"{kind}/{n}/{d}".encode())])
    sc = make_scenario(kind, n, d, rng, prior=prior)
    ctx = SearchContext(n_factors=n, factor_names=[f"f{i}" for i in range(n)], parallel=parallel,
                        min_effect=MIN_EFFECT, prior_scores=sc.priors, seed_base=rep * 1000)  # fmt: skip
    leading: list[tuple[int, Any]] = []
    answers: list[tuple[int, list[tuple[str, float]]]] = []  # runs so far, the four leading answers
    update = bayes_module.update

    def traced(ev: Any, weights: Any, previous: Any) -> Any:
        post = update(ev, weights, previous)
        leading.append((len(ev.observations), post.hyps[post.leading()[0]].answer[1]))
        top = sorted(post.answers().items(), key=lambda kv: -kv[1])[:4]
        answers.append((len(ev.observations), [(answer_name(a), m) for a, m in top]))
        return post

    bayes_module.update = traced
    try:
        decision, runs, rounds = drive_phased(make_strategy("bayes", ctx), SimulatedTrials(sc, early_stop=False), ctx)
    finally:
        bayes_module.update = update
    truth = frozenset(frozenset(c) for c in sc.truth)
    settled = next((k for i, (k, _) in enumerate(leading) if all(a == truth for _, a in leading[i:])), None)
    top = int(np.argmax(sc.priors))
    return {"correct": sc.correct(decision.reproduced, decision.culprits), "runs": runs, "rounds": rounds,
            "settled": settled, "top_is_culprit": any(top in c for c in sc.truth), "answers": answers,
            "truth": sc.truth}  # fmt: skip


def answer_name(answer: Any) -> str:
    """An answer (classification, culprit sets) as text: `additive {1} {6}`, `AND {1, 6}`."""
    classification, culprits = answer
    sets = sorted(sorted(c) for c in culprits)
    return " ".join([classification, *("{" + ", ".join(map(str, c)) + "}" for c in sets)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=SCENARIOS, default="additive2")
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--d", type=float, default=2.0)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--prior", choices=PRIORS, default="uniform")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--show", type=int, metavar="K", help="also print repetition K round by round")
    args = parser.parse_args()
    rows = [trace(args.scenario, args.n, args.d, rep, args.prior, args.parallel) for rep in range(args.reps)]
    print("| rep | correct | runs | rounds | truth leads for good from run |")
    print("|---|---|---|---|---|")
    for rep, r in enumerate(rows):
        print(f"| {rep} | {'yes' if r['correct'] else 'no'} | {r['runs']} | {r['rounds']} | {r['settled'] or '-'} |")
    right = [r for r in rows if r["correct"] and r["settled"] is not None]
    print(f"\n{args.scenario}, n={args.n}, d={args.d:g}, P={args.parallel}, prior {args.prior}, {args.reps} reps: "
          f"{sum(r['correct'] for r in rows) / len(rows):.1%} right, {statistics.mean(r['runs'] for r in rows):.1f} runs")  # fmt: skip
    if right:
        found, used = statistics.mean(r["settled"] for r in right), statistics.mean(r["runs"] for r in right)
        print(f"right answers: the truth leads for good from run {found:.1f} on average; the search stops at run {used:.1f}")
    if args.prior == "informative":
        for flag, name in ((True, "ranked a culprit first"), (False, "did not")):
            part = [r["runs"] for r in rows if r["top_is_culprit"] is flag]
            if part:
                print(f"the ranking {name}: {len(part)} reps, {statistics.mean(part):.1f} runs")
    if args.show is not None and 0 <= args.show < len(rows):
        r = rows[args.show]
        print(f"\nrepetition {args.show} (truth {r['truth']}): the leading answers after each round")
        for runs, top in r["answers"]:
            print(f"{runs:4d} runs: " + "; ".join(f"{name} {p:.3f}" for name, p in top))


if __name__ == "__main__":
    main()
