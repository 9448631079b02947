"""Synthetic data sets for the demo trainers, generated deterministically from a data seed.

Speech: phoneme sequences rendered into multi-channel "neural" time series. Each phoneme
has a spatial template and a smooth temporal envelope; each recording day mixes the
channels differently and adds its own offset; each trial drifts by a small constant
offset; the held-out blocks of every day are recorded later, after a further offset
drift. So the task is learnable, and the lab's knobs (learning rate, noise and offset
augmentation, masking, normalisation) have real, not scripted, effects.

MDN: sets of slot values whose target is a bimodal function of the whole set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SpeechSpec:
    """Shape and difficulty of the synthetic speech recordings."""

    n_days: int
    n_features: int
    n_classes: int  # phonemes, labelled 1..n_classes (0 is the CTC blank)
    max_frames: int  # longest recording, in time bins
    max_phonemes: int  # longest phoneme sequence
    train_per_day: int
    val_per_day: int
    min_duration: int = 8  # bins per phoneme
    max_duration: int = 16
    lead: int = 4  # silent bins before the first phoneme
    trail: int = 8  # and after the last, so the last decoded window still sees it
    signal: float = 3.0  # template amplitude per channel
    noise_sd: float = 1.0  # per-bin channel noise
    day_offset_sd: float = 1.0
    day_mixing: float = 0.5  # off-identity strength of each day's channel mixing
    trial_offset_sd: float = 0.2  # within-day drift, per trial
    val_shift_sd: float = 0.4  # drift of the later, held-out blocks of each day


@dataclass
class SpeechSplit:
    """Padded tensors of one split: inputs, lengths, targets, target lengths, day index."""

    x: torch.Tensor  # (N, max_frames, n_features) float32
    x_len: torch.Tensor  # (N,) int64
    y: torch.Tensor  # (N, max_phonemes) int64, 0-padded
    y_len: torch.Tensor  # (N,) int64
    day: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return int(self.x.shape[0])


def make_speech(spec: SpeechSpec, data_seed: int) -> tuple[SpeechSplit, SpeechSplit]:
    """Train and validation splits; the same spec and seed always give the same tensors."""
    rng = np.random.default_rng([data_seed, 0x5EEC])
    f = spec.n_features
    templates = rng.standard_normal((spec.n_classes + 1, f)) * spec.signal
    mixing = np.eye(f) + spec.day_mixing * rng.standard_normal((spec.n_days, f, f)) / np.sqrt(f)
    offsets = rng.standard_normal((spec.n_days, f)) * spec.day_offset_sd
    val_shift = rng.standard_normal((spec.n_days, f)) * spec.val_shift_sd
    train = _render_split(spec, rng, templates, mixing, offsets, spec.train_per_day)
    val = _render_split(spec, rng, templates, mixing, offsets + val_shift, spec.val_per_day)
    return train, val


def _render_split(
    spec: SpeechSpec,
    rng: np.random.Generator,
    templates: np.ndarray,
    mixing: np.ndarray,
    offsets: np.ndarray,
    per_day: int,
) -> SpeechSplit:
    """Render `per_day` trials for every day."""
    n = spec.n_days * per_day
    x = np.zeros((n, spec.max_frames, spec.n_features), dtype=np.float32)
    y = np.zeros((n, spec.max_phonemes), dtype=np.int64)
    x_len = np.zeros(n, dtype=np.int64)
    y_len = np.zeros(n, dtype=np.int64)
    day = np.repeat(np.arange(spec.n_days), per_day)
    for i in range(n):
        phonemes, latent = _render_sentence(spec, rng, templates)
        d = day[i]
        drift = rng.standard_normal(spec.n_features) * spec.trial_offset_sd
        noise = rng.standard_normal(latent.shape) * spec.noise_sd
        x[i, : len(latent)] = latent @ mixing[d].T + offsets[d] + drift + noise
        x_len[i], y_len[i] = len(latent), len(phonemes)
        y[i, : len(phonemes)] = phonemes
    return SpeechSplit(*(torch.from_numpy(a) for a in (x, x_len, y, y_len, day)))


def _render_sentence(spec: SpeechSpec, rng: np.random.Generator, templates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One phoneme sequence and its latent (noise-free, day-independent) time series."""
    room = spec.max_frames - spec.lead - spec.trail
    cap = max(1, min(spec.max_phonemes, 2 * room // (spec.min_duration + spec.max_duration)))
    count = int(rng.integers(max(1, cap // 2), cap + 1))
    durations = rng.integers(spec.min_duration, spec.max_duration + 1, size=count)
    while spec.lead + durations.sum() + spec.trail > spec.max_frames:
        durations = durations[:-1]
    count = len(durations)
    phonemes = rng.integers(1, spec.n_classes + 1, size=count)
    latent = np.zeros((spec.lead + int(durations.sum()) + spec.trail, spec.n_features))
    t = spec.lead
    for p, d in zip(phonemes, durations, strict=True):
        envelope = np.sin(np.pi * (np.arange(d) + 0.5) / d)
        latent[t : t + d] += envelope[:, None] * templates[p]
        t += d
    return phonemes, latent


@dataclass(frozen=True)
class MdnSpec:
    """Shape of the synthetic set-regression task."""

    n_slots: int
    train_size: int
    val_size: int
    noise_sd: float = 0.15


@dataclass
class MdnSplit:
    """Slot values, the bimodal target, and each slot's contribution (the aux loss target)."""

    values: torch.Tensor  # (N, n_slots)
    target: torch.Tensor  # (N,)
    contrib: torch.Tensor  # (N, n_slots)

    def __len__(self) -> int:
        return int(self.values.shape[0])


def make_mdn(spec: MdnSpec, data_seed: int) -> tuple[MdnSplit, MdnSplit]:
    """Train and validation splits; the target depends on the set of values, not on slot order.

    Each slot contributes c = tanh(1.5 v) + 0.3 (v^2 - 1); with S their scaled sum, the target
    is S + noise with probability sigmoid(2 S), else 1 - S / 2 + noise: bimodal, so a
    single Gaussian cannot fit it and a mixture density network can.
    """
    rng = np.random.default_rng([data_seed, 0x3D4])
    return _mdn_split(spec, rng, spec.train_size), _mdn_split(spec, rng, spec.val_size)


def _mdn_split(spec: MdnSpec, rng: np.random.Generator, n: int) -> MdnSplit:
    values = rng.standard_normal((n, spec.n_slots))
    contrib = np.tanh(1.5 * values) + 0.3 * (values**2 - 1)
    s = contrib.sum(axis=1) / np.sqrt(spec.n_slots)
    upper = rng.random(n) < 1 / (1 + np.exp(-2 * s))
    target = np.where(upper, s, 1 - s / 2) + rng.standard_normal(n) * spec.noise_sd
    return MdnSplit(*(torch.from_numpy(a.astype(np.float32)) for a in (values, target, contrib)))
