"""The default strategy: calibrate, screen with a two-level design, confirm and minimize.

`docs/search.md` explains the method and its benchmark. Every phase fills whole rounds
(P requests) so parallel slots are never idle.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bisect_runs.strategies import designs
from bisect_runs.strategies.base import (
    Observation,
    Point,
    Request,
    SearchContext,
    Strategy,
)
from bisect_runs.strategies.calibration import Calibration, a_point, b_point, calibrate, replicate
from bisect_runs.strategies.effects import Fraction, Model
from bisect_runs.strategies.evidence import Evidence
from bisect_runs.strategies.rounds import ask, slots
from bisect_runs.strategies.verdicts import (
    DECISION_LEVEL,
    SHARE,
    SYNERGY,
    Finding,
    decide,
    direct_shares,
    not_reproduced,
)

MAX_CANDIDATES = 4
SUSPECT_T = 2.5  # not significant after Holm, but worth confirming alongside the significant ones
PARTNER_T = 1.5
PARTNER_HIGH = 1.0  # a lone suspect whose share is clearly below this gets a partner (and cannot end screening early)
MAX_ALL_CANDIDATES = 6  # after adding suspects the screen missed
MAX_SCREEN_BLOCKS = 4
COUNTED_T = 3.0  # a suspect this strong counts towards what the screen explains, significant or not
MAX_CONFIRM_LAYERS = 8
BYSTANDER = 0.25  # a member whose own reproduce and repair shares are both below this is dropped
RIVAL_MARGIN = 0.2  # a smaller set whose estimate is this far below SHARE no longer holds confirmation up
SETTLED_MARGIN = 0.2  # confirmation can end only once the best set's lower bounds are within this of SHARE
MISSED_T = 1.0  # a factor outside the candidates whose main effect is a standard error above zero gets a look
LAYER_SCALE = 3.0  # confirmation starts with ceil(LAYER_SCALE / d**2) seeds per point
DIRECT_LOW = 0.0  # after an early screen, a set ends confirmation only when its own runs show a share above this
SYNERGY_LEVEL = 0.7  # a pair is classified (AND or not) once its synergy is on one side of SYNERGY at 85 % one-sided

Phase = Generator[list[Request], list[Observation], Any]


@dataclass
class Screen:
    """Candidates from screening (harmful factors, strongest first) and the helpful ones seen."""

    candidates: list[int]
    complete: bool = True
    notes: dict[str, Any] = field(default_factory=dict)
    early: bool = False  # ended before the first block was complete: confirmation must not lean on it
    rows: int = 0  # design rows run


def auto(ctx: SearchContext, always_screen: bool = False) -> Strategy:
    """Calibrate, screen, confirm; `always_screen` forces the design-based path even for n <= 2."""
    ev = Evidence(ctx)
    log: list[dict[str, Any]] = []
    cal = yield from calibrate(ev, log, first=ctx.seeds)
    if not cal.reproduced:
        return not_reproduced(ev, cal, log)
    if ctx.n_factors <= 2 and not always_screen:
        screen = Screen(list(range(ctx.n_factors)))
    else:
        screen = yield from run_screen(ev, log, cal)
    finding = (yield from confirm(ev, log, screen, cal)) if screen.candidates else None
    if screen.early and (finding is None or not finding.minimal):  # the early call failed: finish the block
        screen = yield from run_screen(ev, log, cal, start=screen.rows)
        finding = (yield from confirm(ev, log, screen, cal)) if screen.candidates else None
    if finding is None or not finding.minimal:  # nothing explains it: is the regression itself real?
        again = yield from replicate(ev, log)
        if not again.reproduced and again.complete:
            return not_reproduced(ev, again, log, replicated=True)
    return decide(ev, cal, finding, log, complete=screen.complete and (finding is None or finding.complete))


# -- screening -----------------------------------------------------------------------------


def run_screen(ev: Evidence, log: list[dict[str, Any]], cal: Calibration, start: int = 0) -> Phase:
    """Run design blocks (design, foldover, ...) with fresh seeds until the main effects decide.

    `start`: design rows already run (a screen that ended early and goes on); it may end early
    only when it starts afresh.
    """
    n, p = ev.ctx.n_factors, slots(ev.ctx)
    blocks = designs.blocks(n)
    block_size = len(designs.design_matrix(n))
    queue: deque[np.ndarray] = deque()
    done = 0
    while done < start:
        if not queue:
            queue.extend(next(blocks))
        queue.popleft()
        done += 1
    while True:
        requests: list[Request] = []
        while len(requests) < p:
            if not queue:
                queue.extend(next(blocks))
            requests.append(ev.request(designs.row_to_point(queue.popleft(), list(range(n)))))
        got = yield from ask(ev, requests, "screen", log)
        if got is None:
            return judge_screen(ev, final=True, complete=False, rows=done)
        done += len(got)
        whole = done >= block_size
        # failed runs are far from additive: a partial block judges only runs that all finished
        early = not start and done >= n and not any(ev.is_failed(o) for o in ev.observations)
        if whole or early:
            screen = judge_screen(ev, final=done >= MAX_SCREEN_BLOCKS * block_size, lone_only=not whole, rows=done)
            if screen is not None:
                return screen


def judge_screen(
    ev: Evidence, final: bool, complete: bool = True, lone_only: bool = False, rows: int = 0
) -> Screen | None:
    """Candidates once significant harmful effects explain the regression; None to keep screening.

    Before the first block is complete (`lone_only`) the design is not orthogonal and main
    effects may carry interactions, so only one significant suspect whose share is not
    clearly below the whole regression ends screening early.
    """
    ctx = ev.ctx
    model = Model(ctx.n_factors, [], *ev.table())
    if not (final or model.estimable()):  # a partial first block may not separate every factor yet
        return None
    effect, se, adjusted = model.main_effects()
    delta = model.contrast(a_point(), b_point(ctx.n_factors)).value
    significant = [i for i in range(ctx.n_factors) if adjusted[i] < ctx.alpha]
    harmful = sorted((i for i in significant if effect[i] > 0), key=lambda i: -effect[i])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, effect / se, 0.0)
    ranked = [int(i) for i in np.argsort(-t) if int(i) not in harmful]
    likely = [i for i in ranked if t[i] > SUSPECT_T]
    named = significant + ([i for i in likely if t[i] > COUNTED_T][:1] if harmful else [])
    explained = sum(effect[i] for i in named) / delta if delta > 0 else 0.0
    notes = {"screen_explained": explained, "screen_significant": significant}
    if not (harmful and explained >= SHARE) and not final:
        return None
    lone = (harmful + likely)[:1]
    if lone_only and not final:
        if len(harmful + likely) != 1 or partial(model, lone[0]):
            return None
        return Screen(lone, complete, notes, early=True, rows=rows)
    if len(harmful + likely) == 1 and partial(model, lone[0]):
        # one suspect that explains only part: a partner keeps OR/AND/additive pairs testable
        likely += [i for i in ranked if PARTNER_T < t[i] <= SUSPECT_T][:1]
    return Screen((harmful + likely)[:MAX_CANDIDATES], complete, notes, rows=rows)


def partial(model: Model, i: int) -> bool:
    """Whether factor i alone clearly explains less than the whole regression (its share's upper bound)."""
    c = np.zeros(len(model.row(a_point())))
    c[1 + i] = 2.0
    share = model.ratio(c, model.row(b_point(model.n)) - model.row(a_point()), DECISION_LEVEL)
    return share.high < PARTNER_HIGH


# -- confirmation --------------------------------------------------------------------------


def confirm(ev: Evidence, log: list[dict[str, Any]], screen: Screen, cal: Calibration) -> Phase:
    """Run A + T and B - T for subsets T of the candidates, a paired seed per layer, until decided."""
    ctx = ev.ctx
    n, cands = ctx.n_factors, screen.candidates
    family: list[frozenset[int]] = [frozenset({i}) for i in cands]
    if len(cands) > 2:  # a pair is predicted from its members' runs; it joins once it leads
        family.append(frozenset(cands))
    pending: deque[Request] = deque()
    layers = 0
    min_layers = min_confirm_layers(cal)
    finding = analyse(ev, cands, screen)
    while True:
        requests: list[Request] = []
        while len(requests) < slots(ctx):
            if not pending:
                seed = ctx.seed_base + layers
                layers += 1
                for point in confirm_points(family, n):
                    pending.append(ev.request(point, seed))
            requests.append(pending.popleft())
        got = yield from ask(ev, requests, "confirm", log)
        if got is None:
            finding.complete = False
            return finding
        if any(ev.count(p) == 0 for p in confirm_points(family, n)):
            continue
        finding = analyse(ev, cands, screen)
        full_layers = layers - (1 if pending else 0)
        if full_layers >= min_layers and (conclusive(finding, screen.early) or full_layers >= MAX_CONFIRM_LAYERS):
            return finding
        for best in finding.minimal[:1]:
            if best not in family:
                family.append(best)
        if full_layers >= min_layers and not finding.minimal and short_of_regression(finding):
            if screen.early:
                return finding  # the rest of the screen, not a biased model, names the next suspects
            extra = missing_candidates(finding)
            if not extra:
                return finding
            cands = cands + extra
            family = list(dict.fromkeys(family + [frozenset({i}) for i in extra] + [frozenset(cands)]))
            pending.clear()


def short_of_regression(f: Finding) -> bool:
    """Whether all candidates together clearly fail to reproduce or repair the regression."""
    whole = frozenset(f.candidates)
    r, q = f.shares.get(whole) or f.model_shares(whole)
    dr, dq = f.direct.get(whole, (r, q))
    return min(r.high, q.high, dr.high, dq.high) < SHARE


def missing_candidates(f: Finding) -> list[int]:
    """The next suspect the screen missed (largest remaining main effect), if any is worth a look."""
    if len(f.candidates) >= MAX_ALL_CANDIDATES:
        return []
    effect, se, _ = f.model.main_effects()
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, effect / se, 0.0)
    rest = [int(i) for i in np.argsort(-t) if int(i) not in f.candidates and t[i] > MISSED_T]
    return rest[:1]


def confirm_points(family: list[frozenset[int]], n: int) -> list[Point]:
    """A + T and B - T for each T of the family, without repeats."""
    b = b_point(n)
    seen: dict[Point, None] = {}
    for t in family:
        seen.setdefault(frozenset(t), None)
        seen.setdefault(b - t, None)
    return list(seen)


def min_confirm_layers(cal: Calibration) -> int:
    """Fewer seeds per confirmation point the clearer the regression is against the noise."""
    d = cal.d
    if not math.isfinite(d) or d <= 0:
        return 1 if d > 0 else MAX_CONFIRM_LAYERS
    return int(min(MAX_CONFIRM_LAYERS, max(1, math.ceil(LAYER_SCALE / d**2))))


def analyse(ev: Evidence, cands: list[int], screen: Screen) -> Finding:
    """Reproduce/repair shares of every small subset of the candidates, from one model on all runs."""
    n = ev.ctx.n_factors
    a, b = a_point(), b_point(n)
    model = Model(n, cands, *ev.table())
    subsets = [frozenset(c) for k in (1, 2) for c in itertools.combinations(cands, k)]
    if len(cands) > 2:
        subsets.append(frozenset(cands))
    shares: dict[frozenset[int], tuple[Fraction, Fraction]] = {}
    for t in subsets:
        shares[t] = (model.fraction(a, t, a, b, DECISION_LEVEL), model.fraction(b - t, b, a, b, DECISION_LEVEL))
    direct = {t: direct_shares(ev, t) for t in shares}

    def qualifies(t: frozenset[int], plausibly: bool = False) -> bool:
        if t not in shares:
            shares[t] = (model.fraction(a, t, a, b, DECISION_LEVEL), model.fraction(b - t, b, a, b, DECISION_LEVEL))
            direct[t] = direct_shares(ev, t)
        r, q = shares[t]
        model_ok = min(r.high, q.high) >= SHARE if plausibly else min(r.value, q.value) >= SHARE
        return model_ok and min(direct[t][0].high, direct[t][1].high) >= SHARE

    qualifying = [t for t in list(shares) if qualifies(t)]
    minimal = [t for t in qualifying if not any(u < t for u in qualifying)]
    # a set without its bystanders must still plausibly explain the regression on its own
    minimal = list(dict.fromkeys(u if qualifies(u := without_bystanders(t, shares), True) else t for t in minimal))
    minimal = [t for t in minimal if not any(u < t for u in minimal)]
    if minimal:
        size = min(len(t) for t in minimal)
        minimal = sorted((t for t in minimal if len(t) == size), key=lambda t: -min(s.value for s in shares[t]))
    return Finding(model, cands, shares, minimal, dict(screen.notes), direct=direct)


def without_bystanders(t: frozenset[int], shares: dict[frozenset[int], tuple[Fraction, Fraction]]) -> frozenset[int]:
    """T without members that alone neither reproduce nor repair anything (they ride along by noise)."""
    if len(t) < 2:
        return t
    kept = frozenset(i for i in t if max(s.value for s in shares[frozenset({i})]) >= BYSTANDER)
    return kept or t


def rides_along(f: Finding, rest: frozenset[int]) -> bool:
    """Whether `rest` may be a bystander: alone it does not both reproduce and repair a share clearly above 0.

    The model must show it, and the runs at A + rest and B - rest themselves must not
    contradict it (a model that misses an interaction can be confidently wrong).
    """
    model, direct = f.shares.get(rest), f.direct.get(rest, ())
    if model is None or not min(s.low for s in model) > 0:
        return True
    return any(s.value < BYSTANDER for s in direct)


def conclusive(f: Finding, own_runs: bool = False) -> bool:
    """Whether more confirmation runs are unlikely to change the answer.

    `own_runs`: the model rests on a partial, non-orthogonal block, so the runs at A + T and
    B - T themselves must show a real share too.
    """
    if not f.minimal:
        return False
    best = f.minimal[0]
    r, q = f.shares[best]
    if min(r.low, q.low) < SHARE - SETTLED_MARGIN:
        return False
    if own_runs and min(s.low for s in f.direct[best]) < DIRECT_LOW:
        return False
    floor = min(r.low, q.low)
    for t, (r2, q2) in f.shares.items():  # a smaller set must be clearly out, a rival of its size clearly behind
        if t == best or len(t) > len(best):
            continue
        if t < best and not rides_along(f, best - t):
            continue  # what best adds to t has a share of its own: t is a part, not a rival
        if t < best and len(best) > 2 and min(r2.high, q2.high) >= SHARE:
            return False  # three or more members: each must be shown to be needed
        smaller = len(t) < len(best)
        bar = SHARE if smaller else max(SHARE, floor)
        if min(r2.high, q2.high) >= bar and min(r2.value, q2.value) >= SHARE - (RIVAL_MARGIN if smaller else 0.0):
            return False
    if len(best) == 2:
        i, j = sorted(best)
        inter = f.model.synergy(i, j, SYNERGY_LEVEL)
        if inter.low < SYNERGY < inter.high:
            return False
    return True
