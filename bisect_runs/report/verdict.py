"""The verdict in sentences: the gap measured, the culprits and how much reverting them recovers."""

from __future__ import annotations

import math
from typing import Any

from bisect_runs.report.record import SearchRecord, label_set
from bisect_runs.report.rows import culprit_rows, deterministic
from bisect_runs.report.units import Unit, mean_sd, side_text


def verdict_paragraph(s: dict[str, Any], regression: dict[str, Any] | None, factors: list[dict[str, Any]], unit: Unit,
                      reverted: set[frozenset[str]] | None = None) -> str:
    """The verdict with numbers: the gap measured, the culprit(s) and how much they explain.

    `reverted` (a partial report): the factor sets some finished trial reverted from B; a culprit
    without one is named as the best guess so far, with no effect stated for runs that do not exist."""
    metric = str(s.get("metric") or "the metric")
    parts: list[str] = []
    if regression and regression.get("effect") is not None:
        parts.append(_gap_sentence(s, regression, metric, unit))
    culprits = culprit_rows(s, unit)
    for row in culprits:
        names = _factor_set(s, row["keys"])
        if reverted is not None and names not in reverted:
            parts.append(f"Best guess so far: {culprit_what(row)}; no run of B with it reverted "
                         f"(`B - {{{', '.join(sorted(names))}}}`) has finished yet, so no effect of reverting it is stated.")
            continue
        parts.append(_culprit_sentence(s, row, regression, metric, unit))
    details = s.get("details") or {}
    parts.extend(members_sentence(entry) for entry in details.get("members") or [])
    if not culprits and s.get("verdict"):  # diffuse, not reproduced, a commit: the search's own words
        parts.append(str(s["verdict"]).strip())
    masking = [f for f in factors if f["measured"] == "helpful"]
    if masking:
        shown = ", ".join(f"`{f['group'] or '/'.join(f['names'])}` ({unit.diff(f['effect'])}, 95 % CI {unit.interval(f['ci_low'], f['ci_high'])})" for f in masking)
        parts.append(f"Helpful changes that mask part of the gap: {shown}.")
    return " ".join(p for p in parts if p)


def verdict_so_far(record: SearchRecord, s: dict[str, Any], regression: dict[str, Any] | None,
                    factors: list[dict[str, Any]], unit: Unit) -> str:
    """The verdict paragraph; a search stopped before deciding says that no culprit is known yet."""
    reverted = None if record.complete else _reverted_sets(record)
    paragraph = verdict_paragraph(s, regression, factors, unit, reverted)
    if record.summary is None or (not record.complete and not s.get("culprits") and not s.get("verdict")):
        paragraph += (" " if paragraph else "") + "No culprit has been decided yet: the search stopped before a verdict."
    return paragraph


def _gap_sentence(s: dict[str, Any], r: dict[str, Any], metric: str, unit: Unit) -> str:
    steps = s.get("steps")
    at = f"At {steps:,} steps, " if isinstance(steps, int) and steps else ""
    a, b = r["a"], r["b"]
    facts = []
    if deterministic(s):  # identical at every seed: no spread, no interval, no p-value to give
        if a.get("mean") is not None and b.get("mean") is not None:
            facts.append(f"{metric} {unit.value(b['mean'])} for B against {unit.value(a['mean'])} for A, "
                         "the same at every seed: the trainer ignores the seed")
    else:
        if a.get("mean") is not None and b.get("mean") is not None:
            facts.append(f"{metric} {mean_sd(b, unit)} for B against {mean_sd(a, unit)} for A, mean ± sd over {b['n']} and {a['n']} seeds")
        p = r.get("p_value")
        p_text = f", p = {p:.2g}" if isinstance(p, float) and math.isfinite(p) else ""
        facts.append(f"95 % CI {unit.interval(r['ci_low'], r['ci_high'])}{p_text}")
    why = "; ".join(facts)
    if s.get("reproduced") is False:
        return (
            f"{at}the regression did not reproduce: B − A = {unit.diff(r['effect'])} ({why}). "
            "A longer budget (`--steps`) may show it."
        )
    if not s.get("mode"):
        return f"{at}B − A = {unit.diff(r['effect'])} so far ({why}); the metric's direction is not recorded yet."
    if r["effect"] <= 0:
        return f"{at}B is not worse than A: B − A = {unit.diff(r['effect'])} ({why})."
    return f"{at}B is worse than A by {unit.diff(r['effect'], signed=False)} ({why})."


def _culprit_sentence(
    s: dict[str, Any], row: dict[str, Any], regression: dict[str, Any] | None, metric: str, unit: Unit
) -> str:
    if all(k.startswith("commit:") for k in row["keys"]):
        return " ".join(_commit_sentence(_commit_record(s, k[len("commit:"):]), row, unit) for k in row["keys"])
    what = culprit_what(row)
    alone = " alone" if len(row["changes"]) == 1 or _same_change(row["changes"]) else " together"
    frac = row["explained_fraction"]
    if frac is None:
        return f"Culprit: reverting {what}{alone} repairs the regression."
    ci = ""
    if row["explained_ci_low"] is not None and row["explained_ci_high"] is not None:
        ci = f" ({row['explained_ci_level']} % CI {row['explained_ci_low'] * 100:.0f}–{row['explained_ci_high'] * 100:.0f} %)"
    gap = ""
    if regression and regression.get("effect") is not None:
        gap = f" of the {unit.diff(regression['effect'], signed=False).replace(' points', '-point')} {metric} gap"
        if not unit.gap:
            gap = f" of the {unit.diff(regression['effect'], signed=False)} gap in {metric}"
    return f"Reverting {what}{alone} recovers {frac * 100:.0f} %{ci}{gap}."


def culprit_what(row: dict[str, Any]) -> str:
    """A culprit set in prose: `lr` (0.0008 -> 0.02), or `learning_rate` (`lrStart/lrEnd`: ...)."""
    if row.get("group"):
        return f"`{row['group']}` ({_group_changes_text(row['changes'])})"
    return changes_text(row["changes"])


def _factor_set(s: dict[str, Any], keys: list[str]) -> frozenset[str]:
    """The names of the factors a set of keys belongs to, as trial labels write them."""
    wanted = set(keys)
    names = {str(f.get("name")) for f in s.get("factors") or [] if isinstance(f, dict) and set(f.get("keys") or []) & wanted}
    return frozenset(names or wanted)


def _reverted_sets(record: SearchRecord) -> set[frozenset[str]]:
    """Factor sets some finished (`ok`) trial reverted from B: labels `B - {f, g}`."""
    out: set[frozenset[str]] = set()
    for t in record.trials:
        inside = label_set(t.label) if t.status == "ok" and t.label.lstrip().startswith("B") else None
        if inside:
            out.add(frozenset(inside))
    return out


def _commit_record(s: dict[str, Any], sha: str) -> dict[str, Any]:
    """What the search recorded of a commit (details.code), else what its repository says."""
    code = (s.get("details") or {}).get("code") or {}
    known = [code.get("first_bad"), *(code.get("candidates") or [])]
    for info in known:
        if isinstance(info, dict) and str(info.get("sha", "")).startswith(sha):
            return info
    from bisect_runs.report.environment import commit_info

    return commit_info(sha, code.get("repo") or ".") or {"sha": sha}


def _commit_sentence(info: dict[str, Any], row: dict[str, Any], unit: Unit) -> str:
    """The first bad commit with its subject, author, date and files, when they are known."""
    effect = f", effect {row['effect_text']}" if row["effect_text"] != "—" else ""
    sha = str(info["sha"])
    if not info.get("subject"):
        return f"The first bad commit is `{sha[:12]}`{effect}."
    files = ", ".join(f"`{f}`" for f in (info.get("files") or [])[:6])
    return (
        f"The first bad commit is `{sha[:12]}` \"{info['subject']}\" by {info.get('author', '?')} "
        f"({str(info.get('date', ''))[:10]}; files: {files or 'none'}){effect}."
    )


def changes_text(changes: list[dict[str, Any]]) -> str:
    """`lrStart/lrEnd` (0.0008 -> 0.02): keys moving together shown once, B's value -> A's."""
    if _same_change(changes):
        keys = "/".join(c["key"] for c in changes)
        return f"`{keys}` ({side_text(changes[0], 'b')} -> {side_text(changes[0], 'a')})"
    return ", ".join(f"`{c['key']}` ({side_text(c, 'b')} -> {side_text(c, 'a')})" for c in changes)


def _group_changes_text(changes: list[dict[str, Any]]) -> str:
    """Inside a named group's parentheses: `lrStart/lrEnd`: 0.0008 -> 0.02."""
    if _same_change(changes):
        return f"`{'/'.join(c['key'] for c in changes)}`: {side_text(changes[0], 'b')} -> {side_text(changes[0], 'a')}"
    return ", ".join(f"`{c['key']}`: {side_text(c, 'b')} -> {side_text(c, 'a')}" for c in changes)


def _same_change(changes: list[dict[str, Any]]) -> bool:
    return len(changes) > 1 and all((c["a"], c["b"]) == (changes[0]["a"], changes[0]["b"]) for c in changes)


def partial_reason(record: SearchRecord) -> str | None:
    """Why the report is partial, in one sentence (None when the search finished)."""
    if record.complete:
        return None
    n = len(record.trials)
    if record.summary is None:
        return f"The search has not finished (no summary.json): this page is built from the {n} trials in the journal so far."
    return f"The search stopped early (interrupted or out of budget) after {n} trials: the verdict is its best answer so far."


def members_sentence(entry: dict[str, Any], page: bool = True) -> str:
    """One sentence: what each member does alone (`page`: in the report's typography, else the verdict's)."""
    parts = []
    for m in entry["members"]:
        repair, reproduce = _share_text(m["repair"], page), _share_text(m["reproduce"], page)
        parts.append(f"{m['key']} alone repairs {repair} and reproduces {reproduce}")
    return f"Of {entry['factor']}, " + "; ".join(parts) + "."


def _share_text(share: dict[str, Any], page: bool) -> str:
    value, low, high = share["value"], share["ci_low"], share["ci_high"]
    if value is None:
        return "an unknown share"
    if page:
        interval = f" (95 % CI {100 * low:.0f} to {100 * high:.0f} %)" if low is not None else ""
        return f"{100 * value:.0f} %{interval}"
    interval = f" (95% CI {100 * low:.0f}% to {100 * high:.0f}%)" if low is not None else ""
    return f"{100 * value:.0f}%{interval}"
