"""The `bisect-runs` command line: a thin layer over the library.

Every command parses its flags, makes one library call and prints the result. Library
errors (`BisectError`) become a one-line `Error:` and exit status 2; `--debug` shows the
traceback instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from bisect_runs.errors import BisectError

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """Turns library errors into `Error:` lines with exit status 2 (tracebacks only with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BisectError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="bisect-runs")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Find which change made a training run worse: diff configs, run A/B trials, decide with statistics."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="bisect-runs")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
