"""A tiny trainer that logs like a lab's: to W&B (`--wandb`) and/or MLflow (`--mlflow`), and to metrics.jsonl.

    python tracked_trainer.py CONFIG RUN_DIR STEPS SEED [--wandb] [--mlflow]

loss(step) falls from 2 to `1 + (lr < 0.01)` plus seed noise; with --wandb it also writes
run_dir/wandb_run.json: what `wandb.run` says its group, name, tags, job type and dir are.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import yaml


def main(argv: list[str]) -> int:
    config, run_dir, steps, seed = Path(argv[0]), Path(argv[1]), int(argv[2]), int(argv[3])
    cfg = yaml.safe_load(config.read_text())
    final = 1.0 + (cfg["lr"] < 0.01) + random.Random(seed).gauss(0, 0.02)
    history = [(s, final + (2.0 - final) * (1 - s / steps)) for s in range(0, steps + 1, max(1, steps // 4))]
    with (run_dir / "metrics.jsonl").open("w") as f:
        for step, loss in history:
            f.write(json.dumps({"step": step, "loss": loss}) + "\n")
    if "--wandb" in argv:
        log_wandb(cfg, history, run_dir)
    if "--mlflow" in argv:
        log_mlflow(cfg, history)
    return 0


def log_wandb(cfg: dict, history: list[tuple[int, float]], run_dir: Path) -> None:
    import wandb

    run = wandb.init(project="tracked", config=cfg)
    for step, loss in history:
        run.log({"train/loss": loss, "step": step})
    seen = {"group": run.group, "name": run.name, "tags": list(run.tags), "job_type": run.job_type, "dir": run.dir}
    (run_dir / "wandb_run.json").write_text(json.dumps(seen))
    run.finish()


def log_mlflow(cfg: dict, history: list[tuple[int, float]]) -> None:
    import mlflow

    with mlflow.start_run():  # MLFLOW_RUN_ID from bisect-runs: the trial's nested run
        mlflow.set_tag("trainer", "tracked_trainer")
        mlflow.set_tag("mlflow.source.git.commit", "1111111" if cfg["lr"] >= 0.01 else "2222222")
        for step, loss in history:
            mlflow.log_metric("train_loss", loss, step=step)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
