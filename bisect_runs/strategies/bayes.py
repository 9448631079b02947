"""`bayes`: one posterior over sparse explanations decides what to run next and when to stop.

Every round shares one fresh seed among its P points (the seed is a block effect the model
estimates), picks them by expected information (`information`), and updates the posterior
(`posterior`). It stops when the leading answer (the explanations that name the same
culprits and classification, e.g. a culprit alone and the same culprit masked by any helper,
pooled) has posterior >= CONFIDENCE, its regression exceeds `--min-effect` with that
probability, and its own A + T and B - T runs are part of the evidence (a diffuse answer:
DIFFUSE_RUNS finished runs per coefficient it fits); or when "no regression worth reporting"
has that probability, or A's and B's own runs put B - A below `--min-effect` by the rule
`auto` abstains on. When the answer is settled but a helper is still plausible, the masking
note gets one more round.
`docs/search.md` explains the model and its few parameters.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

from bisect_runs.strategies.base import Point, Request, SearchContext, Strategy
from bisect_runs.strategies.bayes_verdicts import conclude
from bisect_runs.strategies.calibration import EXTEND, MAX_SEEDS, a_point, b_point, judge, promising
from bisect_runs.strategies.evidence import Evidence
from bisect_runs.strategies.explanations import factor_weights, hypotheses, log_priors
from bisect_runs.strategies.information import choose
from bisect_runs.strategies.posterior import Posterior, Runs, score
from bisect_runs.strategies.rounds import ask, slots

CONFIDENCE = 0.95  # posterior probability at which an explanation (or "no regression") is the answer
CONFIRM_AT = 0.5  # from this posterior on, the leading explanation's own A + T and B - T runs are scheduled
MIN_REFERENCE = 2  # runs of A and of B before any answer (the reported B - A needs a spread)
MEMBER_SHARE = 0.25  # each member of an explanation carries at least this share of the B - A gap seen (auto's BYSTANDER)
DIFFUSE_RUNS = 2  # "diffuse" is an answer only after this many finished runs per coefficient it fits (n + 1)
MAX_ROUNDS = 40  # an answer still short of CONFIDENCE after this many rounds is reported as incomplete


def bayes(ctx: SearchContext) -> Strategy:
    """Plan by information, update the posterior, stop on CONFIDENCE in the leading answer."""
    ev = Evidence(ctx)
    log: list[dict[str, Any]] = []
    n = ctx.n_factors
    rng = np.random.default_rng(ctx.seed_base + 7919)
    weights = factor_weights(ctx.prior_scores, n)
    post: Posterior | None = None
    noted = False  # whether the masking note has had its one round
    for _ in range(MAX_ROUNDS):
        first = hypotheses(n, list(np.argsort(-weights, kind="stable")))
        points = choose(post, n, slots(ctx), forced_points(ev, post, slots(ctx)), rng, first, log_priors(first, weights))
        got = yield from ask(ev, blocked(ev, points, confirming(post, n)), "bayes", log)
        if got is None:
            return conclude(ev, post, log, complete=False)
        post = update(ev, weights, post)
        if abstains(ev):
            return conclude(ev, post, log, complete=True, abstained=True)
        if answered(ev, post):
            if note_open(post) and not noted:
                noted = True
                continue
            return conclude(ev, post, log, complete=True)
    return conclude(ev, post, log, complete=False)


def runs_of(ev: Evidence) -> Runs:
    """The judged runs as arrays (infrastructure failures are not judged)."""
    n = ev.ctx.n_factors
    obs = ev.observations
    x = np.zeros((len(obs), n))
    for k, o in enumerate(obs):
        x[k, list(o.point)] = 1.0
    failed = np.array([ev.is_failed(o) for o in obs], dtype=bool)
    y = np.array([np.nan if f else ev.sign * float(o.value) for o, f in zip(obs, failed, strict=True)])  # type: ignore[arg-type]
    return Runs(x, y, np.array([o.seed for o in obs]), failed)


def update(ev: Evidence, weights: np.ndarray, previous: Posterior | None) -> Posterior:
    """Score singles first, then pairs and triples among the leading suspects."""
    runs = runs_of(ev)
    tau = effect_scale(ev, runs)
    sigma_ref = previous.sigma if previous is not None and previous.sigma > 0 else tau / 2
    n = ev.ctx.n_factors
    base = hypotheses(n, [])
    member = max(MEMBER_SHARE * gap_seen(ev), ev.ctx.min_effect / 2)
    delta = (max(member, ev.ctx.min_effect), member)  # a lone cause must itself exceed min_effect
    first = score(base, log_priors(base, weights), runs, tau, sigma_ref, delta)
    hyps = hypotheses(n, suspects(first, previous, n))
    return score(hyps, log_priors(hyps, weights), runs, tau, sigma_ref, delta)


def gap_seen(ev: Evidence) -> float:
    """|mean(B) - mean(A)| of the finished runs (0 before both have one)."""
    ok = ev.ok_losses()
    a, b = ok.get(a_point(), []), ok.get(b_point(ev.ctx.n_factors), [])
    return abs(float(np.mean(b)) - float(np.mean(a))) if a and b else 0.0


def effect_scale(ev: Evidence, runs: Runs) -> float:
    """Prior scale of a culprit's effect: the B - A gap seen, at least the spread of runs and min_effect."""
    y = runs.y[runs.ok]
    spread = 2 * float(np.std(y)) if len(y) > 1 else 0.0
    return max(gap_seen(ev), spread, ev.ctx.min_effect, 1e-9)


def suspects(first: Posterior, previous: Posterior | None, n: int) -> list[int]:
    """Factors in order of suspicion: single posteriors, the diffuse fit's largest effects, the last round's."""
    single = np.zeros(n)
    for h, p in zip(first.hyps, first.prob, strict=True):
        if h.kind == "single":
            single[h.factors[0]] = p
    orders = [list(np.argsort(-single, kind="stable"))]
    diffuse = [k for k, h in enumerate(first.hyps) if h.kind == "diffuse"]
    if diffuse:
        coef, cov = first.coef[diffuse[0]], first.cov[diffuse[0]]
        t = np.abs(coef) / np.sqrt(np.maximum(np.diag(cov), 1e-300))
        orders.append(list(np.argsort(-t, kind="stable")))
    if previous is not None:
        orders.insert(0, list(np.argsort(-previous.inclusion(n), kind="stable")))
    merged = [int(i) for ranks in zip(*orders, strict=True) for i in ranks]
    return list(dict.fromkeys(merged))


def blocked(ev: Evidence, points: list[Point], full: Collection[Point] = ()) -> list[Request]:
    """The round's requests on one shared seed; a point's k-th copy on the round's k-th seed.
    The points in `full` run the whole budget (never stopped early)."""
    seeds: list[int] = []
    copies: dict[Point, int] = {}
    out = []
    for p in points:
        k = copies[p] = copies.get(p, -1) + 1
        while len(seeds) <= k:
            seeds.append(ev.fresh_seed())
        out.append(ev.request(p, seeds[k], full=p in full))
    return out


def confirming(post: Posterior | None, n: int) -> tuple[Point, ...]:
    """A + T and B - T of the leading explanation once it is likely: the verdict's shares come from them,
    so they run in full (the stop counts only full runs of them)."""
    if post is None:
        return ()
    k, mass = post.leading()
    t = post.hyps[k].touched
    return (frozenset(t), b_point(n) - t) if t and mass >= CONFIRM_AT else ()


def forced_points(ev: Evidence, post: Posterior | None, slots: int) -> list[Point]:
    """A and B while the regression itself is in doubt (every slot while "no regression" leads: only they can
    settle it); the leading explanation's A + T and B - T once it is likely."""
    n = ev.ctx.n_factors
    a, b = a_point(), b_point(n)
    if post is None:
        return [a, b]
    out: list[Point] = []
    if post.p_reproduced(ev.ctx.min_effect) < CONFIDENCE:  # is there a regression at all? A and B say most
        out += [a, b]
    k, mass = post.leading()
    best = post.hyps[k]
    if mass >= CONFIRM_AT or best.kind == "null":
        out += [p for p in (a, b) if ev.count(p) < MIN_REFERENCE]
        out += [p for p in confirming(post, n) if ev.count(p, full=True) == 0]
    out = list(dict.fromkeys(out))
    if best.kind == "null" and post.p_reproduced(ev.ctx.min_effect) < CONFIDENCE:
        out += [a, b] * (slots // 2 - 1)
    return out


def abstains(ev: Evidence) -> bool:
    """No regression worth reporting, by the calibration's rule on A's and B's own runs (as `auto` abstains).

    That is: B - A below `--min-effect` at 1 - 2 alpha confidence, or still not significantly
    above it after the calibration's seed cap (twice the cap while it looks promising).
    """
    n = ev.ctx.n_factors
    pairs = min(ev.count(a_point()), ev.count(b_point(n)))
    cap = max(ev.ctx.seeds or MAX_SEEDS, MAX_SEEDS)
    cal = judge(ev, final=pairs >= cap and not (pairs < EXTEND * cap and promising(ev)))
    return cal is not None and not cal.reproduced


def note_open(post: Posterior) -> bool:
    """Whether the answer is settled but not whether a helper masks it (its masks together hold more than
    1 - CONFIDENCE of it and no one explanation CONFIDENCE): the masking note then gets one more round, no more."""
    k, mass = post.leading()
    masked = sum(float(post.prob[j]) for j in post.members(post.hyps[k].answer) if post.hyps[j].kind == "mask")
    return masked > (1 - CONFIDENCE) * mass and post.prob[k] < CONFIDENCE * mass


def answered(ev: Evidence, post: Posterior) -> bool:
    """Whether the posterior has settled on an answer the runs have confirmed."""
    n, min_effect = ev.ctx.n_factors, ev.ctx.min_effect
    a, b = a_point(), b_point(n)
    if min(ev.count(a), ev.count(b)) < MIN_REFERENCE:
        return False
    if post.p_reproduced(min_effect) <= 1 - CONFIDENCE:
        return True
    k, mass = post.leading()
    best = post.hyps[k]
    if best.kind == "null" or mass < CONFIDENCE or post.p_answer_exceeds(k, min_effect) < CONFIDENCE:
        return False
    if best.kind == "diffuse":  # it fits an effect per factor: only runs well beyond that many can back it
        return sum(len(v) for v in ev.ok_losses().values()) >= DIFFUSE_RUNS * (n + 1)
    t = best.touched
    return all(ev.count(p, full=True) > 0 for p in (frozenset(t), b - t)) if t else True


__all__ = ["CONFIDENCE", "bayes"]
