"""The posterior over explanations, from every run: a linear model per explanation, seeds as blocks.

Finished runs: loss = intercept + the explanation's columns x coefficients + seed effect +
noise. The seed effect (noise every variant shares at one seed) is a random block effect
whose share of the noise variance is averaged over a grid; coefficients get a normal prior
of scale `tau` (in noise units through `sigma_ref`), the noise variance a vague
inverse-gamma prior, so each marginal likelihood is closed form. Failed runs (diverged,
crashed, timed out) are the worst outcome: they are evidence for an explanation in
proportion to how much more often they happen where it predicts the regression than
elsewhere (never less often). `docs/search.md` derives it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from bisect_runs.strategies.explanations import Explanation

SHARED_GRID = (0.0, 0.25, 0.5, 0.75)  # share of the noise variance common to a seed
MAX_G = 1e6  # cap on (tau / sigma_ref)^2: a noiseless trainer must not make the prior degenerate
INTERCEPT_G = 1e6  # the intercept's prior is flat in practice
A0 = 0.01  # vague inverse-gamma prior on the noise variance
BACKGROUND = 0.1  # sd of the sum of all innocent effects, as a share of the effect scale tau


@dataclass
class Runs:
    """The judged runs as arrays: incidence (1 = at B), loss (nan when failed), seed, failed flag."""

    x: np.ndarray
    y: np.ndarray
    seeds: np.ndarray
    failed: np.ndarray

    @property
    def ok(self) -> np.ndarray:
        return ~self.failed


@dataclass
class Posterior:
    """Posterior probabilities and coefficient summaries of the hypotheses scored."""

    hyps: list[Explanation]
    prob: np.ndarray
    coef: list[np.ndarray]  # posterior mean coefficients (intercept excluded)
    cov: list[np.ndarray]  # their posterior covariance
    gap: np.ndarray  # posterior mean of f(B) - f(A)
    gap_sd: np.ndarray
    sigma: float  # noise sd (total) of the best explanation
    shared: float  # share of the noise variance common to a seed (posterior mean)
    level: np.ndarray | None = None  # posterior mean loss at A per hypothesis (centred: the same offset for all)

    def members(self, answer: object) -> list[int]:
        """The explanations that claim `answer` (see Explanation.answer)."""
        return [k for k, h in enumerate(self.hyps) if h.answer == answer]

    def answers(self) -> dict[object, float]:
        """Each answer's posterior probability: the explanations claiming the same culprits and classification pooled."""
        mass: dict[object, float] = {}
        for h, p in zip(self.hyps, self.prob, strict=True):
            mass[h.answer] = mass.get(h.answer, 0.0) + float(p)
        return mass

    def leading(self) -> tuple[int, float]:
        """The most probable answer: its most probable explanation and the answer's posterior probability."""
        mass = self.answers()
        answer = max(mass, key=lambda a: mass[a])
        return max(self.members(answer), key=lambda k: self.prob[k]), mass[answer]

    def p_answer_exceeds(self, k: int, min_effect: float) -> float:
        """P(f(B) - f(A) > min_effect) under the answer of hypothesis k (its explanations weighted)."""
        members = self.members(self.hyps[k].answer)
        total = float(sum(self.prob[j] for j in members))
        if total <= 0:
            return self.p_exceeds(k, min_effect)
        return float(sum(self.prob[j] * self.p_exceeds(j, min_effect) for j in members)) / total

    def p_exceeds(self, k: int, min_effect: float) -> float:
        """P(f(B) - f(A) > min_effect) under hypothesis k."""
        if self.hyps[k].kind == "null":
            return 0.0
        if self.gap_sd[k] <= 0:
            return float(self.gap[k] > min_effect)
        return float(special.ndtr((self.gap[k] - min_effect) / self.gap_sd[k]))

    def p_reproduced(self, min_effect: float) -> float:
        return float(sum(p * self.p_exceeds(k, min_effect) for k, p in enumerate(self.prob)))

    def inclusion(self, n: int) -> np.ndarray:
        """Posterior probability that each factor is part of the explanation (diffuse excluded)."""
        out = np.zeros(n)
        for h, p in zip(self.hyps, self.prob, strict=True):
            for i in h.factors:
                out[i] += p
        return out


def whitening(seeds: np.ndarray, shared: float, x: np.ndarray, background: float) -> tuple[np.ndarray, float]:
    """W with W C W' = I and log det C, for C the noise correlation plus the small effects of every factor.

    C = (1 - shared) I + shared [same seed] + background X X': the seed block effect, and
    innocent differences of sd sqrt(background) (in noise units) on every factor, which no
    sparse explanation names but which move every run a little.
    """
    same = (seeds[:, None] == seeds[None, :]).astype(float)
    c = (1 - shared) * np.eye(len(seeds)) + shared * same + background * (x @ x.T)
    chol = np.linalg.cholesky(c)
    return np.linalg.inv(chol), 2.0 * float(np.sum(np.log(np.diag(chol))))


def marginals(
    cols: np.ndarray, yw: np.ndarray, w: np.ndarray, g: np.ndarray, b0: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Log marginal likelihoods of a batch of same-width designs (m, N, k) under the conjugate prior.

    Returns (log m, posterior means with the intercept first, covariances of the others, noise variances).
    """
    m, n_obs, _ = cols.shape
    ones = np.ones((m, n_obs, 1))
    xw = np.einsum("ij,mjk->mik", w, np.concatenate([ones, cols], axis=2))
    g_all = np.concatenate([[INTERCEPT_G], g])
    a = np.einsum("mji,mjk->mik", xw, xw) + np.diag(1.0 / g_all)
    b = np.einsum("mji,j->mi", xw, yw)
    beta = np.linalg.solve(a, b[..., None])[..., 0]
    quad = max(float(yw @ yw), 0.0) - np.einsum("mi,mi->m", b, beta)
    an, bn = A0 + n_obs / 2, b0 + np.maximum(quad, 1e-300) / 2
    logm = (
        -0.5 * n_obs * math.log(2 * math.pi)
        - 0.5 * float(np.sum(np.log(g_all)))
        - 0.5 * np.linalg.slogdet(a)[1]
        + A0 * math.log(b0)
        - an * np.log(bn)
        + special.gammaln(an)
        - special.gammaln(A0)
    )
    var = bn / an
    inv = np.linalg.inv(a)
    return logm, beta, inv[:, 1:, 1:] * var[:, None, None], var


def sign_adjustment(signs: Sequence[int], mean: np.ndarray, cov: np.ndarray, delta: float, tau: float) -> float:
    """log of P_post(region) / P_prior(region): the marginal likelihood under the truncated prior.

    The region: every signed coefficient at least `delta` in the harmful (or, for a helper,
    helpful) direction, so that a member must carry a real share and an innocent factor
    riding along by noise is ruled out as its interval shrinks below delta.
    """
    out = 0.0
    prior = math.log(max(float(special.ndtr(-delta / tau)), 1e-300))
    for i, s in enumerate(signs):
        if s:
            sd = math.sqrt(max(float(cov[i, i]), 1e-300))
            out += math.log(max(float(special.ndtr((s * mean[i] - delta) / sd)), 1e-300)) - prior
    return out


def failure_evidence(h: Explanation, runs: Runs) -> float:
    """log evidence of the failure pattern: more failures where h predicts the regression, or none."""
    bad = h.bad(runs.x)
    f = runs.failed
    pooled = _log_beta_binomial(int(f.sum()), len(f))
    hi, lo = (int(f[bad].sum()), int(bad.sum())), (int(f[~bad].sum()), int((~bad).sum()))
    if hi[1] == 0 or lo[1] == 0 or hi[0] / hi[1] <= lo[0] / lo[1]:
        return pooled
    return _log_beta_binomial(*hi) + _log_beta_binomial(*lo)


def _log_beta_binomial(k: int, n: int) -> float:
    """log of the probability of one particular sequence with k failures in n, rate uniform on [0, 1]."""
    return float(special.betaln(k + 1, n - k + 1))


def score(
    hyps: Sequence[Explanation],
    log_prior: np.ndarray,
    runs: Runs,
    tau: float,
    sigma_ref: float,
    delta: tuple[float, float],
) -> Posterior:
    """The posterior over `hyps` given the runs; coefficient scale tau.

    delta: the smallest effect of (a lone coefficient, a member of a pair) an explanation allows.
    """
    ok = runs.ok
    x, y, seeds = runs.x[ok], runs.y[ok], runs.seeds[ok]
    n_f = runs.x.shape[1]
    g1 = min(MAX_G, (tau / max(sigma_ref, 1e-12)) ** 2)
    y = y - (float(np.mean(y)) if len(y) else 0.0)
    b0 = A0 * max(sigma_ref, 1e-12) ** 2
    groups: dict[int, list[int]] = {}
    width = {}
    for k, h in enumerate(hyps):
        c = h.columns(x)
        width[k] = c.shape[1]
        groups.setdefault(c.shape[1] if h.kind != "diffuse" else -1, []).append(k)
    per_s: list[np.ndarray] = []
    fits: list[dict[int, tuple[np.ndarray, np.ndarray, float]]] = []
    background = (BACKGROUND * tau / max(sigma_ref, 1e-12)) ** 2 / n_f
    for s in SHARED_GRID:
        w, logdet = whitening(seeds, s, x, min(background, MAX_G))
        yw = w @ y
        lm = np.zeros(len(hyps))
        fit: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
        for key, members in groups.items():
            k_cols = width[members[0]]
            cols = np.stack([hyps[k].columns(x) for k in members]) if k_cols else np.zeros((len(members), len(y), 0))
            g = np.full(k_cols, g1 / (n_f if key == -1 else 1))
            logm, beta, cov, var = marginals(cols, yw, w, g, b0)
            for idx, k in enumerate(members):
                floor = delta[len(hyps[k].signs) > 1]
                lm[k] = logm[idx] - 0.5 * logdet + sign_adjustment(hyps[k].signs, beta[idx, 1:], cov[idx], floor, tau)
                fit[k] = (beta[idx], cov[idx], float(var[idx]))
        per_s.append(lm)
        fits.append(fit)
    stacked = np.stack(per_s)
    fail = np.array([failure_evidence(h, runs) for h in hyps])
    logpost_s = stacked + (log_prior + fail)[None, :]
    s_weights = special.softmax(special.logsumexp(logpost_s, axis=1))
    s_best = int(np.argmax(s_weights))
    logpost = special.logsumexp(stacked, axis=0) - math.log(len(SHARED_GRID)) + log_prior + fail
    prob = special.softmax(logpost)
    coef = [fits[s_best][k][0][1:] for k in range(len(hyps))]
    level = np.array([float(fits[s_best][k][0][0]) for k in range(len(hyps))])
    covs = [fits[s_best][k][1] for k in range(len(hyps))]
    contrast = [h.columns(np.ones((1, n_f)))[0] - h.columns(np.zeros((1, n_f)))[0] for h in hyps]
    gap = np.array([float(c @ b) for c, b in zip(contrast, coef, strict=True)])
    gap_sd = np.array([math.sqrt(max(float(c @ v @ c), 0.0)) for c, v in zip(contrast, covs, strict=True)])
    sigma = math.sqrt(float(sum(p * fits[s_best][k][2] for k, p in enumerate(prob))))
    shared = float(np.dot(s_weights, SHARED_GRID))
    return Posterior(list(hyps), prob, coef, covs, gap, gap_sd, sigma, shared, level)
