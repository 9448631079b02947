"""Layouts written by experiment trackers: W&B config.yaml, Hydra output dirs, MLflow params dirs."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from bisect_runs.sources.loaded import SourceProblem

WANDB_WRAPPER_KEYS = frozenset({"desc", "value"})
WANDB_META_KEYS = ("wandb_version", "_wandb")


def _is_wrapper(value: Any) -> bool:
    """A W&B `{value: ..}` / `{desc: .., value: ..}` entry."""
    return isinstance(value, dict) and "value" in value and set(value) <= WANDB_WRAPPER_KEYS


def is_wandb_layout(data: dict[str, Any]) -> bool:
    """True for a W&B run config: `wandb_version`/`_wandb`, or every entry wrapped in `value:`."""
    if any(key in data for key in WANDB_META_KEYS):
        return True
    return bool(data) and all(_is_wrapper(value) for value in data.values())


def unwrap_wandb(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Plain settings of a W&B config (wrappers and `_wandb` removed) and what was removed."""
    plain: dict[str, Any] = {}
    for key, value in data.items():
        if key in WANDB_META_KEYS:
            continue
        plain[key] = value["value"] if _is_wrapper(value) else value
    provenance: dict[str, Any] = {"wandb_layout": "old" if "wandb_version" in data else "new"}
    if "wandb_version" in data:
        provenance["wandb_version"] = data["wandb_version"]
    return plain, provenance


def wandb_config_file(directory: Path) -> Path | None:
    """config.yaml of a W&B run directory (`run-.../files/config.yaml`) or of its `files/` dir."""
    nested = directory / "files" / "config.yaml"
    if nested.is_file():
        return nested
    own = directory / "config.yaml"
    markers = ("wandb-metadata.json", "wandb-summary.json")
    if own.is_file() and (any((directory / m).exists() for m in markers) or _wandb_text(own)):
        return own
    return None


_WANDB_TOP_KEY = re.compile(r"^(wandb_version|_wandb)\s*:", re.MULTILINE)


def _wandb_text(file: Path) -> bool:
    """A config.yaml W&B wrote (a top-level `wandb_version:` or `_wandb:`), e.g. alone in `files/`."""
    try:
        with file.open("rb") as f:
            head = f.read(1 << 20).decode("utf-8", errors="replace")
    except OSError:
        return False
    return bool(_WANDB_TOP_KEY.search(head))


def hydra_config_file(directory: Path) -> Path | None:
    """`.hydra/config.yaml` of a Hydra output directory (or of the `.hydra` directory itself)."""
    for candidate in (directory / ".hydra" / "config.yaml", directory / "config.yaml"):
        if candidate.is_file() and candidate.parent.name == ".hydra":
            return candidate
    return None


def hydra_multirun_jobs(directory: Path) -> list[str]:
    """Job sub-directories (`0`, `1`, ...) of a Hydra multirun sweep directory; [] if it is none."""
    jobs = [p for p in directory.iterdir() if p.is_dir() and (p / ".hydra" / "config.yaml").is_file()]
    if not jobs or not ((directory / "multirun.yaml").is_file() or len(jobs) > 1):
        return []
    return sorted((p.name for p in jobs), key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))


def hydra_overrides(hydra_dir: Path) -> list[str]:
    """Command-line overrides Hydra recorded beside the config (shown as provenance)."""
    from bisect_runs.sources.yaml_safe import load_yaml_text

    file = hydra_dir / "overrides.yaml"
    if not file.is_file():
        return []
    try:
        data, _ = load_yaml_text(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SourceProblem):
        return []
    return [str(item) for item in data] if isinstance(data, list) else []


def mlflow_params_dir(directory: Path) -> Path | None:
    """`params/` of an MLflow run directory, or the directory itself when it is a params dir."""
    params = directory / "params"
    run_markers = (directory / "meta.yaml").exists() or (directory / "metrics").is_dir()
    if params.is_dir() and (run_markers or _all_plain_files(params)):
        return params
    if directory.name == "params" and _all_plain_files(directory):
        return directory
    return None


def _all_plain_files(directory: Path) -> bool:
    """Every file is extension-less (MLflow writes one file per param, named after it)."""
    files = [p for p in directory.rglob("*") if p.is_file()]
    return bool(files) and all(not p.suffix or not p.suffix[1:].isalpha() for p in files)


def read_mlflow_params(params: Path) -> dict[str, Any]:
    """One key per params file (`a/b` for nested names); values parsed as Python scalars."""
    data: dict[str, Any] = {}
    for file in sorted(p for p in params.rglob("*") if p.is_file()):
        key = file.relative_to(params).as_posix()
        try:
            data[key] = parse_param(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceProblem(f"params/{key}: unreadable ({exc})") from exc
    if not data:
        raise SourceProblem("MLflow params directory holds no params")
    return data


def parse_param(text: str) -> Any:
    """MLflow stores `str(value)`: read numbers, True/False/None and literal lists back."""
    stripped = text.strip()
    if stripped in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[stripped]
    for parse in (int, float):
        try:
            return parse(stripped)
        except ValueError:
            pass
    if stripped[:1] in "[{(":
        try:
            value = ast.literal_eval(stripped)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return text
        return list(value) if isinstance(value, tuple) else value
    return text


def param_text(value: Any) -> str:
    """How MLflow writes a param value (`str(value)`), inverse of parse_param."""
    return str(value)
