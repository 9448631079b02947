"""The journal: append + replay, torn last lines, the OUT_DIR lock, job ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bisect_runs.errors import JournalError
from bisect_runs.journal import Journal, read_journal
from bisect_runs.trials import CRASHED, INTERRUPTED, OK, Outcome, make_trial

CMD = ("train", "{config}")


def _trial(seed: int = 0):  # type: ignore[no-untyped-def]
    return make_trial("B", {"lr": 0.1}, seed, 10, CMD)


def test_record_and_replay_finished_outcomes(tmp_path: Path) -> None:
    ok, crashed, stopped = _trial(0), _trial(1), _trial(2)
    with Journal(tmp_path) as journal:
        journal.record(ok, Outcome(ok.id, OK, value=0.25, history=[(10, 0.25)]))
        journal.record(crashed, Outcome(crashed.id, CRASHED, returncode=1))
        journal.record(stopped, Outcome(stopped.id, INTERRUPTED))
        journal.event("round", number=1, trials=[ok.id])
        assert journal.finished(ok.id) is not None
    with Journal(tmp_path, resume=True) as journal:
        replayed = journal.finished(ok.id)
        assert replayed == Outcome(ok.id, OK, value=0.25, history=[(10, 0.25)])
        assert journal.finished(crashed.id) is not None and journal.finished(crashed.id).status == CRASHED  # type: ignore[union-attr]
        assert journal.finished(stopped.id) is None  # interrupted: run again
    lines = read_journal(tmp_path)
    assert [e["event"] for e in lines] == ["trial", "trial", "trial", "round"]
    assert lines[0]["trial"] == {"id": ok.id, "label": "B", "changes": [["lr", 0.1]], "seed": 0, "steps": 10, "command": list(CMD)}
    assert lines[0]["outcome"]["value"] == 0.25 and "time" in lines[0]


def test_torn_last_line_is_cut_before_appending(tmp_path: Path) -> None:
    first, second = _trial(0), _trial(1)
    with Journal(tmp_path) as journal:
        journal.record(first, Outcome(first.id, OK, value=1.0))
    path = tmp_path / "journal.jsonl"
    with path.open("a") as f:
        f.write('{"event": "trial", "trial": {"id": "tor')  # killed mid-write
    with Journal(tmp_path, resume=True) as journal:
        assert journal.finished(first.id) is not None
        journal.record(second, Outcome(second.id, OK, value=2.0))
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["event"] == "trial" for line in lines)


def test_existing_search_needs_resume(tmp_path: Path) -> None:
    trial = _trial()
    with Journal(tmp_path) as journal:
        journal.record(trial, Outcome(trial.id, OK, value=1.0))
    with pytest.raises(JournalError) as err:
        Journal(tmp_path).open()
    assert str(err.value) == (
        f"{tmp_path} already holds a search (1 trials in journal.jsonl): pass --resume to continue it, or choose another --out"
    )
    Journal(tmp_path, resume=True).open()  # the failed open released the lock


def test_second_search_on_the_same_out_dir_is_refused(tmp_path: Path) -> None:
    with Journal(tmp_path):
        with pytest.raises(JournalError) as err:
            Journal(tmp_path, resume=True).open()
        assert str(err.value) == f"{tmp_path} is in use by another search (pid {os.getpid()})"
    with Journal(tmp_path, resume=True):
        pass  # released on close


def test_lock_held_by_another_process_names_its_pid(tmp_path: Path) -> None:
    holder = textwrap.dedent(
        f"""
        import sys, time
        from bisect_runs.journal import Journal
        with Journal({str(tmp_path)!r}):
            print("locked", flush=True)
            sys.stdin.readline()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(JournalError, match=rf"is in use by another search \(pid {proc.pid}\)"):
            Journal(tmp_path, resume=True).open()
    finally:
        proc.kill()
        proc.wait()
    with Journal(tmp_path, resume=True):
        pass  # the kernel released the dead holder's lock


def test_job_ids_are_kept_until_the_trial_finishes(tmp_path: Path) -> None:
    trial = _trial()
    with Journal(tmp_path) as journal:
        journal.submitted(trial.id, "1234")
    with Journal(tmp_path, resume=True) as journal:
        assert journal.job_id(trial.id) == "1234"
        journal.record(trial, Outcome(trial.id, OK, value=1.0))
        assert journal.job_id(trial.id) is None


def test_read_journal_of_a_missing_out_dir_is_empty(tmp_path: Path) -> None:
    assert read_journal(tmp_path / "nothing") == []
