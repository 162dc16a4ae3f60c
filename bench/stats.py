"""Statistical comparison of models over paired seeds, over one run: numbers only, no file is read
or written (`bench.compare` does that). The statistics of one pair live in `bench.paired`.

Seed k gives every model the same random sources (the ones the config's `vary` lists, the others
fixed), so the per-seed results of two models are paired. Two families of hypotheses:

- **confirmatory**: the pre-registered claim's hypotheses (config `[claim]`: model A against
  model B, one direction per metric) on every dataset of the run where both models finished —
  nothing else, so the family does not grow when models or variants are added to a folder;
  Holm-adjusted within it at the claim's alpha. The verdicts come from this family alone.
- **exploratory**: every other comparison (all pairs, or each variant against the run's
  reference; every metric), Holm-adjusted in a family of its own and labelled so.

The primary test of every row is the paired t-test on the per-seed differences, fixed in
advance; the sign-flip permutation test and Wilcoxon are sensitivity checks beside it.
Everything takes the runs table (and epochs table and a predictions loader) and returns plain
tables, so each number can be recomputed with scipy / statsmodels. No torch import.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar  # noqa: E402

from bench import paired  # noqa: E402
from bench.config import BenchError, ClaimConfig  # noqa: E402
from bench.paired import ALPHA, t_interval  # noqa: E402
from bench.results import ok_runs  # noqa: E402
from bench.results import ordered_datasets as _datasets, ordered_models as _models  # noqa: E402

CONFIRMATORY, EXPLORATORY = "confirmatory", "exploratory"
# metric -> (label, True when higher is better). The first three come from runs.csv, the
# matched-epoch gaps from epochs.csv (pair-specific: the epochs both models ran at a seed).
METRICS = {
    "test_acc": ("test accuracy", True),
    "gap_matched": ("overfitting gap at matched epochs (train − val acc, mean over the epochs both ran)", False),
    "gap_common": ("overfitting gap at the last epoch every unit of both models reached", False),
    "best_val_acc": ("validation accuracy at the selected epoch (the selection metric: optimistic)", True),
    "gap_acc": ("overfitting gap at each model's own stopping epoch (confounded with when it stopped)", False),
    "val_optimism": ("validation optimism (selected val acc − test acc)", False),
}
RUN_METRICS = ("test_acc", "best_val_acc", "gap_acc")   # columns runs.csv must hold
EPOCH_METRICS = ("gap_matched", "gap_common")
SUMMARY_METRICS = ("test_acc", "best_val_acc", "gap_acc")
MCNEMAR_EXACT_BELOW = 25
LENGTH_BINS = 4

COMPARISON_COLUMNS = [
    "dataset", "family", "metric", "at_epoch", "model_a", "model_b", "better_when", "positive_favours", "n",
    "mean_a", "mean_b", "mean_diff", "sd_diff", "ci_low", "ci_high", "wins_a",
    "t_stat", "t_p", "family_size", "alpha", "p_holm", "significant_holm", "verdict",
    "perm_p", "wilcoxon_stat", "wilcoxon_p", "wilcoxon_method",
    "d_z", "cliffs_delta", "p_a_better", "p_a_better_low", "p_a_better_high", "p_a_better_reading",
    "aso_eps", "aso_eps_reverse", "aso_reading",
    "seeds_80_observed", "seeds_80_min_effect", "underpowered",
    "mcnemar_seeds", "mcnemar_seeds_sig", "mcnemar_sig_a_better", "mcnemar_sig_b_better",
]
SUMMARY_COLUMNS = ["dataset", "model", "metric", "n", "mean", "std", "median", "min", "max", "ci_low", "ci_high",
                   "ci_method", "bca_low", "bca_high", "deterministic"]
LENGTH_BY_SEED_COLUMNS = ["dataset", "model", "seed", "bin", "length_lo", "length_hi", "n_examples", "acc",
                          "length_kind"]
LENGTH_COLUMNS = ["dataset", "model", "bin", "length_lo", "length_hi", "n_examples", "n_seeds", "mean_acc", "sd_acc",
                  "ci_low", "ci_high", "length_kind"]
MCNEMAR_COLUMNS = ["dataset", "model_a", "model_b", "seed", "n_examples", "n_a_only", "n_b_only", "statistic", "p",
                   "method", "acc_a", "acc_b"]
GAP_EPOCH_COLUMNS = ["dataset", "model_a", "model_b", "epoch", "n", "mean_a", "a_ci_low", "a_ci_high", "mean_b",
                     "b_ci_low", "b_ci_high", "mean_diff", "ci_low", "ci_high"]
VARIANCE_COLUMNS = ["source", "dataset", "model", "n", "mean", "sd", "sd_ci_low", "sd_ci_high"]

# (dataset, model, seed) -> that unit's test predictions (row, label, pred, length, …) sorted by row,
# or None when the unit left none
Predictions = Callable[[str, str, int], pd.DataFrame | None]


@dataclass
class StatsTables:
    """Everything `compare` measures over one run, one frame per CSV that `bench.compare` writes,
    and the claim the confirmatory family was built from."""
    comparisons: pd.DataFrame          # comparisons.csv: one row per family × dataset × metric × pair
    model_summary: pd.DataFrame        # model_summary.csv: one row per dataset × model × metric
    length_bins: pd.DataFrame          # length_bins.csv: mean over seeds per dataset × model × bin
    length_bins_by_seed: pd.DataFrame  # length_bins_by_seed.csv: the per-seed values behind length_bins
    gap_by_epoch: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=GAP_EPOCH_COLUMNS))
    claim: ClaimConfig = field(default_factory=ClaimConfig)  # the claim behind the confirmatory rows
    claim_declared: bool = False       # False: the run stored no claim, the default one was used


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


def length_column(frame: pd.DataFrame) -> tuple[str, str]:
    """The length to bin by and what it is: `full_length` (untruncated token count) when the
    prediction file holds it, else `length`, the count after truncation to max_length."""
    return ("full_length", "untruncated") if "full_length" in frame.columns else ("length", "truncated")


def _unit_predictions(predictions: Predictions, runs: pd.DataFrame) -> dict[tuple[str, int], pd.DataFrame]:
    """The predictions of one dataset's finished units, by (model, seed); units without a file are left out."""
    preds = {}
    for dataset, model, seed in runs[["dataset", "model", "seed"]].itertuples(index=False):
        frame = predictions(dataset, model, int(seed))
        if frame is not None:
            preds[(model, int(seed))] = frame
    return preds


def _bin_accuracy(lengths: pd.Series, frame: pd.DataFrame, edges: np.ndarray) -> list[dict[str, float | int]]:
    """One unit's accuracy in each length bin (nan for an empty bin)."""
    idx = assign_length_bins(lengths, edges)
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
    bins compare like with like. Lengths are untruncated when the prediction files hold them
    (`full_length`), else truncated counts (`length_kind` says which); a dataset whose quantile
    edges merge into a single bin (most texts cut at max_length) is left out — one bin compares nothing.
    """
    ok = ok_runs(runs)
    rows = []
    for dataset in _datasets(ok):
        sub = ok[ok["dataset"] == dataset]
        preds = _unit_predictions(predictions, sub)
        if not preds:
            continue
        col, kind = length_column(next(iter(preds.values())))
        lengths = pd.concat([f[["row", col]] for f in preds.values()]).drop_duplicates("row")[col]
        edges = length_bin_edges(lengths, bins)
        if len(edges) < 3:
            continue
        for model in _models(sub):
            for seed in sorted(s for m, s in preds if m == model):
                frame = preds[(model, seed)]
                rows += [{"dataset": dataset, "model": model, "seed": seed, **r, "length_kind": kind}
                         for r in _bin_accuracy(frame[col], frame, edges)]
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
                     "sd_acc": float(acc.std(ddof=1)) if len(acc) > 1 else math.nan, "ci_low": lo, "ci_high": hi,
                     "length_kind": g["length_kind"].iloc[0]})
    return pd.DataFrame(rows, columns=LENGTH_COLUMNS)


# ---------------------------------------------------------------- per-seed values of a pair


def paired_values(runs: pd.DataFrame, dataset: str, metric: str, model_a: str, model_b: str) -> pd.DataFrame:
    """Seed, value of A, value of B for the seeds where both finished, sorted by seed (a runs.csv
    metric, or val_optimism = best_val_acc − test_acc)."""
    ok = ok_runs(runs)
    ok = ok[ok["dataset"] == dataset]
    if metric == "val_optimism":
        ok = ok.assign(val_optimism=ok["best_val_acc"] - ok["test_acc"])
    wide = ok.pivot_table(index="seed", columns="model", values=metric, aggfunc="first")
    if model_a not in wide or model_b not in wide:
        return pd.DataFrame(columns=["seed", "a", "b"])
    both = wide[[model_a, model_b]].dropna().sort_index()
    return pd.DataFrame({"seed": both.index.to_numpy(), "a": both[model_a].to_numpy(),
                         "b": both[model_b].to_numpy()})


def matched_epochs(runs: pd.DataFrame, epochs: pd.DataFrame, dataset: str, model_a: str,
                   model_b: str, column: str = "gap_acc") -> pd.DataFrame:
    """(seed, epoch, a, b): `column` of both models at every epoch both ran at that seed (finished
    units only). Epochs run from 1 without gaps, so at seed s these are epochs 1 … min of the two
    models' epochs_run."""
    ok = ok_runs(runs)
    keys = ok.loc[ok["dataset"] == dataset, ["model", "seed"]]
    e = epochs[epochs["dataset"] == dataset].merge(keys, on=["model", "seed"])
    wide = e.pivot_table(index=["seed", "epoch"], columns="model", values=column, aggfunc="first")
    if model_a not in wide or model_b not in wide:
        return pd.DataFrame(columns=["seed", "epoch", "a", "b"])
    both = wide[[model_a, model_b]].dropna().sort_index().reset_index()
    return both.rename(columns={model_a: "a", model_b: "b"})[["seed", "epoch", "a", "b"]]


def gap_values(runs: pd.DataFrame, epochs: pd.DataFrame, dataset: str, metric: str, model_a: str,
               model_b: str) -> tuple[pd.DataFrame, float]:
    """Per-seed gap values of A and B without the stopping confound, and the epoch they were taken at.

    gap_matched: per seed, the mean train − val accuracy gap over the epochs both models ran (paired
    epoch by epoch, so a model that stopped earlier is not credited with a smaller gap).
    gap_common: the gap at one fixed epoch, the last that every unit of both models reached.
    """
    m = matched_epochs(runs, epochs, dataset, model_a, model_b)
    if m.empty:
        return pd.DataFrame(columns=["seed", "a", "b"]), math.nan
    if metric == "gap_matched":
        per_seed = m.groupby("seed", sort=True)[["a", "b"]].mean().reset_index()
        return per_seed, math.nan
    common = int(m.groupby("seed")["epoch"].max().min())
    at = m[m["epoch"] == common].sort_values("seed")
    return at[["seed", "a", "b"]].reset_index(drop=True), float(common)


def gap_by_epoch(runs: pd.DataFrame, epochs: pd.DataFrame, pairs: Iterable[tuple[str, str, str]]) -> pd.DataFrame:
    """Per (dataset, model_a, model_b) and epoch: both models' mean gap with 95% t-intervals over the
    seeds where both ran that epoch, and the mean paired difference A − B with its t-interval."""
    rows = []
    for dataset, model_a, model_b in pairs:
        m = matched_epochs(runs, epochs, dataset, model_a, model_b)
        for epoch, g in m.groupby("epoch", sort=True):
            a, b = g["a"].to_numpy(dtype=float), g["b"].to_numpy(dtype=float)
            (alo, ahi), (blo, bhi), (lo, hi) = t_interval(a), t_interval(b), t_interval(a - b)
            rows.append({"dataset": dataset, "model_a": model_a, "model_b": model_b, "epoch": int(epoch),
                         "n": len(g), "mean_a": float(a.mean()), "a_ci_low": alo, "a_ci_high": ahi,
                         "mean_b": float(b.mean()), "b_ci_low": blo, "b_ci_high": bhi,
                         "mean_diff": float((a - b).mean()), "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=GAP_EPOCH_COLUMNS)


def metric_values(runs: pd.DataFrame, epochs: pd.DataFrame | None, dataset: str, metric: str, model_a: str,
                  model_b: str) -> tuple[pd.DataFrame, float]:
    """(seed, a, b) for any metric, and the epoch it was taken at (nan unless gap_common)."""
    if metric in EPOCH_METRICS:
        if epochs is None or epochs.empty:
            return pd.DataFrame(columns=["seed", "a", "b"]), math.nan
        return gap_values(runs, epochs, dataset, metric, model_a, model_b)
    return paired_values(runs, dataset, metric, model_a, model_b), math.nan


# ---------------------------------------------------------------- the two families


@dataclass(frozen=True)
class Hypothesis:
    """One planned row: A against B on one dataset and metric, in one family; `better_when` is the
    direction in which A counts as better (the claim's, or the metric's own)."""
    dataset: str
    family: str
    metric: str
    model_a: str
    model_b: str
    better_when: str


def model_pairs(models: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair as (challenger, reference): the later model in MODEL_ORDER is compared against the earlier."""
    return [(b, a) for a, b in itertools.combinations(models, 2)]


def reference_pairs(runs: pd.DataFrame, reference: str | None) -> list[tuple[str, str]] | None:
    """[(variant, reference), …] when the run names a reference model (an ablation), else None (every pair)."""
    if not reference:
        return None
    return [(m, reference) for m in _models(runs) if m != reference]


def _direction(metric: str) -> str:
    return "higher" if METRICS[metric][1] else "lower"


def confirmatory_plan(runs: pd.DataFrame, claim: ClaimConfig) -> list[Hypothesis]:
    """The claim's hypotheses on every dataset of the run where both of its models finished — and
    nothing else: adding models or variants to the folder does not change this family."""
    ok = ok_runs(runs)
    plan = []
    for dataset in _datasets(ok):
        present = set(ok.loc[ok["dataset"] == dataset, "model"])
        if {claim.model_a, claim.model_b} <= present:
            plan += [Hypothesis(dataset, CONFIRMATORY, metric, claim.model_a, claim.model_b, direction)
                     for metric, direction in claim.metrics.items()]
    return plan


def exploratory_plan(runs: pd.DataFrame, pairs: Sequence[tuple[str, str]] | None, metrics: Sequence[str],
                     confirmatory: Sequence[Hypothesis]) -> list[Hypothesis]:
    """Every requested pair (default: all) on every metric, minus the rows the claim already tests."""
    ok = ok_runs(runs)
    taken = {(h.dataset, h.metric, frozenset((h.model_a, h.model_b))) for h in confirmatory}
    plan = []
    for dataset in _datasets(ok):
        present = _models(ok[ok["dataset"] == dataset])
        for model_a, model_b in (pairs if pairs is not None else model_pairs(present)):
            if model_a in present and model_b in present:
                plan += [Hypothesis(dataset, EXPLORATORY, metric, model_a, model_b, _direction(metric))
                         for metric in metrics if (dataset, metric, frozenset((model_a, model_b))) not in taken]
    return plan


def _family_rows(plan: Sequence[Hypothesis], runs: pd.DataFrame, epochs: pd.DataFrame | None,
                 predictions: Predictions | None, alpha: float, keep_empty: bool) -> list[dict]:
    """Every statistic of one family's rows; Holm and the verdicts are added by `comparisons`."""
    values = [(h, *metric_values(runs, epochs, h.dataset, h.metric, h.model_a, h.model_b)) for h in plan]
    values = [(h, pv, at) for h, pv, at in values if keep_empty or not pv.empty]
    size = sum(len(pv) >= 2 for _, pv, _ in values)  # Holm's m: the rows that can be tested
    rows = []
    for h, pv, at in values:
        higher = h.better_when == "higher"
        row = {"dataset": h.dataset, "family": h.family, "metric": h.metric, "at_epoch": at,
               "model_a": h.model_a, "model_b": h.model_b, "better_when": h.better_when,
               "positive_favours": h.model_a if higher else h.model_b, "family_size": size, "alpha": alpha,
               **paired.paired_comparison(pv["a"].to_numpy(dtype=float), pv["b"].to_numpy(dtype=float), higher,
                                          family_size=max(1, size), alpha=alpha)}
        row["aso_reading"] = paired.aso_reading(row["aso_eps"], h.model_a, h.model_b)
        row["p_a_better_reading"] = paired.probability_reading(row["p_a_better"], row["p_a_better_low"],
                                                               row["p_a_better_high"], row["n"], h.model_a,
                                                               h.model_b)
        if predictions is not None and h.metric == "test_acc" and len(pv):
            row.update(mcnemar_agreement(mcnemar_by_seed(predictions, h.dataset, h.model_a, h.model_b, pv["seed"])))
        rows.append(row)
    return rows


def _adjust(frame: pd.DataFrame) -> pd.DataFrame:
    """Holm within each family (at that family's alpha), then each row's verdict."""
    frame["p_holm"] = np.nan
    for family, idx in frame.groupby("family", sort=False).groups.items():
        alpha = float(frame.loc[idx, "alpha"].iloc[0])
        frame.loc[idx, "p_holm"] = paired.holm(frame.loc[idx, "t_p"].to_numpy(dtype=float), alpha)
    frame["significant_holm"] = frame["p_holm"] < frame["alpha"]
    frame["verdict"] = [_row_verdict(r) for r in frame.itertuples()]
    return frame


def _row_verdict(r) -> str:
    """Confirmatory rows: supported / contradicted / not established (the claim's direction).
    Exploratory rows name the model the significant difference favours, or say none was shown."""
    word = paired.verdict(r.p_holm, r.mean_diff, r.better_when, r.alpha)
    if r.family == CONFIRMATORY:
        return word
    if word == "not established":
        return "no difference shown"
    return f"{r.model_a if word == 'supported' else r.model_b} better"


def comparisons(runs: pd.DataFrame, predictions: Predictions | None = None,
                pairs: Sequence[tuple[str, str]] | None = None, epochs: pd.DataFrame | None = None,
                claim: ClaimConfig | None = None, metrics: Sequence[str] = tuple(METRICS)) -> pd.DataFrame:
    """The confirmatory rows (the claim's hypotheses, Holm at the claim's alpha), then the exploratory
    rows (`pairs`, default every pair, on `metrics`; Holm at 0.05 in their own family).

    With a `predictions` loader, McNemar per seed fills the mcnemar_* columns of test_acc rows. A
    confirmatory row that cannot be computed (e.g. no epochs table for a gap) is kept with n = 0.
    """
    claim = claim or ClaimConfig()
    confirmatory = confirmatory_plan(runs, claim)
    exploratory = exploratory_plan(runs, pairs, metrics, confirmatory)
    rows = (_family_rows(confirmatory, runs, epochs, predictions, claim.alpha, keep_empty=True)
            + _family_rows(exploratory, runs, epochs, predictions, ALPHA, keep_empty=False))
    frame = _adjust(pd.DataFrame(rows, columns=COMPARISON_COLUMNS))
    for col in ("mcnemar_seeds", "mcnemar_seeds_sig", "mcnemar_sig_a_better", "mcnemar_sig_b_better"):
        frame[col] = frame[col].astype("Int64")
    return frame


# ---------------------------------------------------------------- per model, per source


def model_summary(runs: pd.DataFrame, metrics: Sequence[str] = SUMMARY_METRICS) -> pd.DataFrame:
    """Per dataset × model × metric over the seeds that finished (status ok)."""
    ok = ok_runs(runs)
    rows = []
    for dataset in _datasets(ok):
        sub = ok[ok["dataset"] == dataset]
        for model in _models(sub):
            for metric in metrics:
                values = sub.loc[sub["model"] == model, metric].to_numpy(dtype=float)
                rows.append({"dataset": dataset, "model": model, "metric": metric, **paired.describe(values)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def variance_by_source(sources: dict[str, pd.DataFrame], pair: tuple[str, str] | None = None,
                       metric: str = "test_acc") -> pd.DataFrame:
    """The sd over seeds that each random source contributes: `sources` maps a source name to the runs
    table of a folder where only that source varied. Per source × dataset × model: the sd of `metric`
    with its chi-square 95% interval, and for `pair` (A, B) the sd of the paired difference A − B."""
    rows = []
    for source, runs in sources.items():
        ok = ok_runs(runs)
        for dataset in _datasets(ok):
            sub = ok[ok["dataset"] == dataset]
            series = {m: sub.loc[sub["model"] == m, metric].to_numpy(dtype=float) for m in _models(sub)}
            if pair is not None and {*pair} <= set(series):
                pv = paired_values(runs, dataset, metric, *pair)
                series[f"{pair[0]} − {pair[1]}"] = (pv["a"] - pv["b"]).to_numpy(dtype=float)
            for name, x in series.items():
                lo, hi = paired.sd_interval(x)
                rows.append({"source": source, "dataset": dataset, "model": name, "n": len(x),
                             "mean": float(x.mean()) if len(x) else math.nan,
                             "sd": float(x.std(ddof=1)) if len(x) > 1 else math.nan, "sd_ci_low": lo, "sd_ci_high": hi})
    return pd.DataFrame(rows, columns=VARIANCE_COLUMNS)


def compare(runs: pd.DataFrame, predictions: Predictions, reference: str | None = None,
            epochs: pd.DataFrame | None = None, claim: ClaimConfig | None = None,
            claim_declared: bool = False) -> StatsTables:
    """Every statistic of one run: the confirmatory family of `claim` (default: the default claim)
    and the exploratory comparisons (each variant against `reference` when given, else every
    pair), the per-model summary, accuracy by input length, and the gap at matched epochs."""
    claim = claim or ClaimConfig()
    table = comparisons(runs, predictions, pairs=reference_pairs(runs, reference), epochs=epochs, claim=claim)
    per_seed = accuracy_by_length(runs, predictions)
    pairs = table[["dataset", "model_a", "model_b"]].drop_duplicates()
    gaps = (gap_by_epoch(runs, epochs, pairs.itertuples(index=False, name=None))
            if epochs is not None and not epochs.empty else pd.DataFrame(columns=GAP_EPOCH_COLUMNS))
    return StatsTables(comparisons=table, model_summary=model_summary(runs), length_bins=length_bin_summary(per_seed),
                       length_bins_by_seed=per_seed, gap_by_epoch=gaps, claim=claim, claim_declared=claim_declared)
