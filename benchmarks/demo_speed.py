"""Speed of a tiny CPU demo, and (with --truth) the demo's measured ground truth.

    python benchmarks/demo_speed.py                 # steps/s and seconds per trial, baseline and run11
    python benchmarks/demo_speed.py --truth -j 2    # A, B over 5 seeds; each difference reverted on B
                                                    # and applied on A over 3 seeds (docs/demo.md)
    python benchmarks/demo_speed.py --demo mdn --truth -j 2   # the same for E4 and E5 (val_nll)

Every number comes from real subprocess runs of `python -m bisect_runs.demo.speech` (or `.mdn`).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Demo:
    """A shipped demo pair: its trainer, metric and what the search is told about its configs."""

    module: str
    metric: str
    good: str
    bad: str
    defaults: str | None
    steps: int
    aliases: dict[str, str]
    groups: dict[str, list[str]]
    ignore: list[str]


PROJECTS = {"speech": ("bisect.yaml", "bisect_runs.demo.speech"), "mdn": ("mdn.bisect.yaml", "bisect_runs.demo.mdn")}


def demo(name: str) -> Demo:
    """A demo as its project file in the repository root describes it (bisect.yaml, mdn.bisect.yaml)."""
    file, module = PROJECTS[name]
    proj = yaml.safe_load((ROOT / file).read_text())
    return Demo(module, proj["metric"], proj["good"], proj["bad"], proj.get("defaults"), int(proj["steps"]),
                proj.get("aliases", {}), proj.get("groups", {}), proj.get("ignore", []))


@dataclass(frozen=True)
class Run:
    """One trainer run: a config (as a mapping), a seed, a budget."""

    label: str
    config: dict[str, Any]
    seed: int
    steps: int


@dataclass
class Result:
    """What a run gave: the last value of the metric, mean train steps/s, subprocess wall seconds."""

    label: str
    seed: int
    value: float
    steps_per_s: float
    wall_s: float


def run_trial(run: Run, d: Demo, scale: str, workdir: Path) -> Result:
    """Write the config, run the trainer in a subprocess, read its metrics.jsonl."""
    trial = Path(tempfile.mkdtemp(dir=workdir))
    config = trial / "config"
    config.write_text(yaml.safe_dump(run.config, sort_keys=False))
    cmd = [sys.executable, "-m", d.module, "--config", str(config), "--run-dir", str(trial / "run"),
           "--steps", str(run.steps), "--seed", str(run.seed), "--scale", scale]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{run.label} seed {run.seed} failed:\n{done.stderr}")
    lines = [json.loads(line) for line in (trial / "run" / "metrics.jsonl").read_text().splitlines()]
    speeds = [x["train_steps_per_s"] for x in lines if x.get("train_steps_per_s")]
    return Result(run.label, run.seed, float(lines[-1][d.metric]), statistics.mean(speeds) if speeds else 0.0, wall)


def run_all(runs: list[Run], d: Demo, scale: str, jobs: int) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(lambda r: run_trial(r, d, scale, Path(tmp)), runs))


def read(path: Path) -> dict[str, Any]:
    """A config file, or a directory of YAML files as dotted keys (model.yaml's lr: model.lr)."""
    if path.is_dir():
        return {f"{f.stem}.{k}": v for f in sorted(path.glob("*.yaml")) for k, v in yaml.safe_load(f.read_text()).items()}
    return dict(yaml.safe_load(path.read_text()))


def normalized(path: Path, d: Demo) -> dict[str, Any]:
    """A config with aliases renamed, ignored keys dropped and missing keys defaulted."""
    data = {d.aliases.get(k, k): v for k, v in read(path).items() if not any(fnmatch.fnmatchcase(k, p) for p in d.ignore)}
    defaults = yaml.safe_load((ROOT / d.defaults).read_text()) if d.defaults else {}
    for key, value in defaults.items():
        data.setdefault(d.aliases.get(key, key), value)
    return data


def same(a: Any, b: Any) -> bool:
    """Equal as the trainer reads them ('1e-5' == 1e-05, 0 == 0.0)."""
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return a == b


def factors(good: dict[str, Any], bad: dict[str, Any], d: Demo) -> list[tuple[str, list[str]]]:
    """The differences, grouped as bisect.yaml groups them: (name, keys)."""
    keys = [k for k in sorted(set(good) | set(bad)) if not same(good.get(k), bad.get(k))]
    out: list[tuple[str, list[str]]] = []
    grouped: set[str] = set()
    for name, members in d.groups.items():
        hit = [k for k in members if k in keys]
        if hit:
            out.append((name, hit))
            grouped.update(hit)
    return out + [(k, [k]) for k in keys if k not in grouped]


def speed(args: argparse.Namespace, d: Demo) -> None:
    configs = {path: read(ROOT / path) for path in (d.good, d.bad)}
    runs = [Run(path, cfg, seed, args.steps) for path, cfg in configs.items() for seed in range(args.seeds)]
    results = run_all(runs, d, args.scale, 1)
    print(f"{args.demo} demo, --scale {args.scale}, {args.steps} steps, 1 trial at a time")
    for path in configs:
        rs = [r for r in results if r.label == path]
        print(f"{path:>18}: {statistics.mean(r.steps_per_s for r in rs):6.1f} train steps/s  "
              f"{statistics.mean(r.wall_s for r in rs):5.2f} s per trial (subprocess wall)  "
              f"{d.metric} {statistics.mean(r.value for r in rs):.3f}")


def truth(args: argparse.Namespace, d: Demo) -> None:
    good, bad = normalized(ROOT / d.good, d), normalized(ROOT / d.bad, d)
    runs = [Run("A", good, s, args.steps) for s in range(args.seeds)]
    runs += [Run("B", bad, s, args.steps) for s in range(args.seeds)]
    for name, keys in factors(good, bad, d):
        runs += [Run(f"B - {name}", {**bad, **{k: good.get(k) for k in keys}}, s, args.steps) for s in range(args.toggle_seeds)]
        runs += [Run(f"A + {name}", {**good, **{k: bad.get(k) for k in keys}}, s, args.steps) for s in range(args.toggle_seeds)]
    start = time.perf_counter()
    results = run_all(runs, d, args.scale, args.jobs)
    table = summarize(results, d.metric)
    print(f"{len(runs)} runs in {time.perf_counter() - start:.0f} s, {args.steps} steps, --scale {args.scale}\n")
    print(markdown(table, d.metric))
    if args.out:
        Path(args.out).write_text(json.dumps({"steps": args.steps, "rows": table, "runs": [r.__dict__ for r in results]}, indent=1))


def summarize(results: list[Result], metric: str) -> list[dict[str, Any]]:
    """Mean and sd per variant, and the share of the A-B gap each toggle moves."""
    labels = list(dict.fromkeys(r.label for r in results))
    stats = {}
    for label in labels:
        v = [r.value for r in results if r.label == label]
        stats[label] = (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))
    a, b = stats["A"][0], stats["B"][0]
    rows = []
    for label, (mean, sd, n) in stats.items():
        moved = (b - mean) if label.startswith("B - ") else (mean - a) if label.startswith("A + ") else None
        rows.append({"variant": label, metric: mean, "sd": sd, "n": n,
                     "gap_share": None if moved is None or b == a else moved / (b - a)})
    return rows


def markdown(rows: list[dict[str, Any]], metric: str) -> str:
    lines = [f"| variant | {metric} (mean) | sd | seeds | share of the gap |", "|---|---|---|---|---|"]
    for r in rows:
        share = "" if r["gap_share"] is None else f"{100 * r['gap_share']:.0f} %"
        lines.append(f"| {r['variant']} | {r[metric]:.3f} | {r['sd']:.3f} | {r['n']} | {share} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", choices=("speech", "mdn"), default="speech", help="speech: bisect.yaml's pair; mdn: E4 and E5")
    p.add_argument("--steps", type=int, default=None, help="default: the budget of the demo's project file")
    p.add_argument("--scale", default="tiny")
    p.add_argument("--seeds", type=int, default=None, help="seeds of A and B (default 2; 5 with --truth)")
    p.add_argument("--toggle-seeds", type=int, default=3)
    p.add_argument("-j", "--jobs", type=int, default=2, help="trials side by side (--truth)")
    p.add_argument("--truth", action="store_true", help="measure the ground truth table")
    p.add_argument("--out", help="also write the --truth results as JSON")
    args = p.parse_args()
    if args.seeds is None:
        args.seeds = 5 if args.truth else 2
    d = demo(args.demo)
    if args.steps is None:
        args.steps = d.steps
    truth(args, d) if args.truth else speed(args, d)


if __name__ == "__main__":
    main()
