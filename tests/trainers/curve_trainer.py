"""A tiny real PyTorch trainer that streams its learning curve, for the early-stopping tests.

    python curve_trainer.py --config CFG --run-dir DIR --steps N --seed S [--checkpoint CKPT] [--save CKPT]

Least squares on a fixed synthetic regression set (data seed 0), a two-layer MLP trained by SGD
with the config's `lr`, `weight_decay` and `clip` (the update written out: constructing a
`torch.optim` optimizer imports torch._dynamo, seconds per trial); the seed varies the initialisation
and the batch order. Every `eval_every` steps (config, default 5) it appends
{"step", "val_loss"} to run_dir/metrics.jsonl, flushed. `step_s` (config) paces each step so
that a step takes about as long as a real model's would and a running trial can be watched.
`--save` writes {"step", "model"} at the end (torch.save); `--checkpoint` resumes from such a file
(torch.load, weights_only): it logs the loaded model's loss at the checkpoint's step first, then
trains the steps after it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml


def main() -> int:
    p = argparse.ArgumentParser()
    for name in ("--config", "--run-dir"):
        p.add_argument(name, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--checkpoint", help="resume from this checkpoint")
    p.add_argument("--save", help="write a checkpoint here at the end")
    args = p.parse_args()
    cfg = yaml.safe_load(Path(args.config).read_text())
    torch.set_num_threads(1)
    data = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=data)
    y = x @ torch.randn(8, 1, generator=data) + 0.1 * torch.randn(256, 1, generator=data)
    train_x, train_y, val_x, val_y = x[:192], y[:192], x[192:], y[192:]
    torch.manual_seed(args.seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    lr, decay, clip = float(cfg["lr"]), float(cfg.get("weight_decay", 0.0)), float(cfg.get("clip", 100.0))
    every, pace = int(cfg.get("eval_every", 5)), float(cfg.get("step_s", 0.0))
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    start = 0
    if args.checkpoint:
        state = torch.load(args.checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        start = int(state["step"])
    with (run_dir / "metrics.jsonl").open("a", encoding="utf-8") as log:
        if args.checkpoint:  # the loaded model's loss, at the step it was saved: proof of the resume
            log.write(json.dumps({"step": start, "val_loss": evaluate(model, val_x, val_y)}) + "\n")
        for step in range(start + 1, args.steps + 1):
            batch = torch.randint(0, 192, (32,))
            loss = torch.nn.functional.mse_loss(model(train_x[batch]), train_y[batch])
            model.zero_grad()
            loss.backward()
            sgd_step(model, lr, decay, clip)
            time.sleep(pace)
            if step % every == 0 or step == args.steps:
                log.write(json.dumps({"step": step, "val_loss": evaluate(model, val_x, val_y)}) + "\n")
                log.flush()
    if args.save:
        torch.save({"step": args.steps, "model": model.state_dict()}, args.save)
    return 0


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return torch.nn.functional.mse_loss(model(x), y).item()


def sgd_step(model: torch.nn.Module, lr: float, decay: float, clip: float) -> None:
    """Plain SGD with L2 decay on the gradient norm clipped to `clip`."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.sqrt(sum((p.grad**2).sum() for p in params))  # type: ignore[operator]
    scale = min(1.0, clip / (float(norm) + 1e-12))
    with torch.no_grad():
        for p in params:
            assert p.grad is not None
            p -= lr * (scale * p.grad + decay * p)


if __name__ == "__main__":
    raise SystemExit(main())
