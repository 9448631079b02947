"""How to rerun a search and its key trials: the search command, `--resume`, each variant's argv."""

from __future__ import annotations

import re
import shlex
from typing import Any

from bisect_runs.project import relative_path
from bisect_runs.report.record import SearchRecord, label_set

STATISTICS = (
    "Calibration: Welch's t-test of B against A over paired seeds (95 % interval). "
    "Effects: least squares over all trials of the design, 95 % t intervals, Holm-corrected p-values. "
    "Explained fraction: the share of the B-vs-A gap a difference accounts for (for a culprit, the share that "
    "reverting it repairs: B against B without it), with a Fieller interval at 95 %. "
    "Diverged, crashed and timed-out trials count as the worst outcome for the metric's direction; "
    "a retried trial that finishes keeps its value, and a point's crashes count only when it crashes more often "
    "than the rest of the search explains (one-sided binomial test, 5 %); lost jobs are not judged."
)


def _search_cwd(environment: dict[str, Any] | None) -> str | None:
    """The directory the search ran in, when the search itself recorded its environment."""
    if not environment or environment.get("collected_by") == "report":
        return None
    cwd = environment.get("cwd")
    return str(cwd) if cwd else None


def reproduce_section(record: SearchRecord, environment: dict[str, Any] | None = None) -> dict[str, Any]:
    """The search command, seeds and budget, and the exact command of one trial of each key variant."""
    s = record.summary or record.settings
    template = next((t.command for t in record.trials if t.command), []) or _split(s.get("command"))
    out_rel = relative_path(record.out_dir, record.settings.get("invoked_in"))
    checkpoint = next((t.checkpoint for t in record.trials if t.checkpoint), None) or s.get("checkpoint")
    recorded = record.settings.get("flags")  # the other settings, as flags (searches that recorded them)
    flags = [("--good", s.get("good")), ("--bad", s.get("bad")), ("--command", command_text(template) if template else None),
             ("--metric", s.get("metric")), ("--mode", s.get("mode")), ("--steps", s.get("steps")),
             ("--strategy", s.get("strategy"))]  # fmt: skip
    tail = [("--out", out_rel), *_checkpoint_flags(checkpoint, record.settings)]
    words = ["bisect-runs", "search", *(["--no-project"] if isinstance(recorded, list) else [])]
    words += [w for flag, v in flags if v not in (None, "") for w in (flag, str(v))]
    words += [str(w) for w in recorded] if isinstance(recorded, list) else []
    words += [w for flag, v in tail if v not in (None, "") for w in (flag, str(v))]
    full = command_text(words)  # every setting spelled out: runs the same search whatever bisect.yaml says
    invocation = record.settings.get("invocation")
    if isinstance(invocation, list) and invocation:  # the command line as typed: every flag, --project too
        words = [str(w) for w in invocation if w != "--resume"]
    examples = []
    for label in _key_labels(record, s):
        trial = next((t for t in record.trials if t.label == label), None)
        if trial is not None:
            examples.append({
                "variant": label, "seed": trial.seed, "trial": trial.id,
                "config": f"trials/{trial.id}/config/",
                "argv": trial.argv, "command": command_text(trial.argv) if trial.argv else None,
            })  # fmt: skip
    return {
        "search": command_text(words),
        "full": full,
        "all_flags": isinstance(recorded, list),
        "report": command_text(["bisect-runs", "report", out_rel]),
        "resume": command_text([*(_without_budgets(words) if record.summary else words), "--resume"]),
        "budget_stop": record.summary is not None and not record.complete,
        "good": s.get("good"),
        "bad": s.get("bad"),
        "seeds": sorted({t.seed for t in record.trials}),
        "steps": record.steps,
        "checkpoint": checkpoint,
        "strategy": s.get("strategy"),
        "cwd": next((t.cwd for t in record.trials if t.cwd), None) or record.settings.get("invoked_in")
        or _search_cwd(environment),
        "statistics": STATISTICS,
        "trials": examples,
    }


def _checkpoint_flags(checkpoint: Any, settings: dict[str, Any]) -> list[tuple[str, Any]]:
    """--checkpoint, --checkpoint-step and --checkpoint-key of a search whose trials resumed from a checkpoint."""
    if not isinstance(checkpoint, dict):
        return []
    return [("--checkpoint", checkpoint.get("path")), ("--checkpoint-step", checkpoint.get("step")),
            ("--checkpoint-key", settings.get("checkpoint_key"))]  # fmt: skip


def _without_budgets(words: list[str]) -> list[str]:
    """The command without --max-runs/--max-hours: a search that used its budget up continues without it."""
    out: list[str] = []
    skip = False
    for w in words:
        if skip:
            skip = False
        elif w in ("--max-runs", "--max-hours"):
            skip = True
        elif not w.startswith(("--max-runs=", "--max-hours=")):
            out.append(w)
    return out


def _split(command: Any) -> list[str]:
    """A command template as recorded in the journal (a string or a list of words)."""
    if isinstance(command, list):
        return [str(w) for w in command]
    try:
        return shlex.split(command) if isinstance(command, str) else []
    except ValueError:
        return [command]


def command_text(words: list[str]) -> str:
    """A command line to paste into a shell: words quoted only where a shell needs it ({config} stays bare)."""
    return " ".join(w if _SHELL_SAFE.fullmatch(w) else shlex.quote(w) for w in words)


_SHELL_SAFE = re.compile(r"[\w@%+=:,./{}-]+")


def _key_labels(record: SearchRecord, s: dict[str, Any]) -> list[str]:
    labels = [label for label in ("A", "B") if any(t.label == label for t in record.trials)]
    return labels + decisive_labels(record, s)


def decisive_labels(record: SearchRecord, s: dict[str, Any], most: int = 3) -> list[str]:
    """Variants that toggle exactly a culprit set (A + {culprit}, B - {culprit}), as run."""
    names_by_key = {str(k): str(f.get("name")) for f in s.get("factors") or [] for k in f.get("keys") or []}
    wanted = [{names_by_key.get(k, k) for k in c} for c in s.get("culprits") or []]
    found: list[str] = []
    for t in record.trials:
        inside = label_set(t.label)
        if inside and inside in wanted and t.label not in found:
            found.append(t.label)
    return found[:most]
