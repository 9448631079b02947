"""Options the docs promise, each exercised end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bisect_runs.cli import cli


def write_jsonl(run: Path, name: str, history: list[tuple[int, float]]) -> Path:
    """A run directory with one metric series in metrics.jsonl."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, name: v}) + "\n" for s, v in history))
    return run


def compare_json(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["compare", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_compare_shift_b_aligns_a_run_that_logged_from_zero(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a", "loss", [(s, 1.0) for s in range(15000, 20001, 100)])
    b = write_jsonl(tmp_path / "b", "loss", [(s, 1.0) for s in range(0, 5001, 100)])
    m = compare_json(str(a), str(b), "--shift-b", "15000")["metrics"][0]
    assert (m["common_step"], m["delta"]) == (20000, 0.0)
    unshifted = CliRunner().invoke(cli, ["compare", str(a), str(b), "--steps", "15000:"])
    assert unshifted.exit_code == 2 and "no shared metric has steps" in unshifted.output


def test_compare_smooth_and_noise_k_reach_the_comparison(tmp_path: Path) -> None:
    steps = range(0, 2001, 100)
    a = write_jsonl(tmp_path / "a", "loss", [(s, 1.0 + (0.01 if s % 200 else -0.01)) for s in steps])
    b = write_jsonl(tmp_path / "b", "loss", [(s, 1.0 + (0.01 if s % 200 else -0.01) + (0.5 if s >= 1000 else 0.0)) for s in steps])
    data = compare_json(str(a), str(b), "--smooth", "3", "--noise-k", "4")
    assert (data["smooth"], data["k"]) == (3, 4.0)
    assert data["metrics"][0]["better"] == "A"


def python_blocks(doc: Path) -> list[str]:
    """The ```python blocks of a docs page, in order."""
    parts = doc.read_text(encoding="utf-8").split("```python\n")[1:]
    return [part.split("```", 1)[0] for part in parts]


def test_docs_diff_library_snippet_runs_and_gives_what_it_says(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)  # the snippet names configs/ relative to the repository
    (block,) = python_blocks(root / "docs" / "diff.md")
    namespace: dict = {}
    exec(compile(block, "docs/diff.md", "exec"), namespace)
    result = namespace["result"]
    assert (result.factors[0].name, result.factors[0].reason) == ("lrStart+lrEnd", "25x lower learning rate")
    assert "| level |" in capsys.readouterr().out
