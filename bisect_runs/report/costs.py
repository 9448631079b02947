"""What a search cost: trials, trial-steps, trial hours, GPU-hours and the wall-clock span."""

from __future__ import annotations

from typing import Any

from bisect_runs.report.record import TrialRecord


def cost_section(trials: list[TrialRecord]) -> dict[str, Any]:
    """Trials run, trial-steps (steps run from each trial's checkpoint, summed), wall hours, GPU-hours (wall × GPUs per trial) and CPU-only trial hours."""
    gpu_s = sum(t.wall_s * t.gpus for t in trials)
    cpu_s = sum(t.wall_s for t in trials if not t.gpus)
    return {
        "trials": len(trials),
        "trial_steps": sum((t.steps if t.steps_run is None else t.steps_run) - t.start_step for t in trials),
        "full_budget_steps": sum(t.steps - t.start_step for t in trials),
        "stopped_early": sum(t.stopped_early is not None for t in trials),
        "trial_hours": round(sum(t.wall_s for t in trials) / 3600, 4),
        "gpu_hours": round(gpu_s / 3600, 4),
        "cpu_trial_hours": round(cpu_s / 3600, 4),
        "span_hours": _span_hours(trials),
    }


def _span_hours(trials: list[TrialRecord]) -> float | None:
    """Wall-clock from the first trial's start to the last trial's end, from journal times."""
    ends = [(t.time, t.wall_s) for t in trials if t.time is not None]
    if not ends:
        return None
    start = min(end - wall for end, wall in ends)
    return round((max(end for end, _ in ends) - start) / 3600, 4)
