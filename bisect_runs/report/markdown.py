"""The report as a wiki page: GitHub/GitLab-flavoured Markdown, figures linked relatively."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bisect_runs.escaping import markdown
from bisect_runs.report.units import Unit, num

MD_SPECIALS = str.maketrans({"|": "\\|", "\n": " "})


def render_markdown(c: dict[str, Any]) -> str:
    """The whole page, sections in the order a reader needs them: verdict first."""
    unit = Unit(c["unit"]["scale"], _pad(c["unit"]["value_suffix"]), _pad(c["unit"]["difference"]))
    sections = [
        [f"# {c['title']}", ""],
        _partial_banner(c),
        _verdict(c),
        _seeds(c),
        _differences(c),
        _trials(c, unit),
        _figures(c),
        _reproduce(c),
        _environment(c),
    ]
    return markdown("\n".join(line for section in sections for line in section).rstrip() + "\n")


def _partial_banner(c: dict[str, Any]) -> list[str]:
    if c["status"] == "complete":
        return []
    return [f"> **Partial report.** {c['partial_reason']}", ""]


def _verdict(c: dict[str, Any]) -> list[str]:
    lines = ["## Verdict", ""]
    good, bad = c.get("good"), c.get("bad")
    if good or bad:
        lines += [f"A (good): `{good}` · B (regressed): `{bad}` · metric: `{c['metric']}` ({_direction(c['mode'])})", ""]
    note = metric_note(str(c.get("metric") or ""))
    if note:
        lines += [f"*What `{c['metric']}` is:* {note}", ""]
    lines += [c["verdict"]["paragraph"] or "No verdict yet: too few trials have finished.", ""]
    details = c.get("details") or {}
    bullets = []
    if details.get("classification"):
        bullets.append(f"- Classification: {details['classification']}")
    rates = details.get("divergence_rates")
    if isinstance(rates, dict) and any(_positive(v) for v in rates.values()):
        shown = ", ".join(f"{_cell(k)}: {float(v) * 100:.0f} %" for k, v in rates.items() if _positive(v))
        bullets.append(f"- Failed (diverged, crashed or timed out) share of trials: {shown}")
    if details.get("hint"):
        bullets.append(f"- Hint: {details['hint']}")
    bullets += _control_line(details.get("control"))
    bullets += _part_links(details.get("parts"))
    return lines + (bullets + [""] if bullets else [])


def _names_cell(r: dict[str, Any]) -> str:
    """The factor's keys; a named group is shown by its name first: `learning_rate` (`lrStart`, `lrEnd`)."""
    names = ", ".join(f"`{k}`" for k in r["names"])
    return f"`{r['group']}` ({names})" if r.get("group") else names


def _control_line(control: Any) -> list[str]:
    """What the good config exactly as given showed against B (it runs whenever differences were held)."""
    if not isinstance(control, dict):
        return []
    held = ", ".join(f"`{_cell(str(name))}`" for name in control.get("held") or [])
    seeds = control.get("seeds")
    if control.get("held_searched"):
        text = (f"the good config exactly as given beat B, but A with the differences judged to have no effect "
                f"held at B's values ({held}) did not, so those were searched too.")
    elif control.get("complete") is False and not control.get("beats_b"):
        text = f"the budget ran out before the good config exactly as given was judged against B (held: {held})."
    elif control.get("beats_b"):
        text = f"the good config exactly as given, run beside B over {seeds} seeds, beats B too (held: {held})."
    else:
        text = (f"the good config exactly as given, run beside B over {seeds} seeds, did not beat B; "
                f"the held differences ({held}) do not hide a regression.")
    return [f"- Control: {text}"]


def _seeds(c: dict[str, Any]) -> list[str]:
    """A trainer that ignored the seed: say so beside the verdict (its intervals would be made up)."""
    seeds = c.get("seeds") or {}
    if not seeds.get("ignored"):
        return []
    return ["## Seeds", "", f"> **{seeds['note']}**", ""]


PART_TITLES = {"config": "Config differences at the bad commit", "code": "Code, bisected with the good config"}


def _part_links(parts: Any) -> list[str]:
    """A combined search: one line per part with its own report."""
    if not isinstance(parts, dict):
        return []
    lines = []
    for name, part in parts.items():
        if not isinstance(part, dict) or not isinstance(part.get("out"), str):
            continue
        title = PART_TITLES.get(name, name)
        verdict = _cell(str(part.get("verdict") or "").strip())
        lines.append(f"- {title}: {verdict} ([report]({part['out']}/report.md))")
    return lines


def _differences(c: dict[str, Any]) -> list[str]:
    rows = c["differences"]
    lines = ["## Differences: prior impact against measured effect", ""]
    if not rows:
        return lines + ["No searched differences are recorded (no summary.json yet).", ""]
    lines += [
        "Ranked by the prior impact of `bisect-runs diff`; the measured effect is the change in "
        f"`{c['metric']}` the difference causes (95 % CI, positive = worse), and the last column says "
        "whether the prior was right.",
        "",
        f"| # | prior | key(s) | A | B | why (prior) | measured effect{_unit_header(c)} | explains | measured | prior was |",
        "|---:|---|---|---|---|---|---|---:|---|---|",
    ]
    for r in rows:
        frac = r.get("explained_fraction")
        lines.append(
            "| " + " | ".join(_cell(x) for x in (
                str(r["rank"]), r["level"] or "—", _names_cell(r),
                r["a_text"], r["b_text"], r["reason"] or "", r["effect_text"],
                "—" if frac is None else f"{frac * 100:.0f} %", _bold_if(r["measured"], r["measured"] == "culprit"),
                r["prior"],
            )) + " |"
        )  # fmt: skip
    lines.append("")
    if c.get("not_searched"):
        names = ", ".join(f"`{k}`" for k in c["not_searched"])
        lines += [f"Not searched (judged to have no effect on results): {names}.", ""]
    return lines


def _trials(c: dict[str, Any], unit: Unit) -> list[str]:
    lines = ["## Trials", ""]
    rows = c["trials"]
    if not rows:
        return lines + ["No trial has finished yet.", ""]
    costs = c["costs"]
    stopped = (f" ({costs['stopped_early']} stopped early once their outcome was clear against A's and B's curves: "
               "their values are projections to the full budget)") if costs.get("stopped_early") else ""
    lines += [
        f"{costs['trials']} trials{_rounds_text(c)}, {c['steps']} steps each{stopped}. "
        f"Mean ± sd over the trials that finished `ok`; failed trials count as the worst outcome in the statistics.",
        "",
        f"| variant | seeds | ok | diverged | crashed | timeout | {c['metric']} mean ± sd | steps/s | peak GPU MB | wall s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        extra = []
        if r["infra"]:
            extra.append(f"{r['infra']} infra")
        if r["interrupted"]:
            extra.append(f"{r['interrupted']} interrupted")
        if r.get("stopped_early"):
            extra.append(f"{r['stopped_early']} stopped early")
        variant = r["variant"] + (f" ({', '.join(extra)})" if extra else "")
        lines.append(
            "| " + " | ".join(_cell(x) for x in (
                variant, seed_ranges(r["seeds"]), str(r["ok"]), str(r["diverged"]), str(r["crashed"]),
                str(r["timeout"]), r["mean_text"], _opt(r["steps_per_s"]), _opt(r["peak_gpu_mem_mb"]),
                _opt(r["wall_s"]),
            )) + " |"
        )  # fmt: skip
    return lines + [""]


def _figures(c: dict[str, Any]) -> list[str]:
    lines = ["## Figures", ""]
    if c.get("figures_note"):
        lines += [c["figures_note"], ""]
    for fig in c.get("figures") or []:
        lines += [f"![{fig['title']}]({fig['file']})", "", f"*{fig['caption']}*", ""]
    return lines if len(lines) > 2 else []


def _reproduce(c: dict[str, Any]) -> list[str]:
    r = c["reproduce"]
    lines = ["## How to reproduce", ""]
    where = f" from `{r['cwd']}`" if r.get("cwd") else ""
    if c["status"] != "complete":
        how = " without the budget that stopped it (or with a larger one)" if r.get("budget_stop") else ""
        lines += [f"Continue the search where it stopped{where}{how} (finished trials are not rerun):", "", "```sh", r["resume"], "```", ""]
        where = ""
    lines += [f"Rerun the whole search{where} (same trials, same seeds; finished ones are reused with `--resume`):", "", "```sh", r["search"], "```", ""]
    if r.get("full") and r["full"] != r["search"]:
        what = ("configs, trainer command, metric, mode, steps, strategy and every other setting that is not a default; "
                "bisect.yaml is not read" if r.get("all_flags") else "configs, trainer command, metric, mode, steps, strategy")
        lines += [f"The same search with every setting spelled out ({what}):", "", "```sh", r["full"], "```", ""]
    lines += ["Regenerate this page without running anything:", "", "```sh", r["report"], "```", ""]
    lines += [
        f"- Good config (A): `{r['good']}`; regressed config (B): `{r['bad']}`",
        f"- Budget: {r['steps']} steps per trial{_resumed(r)}; strategy: `{r['strategy']}`; seeds used: {seed_ranges(r['seeds'])}",
        f"- Statistics: {r['statistics']}",
        "",
    ]
    if r["trials"]:
        lines += ["One trial of each key variant, exactly as it ran (its config is linked):", ""]
        for t in r["trials"]:
            lines.append(f"- **{_cell(t['variant'])}**, seed {t['seed']}: config [`{t['config']}`]({t['config']})")
            if t["command"]:
                lines += ["", "  ```sh", f"  {t['command']}", "  ```"]
        lines.append("")
    return lines


def _environment(c: dict[str, Any]) -> list[str]:
    env = c.get("environment")
    costs = c["costs"]
    lines = ["## Environment", ""]
    if env:
        git = env.get("git")
        if git and git.get("commit"):
            state = "dirty" if git.get("dirty") else "clean"
            branch = f" on `{git['branch']}`" if git.get("branch") else ""
            changed = git.get("changed_files") or []
            more = f" (changed: {', '.join(f'`{f}`' for f in changed[:8])})" if changed and git.get("dirty") else ""
            lines.append(f"- Trainer repository: `{git.get('root')}` at `{git['commit'][:12]}`{branch} ({git.get('subject', '')}), {state}{more}")
        elif git is None:
            lines.append("- Trainer repository: not a git repository")
        lines.append(f"- Python {env.get('python')}; torch {env.get('torch') or 'not installed'}; bisect-runs {env.get('bisect_runs')}")
        gpus = env.get("gpus") or []
        lines.append(f"- GPUs: {'; '.join(gpus) if gpus else 'none'}")
        lines.append(f"- Host: `{env.get('host')}` ({env.get('platform')}); date: {env.get('date')}")
        if env.get("collected_by") == "report":
            lines.append("- (Collected when this page was written: the search has not recorded its own environment yet.)")
    span = costs.get("span_hours")
    span_text = f", {duration(span)} wall clock" if isinstance(span, (int, float)) else ""
    gpu = f"{costs['gpu_hours']:.2f} GPU-hours" if costs["gpu_hours"] else "no GPU time"
    cpu = f", {duration(costs['cpu_trial_hours'])} of CPU-only trials" if costs["cpu_trial_hours"] else ""
    lines.append(f"- Cost: {costs['trials']} trials, {trial_steps(costs)}, {gpu}{cpu}{span_text}")
    return lines + [""]


def _resumed(r: dict[str, Any]) -> str:
    """', each resumed from checkpoint `ckpt.pt` (step 20) and ran steps 20-40', when the trials shared a prefix."""
    ckpt = r.get("checkpoint")
    if not isinstance(ckpt, dict):
        return ""
    return f", each resumed from checkpoint `{ckpt.get('path')}` (step {ckpt.get('step')}) and ran steps {ckpt.get('step')}-{r['steps']}"


def trial_steps(costs: dict[str, Any]) -> str:
    """'3600 trial-steps', or '2600 trial-steps (11 trials stopped early; 3600 at the full budget)'."""
    steps = f"{costs.get('trial_steps', 0)} trial-steps"
    if not costs.get("stopped_early"):
        return steps
    return f"{steps} ({costs['stopped_early']} trials stopped early; {costs['full_budget_steps']} at the full budget)"


def duration(hours: float) -> str:
    """0.0004 h -> '1.4 s', 0.25 h -> '15 min', 3.5 h -> '3.50 h'."""
    seconds = hours * 3600
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{hours:.2f} h"


# -- small pieces ----------------------------------------------------------------------


def seed_ranges(seeds: list[int]) -> str:
    """[0, 1, 2, 3, 7] -> '0–3, 7'."""
    if not seeds:
        return "—"
    parts, start, prev = [], seeds[0], seeds[0]
    for s in [*seeds[1:], None]:
        if s is not None and s == prev + 1:
            prev = s
            continue
        parts.append(str(start) if start == prev else f"{start}–{prev}")
        if s is not None:
            start = prev = s
    return ", ".join(parts)


def _unit_header(c: dict[str, Any]) -> str:
    return f" ({c['unit']['difference']}, 95 % CI)" if c["unit"]["difference"] else " (95 % CI)"


def _cell(text: str) -> str:
    return str(text).translate(MD_SPECIALS)


def _opt(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else num(x)


def _bold_if(text: str, bold: bool) -> str:
    return f"**{text}**" if bold else text


def _direction(mode: str | None) -> str:
    return {"min": "lower is better", "max": "higher is better"}.get(mode or "", "direction not recorded")


def _rounds_text(c: dict[str, Any]) -> str:
    return f" in {len(c['rounds'])} rounds" if c["rounds"] else ""


def _pad(text: str) -> str:
    return f" {text}" if text else ""


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def metric_note(name: str) -> str | None:
    """The explanation of a well-known metric (PER, WER, NLL) from metric_notes.yaml, if one matches."""
    import re

    import yaml

    notes = yaml.safe_load((Path(__file__).with_name("metric_notes.yaml")).read_text(encoding="utf-8"))
    return next((str(n["note"]) for n in notes if re.search(n["pattern"], name, re.IGNORECASE)), None)
