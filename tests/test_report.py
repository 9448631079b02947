"""The search report: golden Markdown, valid figures, tables that render, partial and JSON reports."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from markdown_it import MarkdownIt

from bisect_runs.cli import cli
from bisect_runs.report import build_report, write_report
from bisect_runs.report.environment import collect_environment, git_state
from bisect_runs.report.estimates import explained, share_at_95
from bisect_runs.report.figures import factors_at_b
from bisect_runs.report.units import Unit, metric_unit
from bisect_runs.report.verdict import changes_text

FIXTURE = Path(__file__).parent / "fixtures" / "report" / "search"
GOLDEN = Path(__file__).parent / "golden" / "report_search.md"
ENV = {
    "date": "2024-06-10T09:00:00+00:00",
    "host": "gpu-node-3",
    "platform": "Linux-6.1-x86_64",
    "python": "3.11.7",
    "torch": "2.3.1",
    "bisect_runs": "0.1.0",
    "gpus": ["NVIDIA A100-SXM4-80GB, 81920 MiB, 535.104.05"],
    "git": {"root": "/lab/speech", "commit": "0123456789abcdef0123456789abcdef01234567", "subject": "Run 11 config",
            "branch": "main", "dirty": True, "changed_files": ["train.py"], "untracked_files": 0},  # fmt: skip
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def search_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the fixture search as OUT_DIR `bisect-out`, with the current directory beside it."""
    out = tmp_path / "bisect-out"
    shutil.copytree(FIXTURE, out)
    monkeypatch.chdir(tmp_path)
    return out


def render(text: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(text)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_report_matches_golden(search_dir: Path) -> None:
    path = write_report("bisect-out", environment=ENV)
    text = path.read_text(encoding="utf-8")
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    expected = GOLDEN.read_text(encoding="utf-8")
    assert text == expected, (
        "report.md differs from tests/golden/report_search.md; if the change is intended, "
        "regenerate it with: UPDATE_GOLDEN=1 pytest tests/test_report.py"
    )


def test_report_states_the_verdict_with_numbers(search_dir: Path) -> None:
    text = write_report("bisect-out", environment=ENV, figures=False).read_text(encoding="utf-8")
    verdict = text.split("## Verdict", 1)[1].split("##", 1)[0]
    assert "B is worse than A by 0.078 (val_per 0.284 ± 0.00545 for B" in verdict  # val_per as logged, as the terminal says it
    # the search decides on 90 % intervals (80–102 %); the page reports every interval at 95 %
    assert "Reverting `learning_rate` (`lrStart/lrEnd`: 0.0008 -> 0.02) alone recovers 91 % (95 % CI 78–104 %) of the 0.078 gap in val_per." in verdict
    assert "90 %" not in text
    assert "`use_layer_norm`" in verdict  # the masking change is named
    assert "Partial report" not in text


def test_figure_links_resolve_to_wiki_width_pngs(search_dir: Path) -> None:
    text = write_report("bisect-out", environment=ENV).read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == ["figures/decisions.png", "figures/effects.png", "figures/learning_curves.png"]
    for link in links:
        width, height = png_size(search_dir / link)
        assert width == 800 and 300 <= height <= 1400, (link, width, height)


def test_tables_render_with_every_row(search_dir: Path) -> None:
    text = write_report("bisect-out", environment=ENV, figures=False).read_text(encoding="utf-8")
    html = render(text)
    tables = html.split("<table>")[1:]
    assert len(tables) == 2
    summary = json.loads((search_dir / "summary.json").read_text())
    differences_rows = tables[0].split("</table>")[0].count("<tr>")
    trial_rows = tables[1].split("</table>")[0].count("<tr>")
    assert differences_rows == 1 + len(summary["factors"])
    labels = {json.loads(line)["trial"]["label"] for line in (search_dir / "journal.jsonl").read_text().splitlines()}
    assert trial_rows == 1 + len(labels)
    assert tables[0].count("<td") == 10 * len(summary["factors"])  # no row lost or split by a stray pipe


def test_prior_is_judged_against_the_measurement(search_dir: Path) -> None:
    content = build_report("bisect-out", environment=ENV, figures=False)
    by_key = {"/".join(r["keys"]): r for r in content["differences"]}
    assert by_key["lrStart/lrEnd"]["measured"] == "culprit" and by_key["lrStart/lrEnd"]["prior"] == "right"
    assert by_key["optimizer"]["measured"] == "no effect" and by_key["optimizer"]["prior"] == "overrated"
    assert by_key["use_layer_norm"]["measured"] == "helpful"
    assert by_key["whiteNoiseSD"]["measured"] == "harmful"


def test_trials_count_outcomes_and_costs(search_dir: Path) -> None:
    content = build_report("bisect-out", environment=ENV, figures=False)
    rows = {r["variant"]: r for r in content["trials"]}
    assert rows["A"]["ok"] == 5 and rows["B"]["ok"] == 4
    assert sum(r["crashed"] for r in rows.values()) == 1
    assert sum(r["diverged"] for r in rows.values()) == 1
    assert content["costs"]["trials"] == 24
    walls = [json.loads(line)["outcome"]["wall_s"] for line in (search_dir / "journal.jsonl").read_text().splitlines()]
    assert content["costs"]["gpu_hours"] == pytest.approx(sum(walls) / 3600, abs=1e-4)  # one GPU per trial


def test_json_format_is_strict_json_with_the_same_content(search_dir: Path) -> None:
    path = write_report("bisect-out", fmt="json", environment=ENV)
    assert path.name == "report.json"
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["status"] == "complete"
    assert data["culprits"][0]["keys"] == ["lrStart", "lrEnd"]
    assert data["regression"]["effect"] == pytest.approx(0.078)
    assert [f["file"] for f in data["figures"]] == ["figures/effects.png", "figures/learning_curves.png", "figures/decisions.png"]
    md = write_report("bisect-out", environment=ENV, figures=False).read_text(encoding="utf-8")
    assert data["verdict"]["paragraph"] in md


def test_partial_report_from_the_journal_alone(search_dir: Path) -> None:
    (search_dir / "summary.json").unlink()
    lines = (search_dir / "journal.jsonl").read_text().splitlines()
    (search_dir / "journal.jsonl").write_text("\n".join(lines[:10]) + "\n" + lines[10][:40])  # torn last line
    text = write_report("bisect-out", environment=ENV).read_text(encoding="utf-8")
    assert text.splitlines()[2].startswith("> **Partial report.** The search has not finished (no summary.json)")
    assert "10 trials" in text
    content = build_report("bisect-out", environment=ENV, figures=False)
    assert content["status"] == "partial" and content["regression"]["from"] == "journal"
    assert content["regression"]["effect"] > 0  # B worse than A, measured from A and B trials so far
    assert render(text).count("<table>") == 1  # trials only: no differences without a summary


def test_incomplete_summary_is_marked_partial(search_dir: Path) -> None:
    summary = json.loads((search_dir / "summary.json").read_text())
    summary["complete"] = False
    (search_dir / "summary.json").write_text(json.dumps(summary))
    text = write_report("bisect-out", environment=ENV, figures=False).read_text(encoding="utf-8")
    assert "> **Partial report.** The search stopped early" in text


def test_not_reproduced_says_so_with_the_interval(search_dir: Path) -> None:
    summary = json.loads((search_dir / "summary.json").read_text())
    summary.update(reproduced=False, culprits=[], verdict="The regression did not reproduce at 200 steps.")
    summary["regression"].update(effect=0.002, ci_low=-0.004, ci_high=0.008, p_value=0.4)
    (search_dir / "summary.json").write_text(json.dumps(summary))
    paragraph = build_report("bisect-out", environment=ENV, figures=False)["verdict"]["paragraph"]
    assert "the regression did not reproduce" in paragraph
    assert "B − A = +0.002 (val_per" in paragraph and "95 % CI -0.004 to 0.008" in paragraph
    assert "Reverting" not in paragraph
    assert "The regression did not reproduce at 200 steps." in paragraph


def test_report_without_matplotlib_says_so_in_one_line(search_dir: Path) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from bisect_runs.report import write_report\n"
        f"write_report('bisect-out', environment={ENV!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=search_dir.parent)
    text = (search_dir / "report.md").read_text(encoding="utf-8")
    assert "Figures skipped: matplotlib is not installed (`pip install 'bisect-runs[report]'`)." in text
    assert "![" not in text and not (search_dir / "figures").exists()


def test_cli_report_writes_and_errors(search_dir: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["report", "bisect-out", "--no-figures"])
    assert result.exit_code == 0, result.output
    assert result.output == "Wrote bisect-out/report.md\n"
    assert (search_dir / "environment.json").exists()  # collected once, reused on regeneration
    result = runner.invoke(cli, ["report", "nowhere"])
    assert result.exit_code == 2
    assert result.output == "Error: nowhere: no such search output directory\n"
    (search_dir.parent / "empty").mkdir()
    result = runner.invoke(cli, ["report", "empty"])
    assert result.exit_code == 2
    assert result.output == (
        "Error: empty: neither summary.json nor journal.jsonl found: is this a search's --out directory?\n"
    )


def test_environment_reads_git_state(tmp_path: Path) -> None:
    import git

    repo = git.Repo.init(tmp_path)
    (tmp_path / "train.py").write_text("print('hi')\n")
    repo.index.add(["train.py"])
    repo.index.commit("first")
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "train.py").write_text("print('changed')\n")
    state = git_state(tmp_path / ".")
    assert state["dirty"] is True and state["changed_files"] == ["train.py"]
    assert state["commit"] == repo.head.commit.hexsha
    env = collect_environment(tmp_path)
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert git_state(tmp_path.parent / "no-repo-here") is None


def test_rates_keep_their_logged_units_and_explained_interval() -> None:
    """A rate logged in [0, 1] is shown as logged (0.078, as the terminal and summary.json say it), never as 7.8 points."""
    assert metric_unit("val_per", [0.2, 0.28]) == Unit()
    assert metric_unit("val_loss", [0.2, 0.28]) == Unit()
    assert metric_unit("wer", [20.5, 28.3]) == Unit(1.0, " %", " points")
    frac, lo, hi = explained({"effect": 0.071, "ci_low": 0.0665, "ci_high": 0.0755}, {"effect": 0.078, "ci_low": 0.0705, "ci_high": 0.0855})
    assert frac == pytest.approx(0.071 / 0.078)
    assert lo is not None and hi is not None and lo < frac < hi
    assert explained({"effect": 1.0, "explained_fraction": 0.5, "explained_ci_low": 0.4, "explained_ci_high": 0.6}, {}) == (0.5, 0.4, 0.6)


def test_commit_culprit_names_the_commit(search_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import git

    repo_dir = search_dir.parent / "trainer"
    repo = git.Repo.init(repo_dir)
    (repo_dir / "train.py").write_text("lr = 0.02\n")
    repo.index.add(["train.py"])
    sha = repo.index.commit("Lower the learning rate").hexsha
    monkeypatch.chdir(repo_dir)
    summary = json.loads((search_dir / "summary.json").read_text())
    summary.update(culprits=[[f"commit:{sha}"]], effects=[{"keys": [f"commit:{sha}"], "effect": 0.07, "ci_low": 0.06, "ci_high": 0.08}])
    (search_dir / "summary.json").write_text(json.dumps(summary))
    paragraph = build_report(search_dir, environment=ENV, figures=False)["verdict"]["paragraph"]
    assert f'The first bad commit is `{sha[:12]}` "Lower the learning rate"' in paragraph
    assert "files: `train.py`" in paragraph and "effect +0.07 (0.06 to 0.08)" in paragraph


def edge_ink(path: Path, border: int = 2) -> dict[str, float]:
    """Share of non-white pixels in each outer `border`-pixel strip of a PNG: text cut off by the edge shows here."""
    import matplotlib.image as mpimg

    rgb = mpimg.imread(path)[..., :3]
    ink = (rgb < 0.95).any(axis=-1)
    strips = {"top": ink[:border], "bottom": ink[-border:], "left": ink[:, :border], "right": ink[:, -border:]}
    return {side: float(strip.mean()) for side, strip in strips.items()}


def test_figures_keep_titles_and_labels_inside_the_image(search_dir: Path, tmp_path: Path) -> None:
    """Titles, tick labels and the trial counts right of the decision matrix are not cut off at wiki width."""
    pytest.importorskip("matplotlib")
    from bisect_runs.report.figures import RoundCell, plot_decisions, plot_overlay, plot_rounds

    write_report("bisect-out", environment=ENV)
    pngs = sorted((search_dir / "figures").glob("*.png"))
    factors = ["optim.lr", "optim.weight_decay", "model.layernorm", "data.augment", "optim.grad_clip"]
    labels = ["A", "B", "A + {optim.lr, optim.grad_clip}", "B - {optim.weight_decay, optim.grad_clip}"]
    cells = [RoundCell(i // 2 + 1, label, 1, i % 2, factors_at_b(label, factors)) for i, label in enumerate(labels)]
    pngs.append(plot_decisions(tmp_path / "decisions_long_labels.png", cells, factors))  # cut off at the right before
    commits = [RoundCell(r, f"commit {r:08x}", 2, r % 3) for r in range(1, 13)]
    pngs.append(plot_rounds(tmp_path / "rounds.png", commits, 12))
    runs = {"A: run-20240101_120000-nbs1e6hk": [(s, 0.9) for s in range(0, 31001, 1000)],
            "B: run-20240301_090000-abc123de": [(s, 0.8) for s in range(15000, 100001, 1000)]}  # fmt: skip
    pngs.append(plot_overlay(tmp_path / "overlay.png", "train/spectrum_loss", runs, 15000, "min", "apart from the first shared step (15,000)"))
    for png in pngs:
        ink = edge_ink(png)
        assert max(ink.values()) == 0.0, f"{png.name}: something is cut off at the image edge ({ink})"


def test_figure_labels_spell_out_control_characters(tmp_path: Path) -> None:
    """Config-derived labels with ESC draw without a missing-glyph warning: the escape is spelled `\\x1b`."""
    pytest.importorskip("matplotlib")
    from bisect_runs.report import figures as fig
    from bisect_runs.report.figures import CurveGroup, EffectBar, RoundCell

    key, metric = "optim.lr\x1b[2J", "loss\x1b[31m"
    history = [(s, 1.0 / (s + 1)) for s in range(5)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph 27 missing" for a raw ESC
        fig.plot_effects(tmp_path / "e.png", [EffectBar(key, 1.0, 0.5, 1.5, True)], metric)
        fig.plot_learning_curves(tmp_path / "l.png", metric, [CurveGroup(f"A + {{{key}}}", [history, history])])
        fig.plot_decisions(tmp_path / "d.png", [RoundCell(1, f"B - {{{key}}}", 1, 0, frozenset())], [key])
        fig.plot_rounds(tmp_path / "r.png", [RoundCell(1, key, 2)], 1)
        fig.plot_overlay(tmp_path / "o.png", metric, {"A: " + key: history, "B: x": history}, 2, "min", key)
    assert fig.variant_name(f"A + {{{key}}}") == "A + {optim.lr\\x1b[2J}"


def test_explained_share_is_reported_at_95_percent() -> None:
    value, lo, hi = share_at_95({"share": 0.9, "low": 0.8, "high": 1.0})  # a 90 % interval, as the search keeps it
    assert value == 0.9 and lo == pytest.approx(0.9 - 0.1 * 1.959964 / 1.644854) and hi == pytest.approx(0.9 + 0.1 * 1.959964 / 1.644854)
    assert share_at_95({"share": 0.9, "low": 0.8, "high": 1.0, "level": 0.95}) == (0.9, pytest.approx(0.8), pytest.approx(1.0))
    assert share_at_95({"share": 0.9, "low": None, "high": float("inf")}) == (0.9, None, None)


SEARCH_EVENT = {
    "event": "search", "good": "configs/baseline", "bad": "configs/run11", "metric": "val_per", "mode": "min",
    "steps": 200, "strategy": "auto", "executor": "local",
    "command": "python -m bisect_runs.demo.speech --config {config} --run-dir {run_dir} --steps {steps} --seed {seed}",
    "factors": [{"name": "learning_rate", "keys": ["lrStart", "lrEnd"]}, {"name": "optimizer", "keys": ["optimizer"]}],
}  # fmt: skip


def test_interrupted_search_report_says_how_to_continue(search_dir: Path) -> None:
    """Without summary.json the page still names A, B, the metric and the factors, and gives the --resume command."""
    (search_dir / "summary.json").unlink()
    lines = (search_dir / "journal.jsonl").read_text().splitlines()[:6]
    (search_dir / "journal.jsonl").write_text("\n".join([json.dumps(SEARCH_EVENT), *lines]) + "\n")
    result = CliRunner().invoke(cli, ["report", "bisect-out", "--no-figures"])
    assert result.exit_code == 0, result.output
    text = (search_dir / "report.md").read_text(encoding="utf-8")
    assert "No culprit has been decided yet: the search stopped before a verdict." in text
    resume = text.split("Continue the search where it stopped", 1)[1].split("```sh\n", 1)[1].split("\n", 1)[0]
    assert resume.startswith("bisect-runs search --good configs/baseline --bad configs/run11 --command 'python -m bisect_runs.demo.speech")
    assert resume.endswith("--metric val_per --mode min --steps 200 --strategy auto --out bisect-out --resume")
    assert "- Good config (A): `configs/baseline`; regressed config (B): `configs/run11`" in text
    assert "| 1 | — | `learning_rate` (`lrStart`, `lrEnd`) |" in text and "not measured" in text  # the factors being searched
    assert "Collected when this page was written" in text
    assert not (search_dir / "environment.json").exists()  # the search records its own when it ends


def test_reproduce_names_the_directory_the_search_ran_in(search_dir: Path) -> None:
    content = build_report("bisect-out", environment={**ENV, "cwd": "/lab/speech"}, figures=False)
    assert content["reproduce"]["cwd"] == "/lab/speech"
    from bisect_runs.report.markdown import render_markdown

    assert "Rerun the whole search from `/lab/speech` (same trials" in render_markdown(content)
    report_time = build_report("bisect-out", environment={**ENV, "cwd": "/elsewhere", "collected_by": "report"}, figures=False)
    assert report_time["reproduce"]["cwd"] is None


def test_cost_reads_in_seconds_minutes_or_hours() -> None:
    from bisect_runs.report.markdown import duration

    assert [duration(h) for h in (0.0004, 0.25, 3.5)] == ["1.4 s", "15 min", "3.50 h"]


def test_null_is_a_value_and_absent_is_a_missing_key() -> None:
    assert changes_text([{"key": "clip", "a": 1.0, "b": None, "kind": "changed"}]) == "`clip` (null -> 1)"
    assert changes_text([{"key": "clip", "a": None, "b": 1.5, "kind": "added"}]) == "`clip` (1.5 -> absent)"
    assert changes_text([{"key": "ln", "a": False, "b": True, "kind": "added", "a_default": True}]) == (
        "`ln` (true -> absent (default false))"
    )


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"journal.jsonl": "garbage\n{torn"}, "journal.jsonl: no readable journal line (and no summary.json)"),
        ({"summary.json": "{}"}, "summary.json: expected a search summary (a non-empty JSON object)"),
    ],
)
def test_report_of_an_unreadable_out_dir_says_what_is_wrong(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().startswith("Error: ") and message in result.output


# -- the report says only what the runs and the decision say --------------------------------


def _edit_summary(search_dir: Path, **changes: object) -> dict[str, object]:
    summary = json.loads((search_dir / "summary.json").read_text())
    summary.update(changes)
    (search_dir / "summary.json").write_text(json.dumps(summary))
    return summary


def test_an_effect_the_decision_did_not_find_significant_is_not_called_harmful(search_dir: Path) -> None:
    """summary.json's Holm-corrected p decides, as it does for the terminal verdict: CI above 0 is not enough."""
    summary = json.loads((search_dir / "summary.json").read_text())
    for e in summary["effects"]:
        if e["factors"] == ["whiteNoiseSD"]:
            e["p_value"] = 0.25
        if e["factors"] == ["use_layer_norm"]:
            e["p_value"] = 0.12
    _edit_summary(search_dir, effects=summary["effects"])
    content = build_report("bisect-out", environment=ENV, figures=False)
    measured = {r["factor"]: r["measured"] for r in content["differences"]}
    assert measured["whiteNoiseSD"] == "no effect" and measured["use_layer_norm"] == "no effect"
    assert "Helpful changes that mask" not in content["verdict"]["paragraph"]


def test_a_factor_has_one_name_in_table_prose_and_figures(search_dir: Path) -> None:
    from bisect_runs.report.rows import factor_label

    content = build_report("bisect-out", environment=ENV, figures=False)
    rows = {r["factor"]: r for r in content["differences"]}
    assert factor_label(rows["learning_rate"]) == "learning_rate"  # the effects figure's bar, as labels say {learning_rate}
    assert factor_label(rows["l2_decay -> weight_decay"]) == "l2_decay -> weight_decay"  # not `weight_decay`
    assert rows["learning_rate"]["group"] == "learning_rate" and rows["learning_rate"]["names"] == ["lrStart", "lrEnd"]
    assert "Reverting `learning_rate` (`lrStart/lrEnd`: 0.0008 -> 0.02)" in content["verdict"]["paragraph"]


def test_a_partial_report_states_no_effect_of_a_variant_that_never_ran(search_dir: Path) -> None:
    """A budget-stopped search's best guess is named, but 'reverting it recovers N %' needs a B - {it} run."""
    _edit_summary(search_dir, complete=False)
    journal = search_dir / "journal.jsonl"
    kept = [line for line in journal.read_text().splitlines() if '"B - {learning_rate}"' not in line]
    journal.write_text("\n".join(kept) + "\n")
    paragraph = build_report("bisect-out", environment=ENV, figures=False)["verdict"]["paragraph"]
    assert "recovers" not in paragraph
    assert ("Best guess so far: `learning_rate` (`lrStart/lrEnd`: 0.0008 -> 0.02); no run of B with it reverted "
            "(`B - {learning_rate}`) has finished yet, so no effect of reverting it is stated.") in paragraph
