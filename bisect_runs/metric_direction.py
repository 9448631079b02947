"""Whether a metric is better low or high: `--mode` flags, else the words of its name."""

from __future__ import annotations

import re

from bisect_runs.errors import SettingsError

MIN_WORDS = ("loss", "nll", "per", "wer", "cer", "error", "err", "perplexity", "ppl", "mse", "mae", "rmse", "ce", "bpc", "bpb", "fid", "distance", "regret", "time", "latency", "mem", "memory")  # fmt: skip


RATE_WORDS = ("s", "sec", "secs", "second", "seconds")


MAX_WORDS = ("acc", "accuracy", "f1", "bleu", "auc", "auroc", "precision", "recall", "map", "iou", "miou", "rouge", "r2", "reward", "return", "score", "coverage", "psnr", "ssim", "dice", "top1", "top5")  # fmt: skip


def metric_mode(name: str, modes: dict[str, str] | None = None) -> tuple[str | None, str]:
    """The metric's direction: `modes[name]` (or modes["*"]), else inferred from the words of its name."""
    modes = modes or {}
    leaf = name.rsplit("/", 1)[-1]
    for key in (name, leaf, name.replace("/", "."), "*"):
        if key in modes:
            return modes[key], "flag"
    words = [w for w in re.split(r"[^a-z0-9]+", split_camel(name).lower()) if w]
    if "per" in words[:-1] and words[-1] in RATE_WORDS:  # steps_per_s, samples/sec: throughput
        return "max", "name"
    words = [w for i, w in enumerate(words) if w != "per" or i == len(words) - 1]  # `per` alone is PER
    for word in reversed(words):  # the last word names the quantity: `loss_acc` is an accuracy
        if word in MIN_WORDS:
            return "min", "name"
        if word in MAX_WORDS:
            return "max", "name"
    return None, "unknown"


def parse_modes(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`--mode metric=min` (repeatable) or a bare `--mode min` for every metric."""
    modes: dict[str, str] = {}
    for item in items:
        name, eq, direction = item.rpartition("=")
        if not eq:
            name, direction = "*", item
        if direction not in ("min", "max") or not name:
            raise SettingsError(f"--mode {item!r}: expected METRIC=min, METRIC=max, min or max")
        modes[name] = direction
    return modes


def split_camel(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name)
