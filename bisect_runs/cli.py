"""The `bisect-runs` command line: a thin layer over the library.

Every command parses its flags, makes one library call and prints the result. Library
errors (`BisectError`) become a one-line `Error:` and exit status 2; `--debug` shows the
traceback instead.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
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


@cli.command("search")
@click.argument("good_bad", nargs=-1, metavar="[GOOD BAD]")
@click.option("--good", help="The good config (A).")
@click.option("--bad", help="The regressed config (B).")
@click.option("--format-good", help="Force the good config's format.")
@click.option("--format-bad", help="Force the bad config's format.")
@click.option("--command", help="Trainer command template ({config} {run_dir} {steps} {seed} {overrides}).")
@click.option("--metric", help="Metric to compare, e.g. val_loss.")
@click.option("--mode", type=click.Choice(["min", "max"]), help="Whether lower (min) or higher (max) is better.")
@click.option("--steps", type=int, help="Step budget of every trial.")
@click.option("--seeds", type=int, help="Seeds per arm for oat/ddmin and the first calibration round.")
@click.option("--parallel", help="Trials at once: a number or 'auto' (one per GPU slot, else per core pair).")
@click.option("--gpus-per-trial", type=int, help="GPUs each trial holds.")
@click.option("--strategy", type=click.Choice(["auto", "screen", "oat", "ddmin"]), help="How to search.")
@click.option("--executor", type=click.Choice(["local", "slurm", "ray"]), help="Where trials run.")
@click.option("--timeout", type=float, help="Seconds before a trial is killed (timeout outcome).")
@click.option("--out", help="Output directory (journal, trials, summary, report).")
@click.option("--resume", is_flag=True, default=None, help="Replay the journal; run only what is missing.")
@click.option("--retries", type=int, help="Reruns of a crashed trial, same seed (default 1).")
@click.option("--min-effect", type=float, help="Smallest regression worth reporting, in metric units.")
@click.option("--max-runs", type=int, help="Budget: most trials to run.")
@click.option("--max-hours", type=float, help="Budget: most wall-clock hours.")
@click.option("--failure-value", type=float, help="Metric value a diverged or crashed trial counts as.")
@click.option("--include-all", is_flag=True, default=None, help="Also search differences ranked 'none'.")
@click.option("--project", type=click.Path(dir_okay=False), help="Project file (default ./bisect.yaml).")
@click.option("-q", "--quiet", is_flag=True, help="Only the verdict.")
@click.option("-v", "--verbose", is_flag=True, help="Every trial as it starts and ends.")
def search_command(good_bad: tuple[str, ...], project: str | None, quiet: bool, verbose: bool, **flags: Any) -> None:
    """Find which difference(s) between GOOD and BAD cause the regression."""
    from bisect_runs.progress import Progress
    from bisect_runs.project import load_project, make_settings, parse_parallel
    from bisect_runs.search import Search

    if good_bad:
        if len(good_bad) != 2:
            raise click.UsageError("give both GOOD and BAD, or neither (then bisect.yaml names them)")
        flags["good"], flags["bad"] = good_bad
    flags["parallel"] = parse_parallel(flags["parallel"])
    settings = make_settings(load_project(project), flags)
    progress = Progress(quiet=quiet, verbose=verbose)
    with _interrupts_as_exit():
        result = Search(settings, progress=progress).run()
    click.echo(result.verdict)
    if not quiet:
        out = settings.path(settings.out)
        click.echo(f"{result.runs} runs in {result.rounds} rounds; summary: {out}/summary.json")
    sys.exit(result.exit_code)


@contextlib.contextmanager
def _interrupts_as_exit() -> Iterator[None]:
    """Ctrl-C or SIGTERM: the runner has recorded interrupted trials; exit 130."""

    def _term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _term)
    try:
        yield
    except KeyboardInterrupt:
        click.echo("Interrupted: finished trials are in the journal; rerun with --resume.", err=True)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="bisect-runs")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
