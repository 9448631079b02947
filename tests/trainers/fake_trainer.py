"""A configurable stand-in for a training script, run as a real subprocess by the tests.

    python fake_trainer.py --config CFG --run-dir DIR --steps N --seed S [key=value ...] [~key ...]

Arguments fall back to the BISECT_RUNS_* environment variables. The config (a YAML/JSON file,
or a directory of them merged under each file's stem) is flattened to dotted keys; Hydra-style
overrides `key=value` (value read as YAML) and `~key` apply on top. Keys under `fake.` steer
the behaviour; every other key is "model config" that the metric expression may use:

    fake.metric: loss          name of the target metric
    fake.value: "0.2 + 0.1 * (lr < 0.01)"   final value: a number or an expression over config
                               keys (dots written as __, e.g. optim__lr; get('optim.lr', 0.1))
    fake.noise: 0.01           std of the seed noise added to the final value
    fake.log_every: 10         steps between logged records (default steps // 5)
    fake.sources: [jsonl]      any of jsonl, stdout, csv, tensorboard
    fake.extras: {steps_per_sec: 50.0}   more values logged in every record
    fake.sleep: 0.5            seconds to spend, spread over the records (a number or an expression)
    fake.crash: false          bool or expression: exit with fake.exit_code (default 1) at fake.crash_at
    fake.crash_at: 0.5         fraction of the steps after which it crashes or diverges
    fake.crash_once: PATH      crash only if PATH does not exist yet (creates it): a flaky crash
    fake.diverge: false        bool or expression: log NaN from fake.crash_at on
    fake.diverge_then: continue   continue (log NaN to the end) | exit (exit 1) | stop (exit 0)
    fake.nan_key: loss         the key that turns NaN when diverging (default: the metric)
    fake.no_metric: false      exit 0 without logging the metric
    fake.grandchild: false     spawn a grandchild that sleeps and writes its pid to run_dir/grandchild.pid
    fake.ignore_sigterm: false
    fake.counter: PATH         ($VARS expanded) append "start|end <tag> <unix time> <CUDA_VISIBLE_DEVICES>" lines
                               (tag = fake.tag or the seed; "end" only after a clean exit)
    fake.stderr: ""            text printed to stderr before exiting

It always writes run_dir/trainer.json: argv, the BISECT_RUNS_* and CUDA_VISIBLE_DEVICES
environment, and the flattened config it ran with.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


def main(argv: list[str]) -> int:
    args, overrides = _parse(argv)
    cfg = _flatten(_load(Path(args.config))) if args.config else {}
    _apply_overrides(cfg, overrides)
    fake = {k[5:]: v for k, v in cfg.items() if k.startswith("fake.")}
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    steps, seed = int(args.steps), int(args.seed)
    tag = str(fake.get("tag", seed))
    _dump_context(run_dir, argv, cfg)
    if fake.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    counter = Path(os.path.expandvars(str(fake["counter"]))) if fake.get("counter") else None
    if counter is not None:
        _append(counter, f"start {tag} {time.time():.6f} {os.environ.get('CUDA_VISIBLE_DEVICES', '-')}")
    if fake.get("grandchild"):
        _spawn_grandchild(run_dir)
    code = _train(cfg, fake, run_dir, steps, seed)
    if fake.get("stderr"):
        print(fake["stderr"], file=sys.stderr, flush=True)
    if counter is not None and code == 0:
        _append(counter, f"end {tag} {time.time():.6f} {os.environ.get('CUDA_VISIBLE_DEVICES', '-')}")
    return code


def _train(cfg: dict[str, Any], fake: dict[str, Any], run_dir: Path, steps: int, seed: int) -> int:
    """Log a decaying curve towards the final value; crash or diverge where told to."""
    name = str(fake.get("metric", "loss"))
    final = float(_eval(fake.get("value", 1.0), cfg)) + random.Random(seed).gauss(0.0, float(fake.get("noise", 0.0)))
    every = max(1, int(fake.get("log_every", max(1, steps // 5))))
    crash_step = int(float(fake.get("crash_at", 0.5)) * steps)
    crash = bool(_eval(fake.get("crash", False), cfg)) and _first_time(fake.get("crash_once"))
    diverge = bool(_eval(fake.get("diverge", False), cfg))
    nan_key = str(fake.get("nan_key", name))
    logger = _Logger(run_dir, list(fake.get("sources", ["jsonl"])))
    pause = float(_eval(fake.get("sleep", 0.0), cfg)) / max(1, steps // every)
    try:
        for step in range(every, steps + 1, every):
            time.sleep(pause)
            if crash and step > crash_step:
                print(f"RuntimeError: simulated crash at step {step}", file=sys.stderr, flush=True)
                return int(fake.get("exit_code", 1))
            record: dict[str, Any] = {"step": step, **dict(fake.get("extras", {}) or {})}
            if not fake.get("no_metric"):
                record[name] = final + (2.0 - final) * math.exp(-4.0 * step / steps)
            if diverge and step > crash_step:
                record[nan_key] = float("nan")
                if fake.get("diverge_then", "continue") != "continue":
                    logger.log(record)
                    print(f"{nan_key} is nan at step {step}", file=sys.stderr, flush=True)
                    return 1 if fake["diverge_then"] == "exit" else 0
            logger.log(record)
    finally:
        logger.close()
    return 0


class _Logger:
    """Writes each record to the chosen sources."""

    def __init__(self, run_dir: Path, sources: list[str]) -> None:
        self.run_dir, self.sources = run_dir, sources
        self.csv_rows: list[dict[str, Any]] = []
        self.tb: Any = None
        if "tensorboard" in sources:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(run_dir / "tb"))

    def log(self, record: dict[str, Any]) -> None:
        step = record["step"]
        if "jsonl" in self.sources:
            with (self.run_dir / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
        if "stdout" in self.sources:
            values = " | ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items() if k != "step")
            print(f"Step {step}: {values}", flush=True)
        if "csv" in self.sources:
            self.csv_rows.append(record)
        if self.tb is not None:
            for key, value in record.items():
                if key != "step":
                    self.tb.add_scalar(key, float(value), step)

    def close(self) -> None:
        if self.csv_rows:
            keys = list(dict.fromkeys(k for row in self.csv_rows for k in row))
            with (self.run_dir / "metrics.csv").open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(self.csv_rows)
        if self.tb is not None:
            self.tb.close()


# -- config -------------------------------------------------------------------------------


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    env = os.environ
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=env.get("BISECT_RUNS_CONFIG"))
    parser.add_argument("--run-dir", default=env.get("BISECT_RUNS_RUN_DIR", "."))
    parser.add_argument("--steps", default=env.get("BISECT_RUNS_STEPS", "100"))
    parser.add_argument("--seed", default=env.get("BISECT_RUNS_SEED", "0"))
    return parser.parse_known_args(argv)


def _load(path: Path) -> dict[str, Any]:
    if path.is_dir():
        return {p.stem: _load(p) for p in sorted(path.iterdir()) if p.suffix in (".yaml", ".yml", ".json", "")}
    data = yaml.safe_load(path.read_text()) if path.suffix != ".json" else json.loads(path.read_text())
    return data or {}


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and not str(key) == "extras":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> None:
    for word in overrides:
        if word.startswith("~"):
            cfg.pop(word[1:], None)
        elif "=" in word:
            key, _, raw = word.partition("=")
            cfg[key.lstrip("+")] = _override_value(raw)


def _override_value(raw: str) -> Any:
    """Read an override value like Hydra: quoted strings unescaped, the rest as YAML."""
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    try:
        return yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        return raw


def _eval(expr: Any, cfg: dict[str, Any]) -> Any:
    """A number/bool as is; a string as a small arithmetic expression over config keys (no eval)."""
    if not isinstance(expr, str):
        return expr
    names = {k.replace(".", "__"): v for k, v in cfg.items()}
    return _Eval(names, cfg).visit(ast.parse(expr, mode="eval").body)


class _Eval(ast.NodeVisitor):
    _BIN = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
            ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a**b}  # fmt: skip
    _CMP = {ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b,
            ast.GtE: lambda a, b: a >= b, ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b}  # fmt: skip
    _FUNCS: dict[str, Callable[..., Any]] = {"abs": abs, "min": min, "max": max, "log": math.log, "exp": math.exp, "float": float}

    def __init__(self, names: dict[str, Any], cfg: dict[str, Any]) -> None:
        self.names, self.cfg = names, cfg

    def visit_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id in ("true", "True"):
            return True
        if node.id in ("false", "False"):
            return False
        return self.names[node.id]

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        return self._BIN[type(node.op)](self.visit(node.left), self.visit(node.right))

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        return not value if isinstance(node.op, ast.Not) else -value if isinstance(node.op, ast.USub) else value

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        values = [self.visit(v) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)

    def visit_Compare(self, node: ast.Compare) -> Any:
        left = self.visit(node.left)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = self.visit(comp)
            if not self._CMP[type(op)](left, right):
                return False
            left = right
        return True

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        return self.visit(node.body) if self.visit(node.test) else self.visit(node.orelse)

    def visit_Call(self, node: ast.Call) -> Any:
        assert isinstance(node.func, ast.Name)
        args = [self.visit(a) for a in node.args]
        if node.func.id == "get":
            return self.cfg.get(args[0], args[1] if len(args) > 1 else None)
        return self._FUNCS[node.func.id](*args)

    def generic_visit(self, node: ast.AST) -> Any:
        raise ValueError(f"unsupported expression element: {type(node).__name__}")


# -- side effects ---------------------------------------------------------------------------


def _dump_context(run_dir: Path, argv: list[str], cfg: dict[str, Any]) -> None:
    env = {k: v for k, v in os.environ.items() if k.startswith("BISECT_RUNS_") or k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")}
    (run_dir / "trainer.json").write_text(json.dumps({"argv": argv, "env": env, "config": cfg, "pid": os.getpid()}, default=str))


def _append(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _first_time(marker: Any) -> bool:
    if not marker:
        return True
    path = Path(marker)
    if path.exists():
        return False
    path.write_text("crashed once\n")
    return True


def _spawn_grandchild(run_dir: Path) -> None:
    code = "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
    child = subprocess.Popen([sys.executable, "-c", code])
    (run_dir / "grandchild.pid").write_text(str(child.pid))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
