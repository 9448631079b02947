"""Mixture-density-network demo trainer: `python -m bisect_runs.demo.mdn --config configs/e4 ...`.

A small set transformer reads slot values with slot-ID embeddings and predicts a bimodal
target with a Gaussian mixture, honouring the keys of the lab's `configs/e4` and
`configs/e5` (model.*, train.*, eval.*; see docs/demo.md). It logs val_nll to
{run_dir}/metrics.jsonl and prints the lab's log line
`Step 500: val_nll=0.40 (best=0.40) | train:5.6 s/s | int:4.2 s/s | elapsed=1.5m | stale=0/10000`.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from bisect_runs.demo import contract
from bisect_runs.demo.contract import (
    MetricsLog,
    Options,
    RunArgs,
    flatten,
    peak_gpu_mem_mb,
    read_config,
    start_run,
)
from bisect_runs.demo.optim import Adam
from bisect_runs.demo.synthetic import MdnSpec, MdnSplit, make_mdn

SLOT_ID_MODES = ("fixed", "permute_per_batch", "permute_per_sample", "none")
EVAL_SLOT_ID_MODES = ("same_as_train", "fixed")
EVAL_PERM_SEED = 1234  # the seeded permutations of eval_perm_average


@dataclass(frozen=True)
class MdnScale:
    """How `--scale` shrinks the lab's sizes: divisors of width, depth, heads, slots, batch."""

    width: int
    depth: int
    heads: int
    slots: int
    batch: int
    train_size: int


SCALES = {
    "tiny": MdnScale(width=8, depth=4, heads=4, slots=2, batch=4, train_size=4096),
    "small": MdnScale(width=2, depth=2, heads=2, slots=1, batch=2, train_size=32768),
    "full": MdnScale(width=1, depth=1, heads=1, slots=1, batch=1, train_size=262144),
}


@dataclass(frozen=True)
class MdnConfig:
    """The E4/E5 keys, typed, with the trainer's defaults (configs/mdn_defaults.yaml)."""

    n_components: int
    d_model: int
    n_layers: int
    n_heads: int
    n_slots: int
    slot_id_mode: str
    use_aux_loss: bool
    aux_loss_weight: float
    aux_loss_diagonal: bool
    seed: int
    max_steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_steps: int
    use_amp: bool
    early_stop: bool
    patience: int
    perm_warmup_steps: int
    eval_every: int
    eval_batches: int
    eval_slot_id_mode: str
    eval_perm_average: int


def mdn_config(opts: Options) -> MdnConfig:
    """Read model.*, train.* and eval.* keys (a flat file with bare keys works too)."""
    o = _Prefixed(opts)
    return MdnConfig(
        n_components=o.integer("model.n_components", 8),
        d_model=o.integer("model.d_model", 256),
        n_layers=o.integer("model.n_layers", 4),
        n_heads=o.integer("model.n_heads", 8),
        n_slots=o.integer("model.n_slots", 16),
        slot_id_mode=o.choice("model.slot_id_mode", "fixed", SLOT_ID_MODES),
        use_aux_loss=o.flag("model.use_aux_loss", False),
        aux_loss_weight=o.number("model.aux_loss_weight", 0.1),
        aux_loss_diagonal=o.flag("model.aux_loss_diagonal", False),
        seed=o.integer("train.seed", 0),
        max_steps=o.integer("train.max_steps", 10000),
        batch_size=o.integer("train.batch_size", 512),
        lr=o.number("train.lr", 3e-4),
        weight_decay=o.number("train.weight_decay", 0.0),
        warmup_steps=o.integer("train.warmup_steps", 0),
        use_amp=o.flag("train.use_amp", False),
        early_stop=o.flag("train.early_stop", False),
        patience=o.integer("train.patience", 10000),
        perm_warmup_steps=o.integer("train.perm_warmup_steps", 0),
        eval_every=o.integer("eval.eval_every", 500),
        eval_batches=o.integer("eval.eval_batches", 20),
        eval_slot_id_mode=o.choice("eval.eval_slot_id_mode", "same_as_train", EVAL_SLOT_ID_MODES),
        eval_perm_average=o.integer("eval.eval_perm_average", 1),
    )


class _Prefixed:
    """Look a dotted key up as given, else by its bare name (flat single-file configs)."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts

    def _key(self, key: str) -> str:
        bare = key.split(".", 1)[1]
        return key if self.opts.has(key) or not self.opts.has(bare) else bare

    def integer(self, key: str, default: int) -> int:
        return self.opts.integer(self._key(key), default)

    def number(self, key: str, default: float) -> float:
        return self.opts.number(self._key(key), default)

    def flag(self, key: str, default: bool) -> bool:
        return self.opts.flag(self._key(key), default)

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        return self.opts.choice(self._key(key), default, choices)


def shrink(cfg: MdnConfig, scale: MdnScale) -> dict[str, int]:
    """Sizes at a scale; heads are kept a divisor of the width."""
    d_model = max(8, cfg.d_model // scale.width)
    heads = max(1, cfg.n_heads // scale.heads)
    while d_model % heads:
        heads -= 1
    return {
        "d_model": d_model,
        "n_layers": max(1, math.ceil(cfg.n_layers / scale.depth)),
        "n_heads": heads,
        "n_slots": max(2, cfg.n_slots // scale.slots),
        "batch_size": max(8, cfg.batch_size // scale.batch),
    }


class SetMdn(nn.Module):
    """Slot values + slot-ID embeddings -> transformer encoder -> mixture of Gaussians (+ aux head)."""

    def __init__(self, cfg: MdnConfig, d_model: int, n_layers: int, n_heads: int, n_slots: int) -> None:
        super().__init__()
        self.value = nn.Linear(1, d_model)
        self.slot_id = nn.Embedding(n_slots, d_model) if cfg.slot_id_mode != "none" else None
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 2 * d_model, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.mixture = nn.Linear(d_model, 3 * cfg.n_components)
        self.aux = nn.Linear(d_model, d_model)  # one map on both sides: the target matrix is symmetric

    def forward(self, values: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) values, (B, S) slot IDs -> (B, 3K) mixture parameters, (B, S, S) aux matrix."""
        h = self.value(values.unsqueeze(-1))
        if self.slot_id is not None:
            h = h + self.slot_id(ids)
        h = self.encoder(h)
        z = self.aux(h)
        aux = z @ z.transpose(1, 2) / math.sqrt(h.shape[-1])
        return self.mixture(h.mean(1)), aux


def mixture_nll(params: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of y under the predicted Gaussian mixture."""
    logits, mean, log_sd = params.float().chunk(3, dim=-1)
    log_sd = log_sd.clamp(-7.0, 7.0)
    z = (y.unsqueeze(-1) - mean) / log_sd.exp()
    log_component = -0.5 * z**2 - log_sd - 0.5 * math.log(2 * math.pi)
    return -torch.logsumexp(logits.log_softmax(-1) + log_component, dim=-1).mean()


def aux_loss(aux: torch.Tensor, contrib: torch.Tensor, diagonal: bool) -> torch.Tensor:
    """Pairwise-contribution regression: all (i, j) products c_i c_j, or only the diagonal c_i^2.

    The full form is the mean over the n x n entries. The diagonal form, as the lab's E5 code
    wrote it, sums the n self terms of a sample (and means over the batch), so at the same
    `aux_loss_weight` it weighs n_slots times as much as a mean would; and c_i^2 carries no
    sign, so it pulls each slot's features towards |c_i| while the mixture needs the signed sum.
    """
    target = contrib.unsqueeze(2) * contrib.unsqueeze(1)
    if diagonal:
        return ((aux.float().diagonal(dim1=1, dim2=2) - target.diagonal(dim1=1, dim2=2)) ** 2).sum(-1).mean()
    return ((aux.float() - target) ** 2).mean()


def slot_ids(mode: str, batch: int, slots: int, gen: torch.Generator | None) -> torch.Tensor:
    """Slot IDs for a batch: identity, one permutation for the batch, or one per sample."""
    if mode == "permute_per_batch":
        return torch.randperm(slots, generator=gen).expand(batch, slots)
    if mode == "permute_per_sample":
        return torch.argsort(torch.rand(batch, slots, generator=gen), dim=1)
    return torch.arange(slots).expand(batch, slots)


def eval_assignments(cfg: MdnConfig, slots: int) -> list[torch.Tensor | None]:
    """The slot-ID permutations each eval batch is scored under (None: drawn per batch).

    `same_as_train` with a permuting mode draws fresh permutations from the global RNG on
    every eval batch (the lab's noisy validation); `fixed` uses the identity, and with
    `eval_perm_average` N > 1 the identity plus N - 1 permutations from a fixed seed.
    """
    permuting = cfg.slot_id_mode in ("permute_per_batch", "permute_per_sample")
    if cfg.eval_slot_id_mode == "same_as_train" and permuting:
        return [None] * cfg.eval_perm_average
    gen = torch.Generator().manual_seed(EVAL_PERM_SEED)
    perms: list[torch.Tensor | None] = [torch.arange(slots)]
    perms += [torch.randperm(slots, generator=gen) for _ in range(cfg.eval_perm_average - 1)]
    return perms


@torch.no_grad()
def evaluate(model: SetMdn, val: MdnSplit, cfg: MdnConfig, batch_size: int, device: torch.device, amp: bool) -> float:
    """Mean val NLL over `eval_batches` batches, averaged over the eval slot-ID assignments."""
    model.eval()
    total, count = 0.0, 0
    slots = val.values.shape[1]
    for perm in eval_assignments(cfg, slots):
        for start in range(0, len(val), batch_size):
            values = val.values[start : start + batch_size].to(device)
            ids = slot_ids(cfg.slot_id_mode, len(values), slots, None) if perm is None else perm.expand(len(values), slots)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                params, _ = model(values, ids.to(device))
            total += float(mixture_nll(params, val.target[start : start + batch_size].to(device))) * len(values)
            count += len(values)
    model.train()
    return total / count


def train(args: RunArgs) -> int:
    """Train one run and log it; returns the process exit status (0 also when diverged)."""
    opts = Options(flatten(read_config(args.config)), args.config)
    cfg = mdn_config(opts)
    steps = args.steps or cfg.max_steps
    seed, device = start_run(args, cfg.seed)
    scale = SCALES[args.scale]
    sizes = shrink(cfg, scale)
    spec = MdnSpec(sizes["n_slots"], scale.train_size, cfg.eval_batches * sizes["batch_size"])
    train_split, val_split = make_mdn(spec, args.data_seed)
    model = SetMdn(cfg, sizes["d_model"], sizes["n_layers"], sizes["n_heads"], sizes["n_slots"]).to(device)
    loop = MdnLoop(model, cfg, steps, seed, device, sizes["batch_size"], args.eval_every or cfg.eval_every)
    with MetricsLog(args.run_dir) as log:
        loop.run(train_split, val_split, log)
    return 0


class MdnLoop:
    """Optimisation, evaluation every `eval_every` steps, patience, lab-format log lines."""

    def __init__(self, model: SetMdn, cfg: MdnConfig, steps: int, seed: int, device: torch.device, batch_size: int, eval_every: int) -> None:
        self.model, self.cfg, self.steps, self.device = model, cfg, steps, device
        self.batch_size, self.eval_every = batch_size, eval_every
        self.optimizer = Adam(model.parameters(), cfg.lr, weight_decay=cfg.weight_decay, decoupled=True)
        self.amp = cfg.use_amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp) if self.amp else None
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.best, self.best_step = math.inf, 0
        self.start = time.perf_counter()
        self.train_s = 0.0
        self.window: dict[str, list[float]] = {"loss": [], "nll": [], "aux": [], "norm": []}

    def lr_at(self, step: int) -> float:
        """Linear warm-up over `warmup_steps`, then constant."""
        if self.cfg.warmup_steps <= 0:
            return self.cfg.lr
        return self.cfg.lr * min(1.0, step / self.cfg.warmup_steps)

    def run(self, train: MdnSplit, val: MdnSplit, log: MetricsLog) -> None:
        order = torch.randperm(len(train), generator=self.gen)
        cursor, last_eval_time, last_eval_step = 0, time.perf_counter(), 0
        for step in range(1, self.steps + 1):
            if cursor + self.batch_size > len(train):
                order, cursor = torch.randperm(len(train), generator=self.gen), 0
            index = order[cursor : cursor + self.batch_size]
            cursor += self.batch_size
            tick = time.perf_counter()
            finite = self.step(step, train, index)
            self.train_s += time.perf_counter() - tick
            if not finite:
                self.log_diverged(log, step)
                return
            if step % self.eval_every == 0 or step == self.steps:
                interval = (step - last_eval_step) / (time.perf_counter() - last_eval_time)
                if self.evaluate(log, step, val, interval):
                    return
                last_eval_time, last_eval_step = time.perf_counter(), step

    def step(self, step: int, train: MdnSplit, index: torch.Tensor) -> bool:
        """One optimiser step; False when the loss or gradient is not finite."""
        cfg = self.cfg
        self.optimizer.param_groups[0]["lr"] = self.lr_at(step)
        mode = "fixed" if step <= cfg.perm_warmup_steps and cfg.slot_id_mode != "none" else cfg.slot_id_mode
        values = train.values[index].to(self.device)
        ids = slot_ids(mode, len(index), values.shape[1], self.gen).to(self.device)
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            params, aux = self.model(values, ids)
        nll = mixture_nll(params, train.target[index].to(self.device))
        extra = aux_loss(aux, train.contrib[index].to(self.device), cfg.aux_loss_diagonal) if cfg.use_aux_loss else torch.zeros(())
        loss = nll + cfg.aux_loss_weight * extra if cfg.use_aux_loss else nll
        self.optimizer.zero_grad()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)  # type: ignore[arg-type]
        else:
            loss.backward()
        norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), math.inf))
        for name, value in (("loss", float(loss.detach())), ("nll", float(nll.detach())), ("aux", float(extra.detach())), ("norm", norm)):
            self.window[name].append(value)
        if not math.isfinite(float(loss.detach())) or (not math.isfinite(norm) and self.scaler is None):
            return False
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # type: ignore[arg-type]
            self.scaler.update()
        else:
            self.optimizer.step()
        return True

    def evaluate(self, log: MetricsLog, step: int, val: MdnSplit, interval: float) -> bool:
        """Evaluate, log, print the lab's line; True when patience has run out."""
        tick = time.perf_counter()
        nll = evaluate(self.model, val, self.cfg, self.batch_size, self.device, self.amp)
        eval_s = time.perf_counter() - tick
        if nll < self.best:
            self.best, self.best_step = nll, step
        stale = step - self.best_step
        mean = {k: sum(v) / len(v) if v else math.nan for k, v in self.window.items()}
        self.window = {k: [] for k in self.window}
        log.write({
            "step": step, "val_nll": nll, "best_val_nll": self.best, "train_loss": mean["loss"],
            "train_nll": mean["nll"], "aux_loss": mean["aux"] if self.cfg.use_aux_loss else None,
            "lr": self.lr_at(step), "grad_norm": mean["norm"], "train_steps_per_s": step / self.train_s,
            "interval_steps_per_s": interval, "eval_s": eval_s, "stale": stale, "peak_gpu_mem_mb": peak_gpu_mem_mb(self.device),
        })
        elapsed = (time.perf_counter() - self.start) / 60
        print(f"Step {step}: val_nll={nll:.4f} (best={self.best:.4f}) | train:{step / self.train_s:.1f} s/s | "
              f"int:{interval:.1f} s/s | elapsed={elapsed:.1f}m | stale={stale}/{self.cfg.patience}", flush=True)
        if self.cfg.early_stop and stale >= self.cfg.patience:
            print(f"Early stop at step {step}: no improvement for {stale} steps", flush=True)
            return True
        return False

    def log_diverged(self, log: MetricsLog, step: int) -> None:
        """A non-finite loss or gradient ends the run: log it (NaN, not hidden) and stop."""
        loss, norm = self.window["loss"][-1], self.window["norm"][-1]
        log.write({"step": step, "val_nll": math.nan, "best_val_nll": self.best, "train_loss": loss,
                   "lr": self.lr_at(step), "grad_norm": norm, "diverged": True, "peak_gpu_mem_mb": peak_gpu_mem_mb(self.device)})
        print(f"Step {step}: val_nll=nan (best={self.best:.4f}) | non-finite loss ({loss}) or gradient norm ({norm}); stopping", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    return contract.main(argv, "python -m bisect_runs.demo.mdn", "Train the MDN demo on synthetic set data.", train)


if __name__ == "__main__":
    sys.exit(main())


