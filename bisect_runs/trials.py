"""Trials: one training run of a variant config for a step budget with one seed.

This module holds the records and prepares a trial (its directory, its config, the substituted
command: `prepare_launch`), the same for every executor; `bisect_runs.outcomes` judges how it went.
Layout of `OUT_DIR/trials/<id>/`: `config/` (the variant as written), `run/` (the trainer's
`{run_dir}`, empty at start), `stdout.log`, `stderr.log`, `launch.json`, `outcome.json`, and
`attempt-N/` holding earlier attempts of a retried trial. See docs/trials.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import sys
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bisect_runs.atomic import write_json
from bisect_runs.checkpoint import Checkpoint
from bisect_runs.errors import TrialError
from bisect_runs.executors.base import Launch

# Outcome statuses.
OK, DIVERGED, CRASHED, TIMEOUT, INTERRUPTED = "ok", "diverged", "crashed", "timeout", "interrupted"
FINISHED = frozenset({OK, DIVERGED, CRASHED, TIMEOUT})  # interrupted trials are run again on --resume

PLACEHOLDERS = ("config", "run_dir", "steps", "seed", "checkpoint", "overrides", "args", "python")
ABSENT_JSON: dict[str, bool] = {"$absent": True}  # how a removed key (variants.ABSENT) is written in JSON
ENV_PREFIX = "BISECT_RUNS_"
START_ERROR = "start_error"  # ProcessEnd.extra key set by executors when the command could not start
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")  # other braces (JSON arguments) stay literal
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_./:@+-]+")  # needs no quotes in an override

WriteConfig = Callable[["Trial", Path], Path]

if TYPE_CHECKING:
    from bisect_runs.overrides import OverrideStyle


@dataclass(frozen=True)
class Trial:
    """A variant config (as changes to the bad config), a seed, a budget and a command template."""

    label: str  # human name of the variant, e.g. "A", "B", "B - {lrStart,lrEnd}"
    changes: tuple[tuple[str, Any], ...]  # (difference key, value to set) relative to the bad config, sorted
    seed: int
    steps: int
    command: tuple[str, ...]  # the template, shlex-split, placeholders unsubstituted
    id: str = ""  # stable hash of the above (label excluded); filled by `make_trial`
    checkpoint: Checkpoint | None = None  # the shared prefix the trial resumes from (part of its id)

    @property
    def start_step(self) -> int:
        """The step the trial starts from: its checkpoint's, else 0."""
        return 0 if self.checkpoint is None else self.checkpoint.step


@dataclass
class Outcome:
    """What came of a trial: status, the reduced metric, what the trainer reported of speed and memory."""

    trial_id: str
    status: str
    value: float | None = None
    wall_s: float = 0.0
    returncode: int | None = None
    steps_per_s: float | None = None
    peak_gpu_mem_mb: float | None = None
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, metric) as logged
    stderr_tail: str = ""
    attempt: int = 1
    job_id: str | None = None
    slot: str | None = None
    detail: str = ""
    # A crash that did not repeat on retry (or a lost job): infrastructure, not judged.
    infra: bool = False
    attempts: list[dict[str, Any]] = field(default_factory=list)  # earlier attempts (status, detail, ...)
    steps_run: int | None = None  # the step the trainer reached: the budget, or where it was stopped early
    start_step: int = 0  # the step it started from (its checkpoint's): it ran steps_run - start_step steps
    stopped_early: dict[str, Any] | None = None  # curves.EarlyStop.to_json() when stopped early

    @property
    def finished(self) -> bool:
        """True unless interrupted (interrupted trials run again on resume)."""
        return self.status in FINISHED


@dataclass(frozen=True)
class TrialPaths:
    """Where a trial's files live under OUT_DIR."""

    dir: Path

    @property
    def config_dir(self) -> Path:
        return self.dir / "config"

    @property
    def run_dir(self) -> Path:
        return self.dir / "run"

    @property
    def stdout(self) -> Path:
        return self.dir / "stdout.log"

    @property
    def stderr(self) -> Path:
        return self.dir / "stderr.log"

    @property
    def launch(self) -> Path:
        return self.dir / "launch.json"

    @property
    def outcome(self) -> Path:
        return self.dir / "outcome.json"


def trial_paths(out_dir: Path, trial_id: str) -> TrialPaths:
    """The paths of trial `trial_id` in OUT_DIR (absolute, so trainers may change directory)."""
    return TrialPaths(Path(out_dir).absolute() / "trials" / trial_id)


# -- identity and JSON ------------------------------------------------------------------


def make_trial(
    label: str,
    changes: Mapping[str, Any] | Iterable[tuple[str, Any]],
    seed: int,
    steps: int,
    command: Sequence[str],
    checkpoint: Checkpoint | None = None,
) -> Trial:
    """A trial with its id: 16 hex digits of sha256 over changes, seed, steps, command and checkpoint."""
    items = changes.items() if isinstance(changes, Mapping) else changes
    ordered = tuple(sorted(((str(k), v) for k, v in items), key=lambda kv: kv[0]))
    command = tuple(command)
    tid = trial_id(ordered, seed, steps, command, checkpoint)
    return Trial(label, ordered, int(seed), int(steps), command, tid, checkpoint)


def trial_id(
    changes: Iterable[tuple[str, Any]], seed: int, steps: int, command: Sequence[str], checkpoint: Checkpoint | None = None
) -> str:
    """Stable id: the same variant, seed, budget, command and checkpoint give the same id in any process."""
    fields = {"changes": [[k, v] for k, v in changes], "seed": int(seed), "steps": int(steps), "command": list(command)}
    if checkpoint is not None:  # absent otherwise: trials without one keep the ids they always had
        fields["checkpoint"] = checkpoint.to_json()
    canonical = json.dumps(
        fields,
        sort_keys=True,
        separators=(",", ":"),
        default=encode_value,
        allow_nan=True,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def encode_value(value: Any) -> Any:
    """JSON for config values that json cannot write: ABSENT, sets, dates and other objects."""
    if _is_absent(value):
        return ABSENT_JSON
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def decode_value(value: Any) -> Any:
    """The inverse of `encode_value` for ABSENT (other values come back as JSON types)."""
    if value == ABSENT_JSON:
        from bisect_runs.variants import ABSENT  # lazily: variants is heavier than the records

        return ABSENT
    return value


def _is_absent(value: Any) -> bool:
    """True for `bisect_runs.variants.ABSENT` (which cannot exist unless that module is loaded)."""
    variants = sys.modules.get("bisect_runs.variants")
    return variants is not None and value is getattr(variants, "ABSENT", object())


def trial_to_json(trial: Trial) -> dict[str, Any]:
    """A trial as a JSON-ready dict (changes as [key, value] pairs, ABSENT as {"$absent": true})."""
    return {
        "id": trial.id,
        "label": trial.label,
        "changes": [[k, _jsonable(v)] for k, v in trial.changes],
        "seed": trial.seed,
        "steps": trial.steps,
        "command": list(trial.command),
        **({"checkpoint": trial.checkpoint.to_json()} if trial.checkpoint is not None else {}),
    }


def trial_from_json(data: Mapping[str, Any]) -> Trial:
    """A trial read back from the journal."""
    changes = tuple((str(k), decode_value(v)) for k, v in data.get("changes", []))
    return Trial(
        label=str(data.get("label", "")),
        changes=changes,
        seed=int(data["seed"]),
        steps=int(data["steps"]),
        command=tuple(data.get("command", [])),
        id=str(data["id"]),
        checkpoint=Checkpoint.from_json(data.get("checkpoint")),
    )


def outcome_to_json(outcome: Outcome) -> dict[str, Any]:
    """An outcome as a JSON-ready dict (history as [step, value] pairs)."""
    data = dataclasses.asdict(outcome)
    data["history"] = [[s, v] for s, v in outcome.history]
    return data


def outcome_from_json(data: Mapping[str, Any]) -> Outcome:
    """An outcome read back from outcome.json or the journal (unknown keys ignored)."""
    known = {f.name for f in dataclasses.fields(Outcome)}
    kwargs = {k: v for k, v in data.items() if k in known}
    kwargs["history"] = [(int(s), float("nan") if v is None else float(v)) for s, v in data.get("history", [])]
    return Outcome(**kwargs)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=encode_value, allow_nan=True))


# -- preparing --------------------------------------------------------------------------


def check_command(command: Sequence[str]) -> None:
    """Raise TrialError if the template is empty or names an unknown placeholder."""
    if not command:
        raise TrialError("the trial command is empty: set `command` in bisect.yaml or pass --command")
    unknown = sorted({m.group(1) for word in command for m in _PLACEHOLDER.finditer(word)} - set(PLACEHOLDERS))
    if unknown:
        valid = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
        names = ", ".join("{" + u + "}" for u in unknown)
        raise TrialError(f"command template: unknown placeholder(s) {names}; valid: {valid}")


def substitute(
    command: Sequence[str], values: Mapping[str, str], overrides: Sequence[str], args: Sequence[str] = ()
) -> tuple[str, ...]:
    """Fill placeholders in every word; a standalone `{overrides}` or `{args}` becomes one word per item."""
    check_command(command)
    lists = {"overrides": list(overrides), "args": list(args)}
    argv: list[str] = []
    for word in command:
        if word in ("{overrides}", "{args}"):
            argv.extend(lists[word[1:-1]])
            continue
        argv.append(_PLACEHOLDER.sub(lambda m: _fill(m, values, lists), word))
    return tuple(argv)


def _fill(match: re.Match[str], values: Mapping[str, str], lists: Mapping[str, list[str]]) -> str:
    name = match.group(1)
    return " ".join(lists[name]) if name in lists else values[name]


def uses_placeholder(command: Sequence[str], name: str) -> bool:
    """True when some word of the template holds `{name}`."""
    return any("{" + name + "}" in word for word in command)


def override_words(changes: Iterable[tuple[str, Any]], base_keys: Container[str] | None = None) -> list[str]:
    """Hydra-style overrides: `key=value`, `~key` for a removed key, `+key=value` for a key
    the base config lacks (when `base_keys`, the base config's flat keys, are known)."""
    words = []
    for key, value in changes:
        if _is_absent(value):
            words.append(f"~{key}")
        else:
            add = "+" if base_keys is not None and key not in base_keys else ""
            words.append(f"{add}{key}={override_value(value)}")
    return words


def override_value(value: Any) -> str:
    """A value as Hydra reads it back: plain strings bare, others quoted; the rest in JSON (true, [1,2])."""
    if isinstance(value, str):
        if _PLAIN_WORD.fullmatch(value) and _reads_as_itself(value):
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return json.dumps(value, separators=(",", ":"), default=encode_value)


def _reads_as_itself(text: str) -> bool:
    """False for strings an override parser would turn into something else ("true", "1e-5", "null")."""
    try:
        float(text)
        return False
    except ValueError:
        pass
    try:
        return yaml.safe_load(text) == text
    except yaml.YAMLError:
        return False


def config_changes(
    trial: Trial, steps_key: str | None = None, seed_key: str | None = None, checkpoint_key: str | None = None
) -> tuple[tuple[str, Any], ...]:
    """The trial's changes plus the budget, seed and checkpoint where the config itself names them."""
    merged = dict(trial.changes)
    if steps_key:
        merged[steps_key] = trial.steps
    if seed_key:
        merged[seed_key] = trial.seed
    if checkpoint_key and trial.checkpoint is not None:
        merged[checkpoint_key] = trial.checkpoint.path
    return tuple(sorted(merged.items(), key=lambda kv: kv[0]))


def prepare_launch(
    trial: Trial,
    out_dir: Path,
    write_config: WriteConfig,
    timeout_s: float | None = None,
    gpus: int = 0,
    steps_key: str | None = None,
    seed_key: str | None = None,
    attempt: int = 1,
    base_keys: Container[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    style: OverrideStyle | None = None,
    base_values: Mapping[str, Any] | None = None,
    run_dir_key: str | None = None,
    checkpoint_key: str | None = None,
) -> Launch:
    """Create the trial's directory, write its config, substitute its command; return the launch.

    `style` writes `{overrides}` and `{args}`; `base_values` (the bad config's flat values) fill `{args}`;
    `run_dir_key` names the config key that gets `{run_dir}` (`output_dir` of `TrainingArguments`),
    `checkpoint_key` the one that gets the checkpoint's path.
    """
    from bisect_runs.overrides import HYDRA, args_words, override_words_for

    if not trial.id:
        raise TrialError(f"trial {trial.label!r} has no id: build trials with make_trial")
    paths = trial_paths(out_dir, trial.id)
    _fresh_dir(paths, attempt)
    changes = config_changes(trial, steps_key, seed_key, checkpoint_key)
    if run_dir_key:
        changes = tuple(sorted({**dict(changes), run_dir_key: str(paths.run_dir)}.items(), key=lambda kv: kv[0]))
    config = Path(write_config(dataclasses.replace(trial, changes=changes), paths.config_dir)).absolute()
    paths.run_dir.mkdir()
    values = {"config": str(config), "run_dir": str(paths.run_dir), "steps": str(trial.steps), "seed": str(trial.seed)}
    if trial.checkpoint is not None:
        values.update(checkpoint=trial.checkpoint.path, checkpoint_step=str(trial.checkpoint.step))
    elif uses_placeholder(trial.command, "checkpoint"):
        raise TrialError(f"trial {trial.label!r}: the command uses {{checkpoint}} but the trial has no checkpoint")
    env = {ENV_PREFIX + k.upper(): v for k, v in values.items()}
    env.update(extra_env or {})  # the trackers' grouping (bisect_runs.trackers)
    values["python"] = sys.executable  # the interpreter running bisect-runs (and its packages)
    style = style or HYDRA
    overrides = override_words_for(changes, style, base_keys) if uses_placeholder(trial.command, "overrides") else []
    args = args_words(base_values or {}, changes, style) if uses_placeholder(trial.command, "args") else []
    launch = Launch(
        trial_id=trial.id,
        argv=substitute(trial.command, values, overrides, args),
        run_dir=paths.run_dir,
        env=env,
        stdout_path=paths.stdout,
        stderr_path=paths.stderr,
        timeout_s=timeout_s,
        gpus=gpus,
    )
    write_json(paths.launch, _launch_json(launch, attempt), default=encode_value)
    return launch


def load_launch(out_dir: Path, trial_id: str) -> Launch | None:
    """The launch prepared earlier for a trial (to re-attach to a job still running), if any."""
    path = trial_paths(out_dir, trial_id).launch
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Launch(
            trial_id=data["trial_id"],
            argv=tuple(data["argv"]),
            run_dir=Path(data["run_dir"]),
            env=dict(data["env"]),
            stdout_path=Path(data["stdout_path"]),
            stderr_path=Path(data["stderr_path"]),
            timeout_s=data.get("timeout_s"),
            gpus=int(data.get("gpus", 0)),
            cwd=data.get("cwd"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _launch_json(launch: Launch, attempt: int) -> dict[str, Any]:
    data = {f.name: getattr(launch, f.name) for f in dataclasses.fields(Launch)}
    return {**data, "argv": list(launch.argv), "attempt": attempt, **{k: str(data[k]) for k in ("run_dir", "stdout_path", "stderr_path")}}


SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH", re.IGNORECASE)


def record_environment(launch: Launch, env: Mapping[str, str]) -> None:
    """Add to the trial's launch.json the whole environment its trainer got (secrets' values withheld)."""
    path = launch.run_dir.parent / "launch.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # not a trial directory this search wrote (a bare Launch in a test)
    data["environment"] = {k: ("<withheld>" if SECRET_NAME.search(k) else v) for k, v in sorted(env.items())}
    write_json(path, data)


def _fresh_dir(paths: TrialPaths, attempt: int) -> None:
    """Start from an empty trial directory; a retry first moves the earlier attempt aside."""
    if attempt > 1 and paths.dir.exists():
        keep = paths.dir / f"attempt-{attempt - 1}"
        keep.mkdir(exist_ok=True)
        for child in list(paths.dir.iterdir()):
            if not child.name.startswith("attempt-"):
                child.rename(keep / child.name)
    elif paths.dir.exists():
        shutil.rmtree(paths.dir)
    paths.dir.mkdir(parents=True, exist_ok=True)
    paths.config_dir.mkdir()


def write_outcome(out_dir: Path, outcome: Outcome) -> Path:
    """Write `trials/<id>/outcome.json` atomically."""
    path = trial_paths(out_dir, outcome.trial_id).outcome
    write_json(path, outcome_to_json(outcome), default=encode_value)
    return path


def read_outcome(out_dir: Path, trial_id: str) -> Outcome | None:
    """A trial's outcome.json, if it was written."""
    try:
        return outcome_from_json(json.loads(trial_paths(out_dir, trial_id).outcome.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
