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
from bisect_runs.escaping import terminal
from bisect_runs.executors import EXECUTORS
from bisect_runs.options import comparing_options, measuring_options, trainer_options
from bisect_runs.strategies import STRATEGIES

F = TypeVar("F", bound=Callable[..., Any])


def _echo(text: str, *, err: bool = False, nl: bool = True, json: bool = False) -> None:
    """Print with control characters spelled out: config text never drives the terminal."""
    click.echo(terminal(text, json=json), err=err, nl=nl)


class _Group(click.Group):
    """Turns library errors into `Error:` lines with exit status 2 (tracebacks only with --debug)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any) -> click.Context:
        typed = ["bisect-runs", *args]  # the command line as typed, for the report's "how to reproduce"
        ctx = super().make_context(info_name, args, parent=parent, **extra)
        ctx.meta["bisect_runs.argv"] = typed
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BisectError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            _echo(f"Error: {exc}", err=True)
            ctx.exit(2)
        except click.UsageError as exc:  # a bad flag value: one line too, not usage + hint + error
            if ctx.obj and ctx.obj.get("debug"):
                raise
            _echo(f"Error: {exc.format_message()}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="bisect-runs")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Find which change made a training run worse: diff configs, run A/B trials, decide with statistics."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _max_config_option(f: F) -> F:
    """`--max-config-mb`: the size above which a config file is refused unread."""

    def _set(ctx: click.Context, param: click.Parameter, value: float | None) -> None:
        from bisect_runs.sources.limits import set_max_config_mb

        set_max_config_mb(value)

    return click.option("--max-config-mb", type=float, expose_value=False, callback=_set,
                        help="Refuse config files larger than this many MB (default 4; env BISECT_RUNS_MAX_CONFIG_MB).")(f)


@cli.command("diff")
@click.argument("a", metavar="[A", required=False)
@click.argument("b", metavar="B]", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json", "csv"]), default="table", show_default=True, help="Output format.")
@click.option("--all", "show_all", is_flag=True, help="Also show differences judged to have no effect (paths, workers, ...).")
@comparing_options
@click.option("--strict-types", is_flag=True, help="Report a type change with an equal value (3 vs 3.0).")
@click.option("--format-a", "--format-good", "format_a", help="Force A's format (yaml, json, toml, dir, wandb, hydra, ...).")
@click.option("--format-b", "--format-bad", "format_b", help="Force B's format.")
@_max_config_option
@click.option("--unchanged", "show_unchanged", is_flag=True, help="Also list the keys equal on both sides.")
@click.option("--absent-as-empty", is_flag=True, help="Compare a REV:PATH that its revision lacks as an empty config.")
@click.pass_context
def diff_command(ctx: click.Context, a: str | None, b: str | None, fmt: str, show_all: bool, strict_types: bool,
                 format_a: str | None, format_b: str | None, show_unchanged: bool, absent_as_empty: bool,
                 project: str | None, no_project: bool, **flags: Any) -> None:
    """Impact-ranked differences between config A (good) and B (bad).

    Without A and B, or with the two bisect.yaml names, bisect.yaml's ignore, aliases, defaults,
    rules and groups apply, so the table ranks as `search` will. Exit status like diff(1):
    0 the same, 1 different, 2 error.
    """
    from bisect_runs.diff import diff_configs
    from bisect_runs.project import diff_project, make_settings
    from bisect_runs.sources import load_config_or_empty
    from bisect_runs.tables import render

    if (a is None) != (b is None):
        raise click.UsageError("give both A and B, or neither (then bisect.yaml names them)")
    settings = make_settings(diff_project(project, a, b, no_project), flags)
    a_spec, b_spec = settings.config_spec(a or settings.good), settings.config_spec(b or settings.bad)
    if a_spec is None or b_spec is None:
        raise click.UsageError("give A and B, or a bisect.yaml naming good and bad")
    good = load_config_or_empty(a_spec, format_a or settings.format_good, absent_as_empty=absent_as_empty)
    bad = load_config_or_empty(b_spec, format_b or settings.format_bad, absent_as_empty=absent_as_empty)
    result = diff_configs(good, bad, settings.diff_options(strict_types))
    for warning in result.warnings:
        _echo(f"Warning: {warning}", err=True)
    _echo(render(result, fmt.lower(), show_all=show_all or bool(settings.include_all), unchanged=show_unchanged),
          nl=False, json=fmt == "json")
    ctx.exit(0 if result.identical else 1)


@cli.command("search")
@click.argument("good_bad", nargs=-1, metavar="[GOOD BAD]")
@click.option("--good", help="The good config (A).")
@click.option("--bad", help="The regressed config (B).")
@click.option("--format-good", help="Force the good config's format.")
@click.option("--format-bad", help="Force the bad config's format.")
@measuring_options
@click.option("--seeds", type=int, help="Seeds per arm for oat/ddmin and the first calibration round.")
@click.option("--parallel", help="Trials at once: a number or 'auto' (one per GPU slot, else one per CPU core).")
@click.option("--gpus-per-trial", type=int, help="GPUs each trial holds.")
@click.option("--strategy", type=click.Choice(STRATEGIES), help="How to search.")
@click.option("--executor", type=click.Choice(list(EXECUTORS)), help="Where trials run.")
@click.option("--timeout", type=float, help="Seconds before a trial is killed (timeout outcome).")
@click.option("--out", help="Output directory (journal, trials, summary, report).")
@click.option("--resume", is_flag=True, default=None, help="Replay the journal; run only what is missing.")
@click.option("--resume-changed", is_flag=True, default=None,
              help="Resume in an OUT_DIR whose search had other steps/metric/mode/command/configs (earlier one kept in previous-N).")
@click.option("--retries", type=int, help="Reruns of a crashed trial, same seed (default 1).")
@click.option("--early-stop/--no-early-stop", default=None,
              help="Stop a trial once its outcome is clear against A's and B's curves (key `early_stop`; default off).")
@click.option("--min-effect", type=float, help="Smallest regression worth reporting, in metric units.")
@click.option("--max-runs", type=int, help="Budget: most trials to run.")
@click.option("--max-hours", type=float, help="Budget: most wall-clock hours.")
@click.option("--failure-value", type=float, help="Metric value a diverged or crashed trial counts as.")
@click.option("--good-rev", help="Bisect code: the last good commit of the trainer's repository.")
@click.option("--bad-rev", help="Bisect code: the first commit known bad.")
@click.option("--repo", type=click.Path(file_okay=False), help="The trainer's git repository (default: here).")
@click.option("--config", help="Bisect code: the config every commit runs (default: GOOD's).")
@comparing_options
@trainer_options
@click.option("-q", "--quiet", is_flag=True, help="Only the verdict.")
@click.option("-v", "--verbose", is_flag=True, help="Every trial as it starts and ends.")
@_max_config_option
def search_command(good_bad: tuple[str, ...], project: str | None, no_project: bool, quiet: bool, verbose: bool, **flags: Any) -> None:
    """Find which difference(s) between GOOD and BAD cause the regression."""
    from bisect_runs.progress import Progress
    from bisect_runs.project import load_project, make_settings, parse_parallel
    from bisect_runs.search import Search

    if good_bad:
        if len(good_bad) != 2:
            raise click.UsageError("give both GOOD and BAD, or neither (then bisect.yaml names them)")
        flags["good"], flags["bad"] = good_bad
    flags["parallel"] = parse_parallel(flags["parallel"])
    settings = make_settings({} if no_project else load_project(project), flags)
    progress = Progress(level="quiet" if quiet else "verbose" if verbose else "normal")
    with _interrupts_as_exit():
        if settings.good_rev or settings.bad_rev:
            from bisect_runs.code_search import run_code_search

            result = run_code_search(settings, progress=progress)
        else:
            invocation = click.get_current_context().meta.get("bisect_runs.argv")
            result = Search(settings, progress=progress, invocation=invocation).run()
    _echo(result.verdict)
    if not quiet:
        out = settings.path(settings.out)
        steps = f" ({result.trial_steps} trial-steps)" if result.trial_steps is not None else ""
        _echo(f"{result.runs} runs{steps} in {result.rounds} rounds; summary: {out}/summary.json")
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
        _echo("Interrupted: finished trials are in the journal; rerun with --resume.", err=True)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)


@cli.command("compare")
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@click.option("--mode", "modes", multiple=True, metavar="METRIC=min|max", help="Direction of a metric (repeatable); a bare min/max applies to all.")
@click.option("--steps", "window", metavar="START:END", help="Compare only these steps, e.g. 15000:45000 (either side may be empty).")
@click.option("--shift-b", type=int, default=0, help="Add this to every step of RUN_B (a resumed run that logged steps from 0).")
@click.option("-k", "--noise-k", "k", type=float, default=3.0, show_default=True, help="Divergence threshold in noise sigmas.")
@click.option("--smooth", type=click.IntRange(1), default=5, show_default=True, help="Points in the rolling mean of B - A.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE instead of standard output.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), help="Write one overlay PNG per shared metric into DIR.")
def compare_command(run_a: str, run_b: str, modes: tuple[str, ...], window: str | None, shift_b: int, k: float, smooth: int, fmt: str, output: str | None, plot_dir: str | None) -> None:
    """Compare two finished runs' metric histories (metrics.jsonl, CSV, TensorBoard, W&B, MLflow)."""
    from pathlib import Path

    from bisect_runs.atomic import write_atomic
    from bisect_runs.compare import compare_runs, parse_window, plot_comparison, render
    from bisect_runs.metric_direction import parse_modes
    from bisect_runs.runs import read_run

    steps = parse_window(window)
    a, b = read_run(run_a), read_run(run_b)
    comparison = compare_runs(a, b, modes=parse_modes(modes), steps=steps, k=k, smooth=smooth, shift_b=shift_b)
    if plot_dir:
        from bisect_runs.report import figures

        if figures.available():
            plot_comparison(comparison, a, b.shifted(shift_b), Path(plot_dir), steps)
        else:
            _echo("Plots skipped: matplotlib is not installed (pip install 'bisect-runs[report]').", err=True)
    base = Path(output).parent if output else Path.cwd()
    text = render(comparison, fmt, base=base)
    if output:
        write_atomic(Path(output), text)
        _echo(f"Wrote {output}", err=True)
    else:
        _echo(text, nl=False, json=fmt == "json")



@cli.command("report")
@click.argument("out_dir", metavar="OUT_DIR", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True)
@click.option("--no-figures", is_flag=True, help="Write the page without figures.")
def report_command(out_dir: str, fmt: str, no_figures: bool) -> None:
    """(Re)write the report of a search in OUT_DIR from its summary and journal, without rerunning."""
    from bisect_runs.report import write_report

    path = write_report(out_dir, fmt=fmt, figures=not no_figures)
    _echo(f"Wrote {path}")


JUDGE_ABORT = 128  # `git bisect run` stops on exit codes above 127; 1-127 (but 125) would mean "bad"


class _JudgeUsageError(click.UsageError):
    exit_code = JUDGE_ABORT


class _JudgeCommand(click.Command):
    """Usage errors abort `git bisect run` (exit 128) instead of marking the commit bad (exit 2)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _JudgeUsageError(exc.message, exc.ctx) from None


@cli.command("judge", cls=_JudgeCommand)
@click.option("--good-value", type=float, multiple=True, help="A good run's metric (repeatable: one per seed).")
@click.option("--bad-value", type=float, multiple=True, help="A bad run's metric (repeatable: one per seed).")
@click.option("--good-rev", help="Measure this commit as the good reference (cached in --out).")
@click.option("--bad-rev", help="Measure this commit as the bad reference (cached in --out).")
@click.option("--repo", type=click.Path(file_okay=False), help="The checkout to judge (default: here).")
@click.option("--config", help="The config every commit runs.")
@measuring_options
@click.option("--seeds", type=int, help="Seeds per batch (at most four times as many in all).")
@click.option("--parallel", help="Trials at once: a number or 'auto'.")
@click.option("--timeout", type=float, help="Seconds before a trial is killed.")
@click.option("--min-effect", type=float, help="Smallest regression worth calling bad, in metric units.")
@click.option("--failure-value", type=float, help="Metric value a diverged trial counts as.")
@click.option("--out", help="Output directory; measurements of the references are cached there.")
@click.option("--project", type=click.Path(dir_okay=False), help="Project file (default ./bisect.yaml).")
@click.option("-q", "--quiet", is_flag=True, help="Only the verdict line.")
def judge_command(good_value: tuple[float, ...], bad_value: tuple[float, ...], project: str | None, quiet: bool, **flags: Any) -> None:
    """For `git bisect run`: is the checked-out commit good (exit 0), bad (1) or untestable (125)?"""
    from bisect_runs.code_search import judge_checkout
    from bisect_runs.progress import Progress
    from bisect_runs.project import load_project, make_settings, parse_parallel

    try:
        flags["parallel"] = parse_parallel(flags["parallel"])
        settings = make_settings(load_project(project), flags)
        progress = Progress(level="quiet" if quiet else "normal")
        with _interrupts_as_exit():
            result = judge_checkout(settings, list(good_value), list(bad_value), progress=progress)
    except BisectError as exc:
        _echo(f"Error: {exc}", err=True)
        sys.exit(JUDGE_ABORT)
    _echo(result.verdict if quiet else f"{result.sha[:10]} {result.verdict}")
    sys.exit(result.exit_code)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="bisect-runs")


if __name__ == "__main__":  # pragma: no cover
    main()
