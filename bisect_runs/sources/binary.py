"""Pickled args files and PyTorch checkpoints, read without running any code they name."""

from __future__ import annotations

import argparse
import io
import pickle
import re
import types
import warnings
from pathlib import Path
from typing import Any

from bisect_runs.sources.loaded import SourceProblem
from bisect_runs.sources.plain import to_plain

CHECKPOINT_KEYS = ("config", "args", "hparams", "hyper_parameters")
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("argparse", "Namespace"): argparse.Namespace,
    ("types", "SimpleNamespace"): types.SimpleNamespace,
    ("collections", "OrderedDict"): dict,
}


class PlainUnpickler(pickle.Unpickler):
    """Unpickler that builds only plain values, dicts and namespaces; any other class is refused."""

    def find_class(self, module: str, name: str) -> Any:
        """Allow-list lookup instead of importing whatever the pickle names."""
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise SourceProblem(
                f"pickle refers to {module}.{name}; refused (only plain values, dict, "
                "argparse.Namespace and SimpleNamespace are read)"
            )
        return allowed


def is_pickle(raw: bytes) -> bool:
    """Pickle protocol 2+ streams start with PROTO."""
    return len(raw) > 2 and raw[0] == 0x80 and 2 <= raw[1] <= 5


def is_legacy_torch(raw: bytes) -> bool:
    """`torch.save(..., _use_new_zipfile_serialization=False)` files start with torch's magic number."""
    return raw.startswith(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19")


def is_zip(raw: bytes) -> bool:
    """`torch.save` writes a zip archive."""
    return raw[:4] == b"PK\x03\x04"


def load_pickle(raw: bytes) -> dict[str, Any]:
    """Plain dict/namespace from a pickled args file."""
    try:
        obj = PlainUnpickler(io.BytesIO(raw)).load()
    except SourceProblem:
        raise
    except Exception as exc:  # a corrupt pickle fails in many ways; all mean "unreadable"
        raise SourceProblem(f"unreadable pickle ({type(exc).__name__}: {exc})") from exc
    plain = to_plain(obj)
    if not isinstance(plain, dict):
        raise SourceProblem(f"pickle holds a {type(obj).__name__}, expected a dict or Namespace")
    return plain


def load_checkpoint(raw: bytes | Path) -> tuple[dict[str, Any], str]:
    """Config stored in a torch checkpoint under one of CHECKPOINT_KEYS, loaded with weights_only=True."""
    try:
        import torch
    except ImportError as exc:
        raise SourceProblem(
            "reading checkpoints needs torch (pip install 'bisect-runs[torch]')"
        ) from exc
    source: Any = io.BytesIO(raw) if isinstance(raw, bytes) else str(raw)
    try:
        allowed: list[Any] = [argparse.Namespace, types.SimpleNamespace]
        with torch.serialization.safe_globals(allowed), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol notes from torch are not the user's concern
            ckpt = torch.load(source, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as exc:  # torch raises UnpicklingError, RuntimeError, ... on refused or bad files
        raise SourceProblem(_torch_load_problem(exc)) from exc
    return _checkpoint_config(ckpt)


def _torch_load_problem(exc: Exception) -> str:
    """One line for a failed `torch.load(weights_only=True)`: the refused global when there is one."""
    message = str(exc)
    match = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", message, re.IGNORECASE)
    if match:
        return (
            f"checkpoint refers to {match.group(1)}; refused (read with weights_only=True: "
            "only tensors, plain values and argparse.Namespace are loaded)"
        )
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    lines = [
        ln.strip()
        for ln in message.splitlines()
        if ln.strip() and not ln.strip().startswith(boilerplate)
    ]
    return f"unreadable checkpoint ({type(exc).__name__}: {lines[0] if lines else 'no details'})"


def _checkpoint_config(ckpt: Any) -> tuple[dict[str, Any], str]:
    """Pick the config entry out of a loaded checkpoint."""
    if isinstance(ckpt, (argparse.Namespace, types.SimpleNamespace)):
        ckpt = vars(ckpt)
    if not isinstance(ckpt, dict):
        raise SourceProblem(f"checkpoint holds a {type(ckpt).__name__}, expected a dict")
    for key in CHECKPOINT_KEYS:
        if key in ckpt:
            plain = to_plain(ckpt[key])
            if not isinstance(plain, dict):
                raise SourceProblem(f"checkpoint entry '{key}' is not a mapping of settings")
            return plain, key
    found = ", ".join(sorted(map(str, ckpt))[:10]) or "none"
    raise SourceProblem(
        f"no config in checkpoint: expected one of {', '.join(CHECKPOINT_KEYS)} (keys found: {found})"
    )
