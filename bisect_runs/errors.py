"""Errors the library raises; the CLI turns each into one `Error:` line and exit status 2."""

from __future__ import annotations


class BisectError(Exception):
    """Base of every error a user can act on (bad input, bad settings)."""


class ConfigError(BisectError):
    """A config source could not be read, parsed or understood."""


class SettingsError(BisectError):
    """bisect.yaml or the command-line settings are invalid."""


class TrialError(BisectError):
    """A trial could not be prepared or launched (not a trainer failure, which is an outcome)."""


class JournalError(BisectError):
    """The output directory's journal is locked or unreadable."""


class RunError(BisectError):
    """A finished run's directory (metrics, W&B, MLflow) or a search's output could not be read."""
