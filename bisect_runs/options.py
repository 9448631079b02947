"""Command-line options shared by `diff`, `search` and `judge`: each is also a bisect.yaml key of the same name.

The flag `--steps-key` is the key `steps_key`; docs/config.md lists every key with an example.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from bisect_runs.metrics import SOURCES as METRIC_SOURCES
from bisect_runs.project import MODES

F = TypeVar("F", bound=Callable[..., Any])

_COMPARING = [  # how two configs are compared: diff and search rank alike
    click.option("--ignore", multiple=True, metavar="GLOB", help="Skip keys matching GLOB (repeatable; key `ignore`)."),
    click.option("--alias", "--aliases", "aliases", multiple=True, metavar="OLD=NEW", help="Pair key OLD of A with key NEW of B (repeatable; key `aliases`)."),
    click.option("--defaults", "--defaults-file", "defaults_file", metavar="FILE", help="Values a key takes when a config lacks it (key `defaults`)."),
    click.option("--rules", metavar="FILE", help="Impact rules tried before the shipped ones (key `rules`)."),
    click.option("--group", "--groups", "groups", multiple=True, metavar="NAME=GLOB,GLOB", help="Keys that form one factor (repeatable; key `groups`)."),
    click.option("--include-all", is_flag=True, default=None, help="Also search differences ranked 'none' (key `include_all`)."),
    click.option("--project", type=click.Path(dir_okay=False), help="Project file (default ./bisect.yaml when present)."),
    click.option("--no-project", is_flag=True, help="Ignore ./bisect.yaml."),
]

_MEASURING = [  # what a trial runs, measures and for how long: search and judge
    click.option("--command", help="Trainer command template ({python} {config} {run_dir} {steps} {seed} {checkpoint} {overrides} {args})."),
    click.option("--metric", help="Metric to compare, e.g. val_loss."),
    click.option("--mode", type=click.Choice(MODES), help="Whether lower (min) or higher (max) is better."),
    click.option("--steps", type=int, help="Step budget of every trial."),
]

_TRAINER = [  # how a trial is run and read: search only
    click.option("--override-style", help="How {overrides} and {args} are written: hydra | equals | space, then python, leaf, flags, store_true."),
    click.option("--steps-key", help="Config key the step budget is written to (e.g. max_iters)."),
    click.option("--seed-key", help="Config key the seed is written to."),
    click.option("--run-dir-key", help="Config key the trial's run directory is written to (e.g. output_dir)."),
    click.option("--checkpoint", metavar="PATH", help="Checkpoint every trial resumes from ({checkpoint}; key `checkpoint`)."),
    click.option("--checkpoint-step", type=int, metavar="N", help="The step the checkpoint was taken at: trials run the steps after it."),
    click.option("--checkpoint-key", help="Config key the checkpoint's path is written to (e.g. resume_from)."),
    click.option("--seed-base", type=int, help="First seed of the search (default 0)."),
    click.option("--metric-source", type=click.Choice(METRIC_SOURCES), help="Where metrics are read from."),
    click.option("--metric-pattern", metavar="REGEX", help="regex source: one group capturing the value in stdout."),
    click.option("--metric-file", metavar="PATH", help="csv source: the file, relative to the run directory."),
    click.option("--reduce", metavar="last|min|max|mean_last:K", help="How a run's history becomes one value."),
    click.option("--slurm", multiple=True, metavar="KEY=VALUE", help="A submitit Slurm parameter, value read as YAML (repeatable; key `slurm`)."),
    click.option("--ray", multiple=True, metavar="KEY=VALUE", help="A Ray executor option, value read as YAML (repeatable; key `ray`)."),
]


def comparing_options(f: F) -> F:
    """The options that decide how A and B are compared (shared by diff and search)."""
    for option in reversed(_COMPARING):
        f = option(f)
    return f


def trainer_options(f: F) -> F:
    """The options that say how a trainer is driven and read (search)."""
    for option in reversed(_TRAINER):
        f = option(f)
    return f


def measuring_options(f: F) -> F:
    """The trainer command, the metric, its direction and the step budget (search and judge)."""
    for option in reversed(_MEASURING):
        f = option(f)
    return f
