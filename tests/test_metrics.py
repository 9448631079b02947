"""Metric sources (jsonl, regex, csv, tensorboard), reductions, speed and memory extraction."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bisect_runs.errors import SettingsError
from bisect_runs.metrics import (
    MetricSpec,
    detect_source,
    read_history,
    read_metric,
    reduce_history,
    speed_from_log,
)


def test_jsonl_tolerates_torn_last_line_and_nonfinite_tokens(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 100, "val_per": 0.30, "loss": 2.0}\n'
        '{"step": 200, "val_per": NaN, "loss": Infinity}\n'
        '{"step": 300, "val_per": nan, "loss": -inf}\n'
        '{"step": 400, "val_per": 0.2'
    )
    read = read_metric(tmp_path, MetricSpec("val_per"))
    assert [s for s, _ in read.history] == [100, 200, 300]
    assert read.history[0] == (100, 0.30)
    assert math.isnan(read.history[1][1]) and math.isnan(read.history[2][1])
    assert read.series["loss"][1] == (200, math.inf) and read.series["loss"][2] == (300, -math.inf)
    assert read.problems == []  # the torn last line is expected after a kill, not a problem


def test_jsonl_skips_bad_middle_lines_flattens_nested_and_falls_back_to_line_numbers(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"val": {"per": 0.5}}\nnot json\n{"val": {"per": 0.4}, "ok": true}\n')
    read = read_metric(tmp_path, MetricSpec("val.per"))
    assert read.history == [(1, 0.5), (3, 0.4)]
    assert "ok" not in read.series  # booleans are not metrics
    assert read.problems and "metrics.jsonl:2" in read.problems[0]


def test_jsonl_missing_file_gives_empty_history(tmp_path: Path) -> None:
    read = read_metric(tmp_path, MetricSpec("loss"))
    assert read.history == [] and read.where.endswith("metrics.jsonl")


def test_regex_default_pattern_reads_steps_from_the_line(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    log.write_text(
        "Step 500: val_nll=0.40 (best=0.40) | train:5.6 s/s\n"
        "unrelated prefix_val_nll=9.0\n"
        "Step 1000: val_nll=0.35 | Total: NaN\n"
        "Step 1500: val_nll=nan\n"
    )
    read = read_metric(tmp_path / "run", MetricSpec("val_nll", source="regex"), log_path=log)
    assert read.history[:2] == [(500, 0.40), (1000, 0.35)]
    assert read.history[2][0] == 1500 and math.isnan(read.history[2][1])


def test_regex_custom_pattern_with_named_groups(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.log").write_text("it 7 -> acc 0.91\nit 9 -> acc 0.93\n")
    spec = MetricSpec("acc", source="regex", pattern=r"it (?P<step>\d+) -> acc (?P<value>[0-9.]+)", path="train.log")
    assert read_metric(run, spec).history == [(7, 0.91), (9, 0.93)]


def test_csv_sparse_rows_and_glob_path(tmp_path: Path) -> None:
    d = tmp_path / "lightning_logs" / "version_0"
    d.mkdir(parents=True)
    (d / "metrics.csv").write_text("epoch,step,train_loss,val_loss\n0,49,1.5,\n0,49,,1.2\n1,99,1.1,\n1,99,,0.9\n")
    spec = MetricSpec("val_loss", source="csv", path="lightning_logs/*/metrics.csv")
    read = read_metric(tmp_path, spec)
    assert read.history == [(49, 1.2), (99, 0.9)]
    assert read.series["train_loss"] == [(49, 1.5), (99, 1.1)]


def test_tensorboard_event_files(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    writer_mod = pytest.importorskip("torch.utils.tensorboard", reason="torch is needed to write event files")
    writer = writer_mod.SummaryWriter(log_dir=str(tmp_path / "tb"))
    for step, value in [(10, 0.9), (20, 0.7), (30, 0.6)]:
        writer.add_scalar("val/loss", value, step)
        writer.add_scalar("perf/steps_per_sec", 40.0 + step, step)
    writer.close()
    read = read_metric(tmp_path, MetricSpec("val/loss", source="tensorboard"))
    assert [(s, round(v, 6)) for s, v in read.history] == [(10, 0.9), (20, 0.7), (30, 0.6)]
    assert read.steps_per_s == 60.0
    assert detect_source(tmp_path) == "tensorboard"
    assert set(read_history(tmp_path)) == {"val/loss", "perf/steps_per_sec"}


@pytest.mark.parametrize(
    ("how", "expected"),
    [("last", 0.2), ("min", 0.1), ("max", 0.5), ("mean_last:2", 0.15), ("mean_last:10", 0.275)],
)
def test_reductions_ignore_nonfinite_values(how: str, expected: float) -> None:
    history = [(1, 0.5), (2, 0.3), (3, math.nan), (4, 0.1), (5, 0.2)]
    assert reduce_history(history, how) == pytest.approx(expected)


def test_reduction_of_nothing_finite_is_none() -> None:
    assert reduce_history([(1, math.nan)], "last") is None
    assert reduce_history([], "min") is None


def test_speed_and_memory_by_usual_names_and_units(tmp_path: Path) -> None:
    lines = [
        {"step": 1, "loss": 1.0, "it/s": 10.0, "peak_mem_gb": 1.5},
        {"step": 2, "loss": 0.9, "it/s": 12.0, "max_memory_allocated": 3 * 2**30},
        {"step": 3, "loss": 0.8, "it/s": 11.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    read = read_metric(tmp_path, MetricSpec("loss"))
    assert read.steps_per_s == 11.0  # median
    assert read.peak_gpu_mem_mb == 3072.0  # bytes recognized by size, GB converted


def test_speed_from_progress_lines() -> None:
    assert speed_from_log("epoch 1: 100%|####| 50/50 [00:02<00:00, 23.5it/s]\n") == 23.5
    assert speed_from_log(" 10/50 [00:20<01:20, 2.00s/it]") == 0.5
    assert speed_from_log("step 10 steps_per_sec=4.5 loss=1") == 4.5
    assert speed_from_log("nothing here") is None


def test_invalid_spec_lists_every_problem() -> None:
    with pytest.raises(SettingsError) as err:
        MetricSpec("loss", source="comet", reduce="median", pattern="no group")
    message = str(err.value)
    assert "metric source must be one of jsonl, regex, csv, tensorboard, wandb (got 'comet')" in message
    assert "reduce must be last, min, max or mean_last:K (got 'median')" in message
    assert "needs a group capturing the value" in message


def test_detect_source_prefers_jsonl(tmp_path: Path) -> None:
    assert detect_source(tmp_path) == "jsonl"
    (tmp_path / "metrics.csv").write_text("step,loss\n1,0.5\n")
    assert detect_source(tmp_path) == "csv"
    assert read_history(tmp_path) == {"loss": [(1, 0.5)]}


def test_per_iteration_times_are_a_speed_and_the_log_gives_the_median() -> None:
    log = "".join(f"iter {i}: loss 2.1, time {ms}ms, mfu 1.2%\n" for i, ms in ((0, 900.0), (10, 25.0), (20, 20.0), (30, 40.0)))
    assert speed_from_log(log) == pytest.approx((1000 / 25 + 1000 / 40) / 2)  # median over the four lines
    assert speed_from_log("step 1 steps_per_sec=4\nstep 2 steps_per_sec=5\nstep 3 steps_per_sec=9\n") == 5  # not the last
    assert speed_from_log("train time 300ms total") is None  # no iteration on the line: not one step's time


def test_a_prefixed_speed_name_is_a_speed() -> None:
    from bisect_runs.metrics import speed_from_series

    series = {"train_steps_per_s": [(1, 2.0), (2, 4.0), (3, 3.0)], "loss": [(1, 1.0)]}
    assert speed_from_series(series) == 3.0
