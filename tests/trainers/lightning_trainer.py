"""A `LightningCLI` script: `fit --config config.yaml --trainer.max_steps N`, metrics from the CSV logger.

    python lightning_trainer.py fit --config config.yaml --trainer.max_steps=40 --seed_everything=0

A small MLP (`LitClassifier`, its arguments the `model:` section) classifies points of a fixed
random teacher network from `TeacherData` (the `data:` section); `val_loss` is logged at
the end of every epoch. The logger (e.g. `CSVLogger`) is chosen in the config.
"""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class LitClassifier(LightningModule):
    def __init__(self, hidden: int = 32, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 4))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y), on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        h = self.hparams
        return torch.optim.SGD(self.parameters(), lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)


class TeacherData(LightningDataModule):
    def __init__(self, batch_size: int = 32, train_size: int = 320, num_workers: int = 0) -> None:
        super().__init__()
        self.batch_size, self.train_size, self.num_workers = batch_size, train_size, num_workers

    def setup(self, stage: str) -> None:
        teacher = torch.Generator().manual_seed(1234)
        w1, w2 = torch.randn(8, 16, generator=teacher), torch.randn(16, 4, generator=teacher)

        def label(x: torch.Tensor) -> torch.Tensor:
            return (torch.tanh(x @ w1) @ w2).argmax(dim=1)

        x = torch.randn(self.train_size, 8)  # drawn after seed_everything: the data follow the seed
        x_val = torch.randn(512, 8, generator=torch.Generator().manual_seed(99))
        self.train_set, self.val_set = TensorDataset(x, label(x)), TensorDataset(x_val, label(x_val))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=512, num_workers=self.num_workers)


if __name__ == "__main__":
    LightningCLI(LitClassifier, TeacherData)
