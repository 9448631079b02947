"""Writing a variant of a config (some keys changed, added or removed) in the base config's own format.

`write_variant(base, {("optim", "lr"): 0.02, ("l2_decay",): ABSENT}, dest)` writes the base
with those changes under `dest` and returns the path a trainer is given as `{config}`. YAML
keeps the base's key order and comments, JSON its indentation, a directory stays a directory,
Python config files stay assignments. See docs/formats.md for every format.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from bisect_runs.atomic import write_atomic
from bisect_runs.errors import ConfigError
from bisect_runs.sources import LoadedConfig, trackers
from bisect_runs.sources.plain import to_plain
from bisect_runs.sources.python_edit import edit_python
from bisect_runs.sources.toml_write import dump_toml
from bisect_runs.sources.yaml_edit import dump_yaml, edit_yaml
from bisect_runs.sources.yaml_safe import load_yaml_text

ChangePath = tuple[str | int, ...]


class _Absent:
    """Type of ABSENT: a change value meaning "remove this key"."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __reduce__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()


def write_variant(base: LoadedConfig, changes: Mapping[ChangePath, Any], dest: Path) -> Path:
    """Write `base` with `changes` (path -> value, or ABSENT to delete) under `dest`; return the trainer's path."""
    return write_data(base, apply_changes(base.data, changes), dest)


def write_data(layout: LoadedConfig, data: dict[str, Any], dest: Path) -> Path:
    """Write `data` under `dest` in `layout`'s format, file name and layout; return the trainer's path."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    return _write(layout, data, dest)


def apply_changes(data: Mapping[str, Any], changes: Mapping[ChangePath, Any]) -> dict[str, Any]:
    """A copy of `data` with each change applied in order; missing intermediate mappings are created."""
    result: dict[str, Any] = copy.deepcopy(dict(data))
    for path, value in changes.items():
        if not path:
            raise ConfigError("a change needs a non-empty key path")
        _apply_one(result, tuple(path), value)
    return result


def _apply_one(root: dict[str, Any], path: ChangePath, value: Any) -> None:
    """Set or delete one path inside `root`."""
    parent: Any = root
    for depth, segment in enumerate(path[:-1]):
        child = _child(parent, segment)
        if child is None or child is ABSENT:
            if value is ABSENT:
                return  # removing something already absent
            child = {}
            _set(parent, segment, child, path[: depth + 1])
        elif not isinstance(child, (dict, list)):
            shown = ".".join(map(str, path[: depth + 1]))
            raise ConfigError(
                f"cannot change {'.'.join(map(str, path))}: {shown} is a {type(child).__name__}, not a mapping"
            )
        parent = child
    last = path[-1]
    if value is ABSENT:
        _delete(parent, last)
    else:
        _set(parent, last, copy.deepcopy(value), path)


def _child(parent: Any, segment: str | int) -> Any:
    """parent[segment] or None when missing."""
    if isinstance(parent, dict):
        return parent.get(segment)
    if (
        isinstance(parent, list)
        and isinstance(segment, int)
        and -len(parent) <= segment < len(parent)
    ):
        return parent[segment]
    return None


def _set(parent: Any, segment: str | int, value: Any, path: ChangePath) -> None:
    """parent[segment] = value; on a list an index equal to its length appends."""
    if isinstance(parent, dict):
        parent[segment] = value
    elif isinstance(segment, int) and segment == len(parent):
        parent.append(value)
    elif isinstance(segment, int) and -len(parent) <= segment < len(parent):
        parent[segment] = value
    else:
        raise ConfigError(
            f"cannot change {'.'.join(map(str, path))}: index {segment} outside a list of {len(parent)}"
        )


def _delete(parent: Any, segment: str | int) -> None:
    """Remove parent[segment] if present."""
    if isinstance(parent, dict):
        parent.pop(segment, None)
    elif isinstance(segment, int) and -len(parent) <= segment < len(parent):
        del parent[segment]


def _write(base: LoadedConfig, new: dict[str, Any], dest: Path) -> Path:
    """Dispatch on the base's format."""
    writer = _WRITERS.get(base.format)
    if writer is None:
        raise ConfigError(f"{base.source}: writing format '{base.format}' is not supported")
    return writer(base, new, dest)


def _write_yaml(base: LoadedConfig, new: dict[str, Any], dest: Path) -> Path:
    """YAML (also Lightning hparams): the base text with the changes spliced in."""
    target = dest / base.file_name()
    text = edit_yaml(base.text, new) if base.text is not None else dump_yaml(new)
    write_atomic(target, text)
    return target


def _write_wandb(base: LoadedConfig, new: dict[str, Any], dest: Path) -> Path:
    """W&B config.yaml: values go back into their `value:` wrappers, `_wandb` kept."""
    target = dest / base.file_name()
    raw = to_plain(load_yaml_text(base.text)[0]) if base.text is not None else {}
    old_layout = base.provenance.get("wandb_layout") == "old"
    wrapped: dict[str, Any] = {}
    for key, value in raw.items():
        if key in trackers.WANDB_META_KEYS:
            wrapped[key] = value
        elif key in new:
            wrapped[key] = {**value, "value": new[key]} if trackers._is_wrapper(value) else new[key]
    for key, value in new.items():
        if key not in wrapped:
            wrapped[key] = {"desc": None, "value": value} if old_layout else {"value": value}
    text = edit_yaml(base.text, wrapped) if base.text is not None else dump_yaml(wrapped)
    write_atomic(target, text)
    return target


def _write_json(base: LoadedConfig, new: dict[str, Any], dest: Path) -> Path:
    """JSON (also HF): indented like the base, keys in the base's order, added keys last."""
    target = dest / base.file_name()
    indent = _json_indent(base.text or "")
    text = json.dumps(new, indent=indent, ensure_ascii=False, allow_nan=True)
    write_atomic(target, text + "\n")
    return target


def _json_indent(text: str) -> str | int | None:
    """The indentation of the base JSON text (None when it is on one line)."""
    match = re.search(r"\n([ \t]+)\S", text)
    if match is None:
        return None if text.strip().count("\n") == 0 else 0
    unit = match.group(1)
    return len(unit) if set(unit) == {" "} else unit


def _write_toml(base: LoadedConfig, new: dict[str, Any], dest: Path) -> Path:
    """TOML: written from the data (tomli_w when installed, else a small emitter)."""
    target = dest / base.file_name()
    write_atomic(target, dump_toml(new, where=base.source))
    return target


def _write_python(base: LoadedConfig, new: dict[str, Any], dest: Path) -> Path:
    """Python assignments: the value expressions of changed names replaced in the base text."""
    target = dest / base.file_name()
    write_atomic(target, edit_python(base.text or "", new, where=base.source))
    return target


def _write_as_yaml(base: LoadedConfig, new: dict[str, Any], dest: Path) -> Path:
    """Pickles, checkpoints and Namespace dumps are handed to trainers as YAML."""
    target = dest / (Path(base.file_name()).stem + ".yaml")
    write_atomic(target, dump_yaml(new, header=f"# settings of {base.source}, with changes\n"))
    return target


def _write_hydra(base: LoadedConfig, new: dict[str, Any], dest: Path) -> Path:
    """Hydra output dir: a dir of the same name whose `.hydra/config.yaml` holds the variant."""
    if base.provenance.get("hydra_layout") != "dir":
        return _write_yaml(base, new, dest)  # `.hydra/config.yaml` given as a file
    target = dest / base.file_name()
    hydra_dir = target / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    if base.path is not None and (base.path / ".hydra").is_dir():
        for item in (base.path / ".hydra").iterdir():
            if item.is_file() and item.name != "config.yaml":
                shutil.copy2(item, hydra_dir / item.name)  # hydra.yaml, overrides.yaml as recorded
    text = edit_yaml(base.text, new) if base.text is not None else dump_yaml(new)
    write_atomic(hydra_dir / "config.yaml", text)
    return target


def _write_mlflow(base: LoadedConfig, new: dict[str, Any], dest: Path) -> Path:
    """MLflow: one file per param under `params/` (the run dir's name kept)."""
    is_params_dir = base.provenance.get("mlflow_layout") == "params"
    target = dest / ("params" if is_params_dir else base.file_name())
    params = target if is_params_dir else target / "params"
    params.mkdir(parents=True, exist_ok=True)
    for key, value in new.items():
        file = params / str(key)
        if ".." in Path(str(key)).parts or Path(str(key)).is_absolute():
            raise ConfigError(f"{base.source}: param name {key!r} is not a safe file name")
        write_atomic(file, trackers.param_text(value))
    return target


def _write_directory(base: LoadedConfig, new: dict[str, Any], dest: Path) -> Path:
    """A directory of config files: each file written in its own format, same names."""
    target = dest / base.file_name()
    target.mkdir(parents=True, exist_ok=True)
    for stem, value in new.items():
        part = base.parts.get(stem)
        if not isinstance(value, dict):
            raise ConfigError(
                f"{base.source}: '{stem}' must stay a mapping (a file of the directory)"
            )
        if part is None:
            write_atomic(_file_inside(target, f"{stem}.yaml", base.source, stem), dump_yaml(value))
        else:
            _write(part, value, target)
    return target


def _file_inside(target: Path, name: str, source: str, key: Any) -> Path:
    """`target / name`, refused unless it is a plain file name that stays inside `target`."""
    path = target / name
    plain = name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name
    if not plain or not path.resolve().is_relative_to(target.resolve()):
        raise ConfigError(
            f"{source}: key {key!r} cannot be written as a file of the directory config "
            "(a key that becomes a file name may not hold '/', '\\' or be '..')"
        )
    return path


_WRITERS: dict[str, Callable[[LoadedConfig, dict[str, Any], Path], Path]] = {
    "yaml": _write_yaml,
    "lightning": _write_yaml,
    "wandb": _write_wandb,
    "hydra": _write_hydra,
    "json": _write_json,
    "hf": _write_json,
    "toml": _write_toml,
    "python": _write_python,
    "argparse": _write_as_yaml,
    "pickle": _write_as_yaml,
    "torch": _write_as_yaml,
    "mlflow": _write_mlflow,
    "dir": _write_directory,
}
