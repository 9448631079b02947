"""`search --good-rev --bad-rev`: bisect the code, or configs and code together; see docs/commits.md.

The parts live in their own modules: the commit k-section strategy (`strategies.commits`),
trials at commits (`commit_trials`), the code search (`commit_search`), the combined
search (`combined_search`) and `git bisect run`'s judge (`judge`). Their public names are
re-exported here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bisect_runs.combined_search import CODE_PART, CONFIG_PART, CombinedSearch, combine
from bisect_runs.commit_search import (
    COMMIT_KEY,
    CodeSearch,
    bisect_options,
    config_format,
    subjects,
)
from bisect_runs.commit_trials import CommitRunner, CommitTrials, observe, python_path
from bisect_runs.journal import disk_space
from bisect_runs.judge import JUDGE_BAD, JUDGE_GOOD, JUDGE_SKIP, Judge, JudgeResult, judge_checkout
from bisect_runs.progress import Progress
from bisect_runs.project import Settings
from bisect_runs.search_settings import require
from bisect_runs.strategies.commits import (
    BAD,
    GOOD,
    SKIP,
    UNDECIDED,
    BisectOptions,
    CommitBisection,
    Comparison,
    Measurements,
    Verdict,
    bisect_commits,
    compare,
    conclude,
    k_section,
    not_reproduced,
    point_at,
    position_of,
)
from bisect_runs.summary import SearchResult


def run_code_search(settings: Settings, progress: Progress | None = None) -> SearchResult:
    """`search --good-rev --bad-rev`: bisect the code; with two configs and no --config, both parts.

    Combined mode first searches the config differences at the bad commit (do they explain
    the regression?), then bisects the code with the good config, and reports both parts.
    """
    require(settings, ("good_rev", "bad_rev"), "bisecting commits")
    with disk_space(settings.path(settings.out) or Path(settings.out)):
        if settings.config or not (settings.good and settings.bad):
            config = settings.config or settings.good or settings.bad
            return CodeSearch(dataclasses.replace(settings, config=config), progress).run()
        return CombinedSearch(settings, progress).run()



__all__ = [
    "BAD",
    "CODE_PART",
    "COMMIT_KEY",
    "CONFIG_PART",
    "GOOD",
    "JUDGE_BAD",
    "JUDGE_GOOD",
    "JUDGE_SKIP",
    "SKIP",
    "UNDECIDED",
    "BisectOptions",
    "CodeSearch",
    "CombinedSearch",
    "CommitBisection",
    "CommitRunner",
    "CommitTrials",
    "Comparison",
    "Judge",
    "JudgeResult",
    "Measurements",
    "Verdict",
    "bisect_commits",
    "bisect_options",
    "combine",
    "compare",
    "conclude",
    "config_format",
    "judge_checkout",
    "k_section",
    "not_reproduced",
    "observe",
    "point_at",
    "position_of",
    "python_path",
    "run_code_search",
    "subjects",
]
