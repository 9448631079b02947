"""A nanoGPT-style trainer: globals as defaults, a config file and `--key=value` words applied by its configurator.

    python nanogpt_trainer.py config/train_tiny.py --learning_rate=1e-4 --bias=False --max_iters=40

As in nanoGPT's train.py + configurator.py: an argument without `=` is a Python file executed
over the globals; `--key=value` is read with `ast.literal_eval` (else kept as a string) and
must name an existing global of the same type ("Unknown config key" otherwise). The seed is
fixed inside (`1337 + seed_offset`): every run of one config is the same. A tiny GPT (one
block, from a `GPTConfig`) learns a character sequence generated here; it prints
`iter N: loss L, time Tms` and `step N: train loss L, val loss V` like nanoGPT.
"""

from __future__ import annotations

import math
import sys
import time
from ast import literal_eval
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

# -----------------------------------------------------------------------------
# default config values
out_dir = "out"
eval_interval = 20
log_interval = 10
eval_iters = 4
batch_size = 16
block_size = 16
n_layer = 1
n_head = 2
n_embd = 16
dropout = 0.0
bias = False
learning_rate = 3e-3
max_iters = 100
weight_decay = 1e-1
beta1 = 0.9
beta2 = 0.99
grad_clip = 1.0
decay_lr = False
warmup_iters = 0
lr_decay_iters = 100
min_lr = 3e-4
seed_offset = 0
# -----------------------------------------------------------------------------
config_keys = [k for k, v in globals().items() if not k.startswith("_") and isinstance(v, (int, float, bool, str))]


def configurator(argv: list[str], config: dict) -> None:
    """nanoGPT's configurator.py: config files executed over `config`, then `--key=value` overrides."""
    for arg in argv:
        if "=" not in arg:
            assert not arg.startswith("--"), arg
            exec(Path(arg).read_text(), config)  # the trainer's own way: the config file is Python
        else:
            assert arg.startswith("--"), arg
            key, val = arg.split("=", 1)
            key = key[2:]
            if key not in config:
                raise ValueError(f"Unknown config key: {key}")
            try:
                attempt = literal_eval(val)
            except (SyntaxError, ValueError):
                attempt = val
            assert type(attempt) is type(config[key]), f"{key}: {type(attempt)} != {type(config[key])}"
            config[key] = attempt


configurator(sys.argv[1:], globals())
config = {k: globals()[k] for k in config_keys}


@dataclass
class GPTConfig:
    block_size: int = 16
    vocab_size: int = 16
    n_layer: int = 1
    n_head: int = 2
    n_embd: int = 16
    dropout: float = 0.0
    bias: bool = False


class Block(nn.Module):
    def __init__(self, c: GPTConfig) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(c.n_embd, bias=c.bias), nn.LayerNorm(c.n_embd, bias=c.bias)
        self.attn = nn.MultiheadAttention(c.n_embd, c.n_head, dropout=c.dropout, bias=c.bias, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias), nn.GELU(),
                                 nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias), nn.Dropout(c.dropout))
        self.register_buffer("mask", torch.triu(torch.ones(c.block_size, c.block_size, dtype=torch.bool), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.size(1)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=self.mask[:t, :t], need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, c: GPTConfig) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(c.vocab_size, c.n_embd), nn.Embedding(c.block_size, c.n_embd)
        self.blocks = nn.Sequential(*[Block(c) for _ in range(c.n_layer)])
        self.ln_f = nn.LayerNorm(c.n_embd, bias=c.bias)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.size(1))
        x = self.ln_f(self.blocks(self.wte(idx) + self.wpe(pos)))
        return F.cross_entropy(self.lm_head(x).flatten(0, 1), targets.flatten())


def char_data() -> tuple[torch.Tensor, torch.Tensor, int]:
    """A character corpus made here: words of a small grammar, encoded as nanoGPT's shakespeare_char does."""
    rng = torch.Generator().manual_seed(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran"]
    text = " ".join(words[int(i)] for i in torch.randint(0, len(words), (3000,), generator=rng))
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(ch) for ch in text])
    n = int(0.9 * len(ids))
    return ids[:n], ids[n:], len(chars)


train_data, val_data, vocab_size = char_data()


def get_batch(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    data = train_data if split == "train" else val_data
    ix = torch.randint(len(data) - block_size, (batch_size,))
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 1 : i + 1 + block_size] for i in ix])
    return x, y


def get_lr(it: int) -> float:
    if not decay_lr:
        return learning_rate
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    ratio = min(1.0, (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters))
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


@torch.no_grad()
def estimate_loss(model: GPT) -> dict[str, float]:
    model.eval()
    out = {}
    for split in ("train", "val"):
        out[split] = sum(model(*get_batch(split)).item() for _ in range(eval_iters)) / eval_iters
    model.train()
    return out


def main() -> None:
    torch.manual_seed(1337 + seed_offset)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model = GPT(GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=n_layer, n_head=n_head,
                          n_embd=n_embd, dropout=dropout, bias=bias))
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, betas=(beta1, beta2), weight_decay=weight_decay)
    t0 = time.time()
    for it in range(max_iters + 1):
        for group in optimizer.param_groups:
            group["lr"] = get_lr(it)
        if it % eval_interval == 0 or it == max_iters:
            losses = estimate_loss(model)
            print(f"step {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}", flush=True)
        if it == max_iters:
            break
        loss = model(*get_batch("train"))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip != 0.0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        t1 = time.time()
        if it % log_interval == 0:
            print(f"iter {it}: loss {loss.item():.4f}, time {(t1 - t0) * 1000:.2f}ms", flush=True)
        t0 = t1


if __name__ == "__main__":
    main()
