"""Wall time of a whole `bisect-runs diff` process on two configs of 10,000 keys with 1,000 differences.

Writes two nested YAML files (100 sections x 100 keys, mixed value types), changes 1,000
keys of the second (600 values changed, 200 renamed or moved, 100 removed, 100 added),
runs `python -m bisect_runs diff A B --format json` as a subprocess and prints the best of
three wall times. Target: under 1 s on a 2-core machine.

    python benchmarks/diff_speed.py [--keys 10000] [--changes 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

SECTIONS = 100
LEAF_WORDS = ["lr", "dropout", "hidden_size", "num_layers", "warmup_steps", "weight_decay", "use_bias", "activation",
              "momentum", "noise_sd", "mask_prob", "kernel", "stride", "batch_size", "seed", "temperature"]


def make_pair(keys: int, changes: int, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Two nested configs differing in `changes` keys; returns (a, b, expected number of rows)."""
    rng = random.Random(seed)
    per_section = keys // SECTIONS
    a: dict[str, dict[str, Any]] = {}
    for n in range(SECTIONS):
        a[f"section_{n}"] = {f"{rng.choice(LEAF_WORDS)}_{n}_{i}": _value(rng) for i in range(per_section)}
    b = {name: dict(section) for name, section in a.items()}
    flat = [(s, k) for s, section in a.items() for k in section]
    chosen = rng.sample(flat, changes)
    n_changed, n_renamed, n_removed = int(changes * 0.6), int(changes * 0.2), int(changes * 0.1)
    for i, (s, k) in enumerate(chosen):
        if i < n_changed:
            b[s][k] = _changed(rng, a[s][k])
        elif i < n_changed + n_renamed:  # moved to another section under the same leaf name
            value = b[s].pop(k)
            b[f"section_{(int(s.split('_')[1]) + 1) % SECTIONS}"][k] = value
        elif i < n_changed + n_renamed + n_removed:
            del b[s][k]
        else:
            b[s][f"added_{i}"] = _value(rng)
    return a, b, changes


def _value(rng: random.Random) -> Any:
    kind = rng.randrange(5)
    if kind == 0:
        return round(10 ** rng.uniform(-6, 0), 8)
    if kind == 1:
        return rng.randrange(1, 4096)
    if kind == 2:
        return rng.random() < 0.5
    if kind == 3:
        return rng.choice(["adam", "adamw", "sgd", "relu", "gelu", "cosine", "linear"])
    return [rng.randrange(10) for _ in range(3)]


def _changed(rng: random.Random, value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * rng.choice([2, 3, 10, 0.5]) + 1
    if isinstance(value, str):
        return value + "_v2"
    return [*value, 1]


def time_diff(a: Path, b: Path, repeat: int) -> tuple[float, float, int]:
    """Best wall and CPU (user + system) times of `repeat` runs of the whole CLI process, and the JSON rows."""
    best, best_cpu, rows = float("inf"), float("inf"), 0
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "bisect_runs", "diff", str(a), str(b), "--format", "json", "--all"],
                              capture_output=True, text=True, check=False)
        best = min(best, time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best_cpu = min(best_cpu, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if proc.returncode != 1:
            raise SystemExit(f"bisect-runs diff exited {proc.returncode}: {proc.stderr.strip()}")
        rows = len(json.loads(proc.stdout))
    return best, best_cpu, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    a, b, expected = make_pair(args.keys, args.changes)
    with tempfile.TemporaryDirectory() as tmp:
        pa, pb = Path(tmp, "a.yaml"), Path(tmp, "b.yaml")
        pa.write_text(yaml.safe_dump(a, sort_keys=False), encoding="utf-8")
        pb.write_text(yaml.safe_dump(b, sort_keys=False), encoding="utf-8")
        seconds, cpu, rows = time_diff(pa, pb, args.repeat)
    print(f"bisect-runs diff: {args.keys} keys, {args.changes} differences ({rows} rows, {expected} expected): "
          f"{seconds:.3f} s wall, {cpu:.3f} s CPU (best of {args.repeat})")


if __name__ == "__main__":
    main()
