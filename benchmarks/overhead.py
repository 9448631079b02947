"""How much time bisect-runs adds per trial: 200 no-op trials with --parallel 2.

The no-op trainer is `echo loss=0.5` (the regex metric source reads it from stdout), so
nearly all time is the tool's own: preparing each trial (directory, YAML config, command),
starting it in its own process group, judging it (metrics, outcome.json) and journaling it
(flush + fsync). Two figures, both per trial:

- overhead = (tool wall - baseline wall) / trials, where the baseline starts the same
  processes with a bare pool of `parallel` threads calling subprocess.run;
- overhead vs trainer time = (tool wall - sum of trainer wall times / parallel) / trials.

Target: under 50 ms per trial.  Usage: python benchmarks/overhead.py [--trials N] [--parallel P]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from bisect_runs.executors.local import LocalExecutor
from bisect_runs.journal import Journal
from bisect_runs.metrics import MetricSpec
from bisect_runs.runner import TrialRunner
from bisect_runs.trials import OK, Trial, make_trial

TARGET_MS = 50.0


def noop_command() -> tuple[str, ...]:
    """A trainer that does nothing but print its metric."""
    echo = shutil.which("echo") or "/bin/echo"
    return (echo, "loss=0.5", "seed={seed}", "config={config}")


def write_config(trial: Trial, dest: Path) -> Path:
    """A small YAML config, as a real search writes one per trial."""
    path = dest / "config.yaml"
    path.write_text(yaml.safe_dump({"lr": 0.1, "steps": trial.steps, **dict(trial.changes)}))
    return path


def baseline(argvs: list[list[str]], parallel: int, logs: Path) -> float:
    """Wall time to run the same processes from a bare thread pool."""
    logs.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> None:
        with open(logs / f"{i}.out", "wb") as out:
            subprocess.run(argvs[i], stdout=out, stderr=subprocess.STDOUT, check=True)

    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(len(argvs))))
    return time.perf_counter() - started


def measure(trials: int, parallel: int, root: Path) -> dict[str, Any]:
    command = noop_command()
    batch = [make_trial("noop", {"lr": 0.1}, seed, 1, command) for seed in range(trials)]
    argvs = [[w.replace("{seed}", str(t.seed)).replace("{config}", "c.yaml") for w in command] for t in batch]
    base_wall = baseline(argvs, parallel, root / "baseline")
    out = root / "out"
    with LocalExecutor(parallel=parallel, devices=[]) as executor, Journal(out) as journal:
        runner = TrialRunner(out, executor, journal, write_config, metric=MetricSpec("loss", source="regex"), retries=0)
        started = time.perf_counter()
        outcomes = runner.run(batch)
        wall = time.perf_counter() - started
    bad = [o for o in outcomes if o.status != OK]
    if bad:
        raise SystemExit(f"{len(bad)} no-op trials did not finish ok: {bad[0].status} {bad[0].detail}")
    trainer_s = sum(o.wall_s for o in outcomes)
    return {
        "trials": trials,
        "parallel": parallel,
        "wall_s": round(wall, 3),
        "baseline_wall_s": round(base_wall, 3),
        "trainer_s": round(trainer_s, 3),
        "overhead_ms_per_trial": round(1000 * (wall - base_wall) / trials, 2),
        "overhead_vs_trainer_ms_per_trial": round(1000 * (wall - trainer_s / parallel) / trials, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bisect-runs-overhead-") as tmp:
        result = measure(args.trials, args.parallel, Path(tmp))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['trials']} no-op trials, parallel {result['parallel']}: tool {result['wall_s']:.2f} s, "
              f"bare subprocess pool {result['baseline_wall_s']:.2f} s, trainers {result['trainer_s']:.2f} s")
        print(f"overhead per trial: {result['overhead_ms_per_trial']:.1f} ms over a bare pool, "
              f"{result['overhead_vs_trainer_ms_per_trial']:.1f} ms over the trainers' own time (target < {TARGET_MS:.0f} ms)")
    return 0 if result["overhead_ms_per_trial"] < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
