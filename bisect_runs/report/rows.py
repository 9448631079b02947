"""The report's tables as rows: differences with their effects, culprits, trials per variant, rounds."""

from __future__ import annotations

import statistics
from typing import Any

from bisect_runs.report.estimates import explained, finite_or_none, moments, ok_values, share_at_95
from bisect_runs.report.record import TrialRecord, as_float
from bisect_runs.report.units import Unit, mean_sd, side_text
from bisect_runs.strategies.base import SearchContext

LEVELS = ("critical", "high", "medium", "low", "none")


ALPHA = SearchContext.alpha  # the search's significance level for calling an effect harmful or helpful


STATUSES = ("ok", "diverged", "crashed", "timeout")


def factor_rows(s: dict[str, Any], unit: Unit) -> list[dict[str, Any]]:
    """One row per searched factor in prior-rank order, with its measured effect and a judgement."""
    diffs = differences_by_key(s)
    culprit_keys = {k for c in s.get("culprits") or [] for k in c}
    rows = []
    for rank, factor in enumerate(_ranked_factors(s, diffs), 1):
        keys = [str(k) for k in factor.get("keys") or []]
        ds = [diffs[k] for k in keys if k in diffs]
        level = _top_level(ds)
        effect = _effect_for(s, factor.get("name"), keys)
        measured = _measured(effect, culprit=bool(set(keys) & culprit_keys))
        shown = shown_keys(ds, keys)
        rows.append({
            "rank": rank,
            "factor": factor.get("name"),
            "keys": keys,
            "names": shown,
            "group": group_name(factor, shown),
            "a": [d.get("a") for d in ds],
            "b": [d.get("b") for d in ds],
            "a_text": _side_text(ds, "a"),
            "b_text": _side_text(ds, "b"),
            "kinds": [d.get("kind") for d in ds],
            "level": level,
            "score": max((as_float(d.get("score")) or 0.0 for d in ds), default=None),
            "reason": "; ".join(dict.fromkeys(str(d.get("reason")) for d in ds if d.get("reason")))
            or ("" if ds else str(factor.get("name") or "")),  # a commit: its short sha and subject
            "category": next((d.get("category") for d in ds if d.get("category")), None),
            "effect": as_float(effect.get("effect")) if effect else None,
            "ci_low": as_float(effect.get("ci_low")) if effect else None,
            "ci_high": as_float(effect.get("ci_high")) if effect else None,
            "explained_fraction": as_float(effect.get("explained_fraction")) if effect else None,
            "effect_text": effect_text(effect, unit),
            "measured": measured,
            "prior": prior_agreement(level, measured),
        })  # fmt: skip
    return rows


def shown_keys(ds: list[dict[str, Any]], keys: list[str]) -> list[str]:
    """A factor's keys as the diff names them (`l2_decay -> weight_decay` for a rename)."""
    return [str(d.get("key") or k) for d, k in zip(ds, keys, strict=True)] if len(ds) == len(keys) else [_short_key(k) for k in keys]


def group_name(factor: dict[str, Any], shown: list[str]) -> str | None:
    """The name of a named group (`learning_rate` for lrStart, lrEnd): the one trial labels and
    figures use; None where the factor is named after its keys."""
    name = str(factor.get("name") or "")
    if not name or name in shown or name == "+".join(shown) or all(k.startswith("commit:") for k in shown):
        return None
    return name


def factor_label(row: dict[str, Any]) -> str:
    """How prose and figures name a factor row: its factor name (as trial labels do), else its keys."""
    return str(row.get("factor") or "/".join(row.get("names") or row.get("keys") or []))


def _short_key(key: str) -> str:
    """`commit:<40 hex>` as `commit:<12 hex>`; other keys unchanged."""
    return key[: len("commit:") + 12] if key.startswith("commit:") else key


def _side_text(ds: list[dict[str, Any]], side: str) -> str:
    """One side's values; a key that side lacks reads `absent (default false)`."""
    return ", ".join(dict.fromkeys(side_text(d, side) for d in ds)) or "—"


def _ranked_factors(s: dict[str, Any], diffs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Factors in the order of their best-ranked difference (the diff's order is by impact)."""
    factors = [f for f in s.get("factors") or [] if isinstance(f, dict)]
    order = {id(d): i for i, d in enumerate(s.get("differences") or [])}

    def rank(f: dict[str, Any]) -> int:
        return min((order.get(id(diffs[k]), 10**6) for k in f.get("keys") or [] if k in diffs), default=10**6)

    return sorted(factors, key=rank)


def differences_by_key(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Difference rows by every name they go by (key, key_a, key_b)."""
    by_key: dict[str, dict[str, Any]] = {}
    for d in s.get("differences") or []:
        if isinstance(d, dict):
            for name in (d.get("key_b"), d.get("key_a"), d.get("key")):
                if name:
                    by_key.setdefault(str(name), d)
    return by_key


def _top_level(ds: list[dict[str, Any]]) -> str | None:
    levels = [str(d.get("level")) for d in ds if d.get("level") in LEVELS]
    return min(levels, key=LEVELS.index) if levels else None


def _effect_for(s: dict[str, Any], name: Any, keys: list[str]) -> dict[str, Any] | None:
    """The measured effect of exactly this factor (by factor name, else by its set of keys)."""
    for e in s.get("effects") or []:
        if isinstance(e, dict) and (e.get("factors") == [name] or sorted(e.get("keys") or []) == sorted(keys)):
            return e
    return None


def _measured(effect: dict[str, Any] | None, culprit: bool) -> str:
    """culprit | harmful | helpful | no effect | not measured (positive effects are harmful).

    An effect matters only where its Holm-corrected p-value in summary.json is below ALPHA: the
    rule the search's own verdict uses, so the report never calls harmful what the search did not."""
    if culprit:
        return "culprit"
    if effect is None:
        return "not measured"
    lo, hi = as_float(effect.get("ci_low")), as_float(effect.get("ci_high"))
    p = as_float(effect.get("p_value"))  # Holm-corrected, as the decision judges it
    if p is not None and p >= ALPHA:
        return "no effect"
    if lo is not None and lo > 0:
        return "harmful"
    if hi is not None and hi < 0:
        return "helpful"
    return "no effect"


def prior_agreement(level: str | None, measured: str) -> str:
    """Was the prior impact level right? critical/high should matter; low/none should not."""
    if measured == "not measured" or level not in LEVELS:
        return "—"
    expects = {"critical": True, "high": True, "low": False, "none": False}.get(level)
    matters = measured in ("culprit", "harmful", "helpful")
    if expects is None:  # medium: no strong prior either way
        return "—"
    if expects and matters:
        return {"culprit": "right", "harmful": "partly (harmful, not the culprit)"}.get(measured, "wrong sign (it helps)")
    if expects:
        return "overrated"
    return "underrated" if matters else "right"


def effect_text(effect: dict[str, Any] | None, unit: Unit) -> str:
    if not effect or as_float(effect.get("effect")) is None:
        return "—"
    lo, hi = as_float(effect.get("ci_low")), as_float(effect.get("ci_high"))
    text = unit.diff(as_float(effect.get("effect")), unit=False)
    if lo is None or hi is None:  # a trainer that ignores the seed: one measurement, no interval
        return text
    return f"{text} ({unit.diff(lo, False, False)} to {unit.diff(hi, False, False)})"


def culprit_rows(s: dict[str, Any], unit: Unit) -> list[dict[str, Any]]:
    """Each minimal culprit set: its keys, B -> A values, effect and explained fraction with CI."""
    diffs = differences_by_key(s)
    regression = s.get("regression") if isinstance(s.get("regression"), dict) else {}
    rows = []
    for keys in s.get("culprits") or []:
        keys = [str(k) for k in keys]
        effect = next((e for e in s.get("effects") or [] if sorted(e.get("keys") or []) == sorted(keys)), None)
        frac, lo, hi = explained(effect, regression)
        share = _repair_share(s, keys)
        if share is not None:  # the search's own repair share, its interval brought to 95 %
            frac, lo, hi = share_at_95(share)
        if deterministic(s):  # one measurement per point: an interval would be made up
            lo = hi = None
        rows.append({
            "keys": keys,
            "group": _culprit_group(s, keys),
            "changes": [{"key": k, "a": diffs.get(k, {}).get("a"), "b": diffs.get(k, {}).get("b"),
                         "kind": diffs.get(k, {}).get("kind")} for k in keys],
            "effect": None if effect is None else as_float(effect.get("effect")),
            "ci_low": None if effect is None else as_float(effect.get("ci_low")),
            "ci_high": None if effect is None else as_float(effect.get("ci_high")),
            "effect_text": effect_text(effect, unit),
            "explained_fraction": frac, "explained_ci_low": finite_or_none(lo),
            "explained_ci_high": finite_or_none(hi), "explained_ci_level": 95,
        })  # fmt: skip
    return rows


def deterministic(s: dict[str, Any]) -> bool:
    """Whether the search found that the trainer ignores the seed (its numbers have no intervals)."""
    seeds = s.get("seeds")
    return isinstance(seeds, dict) and bool(seeds.get("ignored"))


def _culprit_group(s: dict[str, Any], keys: list[str]) -> str | None:
    """The named group a culprit set is, when it is exactly one (`learning_rate`)."""
    diffs = differences_by_key(s)
    for f in s.get("factors") or []:
        if isinstance(f, dict) and sorted(f.get("keys") or []) == sorted(keys):
            return group_name(f, shown_keys([diffs[k] for k in keys if k in diffs], keys))
    return None


def _repair_share(s: dict[str, Any], keys: list[str]) -> dict[str, Any] | None:
    """details.shares["{f, g}"]["repair"] for the factor set covering exactly these keys."""
    shares = (s.get("details") or {}).get("shares")
    if not isinstance(shares, dict):
        return None
    names = [str(f.get("name")) for f in s.get("factors") or [] if set(f.get("keys") or []) & set(keys)]
    covered = {k for f in s.get("factors") or [] if str(f.get("name")) in names for k in f.get("keys") or []}
    entry = shares.get("{" + ", ".join(names) + "}") if covered == set(keys) else None
    repair = entry.get("repair") if isinstance(entry, dict) else None
    return repair if isinstance(repair, dict) and as_float(repair.get("share")) is not None else None


def not_searched(s: dict[str, Any]) -> list[str]:
    """Differences outside every factor (judged to have no effect, e.g. paths and num_workers)."""
    in_factors = {str(k) for f in s.get("factors") or [] for k in f.get("keys") or []}
    names = []
    for d in s.get("differences") or []:
        aliases = {str(n) for n in (d.get("key"), d.get("key_a"), d.get("key_b")) if n}
        if aliases and not aliases & in_factors:
            names.append(str(d.get("key")))
    return names


def trial_rows(groups: dict[str, list[TrialRecord]], unit: Unit) -> list[dict[str, Any]]:
    """Per variant: seeds, outcome counts, mean ± sd of ok values, throughput, memory, wall time."""
    rows = []
    for label, trials in groups.items():
        counts = {status: sum(t.status == status and not t.infra for t in trials) for status in STATUSES}
        values = ok_values(trials)
        speeds = [t.steps_per_s for t in trials if t.steps_per_s is not None]
        mems = [t.peak_gpu_mem_mb for t in trials if t.peak_gpu_mem_mb is not None]
        m = moments(values)
        rows.append({
            "variant": label,
            "seeds": sorted({t.seed for t in trials}),
            "trials": len(trials),
            **counts,
            "infra": sum(t.infra for t in trials),
            "interrupted": sum(t.status == "interrupted" for t in trials),
            "stopped_early": sum(t.stopped_early is not None for t in trials),
            "mean": m["mean"], "sd": m["sd"],
            "mean_text": "—" if m["mean"] is None else mean_sd(m, unit),
            "steps_per_s": statistics.median(speeds) if speeds else None,
            "peak_gpu_mem_mb": max(mems) if mems else None,
            "wall_s": statistics.fmean(t.wall_s for t in trials) if trials else None,
        })  # fmt: skip
    return rows


def round_rows(rounds: list[dict[str, Any]], trials: list[TrialRecord]) -> list[dict[str, Any]]:
    """Per round: each variant tested, how many trials, how many failed (diverged/crashed/timeout)."""
    status = {t.id: t.status for t in trials}
    out = []
    for i, r in enumerate(rounds, 1):
        cells: dict[str, dict[str, Any]] = {}
        for item in r.get("trials") or []:
            label, trial_id = (str(item[0]), str(item[2])) if isinstance(item, list) and len(item) >= 3 else (str(item), "")
            cell = cells.setdefault(label, {"variant": label, "trials": 0, "failed": 0})
            cell["trials"] += 1
            cell["failed"] += status.get(trial_id) in ("diverged", "crashed", "timeout")
        out.append({"round": int(r.get("round", i)), "variants": list(cells.values())})
    return out
