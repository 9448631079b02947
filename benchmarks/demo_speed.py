"""Speed of the tiny CPU speech demo, and (with --truth) the demo's measured ground truth.

    python benchmarks/demo_speed.py                 # steps/s and seconds per trial, baseline and run11
    python benchmarks/demo_speed.py --truth -j 2    # A, B over 5 seeds; each difference reverted on B
                                                    # and applied on A over 3 seeds (docs/demo.md)

Every number comes from real subprocess runs of `python -m bisect_runs.demo.speech`.
"""

from __future__ import annotations

import argparse
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
class Run:
    """One trainer run: a config (as a mapping), a seed, a budget."""

    label: str
    config: dict[str, Any]
    seed: int
    steps: int


@dataclass
class Result:
    """What a run gave: the last val_per, mean train steps/s, subprocess wall seconds."""

    label: str
    seed: int
    val_per: float
    steps_per_s: float
    wall_s: float


def run_trial(run: Run, scale: str, workdir: Path) -> Result:
    """Write the config, run the trainer in a subprocess, read its metrics.jsonl."""
    trial = Path(tempfile.mkdtemp(dir=workdir))
    config = trial / "config"
    config.write_text(yaml.safe_dump(run.config, sort_keys=False))
    cmd = [sys.executable, "-m", "bisect_runs.demo.speech", "--config", str(config), "--run-dir", str(trial / "run"),
           "--steps", str(run.steps), "--seed", str(run.seed), "--scale", scale]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{run.label} seed {run.seed} failed:\n{done.stderr}")
    lines = [json.loads(line) for line in (trial / "run" / "metrics.jsonl").read_text().splitlines()]
    speeds = [x["train_steps_per_s"] for x in lines if x.get("train_steps_per_s")]
    return Result(run.label, run.seed, float(lines[-1]["val_per"]), statistics.mean(speeds) if speeds else 0.0, wall)


def run_all(runs: list[Run], scale: str, jobs: int) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(lambda r: run_trial(r, scale, Path(tmp)), runs))


def project() -> dict[str, Any]:
    """bisect.yaml: good, bad, aliases, groups, ignore, defaults."""
    return yaml.safe_load((ROOT / "bisect.yaml").read_text())


def normalized(path: Path, proj: dict[str, Any]) -> dict[str, Any]:
    """A config with aliases renamed, ignored keys dropped and missing keys defaulted."""
    data = yaml.safe_load(path.read_text())
    aliases = proj.get("aliases", {})
    data = {aliases.get(k, k): v for k, v in data.items() if k not in proj.get("ignore", [])}
    defaults = yaml.safe_load((ROOT / proj["defaults"]).read_text()) if proj.get("defaults") else {}
    for key, value in defaults.items():
        data.setdefault(aliases.get(key, key), value)
    return data


def same(a: Any, b: Any) -> bool:
    """Equal as the trainer reads them ('1e-5' == 1e-05, 0 == 0.0)."""
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return a == b


def factors(good: dict[str, Any], bad: dict[str, Any], proj: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The differences, grouped as bisect.yaml groups them: (name, keys)."""
    keys = [k for k in sorted(set(good) | set(bad)) if not same(good.get(k), bad.get(k))]
    out: list[tuple[str, list[str]]] = []
    grouped: set[str] = set()
    for name, members in proj.get("groups", {}).items():
        hit = [k for k in members if k in keys]
        if hit:
            out.append((name, hit))
            grouped.update(hit)
    return out + [(k, [k]) for k in keys if k not in grouped]


def speed(args: argparse.Namespace) -> None:
    proj = project()
    configs = {name: yaml.safe_load((ROOT / proj[name]).read_text()) for name in ("good", "bad")}
    runs = [Run(name, cfg, seed, args.steps) for name, cfg in configs.items() for seed in range(args.seeds)]
    results = run_all(runs, args.scale, 1)
    print(f"speech demo, --scale {args.scale}, {args.steps} steps, 1 trial at a time")
    for name in configs:
        rs = [r for r in results if r.label == name]
        print(f"{proj[name]:>18}: {statistics.mean(r.steps_per_s for r in rs):6.1f} train steps/s  "
              f"{statistics.mean(r.wall_s for r in rs):5.2f} s per trial (subprocess wall)  "
              f"val_per {statistics.mean(r.val_per for r in rs):.3f}")


def truth(args: argparse.Namespace) -> None:
    proj = project()
    good, bad = normalized(ROOT / proj["good"], proj), normalized(ROOT / proj["bad"], proj)
    runs = [Run("A", good, s, args.steps) for s in range(args.seeds)]
    runs += [Run("B", bad, s, args.steps) for s in range(args.seeds)]
    for name, keys in factors(good, bad, proj):
        runs += [Run(f"B - {name}", {**bad, **{k: good.get(k) for k in keys}}, s, args.steps) for s in range(args.toggle_seeds)]
        runs += [Run(f"A + {name}", {**good, **{k: bad.get(k) for k in keys}}, s, args.steps) for s in range(args.toggle_seeds)]
    start = time.perf_counter()
    results = run_all(runs, args.scale, args.jobs)
    table = summarize(results)
    print(f"{len(runs)} runs in {time.perf_counter() - start:.0f} s, {args.steps} steps, --scale {args.scale}\n")
    print(markdown(table))
    if args.out:
        Path(args.out).write_text(json.dumps({"steps": args.steps, "rows": table, "runs": [r.__dict__ for r in results]}, indent=1))


def summarize(results: list[Result]) -> list[dict[str, Any]]:
    """Mean and sd per variant, and the share of the A-B gap each toggle moves."""
    labels = list(dict.fromkeys(r.label for r in results))
    stats = {}
    for label in labels:
        v = [r.val_per for r in results if r.label == label]
        stats[label] = (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))
    a, b = stats["A"][0], stats["B"][0]
    rows = []
    for label, (mean, sd, n) in stats.items():
        moved = (b - mean) if label.startswith("B - ") else (mean - a) if label.startswith("A + ") else None
        rows.append({"variant": label, "val_per": mean, "sd": sd, "n": n,
                     "gap_share": None if moved is None or b == a else moved / (b - a)})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| variant | val_per (mean) | sd | seeds | share of the gap |", "|---|---|---|---|---|"]
    for r in rows:
        share = "" if r["gap_share"] is None else f"{100 * r['gap_share']:.0f} %"
        lines.append(f"| {r['variant']} | {r['val_per']:.3f} | {r['sd']:.3f} | {r['n']} | {share} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=None, help="default: the steps bisect.yaml runs the demo at")
    p.add_argument("--scale", default="tiny")
    p.add_argument("--seeds", type=int, default=None, help="seeds of A and B (default 2; 5 with --truth)")
    p.add_argument("--toggle-seeds", type=int, default=3)
    p.add_argument("-j", "--jobs", type=int, default=2, help="trials side by side (--truth)")
    p.add_argument("--truth", action="store_true", help="measure the ground truth table")
    p.add_argument("--out", help="also write the --truth results as JSON")
    args = p.parse_args()
    if args.seeds is None:
        args.seeds = 5 if args.truth else 2
    if args.steps is None:
        args.steps = int(project()["steps"])
    truth(args) if args.truth else speed(args)


if __name__ == "__main__":
    main()
