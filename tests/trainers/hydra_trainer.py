"""A Hydra app (hydra-core): the config from `--config-path/--config-name`, Hydra overrides, `.hydra/` outputs.

    python hydra_trainer.py --config-path DIR --config-name train hydra.run.dir=RUN optim.lr=0.1

An MLP (PyTorch) regresses a fixed random teacher function; the app appends
`{"step", "train_loss"}` and at the end `{"step", "val_loss"}` to metrics.jsonl in Hydra's
output directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def make_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    teacher = torch.Generator().manual_seed(4321)
    w1, w2 = torch.randn(6, 24, generator=teacher) / 6**0.5, torch.randn(24, 1, generator=teacher) / 24**0.5
    x = torch.randn(n, 6, generator=generator)
    return x, torch.tanh(x @ w1) @ w2


@hydra.main(config_path=None, config_name=None, version_base="1.3")
def train(cfg: DictConfig) -> None:
    torch.manual_seed(cfg.seed)
    out = Path(HydraConfig.get().runtime.output_dir)
    data = torch.Generator().manual_seed(cfg.seed)
    x, y = make_data(2048, data)
    x_val, y_val = make_data(512, torch.Generator().manual_seed(7))
    m = cfg.model
    model = nn.Sequential(nn.Linear(6, m.hidden), ACTIVATIONS[m.activation](), nn.Dropout(m.dropout), nn.Linear(m.hidden, 1))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    with (out / "metrics.jsonl").open("a") as log:
        for step in range(1, cfg.trainer.max_steps + 1):
            idx = torch.randint(0, len(x), (cfg.data.batch_size,), generator=data)
            loss = nn.functional.mse_loss(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            if cfg.optim.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            opt.step()
            if step % cfg.trainer.log_every == 0:
                log.write(json.dumps({"step": step, "train_loss": loss.item()}) + "\n")
        model.eval()
        with torch.no_grad():
            val = nn.functional.mse_loss(model(x_val), y_val).item()
        log.write(json.dumps({"step": cfg.trainer.max_steps, "val_loss": val}) + "\n")


if __name__ == "__main__":
    train()
