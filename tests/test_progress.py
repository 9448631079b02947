"""The progress display: plain lines with round and phase in a pipe, a live rich display on a terminal."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from test_search_e2e import project, run_search

from bisect_runs.progress import Progress, explanation_so_far
from bisect_runs.trials import OK, Outcome, make_trial

FAKE = {"value": "1.0 + (lr < 0.01)", "noise": 0.05}


def test_a_pipe_gets_a_line_per_round_at_once_and_round_and_phase_on_every_trial(tmp_path: Path) -> None:
    code, _, output = run_search(project(tmp_path, FAKE, seeds=2, max_runs=6))
    lines = output.splitlines()
    assert re.fullmatch(r"round 1 of ~\d+ \(calibrate\): 2 trials", lines[0])  # before any trial ends
    trial_lines = [line for line in lines if line.startswith("trial ")]
    assert trial_lines and all(re.search(r" \[round \d+, (calibrate|screen|confirm)\]$", t) for t in trial_lines)
    assert sum(line.endswith(" [round 1, calibrate]") for line in trial_lines) == 2
    done = next(line for line in lines if line.startswith("round 1 of ~") and " done in " in line)
    assert "2/2 trials; so far B is worse than A by +" in done


def test_eta_counts_down_between_trial_ends() -> None:
    progress = Progress(io.StringIO(), live=False)
    first, second = (make_trial("A", {}, seed, 10, ("python", "{config}")) for seed in (0, 1))
    progress.begin(2, 0, 1)
    progress.started(first, "1")
    progress.finished(first, Outcome(first.id, OK, value=1.0, wall_s=5.0))
    progress.started(second, "2")
    before = progress.eta_s()
    time.sleep(0.3)
    after = progress.eta_s()
    assert before is not None and after is not None and 4.5 < before <= 5.0 and after <= before - 0.25


def test_the_best_explanation_names_the_difference_with_the_largest_harm() -> None:
    values = [(frozenset(), 1.0), (frozenset({0, 1}), 2.0), (frozenset({0}), 2.0), (frozenset({1}), 1.0)]
    assert explanation_so_far(values, ["lr", "dropout"], "min") == (
        "so far B is worse than A by +1; best explanation so far: lr (+1 when B has it)"
    )


def test_a_terminal_gets_one_live_display_through_a_pseudo_terminal(tmp_path: Path) -> None:
    root = project(tmp_path, {**FAKE, "sleep": 1.5}, seeds=1, max_runs=4)
    text = _run_in_pty([sys.executable, "-m", "bisect_runs", "search", "--project", str(root / "bisect.yaml")], root)
    assert "\x1b[2K" in text and "\x1b[1A" in text  # rich redraws the display in place
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")
    assert "calibrate · round 1 of ~" in plain and "trials 2/2 done | 0 running | 0 queued" in plain
    assert "calibrate · round 2 of ~" in plain and re.search(r"^round 2 of ~\d+ \(calibrate\) done in ", plain, re.MULTILINE)
    etas = [float(m) for m in re.findall(r"ETA (\d+\.\d)s", plain)]
    assert any(later < earlier for earlier, later in zip(etas, etas[1:], strict=False) if earlier > 0.5)  # counts down
    assert "so far B is worse than A by" in plain
    assert not re.search(r"^trial \w+ .*: ok ", plain, re.MULTILINE)  # finished trials are not listed at normal level


def _run_in_pty(argv: list[str], cwd: Path, timeout_s: float = 120.0) -> str:
    """Run `argv` with stdout and stderr on a pseudo-terminal; return everything it wrote."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "TERM": "xterm-256color"}
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed: the program ended
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(leader)
    return b"".join(chunks).decode("utf-8", errors="replace")
