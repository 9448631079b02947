"""`bisect-runs diff`: exit status like diff(1), the four formats, flags, one-line errors, golden Markdown."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bisect_runs.cli import cli

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden" / "diff_baseline_run11.md"
SPEECH = ["configs/baseline", "configs/run11", "--defaults", "configs/speech_defaults.yaml", "--no-project"]


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from the repository root so the shipped configs are named as users type them."""
    monkeypatch.chdir(ROOT)


def _run(*args: str):
    return CliRunner().invoke(cli, ["diff", *args])


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_golden_markdown_baseline_vs_run11(in_repo: None) -> None:
    result = _run(*SPEECH, "--format", "markdown")
    assert result.exit_code == 1, result.output
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(result.output, encoding="utf-8")
    assert result.output == GOLDEN.read_text(encoding="utf-8"), (
        f"{GOLDEN} is out of date; if the change is intended, regenerate it with "
        "UPDATE_GOLDEN=1 pytest tests/test_cli_diff.py -k golden"
    )


def test_table_is_the_default_and_hides_runtime_keys(in_repo: None) -> None:
    result = _run(*SPEECH)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[:2] == ["A (good): configs/baseline", "B (bad):  configs/run11"]
    first = lines[5].split()
    assert first[:3] == ["critical", "lrStart,", "lrEnd"]
    assert "absent (default false)" in result.output
    assert "num_workers" not in "\n".join(lines[3:-1])
    assert lines[-1] == ("3 differences judged to have no effect are not shown "
                         "(outputDir, datasetPath, num_workers); --all shows them.")


def test_all_shows_runtime_keys(in_repo: None) -> None:
    result = _run(*SPEECH, "--all")
    assert "num_workers" in result.output and "not shown" not in result.output


def test_json_is_ranked_and_has_the_design_fields(in_repo: None) -> None:
    result = _run(*SPEECH, "--format", "json")
    assert result.exit_code == 1
    items = json.loads(result.output)
    assert {"key", "a", "b", "kind", "level", "score", "reason", "category"} <= set(items[0])
    assert (items[0]["key"], items[0]["level"], items[0]["reason"]) == ("lrStart", "critical", "25x lower learning rate")
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    assert all(i["level"] != "none" for i in items)
    optimizer = next(i for i in items if i["key"] == "optimizer")
    assert (optimizer["a"], optimizer["a_default"], optimizer["kind"]) == ("adam", True, "added")
    with_all = json.loads(_run(*SPEECH, "--format", "json", "--all").output)
    assert {"num_workers", "outputDir", "datasetPath"} <= {i["key"] for i in with_all}


def test_json_absent_side_is_null_without_defaults(in_repo: None) -> None:
    items = json.loads(_run("configs/baseline", "configs/run11", "--format", "json", "--no-project").output)
    use_layer_norm = next(i for i in items if i["key"] == "use_layer_norm")
    assert (use_layer_norm["a"], use_layer_norm["kind"], use_layer_norm["b"]) == (None, "added", True)


def test_csv(in_repo: None) -> None:
    result = _run(*SPEECH, "--format", "csv", "--all")
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert rows[0]["key"] == "lrStart" and rows[0]["a"] == "0.02" and rows[0]["level"] == "critical"
    workers = next(r for r in rows if r["key"] == "num_workers")
    assert (workers["a"], workers["b"], workers["a_default"], workers["level"]) == ("0", "4", "True", "none")


def test_identical_exits_zero(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", "lr: 1e-5\nlayers: 3\n")
    b = _write(tmp_path / "b.json", '{"lr": 0.00001, "layers": 3.0}')
    result = _run(a, b)
    assert result.exit_code == 0
    assert result.output.splitlines()[-1] == "No differences."
    assert _run(a, b, "--format", "json").output == "[]\n"


def test_only_runtime_differences_exit_one(tmp_path: Path) -> None:
    a, b = _write(tmp_path / "a.yaml", "out_dir: /a\n"), _write(tmp_path / "b.yaml", "out_dir: /b\n")
    result = _run(a, b)
    assert result.exit_code == 1
    assert "No differences that change results." in result.output


def test_ignore_alias_group_strict_types(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", "peak: 0.1\nfinal: 0.1\nrun_dir: /a\nn: 3\n")
    b = _write(tmp_path / "b.yaml", "top: 0.5\nfinal: 0.5\nrun_dir: /b\nn: 3.0\n")
    items = json.loads(_run(a, b, "--format", "json", "--all", "--ignore", "run_*", "--alias", "peak=top",
                            "--group", "sched=top,final", "--strict-types").output)
    assert {(i["key"], i["factor"]) for i in items} == {("peak -> top", "sched"), ("final", "sched"), ("n", "n")}


def test_format_a_forces_a_format(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.txt", "lr: 0.1\n")
    b = _write(tmp_path / "b.yaml", "lr: 0.2\n")
    assert _run(a, b, "--format-a", "yaml").exit_code == 1


def test_user_rules_flag(tmp_path: Path) -> None:
    a, b = _write(tmp_path / "a.yaml", "num_workers: 0\n"), _write(tmp_path / "b.yaml", "num_workers: 8\n")
    rules = _write(tmp_path / "rules.yaml", "rules:\n  - pattern: num_workers\n    category: data\n    weight: 1\n")
    assert json.loads(_run(a, b, "--format", "json").output) == []
    [item] = json.loads(_run(a, b, "--format", "json", "--rules", rules).output)
    assert (item["category"], item["level"]) == ("data", "critical")


def test_alias_warning(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", "lr: 0.1\n")
    result = _run(a, a, "--alias", "old=new")
    assert result.exit_code == 0
    assert "Warning: alias old=new: neither config has key 'old' or 'new'" in result.output


# -- errors: one line, exit 2, no traceback ------------------------------------------------


@pytest.mark.parametrize(
    ("files", "extra", "message"),
    [
        ({"a.yaml": "lr: 1\n"}, ["MISSING.yaml"], "Error: MISSING.yaml: no such file or directory"),
        ({"a.yaml": "lr: 1\n", "bad.yaml": "a: 1\nb: [1, 2\n"}, ["bad.yaml"],
         "Error: bad.yaml: unclosed `[` opened at line 2, column 4; failed at line 3, column 1: "
         "expected ',' or ']', but got '<stream end>'"),
        ({"a.yaml": "lr: 1\n", "dup.yaml": "a: 1\na: 2\n"}, ["dup.yaml"],
         "Error: dup.yaml: line 2, column 1: duplicate key 'a' (first at line 1)"),
        ({"a.yaml": "lr: 1\n", "list.yaml": "- 1\n- 2\n"}, ["list.yaml"],
         "Error: list.yaml: top level is a list, expected a mapping of keys"),
        ({"a.yaml": "lr: 1\n", "empty.yaml": ""}, ["empty.yaml"], "Error: empty.yaml: empty file"),
        ({"a.yaml": "lr: 1\n"}, ["a.yaml", "--defaults", "nope.yaml"], "Error: nope.yaml: no such defaults file"),
        ({"a.yaml": "lr: 1\n"}, ["a.yaml", "--rules", "nope.yaml"], "Error: nope.yaml: no such rules file"),
        ({"a.yaml": "lr: 1\n", "r.yaml": "rules:\n  - pattern: lr\n    category: data\n    weight: -1\n"},
         ["a.yaml", "--rules", "r.yaml"], "Error: r.yaml: rules[0]: weight must be a number >= 0 (got -1)"),
        ({"a.yaml": "lr: 1\n"}, ["a.yaml", "--format-b", "xml"],
         "Error: a.yaml: unknown format 'xml' (expected one of yaml, json, toml, dir, wandb, hydra, lightning, hf, "
         "python, argparse, mlflow, pickle, torch)"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str], extra: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        _write(tmp_path / name, text)
    result = _run("a.yaml", *extra)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [message]
    assert "Traceback" not in result.output


def test_malformed_alias_is_a_usage_error(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", "lr: 1\n")
    result = _run(a, a, "--alias", "foo")
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "Error: Invalid value for --alias: 'foo' is not of the form OLD=NEW"


def test_whole_process_exit_codes(tmp_path: Path) -> None:
    """The installed entry point, as scripts call it: 1 different, 2 error with one stderr line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "bisect_runs", "diff", *SPEECH, "--format", "json"],
                          cwd=ROOT, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 1 and json.loads(proc.stdout)[0]["key"] == "lrStart"
    proc = subprocess.run([sys.executable, "-m", "bisect_runs", "diff", "nope.yaml", "configs/run11"],
                          cwd=ROOT, capture_output=True, text=True, env=env, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", "Error: nope.yaml: no such file or directory\n")


def test_hydra_runs_show_their_overrides(tmp_path: Path) -> None:
    """Hydra's recorded command-line overrides are provenance a reader of the diff wants to see."""
    for run, lr in (("a", "0.1"), ("b", "0.4")):
        hydra = tmp_path / run / ".hydra"
        hydra.mkdir(parents=True)
        _write(hydra / "config.yaml", f"optim:\n  lr: {lr}\nseed: 1\n")
        _write(hydra / "overrides.yaml", f"- optim.lr={lr}\n")
    result = _run(str(tmp_path / "a"), str(tmp_path / "b"), "--format", "markdown")
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[2:4] == [
        f"- **A (good):** `{tmp_path / 'a'}` (Hydra overrides: optim.lr=0.1)",
        f"- **B (bad):** `{tmp_path / 'b'}` (Hydra overrides: optim.lr=0.4)",
    ]


def test_null_to_a_value_is_a_change_not_a_type_change(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", "scheduler: null\ngrad_clip: null\n")
    b = _write(tmp_path / "b.yaml", "scheduler: cosine\ngrad_clip: 1.0\n")
    result = _run(a, b, "--format", "json")
    assert result.exit_code == 1, result.output
    assert {d["key"]: d["kind"] for d in json.loads(result.output)} == {"scheduler": "changed", "grad_clip": "changed"}


def test_nanogpt_config_with_a_computed_run_name(tmp_path: Path) -> None:
    """nanoGPT configs of plain assignments, one value computed by a call: compared, not refused."""
    a = _write(tmp_path / "a.py", "import time\nwandb_run_name = 'ft-' + str(time.time())\nlearning_rate = 6e-4\ndecay_lr = True\n")
    b = _write(tmp_path / "b.py", "wandb_run_name = 'gpt2'\nlearning_rate = 6e-3\ndecay_lr = False\n")
    result = _run(a, b)
    assert result.exit_code == 1, result.output
    assert [line.split()[:2] for line in result.output.splitlines()[5:7]] == [["critical", "learning_rate"], ["high", "decay_lr"]]
    assert "1 difference judged to have no effect is not shown (wandb_run_name)" in result.output


def test_a_key_spelled_twice_is_one_error(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", "optim.lr: 0.1\noptim:\n  lr: 0.2\n")
    b = _write(tmp_path / "b.yaml", "optim:\n  lr: 0.2\n")
    result = _run(a, b)
    assert result.exit_code == 2
    assert result.output == f"Error: {a}: key 'optim.lr' is set twice: as a name with dots and as nested sections ('optim.lr' and optim > lr)\n"


# -- trust: nothing hidden, nothing a spreadsheet runs, where a YAML construct began ---------


def test_unrelated_keys_with_equal_values_are_two_rows(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", "lr: 0.1\nwarmup_steps: 500\n")
    b = _write(tmp_path / "b.yaml", "lr: 0.1\neval_every: 500\n")
    result = _run(a, b, "--format", "json", "--all")
    assert result.exit_code == 1
    assert [(d["key"], d["kind"]) for d in json.loads(result.output)] == [
        ("warmup_steps", "removed"), ("eval_every", "added")
    ]
    assert "No differences" not in _run(a, b).output


def test_quoted_strings_and_exact_integers_are_differences(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", 'python_version: "3.10"\nsave_strategy: "no"\nseed: 1234567890123456\n')
    b = _write(tmp_path / "b.yaml", "python_version: 3.1\nsave_strategy: false\nseed: 1234567890123457\n")
    result = _run(a, b, "--format", "json", "--all")
    assert result.exit_code == 1
    assert {d["key"]: (d["a"], d["b"]) for d in json.loads(result.output)} == {
        "python_version": ("3.10", 3.1), "save_strategy": ("no", False), "seed": (1234567890123456, 1234567890123457)
    }


def test_csv_cells_cannot_start_a_formula(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", 'run_tag: "=HYPERLINK(\\"http://x\\")"\nw: -0.5\n')
    b = _write(tmp_path / "b.yaml", 'run_tag: "@SUM(A1)"\nw: -0.6\n')
    rows = list(csv.DictReader(io.StringIO(_run(a, b, "--format", "csv", "--all").output)))
    by_key = {r["key"]: r for r in rows}
    assert (by_key["run_tag"]["a"], by_key["run_tag"]["b"]) == ("'=HYPERLINK(\"http://x\")", "'@SUM(A1)")
    assert (by_key["w"]["a"], by_key["w"]["b"]) == ("-0.5", "-0.6")  # numbers stay numbers


def test_yaml_error_names_where_the_construct_opened(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.yaml", "lr: 1\nmodel:\n  layers: [64, 128,\n  width: 3\ndepth: 2\n")
    result = _run(bad, bad)
    assert result.exit_code == 2
    assert result.output == (
        f"Error: {bad}: unclosed `[` opened at line 3, column 11; failed at line 5, column 6: "
        "expected ',' or ']', but got ':'\n"
    )


def test_keys_1_and_quoted_1_are_one_key(tmp_path: Path) -> None:
    dup = _write(tmp_path / "dup.yaml", 'classes:\n  1: cat\n  "1": dog\n')
    result = _run(dup, dup)
    assert result.exit_code == 2
    assert result.output == (
        f"Error: {dup}: line 3, column 3: keys 1 (line 2) and \"1\" (line 3) are both the key '1'; keep one\n"
    )


def test_unchanged_lists_keys_equal_on_both_sides(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", "lr: 0.1\nlayers: 4\nname: x\n")
    b = _write(tmp_path / "b.yaml", "lr: 0.2\nlayers: 4.0\nname: x\n")
    result = _run(a, b, "--unchanged")
    assert result.exit_code == 1
    assert result.output.endswith("Unchanged (2 keys):\n  layers  4\n  name    x\n")
    items = json.loads(_run(a, b, "--unchanged", "--format", "json").output)
    assert [(d["key"], d["kind"]) for d in items] == [("lr", "changed"), ("layers", "unchanged"), ("name", "unchanged")]
    assert "unchanged" not in _run(a, b, "--format", "json").output


def test_unchanged_values_are_spelled_as_differences_spell_them(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", "lr: 0.1\nbands: [1.0, .nan]\n")
    b = _write(tmp_path / "b.yaml", "lr: 0.2\nbands: [1.0, .nan]\n")
    items = json.loads(_run(a, b, "--unchanged", "--format", "json").output)
    assert [(d["key"], d["a"], d["b"]) for d in items] == [("lr", 0.1, 0.2), ("bands", [1.0, "nan"], [1.0, "nan"])]


def test_rev_path_absent_at_a_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The error stays the default; --absent-as-empty compares the missing file as empty."""
    import git

    repo = git.Repo.init(tmp_path)
    with repo.config_writer() as writer:
        writer.set_value("user", "name", "Test")
        writer.set_value("user", "email", "test@example.com")
    (tmp_path / "old.yaml").write_text("x: 1\n")
    repo.index.add(["old.yaml"])
    first = repo.index.commit("first").hexsha
    (tmp_path / "params.yaml").write_text("lr: 0.1\n")
    repo.index.add(["params.yaml"])
    repo.index.commit("params")
    monkeypatch.chdir(tmp_path)
    refused = _run("HEAD~1:params.yaml", "HEAD:params.yaml")
    assert refused.exit_code == 2
    assert refused.output == (
        f"Error: HEAD~1:params.yaml: 'params.yaml' does not exist at HEAD~1 ({first[:10]}); "
        "--absent-as-empty compares it as an empty config\n"
    )
    result = _run("HEAD~1:params.yaml", "HEAD:params.yaml", "--absent-as-empty", "--format", "json")
    assert result.exit_code == 1
    assert [(d["key"], d["kind"], d["b"]) for d in json.loads(result.output)] == [("lr", "added", 0.1)]
    table = _run("HEAD~1:params.yaml", "HEAD:params.yaml", "--absent-as-empty").output
    assert table.startswith(f"A (good): HEAD~1:params.yaml (commit {first[:10]}; absent at that revision; compared as empty)\n")
