"""`compare`: every run-directory format, step alignment, divergence beyond noise, CLI output and errors."""

from __future__ import annotations

import csv
import json
import math
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from markdown_it import MarkdownIt

from bisect_runs.cli import cli
from bisect_runs.compare import compare_runs, parse_window
from bisect_runs.divergence import find_divergence
from bisect_runs.errors import SettingsError
from bisect_runs.metric_direction import metric_mode, parse_modes
from bisect_runs.runs import detect_run, read_run

NaN_TOKEN = "NaN!"  # written as a bare NaN token, as W&B does


def curve(steps: range, seed: int, shift_at: int | None = None, shift: float = 0.0, noise: float = 0.01) -> list[tuple[int, float]]:
    """A decaying loss with Gaussian noise; after `shift_at` it is `shift` higher."""
    rng = np.random.default_rng(seed)
    return [(s, 2.0 * math.exp(-s / 4000) + 0.5 + (shift if shift_at is not None and s >= shift_at else 0.0) + rng.normal(0, noise)) for s in steps]


def write_jsonl(run: Path, series: dict[str, list[tuple[int, float]]]) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    rows: dict[int, dict[str, float]] = {}
    for name, history in series.items():
        for s, v in history:
            rows.setdefault(s, {"step": s})[name] = v
    (run / "metrics.jsonl").write_text("".join(json.dumps(rows[s]) + "\n" for s in sorted(rows)))
    return run


def test_divergence_found_where_runs_part_and_not_in_noise(tmp_path: Path) -> None:
    steps = range(0, 10001, 100)
    a = write_jsonl(tmp_path / "a", {"val_loss": curve(steps, 1)})
    b = write_jsonl(tmp_path / "b", {"val_loss": curve(steps, 2, shift_at=6000, shift=0.05)})
    same = write_jsonl(tmp_path / "same", {"val_loss": curve(steps, 3)})
    parted = compare_runs(a, b).metrics[0]
    assert parted.divergence.step is not None and 5700 <= parted.divergence.step <= 6100
    assert parted.better == "A" and parted.delta == pytest.approx(0.05, abs=0.03)
    assert parted.divergence.noise == pytest.approx(0.01 * math.sqrt(2), rel=0.3)  # two runs' noise
    noise_only = compare_runs(a, same).metrics[0]
    assert noise_only.divergence.step is None and noise_only.better == "tie"


def test_divergence_needs_enough_points_and_handles_identical_runs() -> None:
    assert find_divergence(np.array([1.0, 2.0]), np.array([0.0, 1.0])).step is None
    grid = np.arange(10.0)
    assert find_divergence(grid, np.zeros(10)).step is None
    apart = find_divergence(grid, np.full(10, 0.3))
    assert apart.step == 0 and apart.note.startswith("apart")


def test_checkpoint_runs_are_aligned_by_step_in_the_window(tmp_path: Path) -> None:
    old = write_jsonl(tmp_path / "old", {"train/token_accuracy": [(s, 0.48) for s in range(0, 31001, 500)]})
    new = write_jsonl(tmp_path / "new", {"train/token_accuracy": [(s, 0.48 + (s - 15000) / 1e5) for s in range(15000, 100001, 500)]})
    cmp = compare_runs(old, new, steps=parse_window("15k:45000"))
    m = cmp.metrics[0]
    assert (m.a.first_step, m.a.last_step) == (15000, 31000)
    assert (m.b.first_step, m.b.last_step) == (15000, 45000)
    assert m.common_step == 31000 and m.delta == pytest.approx(0.16)
    assert m.mode == "max" and m.better == "B" and m.b.best_step == 45000
    assert m.divergence.step is not None and m.divergence.step <= 17000


def test_shift_aligns_a_run_that_logged_from_zero(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a", {"loss": [(s, 1.0) for s in range(15000, 20001, 100)]})
    b = write_jsonl(tmp_path / "b", {"loss": [(s, 1.0) for s in range(0, 5001, 100)]})
    with pytest.raises(SettingsError, match="no shared metric has steps"):
        compare_runs(a, b, steps=parse_window("15000:"))
    m = compare_runs(a, b, shift_b=15000).metrics[0]
    assert m.common_step == 20000 and m.delta == 0.0


def test_mode_from_flag_or_name() -> None:
    assert metric_mode("val_per") == ("min", "name")
    assert metric_mode("eval/accuracy") == ("max", "name")
    assert metric_mode("steps_per_s") == ("max", "name")
    assert metric_mode("lr") == (None, "unknown")
    assert metric_mode("lr", parse_modes(["lr=max"])) == ("max", "flag")
    assert metric_mode("val_per", parse_modes(["max"])) == ("max", "flag")
    with pytest.raises(SettingsError, match="expected METRIC=min"):
        parse_modes(["loss=lowest"])
    with pytest.raises(SettingsError, match="START is after END"):
        parse_window("5:1")


def test_wandb_run_directory(tmp_path: Path) -> None:
    files = tmp_path / "wandb" / "run-20240101_000000-abc123" / "files"
    files.mkdir(parents=True)
    lines = [{"_step": i, "_runtime": i * 2.0, "trainer/global_step": 100 * i, "train/loss": 1.0 / (i + 1),
              "media": {"_type": "histogram", "values": [1, 2]}} for i in range(5)]  # fmt: skip
    lines.append({"_step": 5, "train/loss": NaN_TOKEN})
    (files / "wandb-history.jsonl").write_text("".join(json.dumps(x).replace('"NaN!"', "NaN") + "\n" for x in lines))
    (files / "wandb-summary.json").write_text(json.dumps({"train/loss": 0.2, "best_acc": 0.9, "_step": 5}))
    run = read_run(files.parent)
    assert run.kind == "wandb"
    assert run.series["train/loss"][:2] == [(0, 1.0), (100, 0.5)]
    assert math.isnan(run.series["train/loss"][-1][1])
    assert run.series["best_acc"] == [(400, 0.9)]  # summary-only metric at the last step
    assert "media/values" not in run.series and "_runtime" not in run.series


def test_mlflow_run_directory(tmp_path: Path) -> None:
    metrics = tmp_path / "mlruns" / "0" / "f00d" / "metrics"
    (metrics / "val").mkdir(parents=True)
    (metrics / "loss").write_text("1700000000000 0.9 0\n1700000000100 0.5 10\n")
    (metrics / "val" / "acc").write_text("1700000000000 0.1 0\n1700000000100 0.4 10\n")
    run = read_run(metrics.parent)
    assert run.kind == "mlflow"
    assert run.series == {"loss": [(0, 0.9), (10, 0.5)], "val/acc": [(0, 0.1), (10, 0.4)]}


def test_csv_and_tensorboard_runs(tmp_path: Path) -> None:
    lightning = tmp_path / "csv" / "lightning_logs" / "version_0"
    lightning.mkdir(parents=True)
    with (lightning / "metrics.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "step", "val_loss", "train_loss"])
        writer.writerows([[0, 10, "", 1.5], [0, 10, 1.2, ""], [1, 20, 0.9, 1.1]])
    run = read_run(tmp_path / "csv")
    assert run.kind == "csv" and run.series["val_loss"] == [(10, 1.2), (20, 0.9)]

    tb = pytest.importorskip("torch.utils.tensorboard")
    writer = tb.SummaryWriter(str(tmp_path / "tb"))
    for step in (0, 10, 20):
        writer.add_scalar("val/loss", 1.0 - step / 100, step)
    writer.close()
    run = read_run(tmp_path / "tb")
    assert run.kind == "tensorboard"
    assert [s for s, _ in run.series["val/loss"]] == [0, 10, 20]
    assert detect_run(tmp_path / "csv" / "lightning_logs" / "version_0" / "metrics.csv")[0] == "csv"


def test_cli_markdown_with_plots(tmp_path: Path) -> None:
    steps = range(0, 5001, 100)
    a = write_jsonl(tmp_path / "a", {"val_per": curve(steps, 1), "lr": [(s, 1e-3) for s in steps]})
    b = write_jsonl(tmp_path / "b", {"val_per": curve(steps, 2, shift_at=2000, shift=0.1), "grad_norm": [(0, 1.0)]})
    out = tmp_path / "wiki" / "compare.md"
    result = CliRunner().invoke(cli, ["compare", str(a), str(b), "--format", "markdown", "-o", str(out), "--plot", str(tmp_path / "wiki" / "plots")])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    html = MarkdownIt("commonmark").enable("table").render(text)
    assert html.count("<table>") == 1 and html.count("<tr>") == 2  # header + the one shared metric
    assert "Only in A: lr." in text and "Only in B: grad_norm." in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links == ["plots/val_per.png"]
    data = (out.parent / links[0]).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">I", data[16:20])[0] == 800


def test_cli_table_and_json(tmp_path: Path) -> None:
    steps = range(0, 3001, 100)
    a = write_jsonl(tmp_path / "a", {"val_nll": curve(steps, 1)})
    b = write_jsonl(tmp_path / "b", {"val_nll": curve(steps, 2, shift_at=1500, shift=0.14)})
    runner = CliRunner()
    table = runner.invoke(cli, ["compare", str(a), str(b)])
    assert table.exit_code == 0
    assert table.output.splitlines()[0] == "Metrics, a (A) vs b (B)"
    assert table.output.splitlines()[2].split()[:3] == ["metric", "goal", "A"]
    assert re.search(r"^val_nll\s+min\s", table.output, re.M)
    result = runner.invoke(cli, ["compare", str(a), str(b), "--format", "json"])
    data = json.loads(result.output)
    m = data["metrics"][0]
    assert m["name"] == "val_nll" and m["better"] == "A" and 1300 <= m["divergence"]["step"] <= 1600


def test_cli_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = tmp_path / "missing"
    result = runner.invoke(cli, ["compare", str(missing), str(missing)])
    assert result.exit_code == 2
    assert result.output == f"Error: {missing}: no such run directory or metrics file\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(cli, ["compare", str(empty), str(empty)])
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {empty}: not a run directory (looked for metrics.jsonl, a CSV")
    a = write_jsonl(tmp_path / "a", {"loss": [(0, 1.0), (1, 0.5)]})
    b = write_jsonl(tmp_path / "b", {"acc": [(0, 0.1)]})
    result = runner.invoke(cli, ["compare", str(a), str(b)])
    assert result.exit_code == 2
    assert result.output == f"Error: {a} and {b} share no metric (A: loss; B: acc)\n"
    result = runner.invoke(cli, ["compare", str(a), str(a), "--steps", "abc"])
    assert result.exit_code == 2
    assert result.output == "Error: --steps 'abc': expected START:END, e.g. 15000:45000 (either side may be empty)\n"


def write_lightning_csv(run: Path, shift_after: int, shift: float) -> Path:
    """Lightning's CSVLogger layout: train rows every 50 steps, val rows every 500, other columns empty."""
    run.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    with (run / "metrics.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "step", "train_loss", "val_loss", "val_acc"])
        for s in range(49, 3000, 50):
            bump = shift if s > shift_after else 0.0
            writer.writerow([s // 500, s, 1.5 * math.exp(-s / 800) + 0.2 + bump + rng.normal(0, 0.01), "", ""])
            if (s + 1) % 500 == 0:
                writer.writerow([s // 500, s, "", 1.5 * math.exp(-s / 800) + 0.3 + bump, 0.8 - bump])
    return run


def test_divergence_is_never_reported_before_the_runs_part(tmp_path: Path) -> None:
    """A sparse eval metric (every 500 steps) that parts after step 1000: first parted eval is 1499, not earlier."""
    a = write_lightning_csv(tmp_path / "version_0", shift_after=10**9, shift=0.0)
    b = write_lightning_csv(tmp_path / "version_1", shift_after=1000, shift=0.1)
    by_name = {m.name: m for m in compare_runs(a, b).metrics}
    assert by_name["val_acc"].divergence.step == 1499 and by_name["val_acc"].better == "A"
    assert by_name["val_loss"].divergence.step == 1499
    assert 1049 <= (by_name["train_loss"].divergence.step or 0) <= 1149  # dense and noisy: at most a point or two late
    jump = np.array([0.0] * 20 + [0.08] * 20) + np.random.default_rng(0).normal(0, 0.01, 40)
    assert find_divergence(np.arange(40.0) * 200, jump).step == 4000  # a sharp parting is found at its step


def test_better_agrees_with_divergence(tmp_path: Path) -> None:
    """Runs that diverge have a better run even when the last single Δ is under k sigma; a zero Δ is a tie."""
    steps = range(0, 5001, 100)
    a = write_jsonl(tmp_path / "a", {"train_loss": curve(steps, 1, noise=0.02)})
    b = write_jsonl(tmp_path / "b", {"train_loss": curve(steps, 2, shift_at=2000, shift=0.05, noise=0.02)})
    m = compare_runs(a, b).metrics[0]
    assert m.divergence.step is not None and m.better == "A"
    one = write_jsonl(tmp_path / "one", {"val_loss": [(10, 1.0)]})
    assert compare_runs(one, one).metrics[0].better == "tie"


def test_steps_read_alike_in_one_column() -> None:
    from bisect_runs.compare import fmt_step

    assert [fmt_step(s) for s in (1500, 14750, 15000, 15500, 12345, 2_500_000)] == ["1500", "14.75k", "15k", "15.5k", "12,345", "2.5M"]


def test_a_mode_for_a_metric_neither_run_has_is_an_error(tmp_path: Path) -> None:
    steps = range(0, 1001, 100)
    a = write_jsonl(tmp_path / "a", {"val_loss": curve(steps, 1)})
    b = write_jsonl(tmp_path / "b", {"val_loss": curve(steps, 2)})
    with pytest.raises(SettingsError, match=r"^--mode nosuch: no such metric in both runs \(compared: val_loss\)$"):
        compare_runs(a, b, modes={"nosuch": "max"})
    assert compare_runs(a, b, modes={"val_loss": "min", "*": "max"}).metrics[0].mode == "min"


def test_skipped_lines_of_a_run_are_noted(tmp_path: Path) -> None:
    for name, lines in (("a", ['{"step": 1, "loss": 1.0}', "garbage", '{"step": 2, "loss": 0.9}']),
                        ("b", ['{"step": 1, "loss": 1.0}', '{"step": 2, "loss": 0.95}'])):  # fmt: skip
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert f"Run A: {tmp_path / 'a' / 'metrics.jsonl'}:2: not a JSON object, skipped." in result.output
