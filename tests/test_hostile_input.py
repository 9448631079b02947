"""Hostile and broken input: nothing written outside a trial, no escape code reaches a terminal, one Error line per odd file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from trainers import FAKE_TRAINER

from bisect_runs.cli import cli

COMMAND = f"{sys.executable} {FAKE_TRAINER} --config {{config}} --run-dir {{run_dir}} --steps {{steps}} --seed {{seed}}"


def invoke(*args: str) -> tuple[int, str]:
    """Run the CLI; exit code and everything it printed (stdout and stderr)."""
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


# -- 1: a variant writes only inside its trial's config directory ------------------------


def test_a_key_that_would_be_written_outside_the_trial_is_an_error(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    train = {"fake": {"metric": "loss", "value": "1.0 + (lr < 0.01)"}, "lr": 0.02}
    (good / "train.yaml").write_text(yaml.safe_dump(train))
    victim = tmp_path / "victim"
    planted = {"command": "touch pwned"}
    bad = {"train": {**train, "lr": 0.001}, str(victim): planted, "../../../../bisect": planted}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    out = tmp_path / "deep" / "er" / "out"
    code, output = invoke("search", str(good), str(tmp_path / "bad.json"), "--command", COMMAND,
                          "--metric", "loss", "--mode", "min", "--steps", "5", "--seeds", "2", "--out", str(out))  # fmt: skip
    assert code == 2, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {good}: key "), output
    assert "cannot be written as a file of the directory config" in errors[0]
    assert "Traceback" not in output
    assert not victim.with_suffix(".yaml").exists()
    assert not list(tmp_path.rglob("bisect.yaml"))


# -- 3: no escape code reaches a terminal, no raw HTML a Markdown page ----------------------

HOSTILE_KEY = "title\x1b]0;owned\x07"
HOSTILE_VALUE = "\x1b[2J\rfine <img src=x onerror=alert(1)> `x` <b>"


def hostile_pair(tmp_path: Path) -> tuple[Path, Path]:
    """Two configs whose keys and values carry escape codes, a carriage return and HTML."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"lr": 0.1, HOSTILE_KEY: "plain", "note": "x"}))
    b.write_text(json.dumps({"lr": 0.2, HOSTILE_KEY: HOSTILE_VALUE, "note": "<script>alert(1)</script>"}))
    return a, b


def without_code(markdown_text: str) -> str:
    """The text of a Markdown page outside its code spans (the spans themselves are shown literally)."""
    import re

    return re.sub(r"(`+)(?:(?!\1).)*?\1", "", markdown_text)


def test_control_characters_are_printed_escaped(tmp_path: Path) -> None:
    a, b = hostile_pair(tmp_path)
    code, output = invoke("diff", "--all", str(a), str(b))
    assert code == 1, output
    assert "\x1b" not in output and "\r" not in output and "\x07" not in output
    assert "\\x1b[2J\\x0dfine" in output and "title\\x1b]0;owned\\x07" in output
    code, output = invoke("diff", str(tmp_path / "gone\x1b[2J.yaml"), str(b))
    assert (code, output) == (2, f"Error: {tmp_path}/gone\\x1b[2J.yaml: no such file or directory\n")


def test_json_output_stays_json_with_c1_controls_escaped(tmp_path: Path) -> None:
    a, b = hostile_pair(tmp_path)
    b.write_text(json.dumps({"lr": 0.2, HOSTILE_KEY: "csi\x9b2J"}))
    code, output = invoke("diff", "--all", "--format", "json", str(a), str(b))
    assert code == 1 and "\x9b" not in output
    assert {d["key"]: d["b"] for d in json.loads(output)}[HOSTILE_KEY] == "csi\x9b2J"


def test_markdown_diff_has_no_html_outside_code_spans(tmp_path: Path) -> None:
    a, b = hostile_pair(tmp_path)
    code, output = invoke("diff", "--all", "--format", "markdown", str(a), str(b))
    assert code == 1, output
    assert "\x1b" not in output
    assert "<" not in without_code(output), output
    assert "&lt;script>" in output or "`<script>alert(1)</script>`" in output


def test_report_of_a_search_has_no_html_or_escape_codes(tmp_path: Path) -> None:
    fake = {"metric": "loss", "value": "1.0 + (lr < 0.01)", "noise": 0.01}
    good = {"fake": fake, "lr": 0.02, HOSTILE_KEY: "plain"}
    bad = {"fake": fake, "lr": 0.001, HOSTILE_KEY: HOSTILE_VALUE}
    for name, data in (("good", good), ("bad", bad)):
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    out = tmp_path / "out"
    code, output = invoke("search", str(tmp_path / "good.json"), str(tmp_path / "bad.json"), "--command", COMMAND,
                          "--metric", "loss", "--mode", "min", "--steps", "5", "--seeds", "2", "--include-all",
                          "--out", str(out))  # fmt: skip
    assert code in (0, 1), output
    assert "\x1b" not in output and "\r" not in output
    report = (out / "report.md").read_text()
    assert "\x1b" not in report and "\x07" not in report
    assert "<" not in without_code(report), [line for line in report.splitlines() if "<" in without_code(line)]


# -- 4: a pickle or checkpoint whose list shares itself ----------------------------------


def self_sharing(levels: int = 40) -> list[object]:
    """`a = [a, a]` nested: a few hundred bytes pickled, 2**levels values once expanded."""
    node: list[object] = [0, 0]
    for _ in range(levels):
        node = [node, node]
    return node


def test_a_pickle_sharing_itself_is_refused(tmp_path: Path) -> None:
    import pickle
    import time

    bomb = tmp_path / "args.pkl"
    bomb.write_bytes(pickle.dumps({"lr": 0.1, "layers": self_sharing()}, protocol=4))
    assert bomb.stat().st_size < 1000
    (tmp_path / "b.yaml").write_text("lr: 0.2\n")
    started = time.monotonic()
    code, output = invoke("diff", str(bomb), str(tmp_path / "b.yaml"))
    assert (code, output) == (
        2, f"Error: {bomb}: value expands to more than 1,000,000 entries (a structure sharing itself?); refused\n"
    )  # fmt: skip
    assert time.monotonic() - started < 10


def test_a_checkpoint_sharing_itself_is_refused(tmp_path: Path) -> None:
    import torch

    bomb = tmp_path / "last.ckpt"
    torch.save({"hyper_parameters": {"lr": 0.1, "layers": self_sharing()}}, bomb)
    (tmp_path / "b.yaml").write_text("lr: 0.2\n")
    code, output = invoke("diff", str(bomb), str(tmp_path / "b.yaml"))
    assert (code, output) == (
        2, f"Error: {bomb}: value expands to more than 1,000,000 entries (a structure sharing itself?); refused\n"
    )  # fmt: skip


# -- 5: size cap on config files, long values cut in tables ------------------------------


def test_a_config_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    import time

    big = tmp_path / "big.yaml"
    big.write_text("lr: 0.1\nnotes: " + "x" * (5 * 1024 * 1024) + "\n")
    small = tmp_path / "small.yaml"
    small.write_text("lr: 0.1\nnotes: " + "x" * 3000 + "\n")
    started = time.monotonic()
    code, output = invoke("diff", str(big), str(small))
    assert (code, output) == (2, f"Error: {big}: file too large for a config ({big.stat().st_size:,} bytes; "
                                 "the limit is 4 MB: raise it with --max-config-mb or BISECT_RUNS_MAX_CONFIG_MB)\n")  # fmt: skip
    assert time.monotonic() - started < 5
    code, output = invoke("diff", "--max-config-mb", "0.002", str(small), str(small))
    assert (code, output) == (2, f"Error: {small}: file too large for a config ({small.stat().st_size:,} bytes; "
                                 "the limit is 0.002 MB: raise it with --max-config-mb or BISECT_RUNS_MAX_CONFIG_MB)\n")  # fmt: skip
    code, output = invoke("diff", "--max-config-mb", "0.01", str(small), str(small))
    assert code == 0 and "No differences." in output, output
    code, output = invoke("diff", "--max-config-mb", "0", str(small), str(small))
    assert (code, output) == (2, "Error: --max-config-mb: expected a positive number of megabytes (got 0)\n")


def test_long_values_are_cut_in_tables(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("lr: 0.1\nprompt: short\n")
    b.write_text("lr: 0.1\nprompt: " + "y" * 200_000 + "\n")
    for fmt in ("table", "markdown"):
        code, output = invoke("diff", "--all", "--format", fmt, str(a), str(b))
        assert code == 1, output
        assert max(len(line) for line in output.splitlines()) < 500, fmt
        assert "yyy…" in output


# -- 6: an integer too long for Python ------------------------------------------------------


def test_a_100000_digit_integer_is_one_error_line_in_every_format(tmp_path: Path) -> None:
    digits = "7" * 100_000
    texts = {"c.yaml": f"lr: 0.1\nseed: {digits}\n", "c.json": f'{{"lr": 0.1,\n "seed": {digits}}}', "c.toml": f"lr = 0.1\nseed = {digits}\n"}
    other = tmp_path / "other.yaml"
    other.write_text("lr: 0.1\n")
    for name, text in texts.items():
        path = tmp_path / name
        path.write_text(text)
        code, output = invoke("diff", str(path), str(other))
        assert (code, output) == (
            2, f"Error: {path}: line 2 (seed): an integer of 100,000 digits, more than the 4,300 Python reads; "
               "quote it to read it as a string\n",
        ), name  # fmt: skip


# -- 7: directory configs: links and special files ------------------------------------------


def config_dir(tmp_path: Path) -> Path:
    """A directory config of one file, for the tests to add odd entries to."""
    good = tmp_path / "good"
    (good / "model").mkdir(parents=True)
    (good / "optim.yaml").write_text("lr: 0.1\n")
    (good / "model" / "net.yaml").write_text("width: 8\n")
    return good


def test_links_out_of_or_around_a_directory_config_are_refused(tmp_path: Path) -> None:
    import os

    cases = {
        "self": lambda d: (d / "model" / "self").symlink_to(d),
        "zero.yaml": lambda d: (d / "zero.yaml").symlink_to("/dev/zero"),
        "outside.yaml": lambda d: (d / "outside.yaml").symlink_to(tmp_path / "secret.yaml"),
        "fifo.yaml": lambda d: os.mkfifo(d / "fifo.yaml"),
    }
    expected = {
        "self": "model/self links back to a directory that holds it (a symlink loop)",
        "zero.yaml": "zero.yaml links outside the directory (to /dev/zero); links are followed only inside it",
        "outside.yaml": f"outside.yaml links outside the directory (to {tmp_path / 'secret.yaml'}); links are followed only inside it",
        "fifo.yaml": "fifo.yaml is not a regular file (only regular files of a directory config are read)",
    }
    (tmp_path / "secret.yaml").write_text("token: abc\n")
    for name, make in cases.items():
        good = config_dir(tmp_path / name)
        make(good)
        code, output = invoke("diff", str(good), str(good))
        assert (code, output) == (2, f"Error: {good}: {expected[name]}\n"), name


def test_links_inside_a_directory_config_are_followed(tmp_path: Path) -> None:
    good = config_dir(tmp_path)
    (good / "data.yaml").symlink_to(good / "model" / "net.yaml")
    (good / "ignored.txt").symlink_to("/dev/zero")  # not a config file: never opened
    code, output = invoke("diff", "--format", "json", str(good), str(tmp_path / "good" / "optim.yaml"))
    assert code == 1, output
    assert {d["key"] for d in json.loads(output)} >= {"data.width"}


# -- 8: odd git revisions and paths ----------------------------------------------------------


def test_odd_git_revisions_and_paths_are_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from commit_repos import git, make_repo

    repo = make_repo(tmp_path, commits=2, culprit=1, broken=None)
    (repo.path / "c.yaml").write_text("lr: 0.1\n")
    git(repo.path, "add", "c.yaml")
    git(repo.path, "commit", "-qm", "a config")
    monkeypatch.chdir(repo.path)
    expected = {
        "HEAD:../../../etc/passwd": f"'../../../etc/passwd' is outside the repository ({repo.path})",
        "HEAD:sub/../../x.yaml": f"'sub/../../x.yaml' is outside the repository ({repo.path})",
        "@{-1}:c.yaml": "unknown git revision '@{-1}'",
        "HEAD@{99}:c.yaml": "unknown git revision 'HEAD@{99}'",
    }
    for spec, problem in expected.items():
        assert invoke("diff", spec, "c.yaml") == (2, f"Error: {spec}: {problem}\n"), spec
    code, output = invoke("diff", "HEAD@{1.year.ago}:c.yaml", "c.yaml")
    assert (code, output.splitlines()[-1]) == (0, "No differences."), output  # reflog dates are git's to read
    for rev in ("@{-1}", "HEAD@{99}"):
        args = ["search", "--repo", str(repo.path), "--command", "true", "--metric", "val_loss", "--steps", "5",
                "--out", str(tmp_path / "out"), "--good-rev", rev, "--bad-rev", "HEAD"]  # fmt: skip
        assert invoke(*args) == (2, f"Error: unknown git revision '{rev}' in {repo.path}\n")


# -- 9: a Python config that assigns a name twice ------------------------------------------


def test_a_python_config_assigning_a_name_twice_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "train_config.py"
    config.write_text("batch_size = 12\nlearning_rate = 6e-4\n\nbatch_size = 32\n")
    code, output = invoke("diff", str(config), str(config))
    assert (code, output) == (
        2, f"Error: {config}: line 4: 'batch_size' assigned again (first at line 1); "
           "a config file sets each name once (which value would the trainer see?)\n",
    )  # fmt: skip


# -- 13: odd journal lines on --resume -------------------------------------------------------


def small_search(tmp_path: Path, *extra: str) -> tuple[int, str]:
    """A search of two differences (lr matters) with the fake trainer, into tmp_path/out."""
    fake = {"metric": "loss", "value": "1.0 + (lr < 0.01)", "noise": 0.01}
    for name, data in (("good", {"fake": fake, "lr": 0.02, "wd": 0.1}), ("bad", {"fake": fake, "lr": 0.001, "wd": 0.2})):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data))
    return invoke("search", str(tmp_path / "good.yaml"), str(tmp_path / "bad.yaml"), "--command", COMMAND,
                  "--metric", "loss", "--mode", "min", "--steps", "5", "--seeds", "2", "--parallel", "2",
                  "--out", str(tmp_path / "out"), *extra)  # fmt: skip


def test_resume_skips_odd_journal_lines_and_says_how_many(tmp_path: Path) -> None:
    code, output = small_search(tmp_path)
    assert code == 0, output
    journal = tmp_path / "out" / "journal.jsonl"
    lines = journal.read_text().splitlines()
    trial_at = next(n for n, line in enumerate(lines) if '"event": "trial"' in line)
    lines[trial_at] = json.dumps({"event": "trial", "trial": {}, "outcome": [1, 2]})  # JSON, wrong shape
    lines.insert(trial_at + 1, '{"event": "tri\x00al", garbage')
    journal.write_text("\n".join(lines) + "\n")
    code, output = small_search(tmp_path, "--resume")
    assert code == 0, output
    note = f"Warning: {journal}: 2 unreadable lines skipped (lines {trial_at + 1}, {trial_at + 2}); their trials run again"
    assert note in output.splitlines(), output


# -- 11: a full disk under --out -------------------------------------------------------------

FULL_DISK_SCRIPT = """
set -u
mount -t tmpfs -o size=1m tmpfs "$DISK" || exit 77
head -c 1000000 /dev/zero > "$DISK/fill"
"$PY" -m bisect_runs.cli search good.yaml bad.yaml --command "$CMD" --metric loss --mode min --steps 5 --seeds 2 --out "$DISK/out"
echo "first exit $?"
"$PY" -c 'import json, sys; [json.loads(line) for line in open(sys.argv[1])]; print("journal whole")' "$DISK/out/journal.jsonl"
rm "$DISK/fill"
"$PY" -m bisect_runs.cli search good.yaml bad.yaml --command "$CMD" --metric loss --mode min --steps 5 --seeds 2 --out "$DISK/out" --resume -q
echo "resumed exit $?"
"""


def test_a_full_disk_is_one_error_line_and_the_journal_stays_whole(tmp_path: Path) -> None:
    import os
    import shutil
    import subprocess

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a small tmpfs")
    fake = {"metric": "loss", "value": "1.0 + (lr < 0.01)", "noise": 0.01}
    for name, data in (("good", {"fake": fake, "lr": 0.02, "wd": 0.1}), ("bad", {"fake": fake, "lr": 0.001, "wd": 0.2})):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data))
    disk = tmp_path / "disk"
    disk.mkdir()
    env = {**os.environ, "DISK": str(disk), "PY": sys.executable, "CMD": COMMAND}
    done = subprocess.run(["unshare", "-rm", "sh", "-c", FULL_DISK_SCRIPT], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    if done.returncode == 77 or "unshare failed" in done.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    errors = [line for line in done.stderr.splitlines() if line.startswith(("Error", "Traceback"))]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"Error: {disk}/out: no space left on the device (") and errors[0].endswith(
        " kB free); the journal keeps every trial finished so far: free some space and rerun with --resume, or choose another --out"
    ), errors[0]
    assert "first exit 2" in done.stdout and "journal whole" in done.stdout, done.stdout + done.stderr
    assert "resumed exit 0" in done.stdout, done.stdout + done.stderr
