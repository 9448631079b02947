"""A plain argparse trainer as labs write them: flags only, `store_true` switches, the result on stdout.

    python argparse_trainer.py --lr 0.1 --hidden 32 --use_amp --steps 40 --seed 0 --out DIR

A two-layer MLP (PyTorch) classifies points of a fixed random teacher network; it prints
`step N: train_loss=...` lines and the held-out `val_loss=...` at the end, and saves its
arguments to DIR/args.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight_decay", type=float, default=0.0)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--use_amp", action="store_true", help="bfloat16 autocast")
    p.add_argument("--log_interval", type=int, default=10)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="out")
    return p.parse_args(argv)


def make_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels from a teacher network fixed by its own seed (the task is the same at every seed)."""
    teacher = torch.Generator().manual_seed(1234)
    w1, w2 = torch.randn(8, 16, generator=teacher), torch.randn(16, 4, generator=teacher)
    x = torch.randn(n, 8, generator=generator)
    return x, (torch.tanh(x @ w1) @ w2).argmax(dim=1)


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "args.json").write_text(json.dumps(vars(args), indent=2))
    data = torch.Generator().manual_seed(args.seed)
    x_train, y_train = make_data(2048, data)
    x_val, y_val = make_data(512, torch.Generator().manual_seed(99))
    model = nn.Sequential(nn.Linear(8, args.hidden), nn.ReLU(), nn.Dropout(args.dropout), nn.Linear(args.hidden, 4))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(x_train), (args.batch_size,), generator=data)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.use_amp):
            loss = loss_fn(model(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.log_interval == 0:
            print(f"step {step}: train_loss={loss.item():.4f}", flush=True)
    model.eval()
    with torch.no_grad():
        print(f"step {args.steps}: val_loss={loss_fn(model(x_val), y_val).item():.6f}", flush=True)


if __name__ == "__main__":
    main()
