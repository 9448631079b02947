"""How large a config file may be before it is refused unread: configs are kilobytes, a 200 MB file is a mistake or an attack."""

from __future__ import annotations

import os

from bisect_runs.errors import SettingsError

DEFAULT_MAX_MB = 4.0  # YAML parses at about 1 MB/s: the refusal comes within seconds
ENV_VAR = "BISECT_RUNS_MAX_CONFIG_MB"
_MB = 1_000_000
_chosen: list[float] = []  # set by --max-config-mb for this process


def set_max_config_mb(mb: float | None) -> None:
    """Raise (or lower) the limit for this process; None keeps the environment's or the default."""
    _chosen.clear()
    if mb is not None:
        _chosen.append(_positive(mb, "--max-config-mb"))


def max_config_bytes() -> int:
    """The limit in force: --max-config-mb, else $BISECT_RUNS_MAX_CONFIG_MB, else DEFAULT_MAX_MB."""
    if _chosen:
        return int(_chosen[0] * _MB)
    env = os.environ.get(ENV_VAR)
    if env:
        try:
            return int(_positive(float(env), ENV_VAR) * _MB)
        except ValueError as exc:
            raise SettingsError(f"{ENV_VAR}={env!r}: expected a number of megabytes") from exc
    return int(DEFAULT_MAX_MB * _MB)


def too_large(size: int | None = None) -> str:
    """The problem text for a file over the limit (size when known)."""
    limit = max_config_bytes()
    what = f"{size:,} bytes" if size is not None else f"more than {limit:,} bytes"
    return (
        f"file too large for a config ({what}; the limit is {limit / _MB:g} MB: "
        f"raise it with --max-config-mb or {ENV_VAR})"
    )


def _positive(mb: float, name: str) -> float:
    if not mb > 0:
        raise SettingsError(f"{name}: expected a positive number of megabytes (got {mb:g})")
    return mb
