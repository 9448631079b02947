"""The record every config source is read into."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from bisect_runs.errors import ConfigError

FORMATS: tuple[str, ...] = (
    "yaml",
    "json",
    "toml",
    "dir",
    "wandb",
    "hydra",
    "lightning",
    "hf",
    "python",
    "argparse",
    "mlflow",
    "pickle",
    "torch",
)


@dataclass
class LoadedConfig:
    """A config as read from one source: nested data plus what is needed to write it back."""

    data: dict[str, Any]
    source: str
    format: str
    path: Path | None
    provenance: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    parts: dict[str, LoadedConfig] = field(default_factory=dict)
    name: str | None = None

    def file_name(self) -> str:
        """Base name of the file or directory this config came from (also for git sources)."""
        if self.name:
            return self.name
        if self.path is not None:
            return self.path.name
        return PurePosixPath(self.source.rsplit(":", 1)[-1]).name or "config"


class SourceProblem(ConfigError):
    """A problem found while parsing; `load_config` prefixes it with the source's name."""
