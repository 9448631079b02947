"""Search settings: the project file `bisect.yaml` merged with command-line flags.

Paths in bisect.yaml are relative to the file's directory. Every invalid key or value is
reported in one `SettingsError` that lists the valid names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bisect_runs.errors import SettingsError
from bisect_runs.executors import EXECUTORS
from bisect_runs.metrics import SOURCES as METRIC_SOURCES
from bisect_runs.overrides import parse_style
from bisect_runs.strategies import STRATEGIES

if TYPE_CHECKING:
    from bisect_runs.diff import DiffOptions

PROJECT_FILE = "bisect.yaml"
MODES = ("min", "max")


@dataclass
class Settings:
    """Everything a search needs to know, after merging bisect.yaml and flags."""

    good: str | None = None
    bad: str | None = None
    format_good: str | None = None
    format_bad: str | None = None
    command: str | None = None
    metric: str | None = None
    mode: str = "min"
    metric_source: str = "jsonl"
    metric_pattern: str | None = None  # regex source: one group capturing the value
    metric_file: str | None = None  # csv source: path relative to the run directory
    reduce: str = "last"  # last | min | max | mean_last:K
    steps: int | None = None
    steps_key: str | None = None
    seed_key: str | None = None
    run_dir_key: str | None = None  # config key set to the trial's {run_dir} (`output_dir`)
    checkpoint: str | None = None  # the shared prefix every trial resumes from ({checkpoint}; bisect_runs.checkpoint)
    checkpoint_step: int | None = None  # the step that checkpoint was taken at: trials run the steps after it
    checkpoint_key: str | None = None  # config key set to the checkpoint's path
    seeds: int | None = None  # seeds per arm for oat/ddmin and the first calibration round
    seed_base: int = 0
    parallel: int | str = "auto"
    gpus_per_trial: int = 0
    strategy: str = "auto"
    executor: str = "local"
    timeout: float | None = None
    out: str = "bisect-out"
    resume: bool = False
    resume_changed: bool = False  # start a search with other settings in an OUT_DIR that holds one
    retries: int = 1
    early_stop: bool = False  # stop a trial once its outcome is clear against A's and B's curves (opt-in: see docs/search.md)
    min_effect: float = 0.0
    max_runs: int | None = None
    max_hours: float | None = None
    failure_value: float | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    ignore: list[str] = field(default_factory=list)
    defaults: dict[str, Any] = field(default_factory=dict)
    defaults_file: str | None = None
    rules: str | None = None
    groups: dict[str, list[str]] = field(default_factory=dict)
    include_all: bool = False  # also search over differences ranked "none" (runtime keys)
    slurm: dict[str, Any] = field(default_factory=dict)
    ray: dict[str, Any] = field(default_factory=dict)
    good_rev: str | None = None
    bad_rev: str | None = None
    repo: str | None = None
    config: str | None = None  # config used at every commit when bisecting code
    override_style: str = "hydra"  # how {overrides} and {args} are written: hydra | equals | space [python leaf flags]
    base_dir: str = "."  # directory relative paths are resolved against

    def diff_options(self, strict_types: bool = False) -> DiffOptions:
        """How `diff` and `search` compare the two configs: the same ignore, aliases, defaults, rules, groups."""
        from bisect_runs.diff import DiffOptions, load_defaults

        defaults = dict(load_defaults(self.path(self.defaults_file))) if self.defaults_file else {}
        defaults.update(self.defaults)
        return DiffOptions(
            ignore=list(self.ignore),
            aliases=dict(self.aliases),
            defaults=defaults,
            rules_path=self.path(self.rules),
            strict_types=strict_types,
            groups=dict(self.groups),
        )

    def config_spec(self, value: str | None) -> str | None:
        """A config named in the settings: a path against the project's directory, or REV:PATH as given."""
        if value is None:
            return None
        if ":" in value and not Path(value).exists():
            return value
        return str(self.path(value))

    def path(self, value: str | None) -> Path | None:
        """Resolve a path setting against the project file's directory."""
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_FILE_ONLY_ALIASES = {"format-good": "format_good", "format-bad": "format_bad"}


def load_project(path: str | Path | None = None) -> dict[str, Any]:
    """Read bisect.yaml (or return {} when there is none and none was asked for)."""
    explicit = path is not None
    p = Path(path) if path is not None else Path(PROJECT_FILE)
    if not p.exists():
        if explicit:
            raise SettingsError(f"{p}: no such project file")
        return {}
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f": line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SettingsError(f"{p}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{p}: expected a mapping of settings at the top level")
    data = {_FILE_ONLY_ALIASES.get(k, str(k).replace("-", "_")): v for k, v in data.items()}
    data.setdefault("base_dir", str(p.parent.resolve()))
    data["_file"] = str(p)
    return data


def diff_project(path: str | None, a: str | None, b: str | None, skip: bool = False) -> dict[str, Any]:
    """The project settings `diff` compares with: all of bisect.yaml when it names A and B (or
    they are omitted, or --project is given); none when the user diffs other files."""
    if skip:
        return {}
    project = load_project(path)
    if a is None or path is not None or not project:
        if a is None and not (project.get("good") and project.get("bad")):
            raise SettingsError("diff needs A and B (or a bisect.yaml naming good and bad)")
        return project
    probe = make_settings(project, {})
    same = all(_same_path(probe.config_spec(mine), given) for mine, given in ((probe.good, a), (probe.bad, b)))
    return project if same else {}


def _same_path(spec: str | None, given: str | None) -> bool:
    if spec is None or given is None:
        return False
    if spec == given:
        return True
    return Path(spec).exists() and Path(given).exists() and Path(spec).resolve() == Path(given).resolve()


def make_settings(project: dict[str, Any], flags: dict[str, Any]) -> Settings:
    """Merge project-file values with flags (flags win; None flags are ignored) and validate."""
    source = project.get("_file", PROJECT_FILE)
    merged = {k: v for k, v in project.items() if k != "_file"}
    unknown = sorted(k for k in merged if k not in _FIELDS)
    if unknown:
        valid = ", ".join(sorted(k for k in _FIELDS if k != "base_dir"))
        raise SettingsError(f"{source}: unknown setting(s) {', '.join(unknown)}; valid: {valid}")
    given = {k: v for k, v in flags.items() if v is not None and v != () and v != []}
    merged["aliases"] = _aliases(merged.get("aliases", {}), source)
    merged["groups"] = _groups(merged.get("groups", {}), source)
    if "aliases" in given:
        given["aliases"] = _aliases(given["aliases"], "Invalid value for --alias:")
    if "groups" in given:
        given["groups"] = _groups(given["groups"], "Invalid value for --group:")
    for name in ("slurm", "ray"):  # `--slurm partition=gpu` adds to bisect.yaml's `slurm:` mapping
        if isinstance(given.get(name), (list, tuple)):
            base: dict[str, Any] = merged[name] if isinstance(merged.get(name), dict) else {}
            given[name] = {**base, **_parameters(given[name], f"Invalid value for --{name}:")}
    merged.update(given)
    if isinstance(merged.get("ignore"), tuple):
        merged["ignore"] = list(merged["ignore"])
    if isinstance(merged.get("defaults"), str):  # `defaults: FILE` names a defaults file
        merged["defaults_file"] = merged.pop("defaults")
    settings = Settings(**merged)
    _validate(settings, source, frozenset(given))
    return settings


# Settings a reproduced search takes elsewhere (configs, command, budget, output, the checkpoint
# flags), that say how to run rather than what (resume), or that no flag spells (inline defaults).
_NOT_FLAGS = frozenset({
    "good", "bad", "command", "metric", "mode", "steps", "strategy", "out", "resume", "resume_changed",
    "base_dir", "defaults", "checkpoint", "checkpoint_step", "checkpoint_key", "good_rev", "bad_rev", "repo", "config",
})  # fmt: skip
_PATHS = frozenset({"defaults_file", "rules"})


def settings_flags(settings: Settings, cwd: Path) -> list[str]:
    """The flags that give a search run from `cwd` without bisect.yaml the same settings as `settings`,
    beside its configs, command, metric, mode, steps, strategy and output (every one that is not a default).

    `make_settings({}, parsed flags)` gives back the same values: `--ignore` and the mappings repeat
    (`--aliases OLD=NEW`, `--groups NAME=GLOB,GLOB`, `--slurm KEY=VALUE` with the value in YAML);
    paths are relative to `cwd` where they lie inside it.
    """
    words: list[str] = []
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if f.name in _NOT_FLAGS or value == default or value is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):  # every boolean setting defaults to false
            words.append(flag)
        elif isinstance(value, list):
            words += [w for item in value for w in (flag, str(item))]
        elif isinstance(value, dict):
            text = (lambda v: ",".join(v)) if f.name == "groups" else _yaml_text
            words += [w for k, v in value.items() for w in (flag, f"{k}={text(v)}")]
        elif f.name in _PATHS:
            words += [flag, relative_path(settings.path(str(value)), cwd)]
        else:
            words += [flag, str(value)]
    return words


def _yaml_text(value: Any) -> str:
    """A value as `--slurm KEY=VALUE` reads it back (YAML): a plain string where YAML reads it as itself."""
    if isinstance(value, str) and value.strip() and yaml.safe_load(value) == value:
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()


def relative_path(path: object, base: object) -> str:
    """`path` relative to the directory `base` where it lies inside it; as given otherwise, or without a base."""
    try:
        return str(Path(str(path)).resolve().relative_to(Path(str(base)).resolve())) if base else str(path)
    except ValueError:
        return str(path)


def _aliases(value: Any, source: str) -> dict[str, str]:
    """Accept a mapping OLD: NEW or a list of 'OLD=NEW' strings."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for item in value or []:
        old, sep, new = str(item).partition("=")
        if not sep or not old or not new:
            raise SettingsError(f"{_where(source, 'alias')}{item!r} is not of the form OLD=NEW")
        out[old.strip()] = new.strip()
    return out


def _parameters(items: Any, source: str) -> dict[str, Any]:
    """'KEY=VALUE' strings (the --slurm and --ray flags) as a mapping, each value read as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"{source} {item!r} is not of the form KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _where(source: str, what: str) -> str:
    """`bisect.yaml: alias ` before a file's problem; a flag's own prefix (`Invalid value for --alias:`) as is."""
    return f"{source} " if source.endswith(":") else f"{source}: {what} "


def _groups(value: Any, source: str) -> Any:
    """Accept a mapping NAME: [GLOB, ...] or a list of 'NAME=GLOB,GLOB' strings (the --group flag)."""
    if not isinstance(value, (list, tuple)):
        return value
    out: dict[str, list[str]] = {}
    for item in value:
        name, sep, globs = str(item).partition("=")
        if not sep or not name.strip() or not globs.strip():
            raise SettingsError(f"{_where(source, 'group')}{item!r} is not of the form NAME=GLOB,GLOB")
        out[name.strip()] = [g.strip() for g in globs.split(",") if g.strip()]
    return out


def _validate(s: Settings, source: str, flagged: frozenset[str] = frozenset()) -> None:
    """Every problem at once, each named as the user wrote it: `--steps` for a flag, else the file's key."""
    problems: list[tuple[str, str]] = []

    def choice(name: str, valid: Iterable[str]) -> None:
        valid = tuple(valid)
        if getattr(s, name) not in valid:
            problems.append((name, f"must be one of {', '.join(valid)} (got {getattr(s, name)!r})"))

    choice("mode", MODES)
    choice("strategy", STRATEGIES)
    choice("executor", EXECUTORS)
    choice("metric_source", METRIC_SOURCES)
    for name, least in (("steps", 1), ("seeds", 1), ("max_runs", 1), ("retries", 0), ("gpus_per_trial", 0), ("checkpoint_step", 0)):
        v = getattr(s, name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < least):
            what = "a positive" if least else "a non-negative"
            problems.append((name, f"must be {what} integer (got {v!r})"))
    for name in ("timeout", "max_hours", "min_effect"):
        v = getattr(s, name)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
            problems.append((name, f"must be a non-negative number (got {v!r})"))
    if s.parallel != "auto" and (not isinstance(s.parallel, int) or s.parallel < 1):
        problems.append(("parallel", f"must be a positive integer or 'auto' (got {s.parallel!r})"))
    if not (s.reduce in ("last", "min", "max") or _is_mean_last(s.reduce)):
        problems.append(("reduce", f"must be last, min, max or mean_last:K (got {s.reduce!r})"))
    if not isinstance(s.early_stop, bool):
        problems.append(("early_stop", f"must be true or false (got {s.early_stop!r})"))
    for name in ("groups", "slurm", "ray", "defaults"):
        if not isinstance(getattr(s, name), dict):
            problems.append((name, "must be a mapping"))
    if isinstance(s.groups, dict):
        for gname, keys in s.groups.items():
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                problems.append((f"groups.{gname}", "must be a list of keys"))
    if not isinstance(s.ignore, list):
        problems.append(("ignore", "must be a list of key patterns"))
    try:
        parse_style(s.override_style if isinstance(s.override_style, str) else repr(s.override_style), "")
    except SettingsError as exc:
        problems.append(("override_style", str(exc).strip()))
    if problems:
        texts = [
            f"--{name.replace('_', '-')} {text}" if name in flagged else f"{source}: {name} {text}"
            for name, text in problems
        ]
        raise SettingsError("; ".join(texts))


def _is_mean_last(value: str) -> bool:
    head, _, k = str(value).partition(":")
    return head == "mean_last" and k.isdigit() and int(k) > 0


def parse_parallel(value: str | int | None) -> int | str | None:
    """Parse the --parallel flag: a positive integer or 'auto'."""
    if value is None or value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"--parallel must be a positive integer or 'auto' (got {value!r})") from None
