"""W&B's binary run log (`run-*.wandb`, the layout W&B writes today): history, config, environment.

The file is a LevelDB-style log: a 7-byte header (`:W&B`, magic 0xBEE1, version 0), then
32 KiB blocks of chunks, each `crc32 (4) | length (2) | type (1) | data` with type full, first,
middle or last. Each reassembled record is a protobuf `Record`, decoded with the wandb
package's own schema (`wandb.proto.wandb_internal_pb2`); wandb is an optional extra.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisect_runs.errors import RunError

History = list[tuple[int, float]]
HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
# W&B's own counter is `_step`; a trainer's logged step (Lightning, HF) aligns runs better.
STEP_KEYS = ("trainer/global_step", "global_step", "train/global_step", "step", "_step")
ENVIRONMENT_KEYS = {  # environment record field -> what compare calls it
    "git.commit": "git commit", "git.remoteUrl": "git remote", "host": "host", "python": "python",
    "os": "os", "gpuType": "GPU", "gpuCount": "GPU count", "cudaVersion": "CUDA", "program": "program",
}  # fmt: skip


@dataclass
class WandbRun:
    """What one `run-*.wandb` holds: identity, config, history records, summary and environment."""

    path: Path
    run_id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def series(self) -> dict[str, History]:
        """Every numeric history by metric name, on the trainer's step where it logged one."""
        step_key = next((k for k in STEP_KEYS if any(k in r for r in self.history)), "_step")
        series: dict[str, History] = {}
        step = 0
        for record in self.history:
            at = record.get(step_key, step)
            step = int(at) if isinstance(at, (int, float)) and math.isfinite(at) else step
            for key, value in record.items():
                if not key.startswith("_") and key not in STEP_KEYS and _is_number(value):
                    series.setdefault(key, []).append((step, float(value)))
        for key, value in self.summary.items():  # summary-only values (logged with commit=False)
            if not key.startswith("_") and key not in STEP_KEYS and _is_number(value):
                series.setdefault(key, [(step, float(value))])
        return series


def find_log(path: Path) -> Path | None:
    """The newest `run-*.wandb` of a run directory, a `wandb/` directory or a directory holding one."""
    if path.is_file():
        return path if path.suffix == ".wandb" else None
    for pattern in ("run-*.wandb", "*run-*/run-*.wandb", "wandb/*run-*/run-*.wandb"):
        found = sorted(path.glob(pattern), key=lambda p: (p.parent.name, p.name))
        if found:
            return found[-1]
    return None


def read_log(path: Path) -> WandbRun:
    """Decode a `run-*.wandb` file; a torn tail (a run still writing, or killed) is noted and skipped."""
    pb = _protobuf()
    run = WandbRun(path=path)
    for data in _chunks(path, run.problems):
        record = pb.Record()
        try:
            record.ParseFromString(data)
        except Exception as exc:  # protobuf raises its own DecodeError; one bad record is skipped
            run.problems.append(f"{path}: a record could not be decoded ({type(exc).__name__})")
            continue
        _apply(run, record)
    return run


def _apply(run: WandbRun, record: Any) -> None:
    kind = record.WhichOneof("record_type")
    if kind == "run":
        r = record.run
        run.run_id, run.name, run.group, run.job_type = r.run_id, r.display_name, r.run_group, r.job_type
        run.tags = list(r.tags)
        _update(run.config, r.config.update)
        if r.git.commit:
            run.environment["git commit"] = r.git.commit
    elif kind == "config":
        _update(run.config, record.config.update)
    elif kind == "history":
        run.history.append(_items(record.history.item))
    elif kind == "summary":
        run.summary.update(_items(record.summary.update))
    elif kind == "environment":
        run.environment.update(_environment(record.environment))
    run.config.pop("_wandb", None)


def _update(config: dict[str, Any], items: Any) -> None:
    for item in items:
        key = item.key or ".".join(item.nested_key)
        config[key] = _json(item.value_json)


def _items(items: Any) -> dict[str, Any]:
    return {(item.key or "/".join(item.nested_key)): _json(item.value_json) for item in items}


def _environment(message: Any) -> dict[str, str]:
    from google.protobuf.json_format import MessageToDict

    flat = _flatten(MessageToDict(message))
    return {label: str(flat[key]) for key, label in ENVIRONMENT_KEYS.items() if flat.get(key) not in (None, "", 0)}


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _chunks(path: Path, problems: list[str]) -> list[bytes]:
    """The records of the log, reassembled from their chunks and checked against their crc32."""
    data = path.read_bytes()
    if len(data) < HEADER.size or HEADER.unpack_from(data)[:2] != (b":W&B", 0xBEE1):
        raise RunError(f"{path}: not a W&B run log (no ':W&B' header)")
    records: list[bytes] = []
    pending = b""
    at = HEADER.size
    while at + CHUNK.size <= len(data):
        left = BLOCK - at % BLOCK
        if left < CHUNK.size:  # the block's tail is zero padding
            at += left
            continue
        crc, length, kind = CHUNK.unpack_from(data, at)
        body = data[at + CHUNK.size : at + CHUNK.size + length]
        if kind == 0 and length == 0:
            break
        if len(body) < length or zlib.crc32(body, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            break
        at += CHUNK.size + length
        if kind == FULL:
            records.append(body)
        elif kind == FIRST:
            pending = body
        elif kind == MIDDLE:
            pending += body
        elif kind == LAST:
            records.append(pending + body)
            pending = b""
    if data[at:].strip(b"\0"):  # bytes left that are neither a whole record nor block padding
        problems.append(f"{path}: torn or corrupt record at byte {at}; the rest is skipped")
    return records


def _protobuf() -> Any:
    try:
        from wandb.proto import wandb_internal_pb2
    except ImportError:
        raise RunError("reading a W&B run-*.wandb file needs the wandb package: pip install 'bisect-runs[wandb]'") from None
    return wandb_internal_pb2


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
