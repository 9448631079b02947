"""CTC evaluation: effective output length, greedy decoding and phoneme error rate.

Pure Python so the numbers the demo reports can be checked by hand (see docs/demo.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

BLANK = 0


def effective_length(n_frames: int, kernel_len: int, stride_len: int) -> int:
    """Decoded output length T_eff = (T - kernelLen) / strideLen, as the lab's evaluation computes it.

    The lab's two evaluation scripts differ: one divides with `/` and converts to int32
    (truncation toward zero), the other uses floor division `//`. For T >= kernelLen both
    give the same integer; for T < kernelLen truncation gives 0 where floor gives -1, so
    the length is clamped at 0. Note that unfolding yields T_eff + 1 patches: like the lab,
    the last patch is not decoded.
    """
    if kernel_len <= 0 or stride_len <= 0:
        raise ValueError(f"kernelLen and strideLen must be positive (got {kernel_len}, {stride_len})")
    return max(0, int((n_frames - kernel_len) / stride_len))


def collapse(frame_ids: Iterable[int], blank: int = BLANK) -> list[int]:
    """Greedy CTC collapse of per-frame best classes: merge repeats, then drop blanks."""
    out: list[int] = []
    previous: int | None = None
    for label in frame_ids:
        if label != previous and label != blank:
            out.append(label)
        previous = label
    return out


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def phoneme_error_rate(hypotheses: Sequence[Sequence[int]], references: Sequence[Sequence[int]]) -> float:
    """PER = summed edit distance / summed reference length (not a mean of per-sentence rates)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("references are all empty: PER is undefined")
    return sum(edit_distance(h, r) for h, r in zip(hypotheses, references, strict=True)) / total
