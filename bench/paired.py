"""Numbers for one pair of paired samples (model A and model B over the same seeds): the primary
test, its sensitivity checks, intervals, effect sizes, P(A > B) and power. Pure functions on
arrays — no files, no tables; `bench.stats` applies them over a run.

The primary test is fixed in advance: the paired t-test on the per-seed differences A − B, with
its t-interval. An exact sign-flip permutation test and the Wilcoxon signed-rank test are shown
beside it as sensitivity checks and never replace it (choosing the test after a normality
pre-test distorts error rates, and Shapiro–Wilk has no power at 5–10 seeds). Randomised steps
(bootstrap, ASO) use fixed seeds: the same inputs give the same outputs.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

ALPHA = 0.05
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0
ASO_SEED = 1234
BCA_FROM = 10            # per-model means: BCa bootstrap only from this many seeds on (beside the t-interval)
PERMUTATION_EXACT_UP_TO = 16   # exact sign-flip enumeration up to 2^16 patterns, else 2^16 random flips
MIN_EFFECT = 0.005       # the smallest effect worth detecting in the power lines: 0.5 percentage points
POWER = 0.8
MAX_SEEDS = 100_000      # power search stops here ("more than")
P_BETTER_MEANINGFUL = 0.75  # Bouthillier et al. 2021: γ for a meaningful P(A > B)


# ---------------------------------------------------------------- one sample


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t interval of the mean; (nan, nan) for n < 2, a point when all values are equal."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return math.nan, math.nan
    mean, sem = float(x.mean()), float(stats.sem(x))
    if sem == 0:
        return mean, mean
    lo, hi = stats.t.interval(confidence, len(x) - 1, loc=mean, scale=sem)
    return float(lo), float(hi)


def bca_interval(values: Sequence[float], confidence: float = CONFIDENCE,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """BCa bootstrap interval of the mean (scipy, fixed seed) from BCA_FROM values on; (nan, nan)
    below that (BCa undercovers at 5–6 values: about 0.6x a t-interval's width) or when it degenerates."""
    x = np.asarray(values, dtype=float)
    if len(x) < BCA_FROM or np.ptp(x) == 0:
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap((x,), np.mean, confidence_level=confidence, method="BCa",
                              rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return (lo, hi) if np.isfinite(lo) and np.isfinite(hi) else (math.nan, math.nan)


def sd_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The chi-square interval of a standard deviation (normal data): sqrt((n−1) s² / χ²)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2:
        return math.nan, math.nan
    ss = float(x.var(ddof=1)) * (n - 1)
    lo_q, hi_q = stats.chi2.ppf([(1 + confidence) / 2, (1 - confidence) / 2], n - 1)
    return math.sqrt(ss / lo_q), math.sqrt(ss / hi_q)


def describe(values: Sequence[float]) -> dict[str, float | int | str | bool]:
    """n, mean, sd, median, min, max, the 95% t-interval of the mean, a BCa interval from 10 values
    on, and whether the values never vary (a deterministic model: n copies of one value)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "median": math.nan, "min": math.nan, "max": math.nan,
                "ci_low": math.nan, "ci_high": math.nan, "ci_method": "none (n < 2)", "bca_low": math.nan,
                "bca_high": math.nan, "deterministic": False}
    lo, hi = t_interval(x)
    bca_lo, bca_hi = bca_interval(x)
    return {"n": len(x), "mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else math.nan,
            "median": float(np.median(x)), "min": float(x.min()), "max": float(x.max()),
            "ci_low": lo, "ci_high": hi, "ci_method": "t" if len(x) > 1 else "none (n < 2)",
            "bca_low": bca_lo, "bca_high": bca_hi, "deterministic": bool(len(x) > 1 and np.ptp(x) == 0)}


# ---------------------------------------------------------------- effect sizes and ASO


def cohens_dz(a: Sequence[float], b: Sequence[float]) -> float:
    """Cohen's d_z for paired data: mean(a − b) / sd(a − b) (ddof 1); ±inf when the differences never vary."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(d) < 2:
        return math.nan
    sd = float(d.std(ddof=1))
    if sd == 0:
        return math.nan if d.mean() == 0 else math.copysign(math.inf, float(d.mean()))
    return float(d.mean() / sd)


def cliffs_delta(a: Sequence[float], b: Sequence[float]) -> float:
    """Cliff's delta, P(a > b) − P(a < b) over all (a_i, b_j) pairs: a rank effect size in [−1, 1]."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) == 0 or len(y) == 0:
        return math.nan
    diff = x[:, None] - y[None, :]
    return float(((diff > 0).sum() - (diff < 0).sum()) / diff.size)


def _quantiles(sorted_rows: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Empirical quantile function F⁻¹(p) = x_(ceil(n p)), row-wise, as in deepsig / Dror et al.'s code."""
    n = sorted_rows.shape[-1]
    idx = np.clip(np.ceil(n * p).astype(int) - 1, 0, n - 1)
    return np.take_along_axis(sorted_rows, np.broadcast_to(idx, sorted_rows.shape[:-1] + idx.shape[-1:]), axis=-1)


def _violation_ratio(a_sorted: np.ndarray, b_sorted: np.ndarray, dt: float) -> np.ndarray:
    """ε_W2: the share of the squared Wasserstein distance where A's quantiles fall below B's (row-wise)."""
    t = np.arange(dt, 1, dt)
    f, g = _quantiles(a_sorted, t), _quantiles(b_sorted, t)
    diff = g - f
    w2 = np.sum(diff ** 2 * dt, axis=-1)
    diff = np.where(f >= g, 0.0, diff)
    violation = np.sum(diff[..., 1:] ** 2 * dt, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(w2 == 0, 0.5, violation / np.where(w2 == 0, 1, w2))


def aso_epsilon(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE, num_comparisons: int = 1,
                bootstrap_iterations: int = 1000, dt: float = 0.005, seed: int = ASO_SEED) -> float:
    """ε_min of Almost Stochastic Order (Dror et al. 2019) for "A is better than B" (higher = better).

    Follows deepsig.aso 1.2.8 step by step (same quantile function, integration grid, per-iteration
    seeding seed+1, seed+2, …, and Bonferroni-adjusted confidence), so it returns deepsig's number for
    the same seed without depending on its joblib/dill/psutil stack. ε < 0.5: A almost stochastically
    dominates B; ε < 0.2: strongly so. ε ≥ 0.5 — up to 1 — only says there is no evidence that A
    dominates B; it is *not* evidence that B dominates A (that needs ε for B over A, computed
    separately: `aso_eps_reverse`).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) == 0 or len(y) == 0:
        return math.nan
    if num_comparisons > 1:
        confidence += (1 - confidence) / num_comparisons
    xs, ys = np.sort(x), np.sort(y)
    ratio = float(_violation_ratio(xs[None, :], ys[None, :], dt)[0])
    ua, ub = np.empty((bootstrap_iterations, len(x))), np.empty((bootstrap_iterations, len(y)))
    state = np.random.RandomState()
    for k in range(bootstrap_iterations):  # deepsig reseeds the global legacy generator per iteration
        state.seed(seed + k + 1)
        ua[k], ub[k] = state.uniform(0, 1, len(x)), state.uniform(0, 1, len(y))
    sample_a = np.sort(_quantiles(np.broadcast_to(xs, ua.shape), ua), axis=1)
    sample_b = np.sort(_quantiles(np.broadcast_to(ys, ub.shape), ub), axis=1)
    samples = _violation_ratio(sample_a, sample_b, dt)
    const = math.sqrt(len(x) * len(y) / (len(x) + len(y)))
    sigma = float(np.std(const * (samples - ratio)))
    return float(np.clip(ratio - (1 / const) * sigma * stats.norm.ppf(1 - confidence), 0, 1))


def aso_reading(eps: float, a: str = "A", b: str = "B") -> str:
    """Plain words for ε_min (thresholds of Dror et al. 2019 / Ulmer et al. 2022)."""
    if not np.isfinite(eps):
        return "undefined"
    if eps < 0.2:
        return f"{a} strongly dominates {b}"
    if eps < 0.5:
        return f"{a} almost dominates {b}"
    return f"no evidence that {a} dominates {b}"


# ---------------------------------------------------------------- tests


def wilcoxon_min_p(n: int) -> float:
    """Smallest two-sided p the exact Wilcoxon signed-rank test can give with n pairs: 2 / 2^n."""
    return 1.0 if n < 1 else min(1.0, 2.0 ** (1 - n))


def wilcoxon_test(d: Sequence[float]) -> tuple[float, float, str]:
    """Wilcoxon signed-rank on paired differences, exact when possible.

    No ties or zeros and n ≤ 50: scipy's exact null distribution. Ties or zeros with ≤ 13 nonzero
    differences: exhaustive sign-flip enumeration (exact under ties). Otherwise the normal approximation.
    """
    d = np.round(np.asarray(d, dtype=float), 12)  # float noise must not split equal differences into non-ties
    nonzero = d[d != 0]
    if len(nonzero) == 0:
        return math.nan, 1.0, "all differences zero"
    ties = len(np.unique(np.abs(nonzero))) < len(nonzero)
    if not ties and len(nonzero) == len(d) and len(d) <= 50:
        method, name = "exact", "exact"
    elif len(nonzero) <= 13:
        method, name = stats.PermutationMethod(n_resamples=2 ** 13), "exact (sign-flip enumeration, ties)"
    else:
        method, name = "approx", "normal approximation"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.wilcoxon(d, method=method)
    return float(res.statistic), float(res.pvalue), name


def sign_flip_test(d: Sequence[float], seed: int = BOOTSTRAP_SEED) -> float:
    """Two-sided permutation p of the mean difference under random sign flips (scipy
    `permutation_test`, one sample): exact enumeration of all 2^n patterns up to n = 16, else 2^16
    random flips with a fixed seed."""
    d = np.round(np.asarray(d, dtype=float), 12)
    if len(d) < 2:
        return math.nan
    if not d.any():
        return 1.0
    exact = len(d) <= PERMUTATION_EXACT_UP_TO
    res = stats.permutation_test((d,), np.mean, permutation_type="samples", vectorized=True,
                                 n_resamples=np.inf if exact else 2 ** PERMUTATION_EXACT_UP_TO,
                                 rng=np.random.default_rng(seed))
    return float(res.pvalue)


def paired_t(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """The primary test: paired t on A − B (scipy `ttest_rel`) and the t-interval of the mean difference.
    Differences that never vary have no t: p is 1 when they are all zero, else undefined. Arrays
    with more than one axis are many experiments at once (seeds on the last axis; arrays out)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = x - y
    if d.ndim > 1:
        res = stats.ttest_rel(x, y, axis=-1)
        lo, hi = stats.t.interval(confidence, d.shape[-1] - 1, loc=d.mean(axis=-1), scale=stats.sem(d, axis=-1))
        return {"t_stat": res.statistic, "t_p": res.pvalue, "ci_low": lo, "ci_high": hi}
    lo, hi = t_interval(d, confidence)
    if len(d) > 1 and np.ptp(d) > 0:
        res = stats.ttest_rel(x, y)
        return {"t_stat": float(res.statistic), "t_p": float(res.pvalue), "ci_low": lo, "ci_high": hi}
    p = 1.0 if len(d) > 1 and d.mean() == 0 else math.nan
    return {"t_stat": math.nan, "t_p": p, "ci_low": lo, "ci_high": hi}


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (statsmodels); NaNs stay NaN and are not counted in the family."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full_like(p, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        adjusted[finite] = multipletests(p[finite], alpha=alpha, method="holm")[1]
    return adjusted


def verdict(p_holm: float, mean_diff: float, better_when: str, alpha: float = ALPHA) -> str:
    """The verdict on "A is better than B" from the family-adjusted primary p and the sign of the
    difference: supported, contradicted (significant the other way), or not established."""
    if not np.isfinite(p_holm) or p_holm >= alpha or mean_diff == 0:
        return "not established"
    favours_a = (mean_diff > 0) == (better_when == "higher")
    return "supported" if favours_a else "contradicted"


# ---------------------------------------------------------------- P(A > B) and power


def probability_better(a: Sequence[float], b: Sequence[float], higher_is_better: bool = True,
                       confidence: float = CONFIDENCE, seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """P(A > B): the share of paired seeds on which A beats B (ties count half), with a percentile
    bootstrap CI over seeds (scipy, fixed seed) — Bouthillier et al. 2021's probability of outperforming."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    d = np.round(x - y if higher_is_better else y - x, 12)
    wins = (d > 0) + 0.5 * (d == 0)
    p = float(wins.mean())
    if len(wins) < 2 or np.ptp(wins) == 0:
        return p, p, p
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap((wins,), np.mean, confidence_level=confidence, method="percentile",
                              rng=np.random.default_rng(seed))
    return p, float(res.confidence_interval.low), float(res.confidence_interval.high)


def probability_reading(p: float, lo: float, hi: float, n: int, a: str = "A", b: str = "B") -> str:
    """Bouthillier et al.'s reading: A better when the CI's lower bound is above 0.5, and the
    difference meaningful when P(A > B) is above 0.75 (mirrored for B)."""
    if not np.isfinite(p):
        return "undefined"
    if lo > 0.5:
        reading = f"{a} better" + (" (meaningful: P > 0.75)" if p > P_BETTER_MEANINGFUL else
                                   " but not meaningfully (P ≤ 0.75)")
    elif hi < 0.5:
        reading = f"{b} better" + (" (meaningful: P < 0.25)" if p < 1 - P_BETTER_MEANINGFUL else
                                   " but not meaningfully (P ≥ 0.25)")
    else:
        reading = "no conclusion (the CI contains 0.5)"
    if n < BCA_FROM:
        reading += f"; {n} seeds are too few for a reliable bootstrap CI"
    return reading


def _power(es: float, n: np.ndarray, alpha: float) -> np.ndarray:
    """statsmodels' power of the two-sided paired (one-sample) t-test at each n (nan where its
    noncentral-t evaluation fails, which happens for large effects at small n)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return np.asarray(TTestPower().power(effect_size=es, nobs=n, alpha=alpha), dtype=float)


def seeds_for_power(effect: float, sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Fewest paired seeds at which a two-sided paired t-test at `alpha` has `power` to detect a true
    mean difference `effect` when the differences have sd `sd` (statsmodels TTestPower: its solver,
    checked and rounded up on its power function; a direct search where the solver fails, as it does
    for huge effects); inf when it would take more than MAX_SEEDS or the effect is zero, nan when undefined."""
    if not (np.isfinite(effect) and np.isfinite(sd)) or sd < 0:
        return math.nan
    if sd == 0:
        return 2.0 if effect != 0 else math.inf
    es = abs(effect) / sd
    if es == 0:
        return math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            guess = float(TTestPower().solve_power(effect_size=es, alpha=alpha, power=power))
        except (ValueError, ArithmeticError):
            guess = math.nan
    if np.isfinite(guess):
        if guess > MAX_SEEDS:
            return math.inf
        n = np.arange(max(2, math.floor(guess) - 1), math.ceil(guess) + 2)
        achieved = _power(es, n, alpha)
        reached = np.where(np.isnan(achieved), n >= guess, achieved >= power)  # where power fails, trust the solver
    else:
        n = np.arange(2, 201)
        reached = np.nan_to_num(_power(es, n, alpha), nan=0.0) >= power
    hit = np.flatnonzero(reached)
    return float(n[hit[0]]) if hit.size else math.inf


# ---------------------------------------------------------------- everything for one pair


def paired_comparison(a: Sequence[float], b: Sequence[float], higher_is_better: bool = True,
                      family_size: int = 1, alpha: float = ALPHA) -> dict[str, float | int | str]:
    """Every paired statistic for model A vs model B (same seeds, same order): difference = A − B.

    The primary test is the paired t-test (`t_p`, with the t-interval ci_low/ci_high); the exact
    sign-flip permutation p (`perm_p`) and Wilcoxon (`wilcoxon_p`) are sensitivity checks. ASO is
    computed for "A better than B" (on −score when lower is better) and the reverse, its confidence
    Bonferroni-adjusted over `family_size`. Power: the seeds a paired t at alpha / family_size (the
    first Holm step) needs for 80% power at the observed effect and at MIN_EFFECT.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError("paired samples must have the same length")
    d = x - y
    n = len(d)
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    out: dict[str, float | int | str] = {"n": n, "mean_a": float(x.mean()) if n else math.nan,
                                         "mean_b": float(y.mean()) if n else math.nan,
                                         "mean_diff": float(d.mean()) if n else math.nan, "sd_diff": sd,
                                         "wins_a": int((d > 0).sum() if higher_is_better else (d < 0).sum())}
    out.update(paired_t(x, y))
    out["perm_p"] = sign_flip_test(d)
    if n >= 2:
        out["wilcoxon_stat"], out["wilcoxon_p"], out["wilcoxon_method"] = wilcoxon_test(d)
    else:  # one pair cannot be tested: no p, not in any Holm family
        out["wilcoxon_stat"], out["wilcoxon_p"], out["wilcoxon_method"] = math.nan, math.nan, "n < 2"
    out["d_z"] = cohens_dz(x, y)
    out["cliffs_delta"] = cliffs_delta(x, y)
    out["p_a_better"], out["p_a_better_low"], out["p_a_better_high"] = probability_better(x, y, higher_is_better)
    sign = 1.0 if higher_is_better else -1.0
    out["aso_eps"] = aso_epsilon(sign * x, sign * y, num_comparisons=family_size) if n else math.nan
    out["aso_eps_reverse"] = aso_epsilon(sign * y, sign * x, num_comparisons=family_size) if n else math.nan
    level = alpha / max(1, family_size)
    out["seeds_80_observed"] = seeds_for_power(out["mean_diff"], sd, level) if n > 1 else math.nan
    out["seeds_80_min_effect"] = seeds_for_power(MIN_EFFECT, sd, level) if n > 1 else math.nan
    out["underpowered"] = bool(n > 1 and np.isfinite(out["mean_diff"]) and n < out["seeds_80_observed"])
    return out
