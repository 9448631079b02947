"""Reading configs from every common source into one `LoadedConfig` record.

`load_config("configs/baseline")`, `load_config("runs/e4/")`, `load_config("HEAD~3:train.yaml")`:
the format is sniffed from the name and the content unless `fmt` forces it. Every problem is
one `ConfigError` whose message names the source, the place and what was expected.
"""

from __future__ import annotations

import json
import re
import stat
import sys
from pathlib import Path
from typing import Any

from bisect_runs.errors import ConfigError, RunError
from bisect_runs.mlflow_runs import run_ref
from bisect_runs.sources import binary, markup, python, trackers
from bisect_runs.sources.git import AbsentAtRevision, load_git, split_rev_path
from bisect_runs.sources.limits import max_config_bytes, too_large
from bisect_runs.sources.loaded import FORMATS, LoadedConfig, SourceProblem
from bisect_runs.wandb_log import read_log as read_wandb_log

__all__ = ["FORMATS", "LoadedConfig", "load_config", "load_config_or_empty", "CONFIG_SUFFIXES"]

CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".toml")
PICKLE_SUFFIXES = (".pkl", ".pickle")
HF_NAMES = ("training_args.json", "config.json")
_SNIFF_BYTES = 8192


def load_config(spec: str | Path, fmt: str | None = None) -> LoadedConfig:
    """Read a config file, directory or git `REV:PATH`; `fmt` (one of FORMATS) forces the format."""
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"{spec}: unknown format '{fmt}' (expected one of {', '.join(FORMATS)})")
    run_id = run_ref(spec)
    if run_id is not None:
        return _load_tracked_run(run_id, str(spec))
    path = Path(spec)
    if path.exists():
        return load_path(path, fmt, str(spec))
    if isinstance(spec, str) and split_rev_path(spec) is not None:
        return load_git(spec, fmt, load_path)
    raise ConfigError(f"{spec}: no such file or directory")


def load_config_or_empty(spec: str | Path, fmt: str | None = None, *, absent_as_empty: bool = False) -> LoadedConfig:
    """load_config; with absent_as_empty, a REV:PATH the revision lacks is an empty config (`dvc params diff`)."""
    try:
        return load_config(spec, fmt)
    except AbsentAtRevision as exc:
        if not absent_as_empty:
            raise
        return exc.as_empty()


def _load_tracked_run(run_id: str, where: str) -> LoadedConfig:
    """An MLflow run's params, read through the MLflow client from MLFLOW_TRACKING_URI."""
    from bisect_runs.mlflow_runs import read_run as read_mlflow_run

    try:
        run = read_mlflow_run(run_id, with_metrics=False)
    except RunError as exc:
        raise ConfigError(str(exc)) from None
    if not run.params:
        raise ConfigError(f"{where}: the MLflow run {run.name!r} logged no params")
    provenance = {"mlflow_layout": "store", "mlflow_run_id": run_id}
    return LoadedConfig(data=run.params, source=where, format="mlflow", path=None, name=run.name, provenance=provenance)


def load_path(path: Path, fmt: str | None, where: str) -> LoadedConfig:
    """Read a file or directory on disk, naming `where` in any error."""
    try:
        if path.is_dir():
            return _load_directory(path, fmt, where)
        return _load_file(path, fmt, where)
    except SourceProblem as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{where}: config nested too deeply") from exc
    except ValueError as exc:  # YAML, JSON and TOML all give up on a 100,000-digit integer this way
        if "integer string conversion" not in str(exc):
            raise
        raise ConfigError(f"{where}: {_long_integer_problem(path)}") from exc
    except OSError as exc:  # e.g. a directory that cannot be listed
        name = f" {exc.filename}" if exc.filename and str(exc.filename) != str(path) else ""
        raise ConfigError(f"{where}: cannot read{name} ({exc.strerror or exc})") from exc


_KEY_BEFORE = re.compile(r"""["']?([^\s"':=]+)["']?\s*[:=]\s*[-+]?$""")


def _long_integer_problem(path: Path) -> str:
    """Where an integer too long for Python to read sits: line and key, when the file shows them."""
    limit = sys.get_int_max_str_digits()
    text = _read_capped(path).decode("utf-8", errors="replace") if path.is_file() else ""
    found = re.search(rf"\d{{{limit + 1},}}", text)
    if found is None:
        return f"an integer of more than {limit:,} digits; quote it to read it as a string"
    line_start = text.rfind("\n", 0, found.start()) + 1
    line = text.count("\n", 0, found.start()) + 1
    key = _KEY_BEFORE.search(text[line_start : found.start()].strip())
    named = f" ({key.group(1)})" if key else ""
    return (
        f"line {line}{named}: an integer of {len(found.group()):,} digits, more than the {limit:,} "
        "Python reads; quote it to read it as a string"
    )


def _load_directory(path: Path, fmt: str | None, where: str) -> LoadedConfig:
    """Hydra output dir, MLflow run, W&B run, or a plain directory of config files."""
    special = _load_special_directory(path, fmt, where)
    if special is not None:
        return special
    if fmt not in (None, "dir"):
        raise SourceProblem(f"format '{fmt}' is read from a file, but this is a directory")
    parts = _directory_parts(path)
    runs = trackers.hydra_multirun_jobs(path) if fmt is None and set(parts) <= {"multirun"} else []
    if runs:
        shown = ", ".join(runs[:5]) + (", ..." if len(runs) > 5 else "")
        raise SourceProblem(
            f"a Hydra multirun directory of {len(runs)} runs ({shown}); "
            f"compare one run with another, e.g. {Path(where) / runs[0]}"
        )
    if not parts:
        suffixes = ", ".join(CONFIG_SUFFIXES)
        raise SourceProblem(f"directory holds no config files ({suffixes})")
    data = {stem: part.data for stem, part in parts.items()}
    return LoadedConfig(
        data=data, source=where, format="dir", path=path, parts=parts, name=path.name
    )


def _load_special_directory(path: Path, fmt: str | None, where: str) -> LoadedConfig | None:
    """The directory layouts of Hydra, MLflow and W&B, when present (or forced)."""
    hydra_file = trackers.hydra_config_file(path) if fmt in (None, "hydra") else None
    if hydra_file is not None:
        loaded = _read_text_format(_read_capped(hydra_file), hydra_file.name, "hydra", where)
        run_dir = hydra_file.parent.parent  # also when the `.hydra` directory itself was given
        loaded.path = run_dir
        loaded.name = run_dir.name
        loaded.provenance["hydra_layout"] = "dir"
        loaded.provenance["hydra_overrides"] = trackers.hydra_overrides(hydra_file.parent)
        return loaded
    params = trackers.mlflow_params_dir(path) if fmt in (None, "mlflow") else None
    if fmt == "mlflow" and params is None and path.is_dir():
        params = path / "params" if (path / "params").is_dir() else path
    if params is not None:
        data = trackers.read_mlflow_params(params)
        layout = "params" if params == path else "run"
        return LoadedConfig(
            data=data,
            source=where,
            format="mlflow",
            path=path,
            name=path.name,
            provenance={"mlflow_layout": layout},
        )
    wandb_file = trackers.wandb_config_file(path) if fmt in (None, "wandb") else None
    if wandb_file is not None:
        loaded = _read_text_format(_read_capped(wandb_file), wandb_file.name, "wandb", where)
        loaded.path = wandb_file
        loaded.provenance["wandb_run_dir"] = str(path)
        return loaded
    log = next(path.glob("run-*.wandb"), None) if fmt in (None, "wandb") else None
    if log is not None:  # a W&B run directory as W&B writes it today (offline: no files/config.yaml)
        run = read_wandb_log(log)
        if run.config:
            provenance = {"wandb_layout": "log", "wandb_run_dir": str(path)}
            return LoadedConfig(data=run.config, source=where, format="wandb", path=path, name=path.name, provenance=provenance)
    if fmt in ("hydra", "wandb"):
        raise SourceProblem(
            f"not a {fmt} run directory (no {'.hydra/' if fmt == 'hydra' else 'files/'}config.yaml)"
        )
    return None


def _directory_parts(path: Path, top: Path | None = None, chain: tuple[Path, ...] = ()) -> dict[str, LoadedConfig]:
    """Each config file's contents under its stem; sub-directories of configs nest the same way."""
    top = top or path
    chain = (*chain, path.resolve())
    parts: dict[str, LoadedConfig] = {}
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue  # .git, .hydra, editor files
        if not entry.is_dir() and entry.suffix.lower() not in CONFIG_SUFFIXES:
            continue  # never opened, so a FIFO or device that is no config file does no harm
        _check_entry(entry, top, chain)
        part: LoadedConfig | None = None
        if entry.is_dir():
            sub = _directory_parts(entry, top, chain)
            if sub:
                part = LoadedConfig(
                    data={k: p.data for k, p in sub.items()},
                    source=str(entry),
                    format="dir",
                    path=entry,
                    parts=sub,
                    name=entry.name,
                )
        elif entry.suffix.lower() in CONFIG_SUFFIXES:
            part = load_path(entry, None, str(entry))
        if part is None:
            continue
        stem = entry.stem if entry.is_file() else entry.name
        if stem in parts:
            raise SourceProblem(
                f"two config sources for '{stem}' ({parts[stem].file_name()} and {entry.name})"
            )
        parts[stem] = part
    return parts


def _check_entry(entry: Path, top: Path, chain: tuple[Path, ...]) -> None:
    """Refuse an entry that links out of the directory, back around it, or is no regular file."""
    target = entry.resolve()
    shown = entry.relative_to(top)
    if entry.is_symlink() and not target.is_relative_to(chain[0]):
        raise SourceProblem(f"{shown} links outside the directory (to {target}); links are followed only inside it")
    if target in chain:
        raise SourceProblem(f"{shown} links back to a directory that holds it (a symlink loop)")
    mode = target.stat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise SourceProblem(f"{shown} is not a regular file (only regular files of a directory config are read)")


def _load_file(path: Path, fmt: str | None, where: str) -> LoadedConfig:
    """One config file on disk (a checkpoint is handed to torch by path, never read whole here)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
            checkpoint = fmt == "torch" or (fmt is None and _is_checkpoint(head))
            raw = head if checkpoint else head + handle.read(max(0, max_config_bytes() + 1 - len(head)))
    except OSError as exc:
        raise SourceProblem(f"cannot read ({exc.strerror or exc})") from exc
    if len(raw) > max_config_bytes():  # checkpoints hold weights: torch reads them, not this
        raise SourceProblem(too_large(path.stat().st_size if path.is_file() else None))
    if fmt is None and path.name == "config.yaml" and path.parent.name == ".hydra":
        fmt = "hydra"
    if checkpoint:
        fmt = "torch"
    loaded = load_bytes(raw, path.name, fmt, where, path)
    if loaded.format == "hydra":
        loaded.provenance["hydra_overrides"] = trackers.hydra_overrides(path.parent)
    return loaded


def _read_capped(path: Path) -> bytes:
    """A file's bytes, refused when over the config size limit (read no further than it)."""
    with path.open("rb") as handle:
        raw = handle.read(max_config_bytes() + 1)
    if len(raw) > max_config_bytes():
        raise SourceProblem(f"{path.name}: {too_large(path.stat().st_size if path.is_file() else None)}")
    return raw


def load_bytes(
    raw: bytes, name: str, fmt: str | None, where: str, path: Path | None = None
) -> LoadedConfig:
    """Parse a file's bytes; `name` (the file name) helps detect the format."""
    if not raw.strip():
        raise SourceProblem("empty file")
    forced = fmt is not None
    fmt = fmt or detect_format(raw, name)
    if fmt == "torch":
        data, key = binary.load_checkpoint(path if path is not None else raw)
        return LoadedConfig(
            data=data,
            source=where,
            format=fmt,
            path=path,
            provenance={"checkpoint_key": key},
            name=name,
        )
    if fmt == "pickle":
        return LoadedConfig(
            data=binary.load_pickle(raw), source=where, format=fmt, path=path, name=name
        )
    if fmt in ("dir", "mlflow"):
        raise SourceProblem(f"format '{fmt}' is read from a directory, but this is a file")
    loaded = _read_text_format(raw, name, fmt, where, detect_layout=not forced)
    loaded.path = path
    return loaded


def detect_format(raw: bytes, name: str) -> str:
    """Guess a file's format from its name, then its content."""
    suffix = Path(name).suffix.lower()
    if _is_checkpoint(raw):
        return "torch"
    if binary.is_pickle(raw) or suffix in PICKLE_SUFFIXES:
        return "pickle"  # also an args file pickled by hand and named `.pt`
    text = _decode(raw)  # a `.bin`/`.pt` that is neither a zip nor a pickle is no checkpoint either
    by_name = {"hparams.yaml": "lightning", **{n: "hf" for n in HF_NAMES}}.get(name)
    if by_name:
        return by_name
    by_suffix = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml", ".py": "python"}
    return by_suffix.get(suffix) or _sniff_text(text)


def _sniff_text(text: str) -> str:
    """Format of an extension-less text file: JSON, Namespace dump, Python, TOML, else YAML."""
    head = text.lstrip()
    if head.startswith("{"):
        try:
            json.loads(text)
            return "json"
        except ValueError:
            return "yaml"
    if python.looks_like_namespace(text):
        return "argparse"
    if python.looks_like_python_config(text):
        return "python"
    try:
        markup.parse_toml(text)
        return "toml"
    except SourceProblem:
        return "yaml"


def _is_checkpoint(raw: bytes) -> bool:
    """`torch.save` output: a zip archive, or the legacy format's magic number."""
    return binary.is_zip(raw) or binary.is_legacy_torch(raw)


def _decode(raw: bytes) -> str:
    """UTF-8 text (BOM allowed); NUL bytes or mostly undecodable bytes mean a binary file."""
    message = "binary file, not a config format bisect-runs reads (expected YAML, JSON, TOML, Python, a pickle or a torch checkpoint)"
    if b"\x00" in raw[:_SNIFF_BYTES]:
        raise SourceProblem(message)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if not _mostly_text(raw[:_SNIFF_BYTES]):
            raise SourceProblem(message) from exc
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SourceProblem(
            f"line {line}, column {column}: byte 0x{raw[exc.start]:02x} is not UTF-8 "
            "(save the file as UTF-8; Latin-1 or Windows-1252 text is not read)"
        ) from exc


def _mostly_text(head: bytes) -> bool:
    """Printable ASCII and whitespace make up nearly all of it: text in a legacy encoding."""
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    return printable >= 0.9 * len(head)


def _read_text_format(
    raw: bytes, name: str, fmt: str, where: str, *, detect_layout: bool = False
) -> LoadedConfig:
    """Parse text in a known text format into a LoadedConfig (path set by the caller)."""
    text = _decode(raw)
    if not text.strip():
        raise SourceProblem("empty file")
    provenance: dict[str, Any] = {}
    if fmt in ("yaml", "lightning", "hydra", "wandb"):
        data, _ = markup.parse_yaml(text)
        if fmt == "wandb" or (detect_layout and fmt == "yaml" and trackers.is_wandb_layout(data)):
            fmt = "wandb"
            data, provenance = trackers.unwrap_wandb(data)
    elif fmt in ("json", "hf"):
        data = markup.parse_json(text)
    elif fmt == "toml":
        data = markup.parse_toml(text)
    elif fmt == "python":
        parsed = python.parse_python_config(text)
        data = parsed.data
        if parsed.skipped:
            provenance["skipped_statements"] = parsed.skipped
        if parsed.expressions:
            provenance["unevaluated"] = parsed.expressions
        if parsed.derived:
            provenance["derived"] = parsed.derived
    elif fmt == "argparse":
        data = python.parse_namespace(text)
    else:
        raise SourceProblem(f"format '{fmt}' cannot be read from a text file")
    from bisect_runs.sources.plain import to_plain

    return LoadedConfig(
        data=to_plain(data),
        source=where,
        format=fmt,
        path=None,
        provenance=provenance,
        text=text,
        name=name,
    )
