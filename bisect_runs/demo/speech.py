"""Speech-decoder demo trainer: `python -m bisect_runs.demo.speech --config configs/baseline ...`.

A GRU CTC decoder of synthetic neural recordings, honouring every key of the lab's
`configs/baseline` and `configs/run11` (see docs/demo.md), and following the bisect-runs
trainer contract: one JSON line per evaluation in {run_dir}/metrics.jsonl.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from bisect_runs.demo import contract
from bisect_runs.demo.contract import (
    MetricsLog,
    Options,
    RunArgs,
    peak_gpu_mem_mb,
    read_config,
    start_run,
)
from bisect_runs.demo.decoding import collapse, effective_length, phoneme_error_rate
from bisect_runs.demo.optim import Adam
from bisect_runs.demo.synthetic import SpeechSpec, SpeechSplit, make_speech

ADAM_EPS = 0.1  # the lab's Adam epsilon, for both optimizers
SMOOTH_KERNEL = 20  # taps of the Gaussian smoothing filter (the lab's value)


@dataclass(frozen=True)
class Scale:
    """How `--scale` shrinks the lab's sizes: divisors of width, depth, time, channels, batch, phonemes."""

    width: int
    depth: int
    time: int
    features: int
    batch: int
    classes: int
    days: int
    train_per_day: int
    val_per_day: int
    signal: float  # template amplitude per channel: fewer channels need a stronger one


SCALES = {
    "tiny": Scale(width=16, depth=5, time=12, features=16, batch=2, classes=4, days=4, train_per_day=256, val_per_day=24, signal=8.0),
    "small": Scale(width=4, depth=2, time=2, features=4, batch=1, classes=1, days=8, train_per_day=128, val_per_day=32, signal=3.0),
    "full": Scale(width=1, depth=1, time=1, features=1, batch=1, classes=1, days=8, train_per_day=128, val_per_day=32, signal=3.0),
}


@dataclass(frozen=True)
class SpeechConfig:
    """The lab's keys, typed, with the trainer's defaults (configs/speech_defaults.yaml)."""

    batch_size: int
    lr_start: float
    lr_end: float
    n_units: int
    n_layers: int
    n_batch: int
    seed: int
    n_classes: int
    n_features: int
    seq_len: int
    max_frames: int
    dropout: float
    input_dropout: float
    white_noise_sd: float
    constant_offset_sd: float
    time_mask_prob: float
    freq_mask_prob: float
    smooth_width: float
    stride_len: int
    kernel_len: int
    bidirectional: bool
    use_layer_norm: bool
    optimizer: str
    weight_decay: float
    grad_clip_norm: float | None
    use_plateau_scheduler: bool
    plateau_patience: int
    plateau_factor: float
    use_amp: bool
    num_workers: int


def speech_config(opts: Options) -> SpeechConfig:
    """Read the lab's keys; `weight_decay` or `l2_decay` (whichever is present) is the decay."""
    decay_key = "weight_decay" if opts.has("weight_decay") else "l2_decay"
    return SpeechConfig(
        batch_size=opts.integer("batchSize", 64),
        lr_start=opts.number("lrStart", 0.02),
        lr_end=opts.number("lrEnd", opts.number("lrStart", 0.02)),
        n_units=opts.integer("nUnits", 1024),
        n_layers=opts.integer("nLayers", 5),
        n_batch=opts.integer("nBatch", 10000),
        seed=opts.integer("seed", 0),
        n_classes=opts.integer("nClasses", 40),
        n_features=opts.integer("nInputFeatures", 256),
        seq_len=opts.integer("seqLen", 150),
        max_frames=opts.integer("maxTimeSeriesLen", 1200),
        dropout=opts.number("dropout", 0.0),
        input_dropout=opts.number("input_dropout", 0.0),
        white_noise_sd=opts.number("whiteNoiseSD", 0.0),
        constant_offset_sd=opts.number("constantOffsetSD", 0.0),
        time_mask_prob=opts.number("time_mask_prob", 0.0),
        freq_mask_prob=opts.number("freq_mask_prob", 0.0),
        smooth_width=opts.number("gaussianSmoothWidth", 0.0),
        stride_len=opts.integer("strideLen", 4),
        kernel_len=opts.integer("kernelLen", 32),
        bidirectional=opts.flag("bidirectional", False),
        use_layer_norm=opts.flag("use_layer_norm", False),
        optimizer=opts.choice("optimizer", "adam", ("adam", "adamw")),
        weight_decay=opts.number(decay_key, 0.0),
        grad_clip_norm=opts.optional_number("grad_clip_norm", None),
        use_plateau_scheduler=opts.flag("use_plateau_scheduler", False),
        plateau_patience=opts.integer("plateau_patience", 2),
        plateau_factor=opts.number("plateau_factor", 0.5),
        use_amp=opts.flag("use_amp", False),
        num_workers=opts.integer("num_workers", 0),
    )


def shrink(cfg: SpeechConfig, scale: Scale) -> dict[str, int]:
    """Model and data sizes at a scale: every size divided, never below a working minimum."""
    return {
        "n_units": max(8, cfg.n_units // scale.width),
        "n_layers": max(1, math.ceil(cfg.n_layers / scale.depth)),
        "n_features": max(4, cfg.n_features // scale.features),
        "max_frames": max(cfg.kernel_len + 4 * cfg.stride_len, cfg.max_frames // scale.time),
        "seq_len": max(2, cfg.seq_len // scale.time),
        "batch_size": max(2, cfg.batch_size // scale.batch),
        "n_classes": max(2, cfg.n_classes // scale.classes),
    }


class GaussianSmoother(nn.Module):
    """Fixed depthwise 1-D Gaussian filter along time (width = its standard deviation in bins)."""

    def __init__(self, channels: int, width: float, taps: int = SMOOTH_KERNEL) -> None:
        super().__init__()
        t = torch.arange(taps, dtype=torch.float32) - (taps - 1) / 2
        kernel = torch.exp(-0.5 * (t / width) ** 2) if width > 0 else (t.abs() < 1).float()
        kernel = kernel / kernel.sum()
        self.kernel: torch.Tensor
        self.register_buffer("kernel", kernel.expand(channels, 1, taps).clone())
        self.channels, self.taps = channels, taps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, T, F), same length."""
        padded = nn.functional.pad(x.transpose(1, 2), ((self.taps - 1) // 2, self.taps // 2))
        return nn.functional.conv1d(padded, self.kernel, groups=self.channels).transpose(1, 2)


class SpeechDecoder(nn.Module):
    """Smoothing, day-specific input layer, patch unfolding, GRU stack, CTC head (blank = 0)."""

    def __init__(self, cfg: SpeechConfig, n_features: int, n_units: int, n_layers: int, n_days: int) -> None:
        super().__init__()
        self.kernel_len, self.stride_len = cfg.kernel_len, cfg.stride_len
        self.smoother = GaussianSmoother(n_features, cfg.smooth_width)
        self.day_weights = nn.Parameter(torch.eye(n_features).repeat(n_days, 1, 1))
        self.day_bias = nn.Parameter(torch.zeros(n_days, n_features))
        self.input_dropout = nn.Dropout(cfg.input_dropout)
        patch = n_features * cfg.kernel_len
        self.in_norm: nn.Module = nn.LayerNorm(patch) if cfg.use_layer_norm else nn.Identity()
        gru_dropout = cfg.dropout if n_layers > 1 else 0.0
        self.gru = nn.GRU(patch, n_units, n_layers, batch_first=True, dropout=gru_dropout, bidirectional=cfg.bidirectional)
        out = n_units * (2 if cfg.bidirectional else 1)
        self.out_norm: nn.Module = nn.LayerNorm(out) if cfg.use_layer_norm else nn.Identity()
        self.head = nn.Linear(out, cfg.n_classes + 1)

    def forward(self, x: torch.Tensor, day: torch.Tensor) -> torch.Tensor:
        """(B, T, F) features -> (B, T', classes + 1) logits, T' = (T - kernelLen) // strideLen + 1."""
        x = self.smoother(x)
        x = torch.einsum("btf,bfg->btg", x, self.day_weights[day]) + self.day_bias[day].unsqueeze(1)
        x = self.input_dropout(nn.functional.softsign(x))
        x = x.unfold(1, self.kernel_len, self.stride_len).flatten(2)
        h, _ = self.gru(self.in_norm(x))
        return self.head(self.out_norm(h))


class Trials(Dataset):
    """Index access to one split, so the DataLoader (and its workers) only gather rows."""

    def __init__(self, split: SpeechSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> int:
        return i


def gather(split: SpeechSplit, index: Sequence[int]) -> dict[str, torch.Tensor]:
    """A batch of trials, cut to its longest recording and longest phoneme sequence."""
    idx = torch.as_tensor(index)
    x_len, y_len = split.x_len[idx], split.y_len[idx]
    return {
        "x": split.x[idx, : int(x_len.max())],
        "x_len": x_len,
        "y": split.y[idx, : int(y_len.max())],
        "y_len": y_len,
        "day": split.day[idx],
    }


class Gather:
    """The DataLoader's collate function (a class, so spawned workers can unpickle it)."""

    def __init__(self, split: SpeechSplit) -> None:
        self.split = split

    def __call__(self, index: Sequence[int]) -> dict[str, torch.Tensor]:
        return gather(self.split, index)


def augment(batch: dict[str, torch.Tensor], cfg: SpeechConfig, gen: torch.Generator) -> torch.Tensor:
    """White noise, per-trial constant offset, time and channel masking (training only)."""
    x = batch["x"].clone()
    b, t, f = x.shape
    if cfg.white_noise_sd > 0:
        x += torch.randn(x.shape, generator=gen) * cfg.white_noise_sd
    if cfg.constant_offset_sd > 0:
        x += torch.randn((b, 1, f), generator=gen) * cfg.constant_offset_sd
    if cfg.time_mask_prob > 0:
        _mask_spans(x, batch["x_len"], cfg.time_mask_prob, gen, axis=1)
    if cfg.freq_mask_prob > 0:
        _mask_spans(x, torch.full((b,), f), cfg.freq_mask_prob, gen, axis=2)
    return x


def _mask_spans(x: torch.Tensor, lengths: torch.Tensor, prob: float, gen: torch.Generator, axis: int) -> None:
    """SpecAugment-style: with probability `prob` per trial, zero one span of up to 1/8 of the axis."""
    hit = torch.rand(len(x), generator=gen) < prob
    for i in torch.nonzero(hit).flatten().tolist():
        n = int(lengths[i])
        width = int(torch.randint(1, max(2, n // 8 + 1), (1,), generator=gen))
        start = int(torch.randint(0, max(1, n - width + 1), (1,), generator=gen))
        if axis == 1:
            x[i, start : start + width] = 0.0
        else:
            x[i, :, start : start + width] = 0.0


def output_lengths(x_len: torch.Tensor, cfg: SpeechConfig, frames: int) -> torch.Tensor:
    """T_eff per trial (see `effective_length`), capped at the frames the model produced."""
    return torch.tensor([min(frames, effective_length(int(n), cfg.kernel_len, cfg.stride_len)) for n in x_len])


@torch.no_grad()
def evaluate(model: SpeechDecoder, split: SpeechSplit, cfg: SpeechConfig, device: torch.device) -> float:
    """Greedy-CTC phoneme error rate over a whole split; no randomness, so repeatable."""
    model.eval()
    hyps: list[list[int]] = []
    refs: list[list[int]] = []
    for start in range(0, len(split), 256):
        batch = gather(split, range(start, min(start + 256, len(split))))
        logits = model(batch["x"].to(device), batch["day"].to(device)).float().cpu()
        best = logits.argmax(-1)
        lengths = output_lengths(batch["x_len"], cfg, logits.shape[1])
        for row, n, y, m in zip(best, lengths, batch["y"], batch["y_len"], strict=True):
            hyps.append(collapse(row[: int(n)].tolist()))
            refs.append(y[: int(m)].tolist())
    model.train()
    return phoneme_error_rate(hyps, refs)


class LearningRate:
    """Linear lrStart -> lrEnd over the run, times a ReduceLROnPlateau-style factor on val_per."""

    def __init__(self, cfg: SpeechConfig, steps: int) -> None:
        self.cfg, self.steps = cfg, steps
        self.factor, self.best, self.bad_evals = 1.0, math.inf, 0

    def at(self, step: int) -> float:
        frac = min(1.0, step / max(1, self.steps))
        return (self.cfg.lr_start + (self.cfg.lr_end - self.cfg.lr_start) * frac) * self.factor

    def observe(self, val_per: float) -> None:
        """After each evaluation: cut the LR when val_per has not improved for `patience` evals."""
        if not self.cfg.use_plateau_scheduler:
            return
        if val_per < self.best * (1 - 1e-4):
            self.best, self.bad_evals = val_per, 0
            return
        self.bad_evals += 1
        if self.bad_evals > self.cfg.plateau_patience:
            self.factor *= self.cfg.plateau_factor
            self.bad_evals = 0


def make_optimizer(model: nn.Module, cfg: SpeechConfig) -> Adam:
    """Adam adds the decay to the gradient (L2); AdamW decays the weights directly."""
    decoupled = cfg.optimizer == "adamw"
    return Adam(model.parameters(), cfg.lr_start, (0.9, 0.999), ADAM_EPS, cfg.weight_decay, decoupled)


def batches(train: SpeechSplit, cfg: SpeechConfig, steps: int, seed: int) -> DataLoader:
    """Shuffled epochs covering `steps` batches; `num_workers` loader processes gather them."""
    gen = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(Trials(train), num_samples=steps * cfg.batch_size, generator=gen)
    return DataLoader(
        Trials(train),
        batch_size=cfg.batch_size,
        sampler=sampler,
        collate_fn=Gather(train),
        num_workers=cfg.num_workers,
        worker_init_fn=_one_thread if cfg.num_workers else None,
    )


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)


def train(args: RunArgs) -> int:
    """Train one run and log it; returns the process exit status (0 also when diverged)."""
    source = args.config
    opts = Options(read_config(source), source)
    cfg = speech_config(opts)
    steps = args.steps or cfg.n_batch
    seed, device = start_run(args, cfg.seed)
    scale = SCALES[args.scale]
    sizes = shrink(cfg, scale)
    spec = SpeechSpec(
        n_days=scale.days,
        n_features=sizes["n_features"],
        n_classes=sizes["n_classes"],
        max_frames=sizes["max_frames"],
        max_phonemes=sizes["seq_len"],
        train_per_day=scale.train_per_day,
        val_per_day=scale.val_per_day,
        signal=scale.signal,
    )
    train_split, val_split = make_speech(spec, args.data_seed)
    cfg = dataclasses.replace(cfg, batch_size=sizes["batch_size"], n_classes=sizes["n_classes"])
    model = SpeechDecoder(cfg, sizes["n_features"], sizes["n_units"], sizes["n_layers"], scale.days).to(device)
    loop = TrainLoop(model, cfg, steps, seed, device, args.eval_every or default_eval_every(steps))
    with MetricsLog(args.run_dir) as log:
        loop.run(train_split, val_split, log)
    return 0


def default_eval_every(steps: int) -> int:
    """Four evaluations per run, at most every 500 steps (the lab's interval)."""
    return max(1, min(500, steps // 4))


class TrainLoop:
    """The optimisation loop: steps, timing, evaluation, logging, stop on a non-finite loss."""

    def __init__(self, model: SpeechDecoder, cfg: SpeechConfig, steps: int, seed: int, device: torch.device, eval_every: int) -> None:
        self.model, self.cfg, self.steps, self.seed, self.device = model, cfg, steps, seed, device
        self.eval_every = eval_every
        self.optimizer = make_optimizer(model, cfg)
        self.lr = LearningRate(cfg, steps)
        self.amp = cfg.use_amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if self.amp else None
        self.ctc = nn.CTCLoss(blank=0, reduction="mean", zero_infinity=True)
        self.gen = torch.Generator().manual_seed(seed + 1)

    def run(self, train: SpeechSplit, val: SpeechSplit, log: MetricsLog) -> None:
        losses: list[float] = []
        norms: list[float] = []
        train_s = 0.0
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        tick = time.perf_counter()
        for step, batch in enumerate(batches(train, self.cfg, self.steps, self.seed), start=1):
            loss, norm = self.step(step, batch)
            losses.append(loss)
            norms.append(norm)
            if not (math.isfinite(loss) and (math.isfinite(norm) or self.amp)):
                train_s += time.perf_counter() - tick
                self.log_diverged(log, step, loss, norm)
                return
            if step % self.eval_every == 0 or step == self.steps:
                train_s += time.perf_counter() - tick
                self.log_eval(log, step, val, losses, norms, train_s)
                losses, norms, train_s = [], [], 0.0
                tick = time.perf_counter()

    def step(self, step: int, batch: dict[str, torch.Tensor]) -> tuple[float, float]:
        """One optimiser step; returns the loss and the gradient norm before clipping."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr.at(step - 1)
        x = augment(batch, self.cfg, self.gen).to(self.device)
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            logits = self.model(x, batch["day"].to(self.device))
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)
        lengths = output_lengths(batch["x_len"], self.cfg, logits.shape[1])
        loss = self.ctc(log_probs, batch["y"].to(self.device), lengths, batch["y_len"])
        self.optimizer.zero_grad()
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)  # type: ignore[arg-type]  # duck-typed optimizer
        limit = self.cfg.grad_clip_norm if self.cfg.grad_clip_norm else math.inf
        norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), limit))
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)  # type: ignore[arg-type]
            self.scaler.update()
        return float(loss.detach()), norm

    def log_eval(self, log: MetricsLog, step: int, val: SpeechSplit, losses: list[float], norms: list[float], train_s: float) -> None:
        start = time.perf_counter()
        per = evaluate(self.model, val, self.cfg, self.device)
        eval_s = time.perf_counter() - start
        self.lr.observe(per)
        record = {
            "step": step,
            "val_per": per,
            "train_loss": sum(losses) / len(losses),
            "lr": self.lr.at(step),
            "grad_norm": sum(norms) / len(norms),
            "train_steps_per_s": len(losses) / train_s if train_s > 0 else None,
            "eval_s": eval_s,
            "peak_gpu_mem_mb": peak_gpu_mem_mb(self.device),
        }
        log.write(record)
        print(f"step {step}: val_per={per:.4f} train_loss={record['train_loss']:.4f} lr={record['lr']:.3g} "
              f"grad_norm={record['grad_norm']:.3g} ({record['train_steps_per_s'] or 0:.1f} steps/s)", flush=True)

    def log_diverged(self, log: MetricsLog, step: int, loss: float, norm: float) -> None:
        """A non-finite loss or gradient ends the run: log it (NaN, not hidden) and stop."""
        log.write({"step": step, "val_per": math.nan, "train_loss": loss, "lr": self.lr.at(step), "grad_norm": norm,
                   "diverged": True, "peak_gpu_mem_mb": peak_gpu_mem_mb(self.device)})
        print(f"step {step}: non-finite training loss ({loss}) or gradient norm ({norm}); stopping", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    return contract.main(argv, "python -m bisect_runs.demo.speech", "Train the speech-decoder demo on synthetic data.", train)


if __name__ == "__main__":
    sys.exit(main())
