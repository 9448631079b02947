"""Configs and code together: a config search at the bad commit, then the code bisected with the good config."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from bisect_runs.commit_search import CodeSearch
from bisect_runs.progress import Progress
from bisect_runs.project import Settings
from bisect_runs.report import write_report
from bisect_runs.revisions import WORKTREE_DIR, Worktrees, open_repo, resolve
from bisect_runs.summary import SearchResult, write_summary

CONFIG_PART, CODE_PART = "config-at-bad", "code"


class CombinedSearch:
    """Good config at good rev vs bad config at bad rev: a config search at bad rev, then the code."""

    def __init__(self, settings: Settings, progress: Progress | None = None) -> None:
        self.settings = settings
        self.progress = progress
        self.out_dir = settings.path(settings.out) or Path(settings.out)
        self.repo = open_repo(settings.path(settings.repo) if settings.repo else Path.cwd())

    def run(self) -> SearchResult:
        s = self.settings
        config_part = self.config_part()
        code_settings = dataclasses.replace(
            s, out=str(self.out_dir / CODE_PART), config=s.good
        )
        code_part = CodeSearch(code_settings, self.progress).run()
        result = combine(s, config_part, code_part)
        write_summary(self.out_dir, result)
        write_report(self.out_dir)
        return result

    def config_part(self) -> SearchResult | None:
        """The config search with the trainer at the bad commit (None when the configs do not differ)."""
        from bisect_runs.search import Search

        s = self.settings
        bad_sha = resolve(self.repo, str(s.bad_rev))
        part = dataclasses.replace(s, out=str(self.out_dir / CONFIG_PART), good_rev=None, bad_rev=None)
        with Worktrees(self.repo, self.out_dir / WORKTREE_DIR) as worktrees:
            search = Search(part, progress=self.progress, cwd=worktrees.checkout(bad_sha))
            return search.run() if search.factors else None


def combine(s: Settings, config: SearchResult | None, code: SearchResult) -> SearchResult:
    """One summary for both parts: config culprits first, then the first bad commit."""
    parts = [p for p in (config, code) if p is not None]
    config_verdict = config.verdict if config else "The configs do not differ in any searchable key."
    return SearchResult(
        good=f"{s.good} at {s.good_rev}",
        bad=f"{s.bad} at {s.bad_rev}",
        metric=code.metric,
        mode=code.mode,
        steps=code.steps,
        strategy=f"{config.strategy}+commits" if config else "commits",
        reproduced=any(p.reproduced for p in parts),
        differences=config.differences if config else [],
        factors=[f for p in parts for f in p.factors],
        culprits=[c for p in parts for c in p.culprits],
        effects=[e for p in parts for e in p.effects],
        runs=sum(p.runs for p in parts),
        rounds=sum(p.rounds for p in parts),
        verdict=f"Configs at the bad commit: {config_verdict} Code with the good config: {code.verdict}",
        regression=None,
        details={
            "code": code.details.get("code"),
            "parts": {
                "config": None if config is None else _part_json(config, CONFIG_PART),
                "code": _part_json(code, CODE_PART),
            },
        },
        complete=all(p.complete for p in parts),
    )


def _part_json(part: SearchResult, folder: str) -> dict[str, Any]:
    keep = ("reproduced", "culprits", "effects", "regression", "verdict", "runs", "rounds", "strategy")
    return {"out": folder, **{k: getattr(part, k) for k in keep}}
