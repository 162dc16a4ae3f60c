"""Statistical comparison of models over paired seeds: numbers only, no file is read or written.

Seed k gives every model the same split, data order and initialisation stream, so the per-seed
results of two models are paired. Everything here takes the runs table and a predictions loader
and returns plain tables, so each number can be recomputed with scipy / statsmodels by anyone;
`bench.compare` does the reading and writing. Randomised steps (bootstrap, ASO) use fixed seeds:
the same inputs give the same outputs. No torch import: this runs on a laptop next to a results folder.
"""
from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar  # noqa: E402
from statsmodels.stats.multitest import multipletests  # noqa: E402

from bench.config import BenchError  # noqa: E402
from bench.results import ok_runs  # noqa: E402
from bench.results import ordered_datasets as _datasets, ordered_models as _models  # noqa: E402

ALPHA = 0.05
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0
ASO_SEED = 1234
# metric -> (label, True when higher is better)
METRICS = {
    "test_acc": ("test accuracy", True),
    "gap_acc": ("overfitting gap (train − val acc)", False),
    "best_val_acc": ("best validation accuracy", True),
}
MCNEMAR_EXACT_BELOW = 25
LENGTH_BINS = 4

COMPARISON_COLUMNS = [
    "dataset", "metric", "model_a", "model_b", "n", "mean_a", "mean_b", "mean_diff", "sd_diff", "ci_low",
    "ci_high", "wins_a", "t_stat", "t_p", "wilcoxon_stat", "wilcoxon_p", "wilcoxon_method", "shapiro_p",
    "primary_test", "p_primary", "p_holm", "significant_holm", "d_z", "cliffs_delta", "aso_eps", "aso_eps_reverse",
    "aso_reading", "mcnemar_seeds", "mcnemar_seeds_sig", "mcnemar_sig_a_better", "mcnemar_sig_b_better",
    "wilcoxon_min_p", "seeds_needed",
]
SUMMARY_COLUMNS = ["dataset", "model", "metric", "n", "mean", "std", "median", "min", "max", "ci_low", "ci_high",
                   "ci_method"]
LENGTH_BY_SEED_COLUMNS = ["dataset", "model", "seed", "bin", "length_lo", "length_hi", "n_examples", "acc"]
LENGTH_COLUMNS = ["dataset", "model", "bin", "length_lo", "length_hi", "n_examples", "n_seeds", "mean_acc", "sd_acc",
                  "ci_low", "ci_high"]
MCNEMAR_COLUMNS = ["dataset", "model_a", "model_b", "seed", "n_examples", "n_a_only", "n_b_only", "statistic", "p",
                   "method", "acc_a", "acc_b"]

# (dataset, model, seed) -> that unit's test predictions (row, label, pred, length, …) sorted by row,
# or None when the unit left none
Predictions = Callable[[str, str, int], pd.DataFrame | None]


@dataclass
class StatsTables:
    """Everything `compare` measures over one run, one frame per CSV that `bench.compare` writes."""
    comparisons: pd.DataFrame          # comparisons.csv: one row per pair × dataset × metric
    model_summary: pd.DataFrame        # model_summary.csv: one row per dataset × model × metric
    length_bins: pd.DataFrame          # length_bins.csv: mean over seeds per dataset × model × bin
    length_bins_by_seed: pd.DataFrame  # length_bins_by_seed.csv: the per-seed values behind length_bins


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


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE,
            seed: int = BOOTSTRAP_SEED) -> tuple[float, float, str]:
    """95% CI of the mean: BCa bootstrap (fixed seed) when n ≥ 3, else (or if BCa degenerates) a t-interval."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return math.nan, math.nan, "none (n < 2)"
    if len(x) >= 3 and np.ptp(x) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.bootstrap((x,), np.mean, confidence_level=confidence, method="BCa",
                                  rng=np.random.default_rng(seed))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.isfinite(lo) and np.isfinite(hi):
            return lo, hi, "bootstrap BCa"
    lo, hi = t_interval(x, confidence)
    return lo, hi, "t"


def describe(values: Sequence[float]) -> dict[str, float | int | str]:
    """n, mean, sd, median, min, max and a 95% CI of the mean of one model's per-seed values."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "median": math.nan, "min": math.nan, "max": math.nan,
                "ci_low": math.nan, "ci_high": math.nan, "ci_method": "none (n < 2)"}
    lo, hi, method = mean_ci(x)
    return {"n": len(x), "mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else math.nan,
            "median": float(np.median(x)), "min": float(x.min()), "max": float(x.max()),
            "ci_low": lo, "ci_high": hi, "ci_method": method}


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
    dominates B; ε < 0.2: strongly so; ε near 0.5: no order; ε near 1: B dominates A.
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
    return f"no dominance of {a} over {b}"


# ---------------------------------------------------------------- paired tests


def wilcoxon_min_p(n: int) -> float:
    """Smallest two-sided p the exact Wilcoxon signed-rank test can give with n pairs: 2 / 2^n."""
    return 1.0 if n < 1 else min(1.0, 2.0 ** (1 - n))


def seeds_needed(alpha: float = ALPHA) -> int:
    """Fewest paired seeds for which the exact Wilcoxon test can reach p < alpha at all."""
    n = 1
    while wilcoxon_min_p(n) >= alpha:
        n += 1
    return n


def seed_warning(n: int, alpha: float = ALPHA) -> str | None:
    """A warning when n paired seeds cannot make the exact Wilcoxon test significant, whatever the data."""
    if wilcoxon_min_p(n) < alpha:
        return None
    return (f"With {n} paired seeds the exact Wilcoxon signed-rank test cannot go below p = {wilcoxon_min_p(n):.4g} "
            f"(all seeds in one direction), so it can never reach p < {alpha:g}; at least {seeds_needed(alpha)} "
            f"seeds are needed (10 recommended).")


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


def paired_comparison(a: Sequence[float], b: Sequence[float], higher_is_better: bool = True,
                      aso_comparisons: int = 1) -> dict[str, float | int | str]:
    """Every paired statistic for model A vs model B (same seeds, same order): difference = A − B.

    Shapiro–Wilk on the differences picks the primary test: t-test when normality is not rejected
    at 0.05, Wilcoxon otherwise or when Shapiro cannot run (n < 3, or differences that never vary).
    ASO is computed for "A better than B" (on −score when lower is better) and the reverse.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError("paired samples must have the same length")
    d = x - y
    n = len(d)
    out: dict[str, float | int | str] = {"n": n, "mean_a": float(x.mean()) if n else math.nan,
                                         "mean_b": float(y.mean()) if n else math.nan,
                                         "mean_diff": float(d.mean()) if n else math.nan,
                                         "sd_diff": float(d.std(ddof=1)) if n > 1 else math.nan,
                                         "wins_a": int((d > 0).sum() if higher_is_better else (d < 0).sum())}
    out["ci_low"], out["ci_high"] = t_interval(d)
    varies = n > 1 and np.ptp(d) > 0
    if varies:
        res = stats.ttest_rel(x, y)
        out["t_stat"], out["t_p"] = float(res.statistic), float(res.pvalue)
    else:  # t is undefined when the differences have no spread
        out["t_stat"], out["t_p"] = math.nan, (1.0 if n > 1 and d.mean() == 0 else math.nan)
    if n >= 2:
        out["wilcoxon_stat"], out["wilcoxon_p"], out["wilcoxon_method"] = wilcoxon_test(d)
    else:  # one pair cannot be tested (its p would be 1 whatever the data): no p, not in the Holm family
        out["wilcoxon_stat"], out["wilcoxon_p"], out["wilcoxon_method"] = math.nan, math.nan, "n < 2"
    out["shapiro_p"] = float(stats.shapiro(d).pvalue) if n >= 3 and varies else math.nan
    use_t = np.isfinite(out["shapiro_p"]) and out["shapiro_p"] >= ALPHA and np.isfinite(out["t_p"])
    out["primary_test"] = "paired t" if use_t else ("wilcoxon" if n >= 2 else "none (n < 2)")
    out["p_primary"] = out["t_p"] if use_t else out["wilcoxon_p"]
    out["d_z"] = cohens_dz(x, y)
    out["cliffs_delta"] = cliffs_delta(x, y)
    sign = 1.0 if higher_is_better else -1.0
    out["aso_eps"] = aso_epsilon(sign * x, sign * y, num_comparisons=aso_comparisons) if n else math.nan
    out["aso_eps_reverse"] = aso_epsilon(sign * y, sign * x, num_comparisons=aso_comparisons) if n else math.nan
    out["wilcoxon_min_p"] = wilcoxon_min_p(n)
    out["seeds_needed"] = seeds_needed()
    return out


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (statsmodels); NaNs stay NaN and are not counted in the family."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full_like(p, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        adjusted[finite] = multipletests(p[finite], alpha=ALPHA, method="holm")[1]
    return adjusted


# ---------------------------------------------------------------- per-example tests


def mcnemar_test(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, float | int | str]:
    """McNemar's test on two models' per-example correctness (same examples, same order).

    Exact binomial form when the discordant count is below 25, else chi-square with continuity
    correction (statsmodels). n_a_only: A right and B wrong; n_b_only: the reverse.
    """
    ca, cb = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    table = np.array([[np.sum(ca & cb), np.sum(ca & ~cb)], [np.sum(~ca & cb), np.sum(~ca & ~cb)]])
    discordant = int(table[0, 1] + table[1, 0])
    exact = discordant < MCNEMAR_EXACT_BELOW
    if discordant == 0:
        stat, p = math.nan, 1.0
    else:
        res = sm_mcnemar(table, exact=exact, correction=True)
        stat, p = float(res.statistic), float(res.pvalue)
    return {"n_examples": int(len(ca)), "n_a_only": int(table[0, 1]), "n_b_only": int(table[1, 0]),
            "statistic": stat, "p": p, "method": "exact binomial" if exact else "chi-square, continuity corrected",
            "acc_a": float(ca.mean()) if len(ca) else math.nan, "acc_b": float(cb.mean()) if len(cb) else math.nan}


def mcnemar_by_seed(predictions: Predictions, dataset: str, model_a: str, model_b: str,
                    seeds: Iterable[int]) -> pd.DataFrame:
    """McNemar per seed for the seeds where both models left predictions."""
    rows = []
    for seed in seeds:
        pa, pb = (predictions(dataset, m, int(seed)) for m in (model_a, model_b))
        if pa is None or pb is None:
            continue
        both = pa[["row", "label", "pred"]].merge(pb[["row", "label", "pred"]], on="row", suffixes=("_a", "_b"))
        if len(both) != len(pa) or len(both) != len(pb) or (both["label_a"] != both["label_b"]).any():
            raise BenchError(f"{dataset} seed {seed}: {model_a} and {model_b} predictions cover different test rows")
        res = mcnemar_test(both["pred_a"] == both["label_a"], both["pred_b"] == both["label_b"])
        rows.append({"dataset": dataset, "model_a": model_a, "model_b": model_b, "seed": int(seed), **res})
    return pd.DataFrame(rows, columns=MCNEMAR_COLUMNS)


def mcnemar_agreement(per_seed: pd.DataFrame, alpha: float = ALPHA) -> dict[str, int]:
    """How many seeds McNemar calls significant for A, for B, and in the majority direction."""
    sig = per_seed[per_seed["p"] < alpha]
    a_better = int((sig["n_a_only"] > sig["n_b_only"]).sum())
    b_better = int((sig["n_b_only"] > sig["n_a_only"]).sum())
    return {"mcnemar_seeds": int(len(per_seed)), "mcnemar_seeds_sig": max(a_better, b_better),
            "mcnemar_sig_a_better": a_better, "mcnemar_sig_b_better": b_better}


# ---------------------------------------------------------------- accuracy by input length


def length_bin_edges(lengths: Sequence[float], bins: int = LENGTH_BINS) -> np.ndarray:
    """Quantile edges of the token lengths; repeated edges (e.g. many truncated texts) are merged."""
    edges = np.unique(np.quantile(np.asarray(lengths, dtype=float), np.linspace(0, 1, bins + 1)))
    if len(edges) == 1:
        edges = np.array([edges[0], edges[0]])
    return edges


def assign_length_bins(lengths: Sequence[float], edges: np.ndarray) -> np.ndarray:
    """Bin index per example: bin i holds (edges[i], edges[i+1]], the first bin also its lower edge."""
    idx = np.searchsorted(edges, np.asarray(lengths, dtype=float), side="left") - 1
    return np.clip(idx, 0, len(edges) - 2)


def _unit_predictions(predictions: Predictions, runs: pd.DataFrame) -> dict[tuple[str, int], pd.DataFrame]:
    """The predictions of one dataset's finished units, by (model, seed); units without a file are left out."""
    preds = {}
    for dataset, model, seed in runs[["dataset", "model", "seed"]].itertuples(index=False):
        frame = predictions(dataset, model, int(seed))
        if frame is not None:
            preds[(model, int(seed))] = frame
    return preds


def _bin_accuracy(frame: pd.DataFrame, edges: np.ndarray) -> list[dict[str, float | int]]:
    """One unit's accuracy in each length bin (nan for an empty bin)."""
    idx = assign_length_bins(frame["length"], edges)
    correct = (frame["pred"] == frame["label"]).to_numpy()
    rows = []
    for b in range(len(edges) - 1):
        mask = idx == b
        rows.append({"bin": b, "length_lo": float(edges[b]), "length_hi": float(edges[b + 1]),
                     "n_examples": int(mask.sum()), "acc": float(correct[mask].mean()) if mask.any() else math.nan})
    return rows


def accuracy_by_length(runs: pd.DataFrame, predictions: Predictions, bins: int = LENGTH_BINS) -> pd.DataFrame:
    """Per dataset × model × seed × length bin: accuracy on the test examples in that bin.

    The edges are quantiles of the dataset's test lengths, shared by every model and seed, so the
    bins compare like with like.
    """
    ok = ok_runs(runs)
    rows = []
    for dataset in _datasets(ok):
        sub = ok[ok["dataset"] == dataset]
        preds = _unit_predictions(predictions, sub)
        if not preds:
            continue
        lengths = pd.concat([f[["row", "length"]] for f in preds.values()]).drop_duplicates("row")["length"]
        edges = length_bin_edges(lengths, bins)
        for model in _models(sub):
            for seed in sorted(s for m, s in preds if m == model):
                rows += [{"dataset": dataset, "model": model, "seed": seed, **r}
                         for r in _bin_accuracy(preds[(model, seed)], edges)]
    return pd.DataFrame(rows, columns=LENGTH_BY_SEED_COLUMNS)


def length_bin_summary(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy per dataset × model × bin over seeds, with a 95% t-interval."""
    rows = []
    for (dataset, model, b), g in per_seed.groupby(["dataset", "model", "bin"], sort=False):
        acc = g["acc"].dropna().to_numpy()
        lo, hi = t_interval(acc)
        rows.append({"dataset": dataset, "model": model, "bin": int(b), "length_lo": g["length_lo"].iloc[0],
                     "length_hi": g["length_hi"].iloc[0], "n_examples": int(g["n_examples"].iloc[0]),
                     "n_seeds": len(acc), "mean_acc": float(acc.mean()) if len(acc) else math.nan,
                     "sd_acc": float(acc.std(ddof=1)) if len(acc) > 1 else math.nan, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=LENGTH_COLUMNS)


# ---------------------------------------------------------------- tables over a run


def model_pairs(models: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair as (challenger, reference): the later model in MODEL_ORDER is compared against the earlier."""
    return [(b, a) for a, b in itertools.combinations(models, 2)]


def model_summary(runs: pd.DataFrame, metrics: Sequence[str] = tuple(METRICS)) -> pd.DataFrame:
    """Per dataset × model × metric over the seeds that finished (status ok)."""
    ok = ok_runs(runs)
    rows = []
    for dataset in _datasets(ok):
        sub = ok[ok["dataset"] == dataset]
        for model in _models(sub):
            for metric in metrics:
                values = sub.loc[sub["model"] == model, metric].to_numpy(dtype=float)
                rows.append({"dataset": dataset, "model": model, "metric": metric, **describe(values)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def paired_values(runs: pd.DataFrame, dataset: str, metric: str, model_a: str, model_b: str) -> pd.DataFrame:
    """Seed, value of A, value of B for the seeds where both finished, sorted by seed."""
    ok = ok_runs(runs)
    ok = ok[ok["dataset"] == dataset]
    wide = ok.pivot_table(index="seed", columns="model", values=metric, aggfunc="first")
    if model_a not in wide or model_b not in wide:
        return pd.DataFrame(columns=["seed", "a", "b"])
    both = wide[[model_a, model_b]].dropna().sort_index()
    return pd.DataFrame({"seed": both.index.to_numpy(), "a": both[model_a].to_numpy(),
                         "b": both[model_b].to_numpy()})


def _comparison_plan(runs: pd.DataFrame, pairs: Sequence[tuple[str, str]] | None,
                     metrics: Sequence[str]) -> list[tuple[str, str, str, str]]:
    """(dataset, metric, model_a, model_b) for every requested pair that both finished on a dataset."""
    ok = ok_runs(runs)
    plan = []
    for dataset in _datasets(ok):
        present = _models(ok[ok["dataset"] == dataset])
        for model_a, model_b in (pairs if pairs is not None else model_pairs(present)):
            if model_a in present and model_b in present:
                plan += [(dataset, metric, model_a, model_b) for metric in metrics]
    return plan


def comparisons(runs: pd.DataFrame, predictions: Predictions | None = None,
                pairs: Sequence[tuple[str, str]] | None = None,
                metrics: Sequence[str] = tuple(METRICS)) -> pd.DataFrame:
    """Paired comparisons of (model_a, model_b) per dataset and metric, Holm-adjusted over all rows.

    `pairs` defaults to every model pair; pass [(variant, reference), …] for ablations. With a
    `predictions` loader, McNemar per seed on the test predictions fills the mcnemar_* columns of
    the test_acc rows. The ASO confidence is Bonferroni-adjusted over the same family.
    """
    plan = _comparison_plan(runs, pairs, metrics)
    rows = []
    for dataset, metric, model_a, model_b in plan:
        pv = paired_values(runs, dataset, metric, model_a, model_b)
        if pv.empty:
            continue
        row = {"dataset": dataset, "metric": metric, "model_a": model_a, "model_b": model_b,
               **paired_comparison(pv["a"], pv["b"], METRICS.get(metric, ("", True))[1], max(1, len(plan)))}
        row["aso_reading"] = aso_reading(row["aso_eps"], model_a, model_b)
        if predictions is not None and metric == "test_acc":
            row.update(mcnemar_agreement(mcnemar_by_seed(predictions, dataset, model_a, model_b, pv["seed"])))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    frame["p_holm"] = holm(frame["p_primary"].to_numpy(dtype=float))
    frame["significant_holm"] = frame["p_holm"] < ALPHA
    for col in ("mcnemar_seeds", "mcnemar_seeds_sig", "mcnemar_sig_a_better", "mcnemar_sig_b_better"):
        frame[col] = frame[col].astype("Int64")
    return frame


def reference_pairs(runs: pd.DataFrame, reference: str | None) -> list[tuple[str, str]] | None:
    """[(variant, reference), …] when the run names a reference model (an ablation), else None (every pair)."""
    if not reference:
        return None
    return [(m, reference) for m in _models(runs) if m != reference]


def compare(runs: pd.DataFrame, predictions: Predictions, reference: str | None = None) -> StatsTables:
    """Every statistic of one run: the paired comparisons (each variant against `reference` when
    given, else every pair), the per-model summary, and accuracy by input length."""
    table = comparisons(runs, predictions, pairs=reference_pairs(runs, reference))
    per_seed = accuracy_by_length(runs, predictions)
    return StatsTables(comparisons=table, model_summary=model_summary(runs), length_bins=length_bin_summary(per_seed),
                       length_bins_by_seed=per_seed)
