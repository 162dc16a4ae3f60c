"""The statistics part of REPORT.md: per-seed, forest and length-bin plots, the tables, and the
claim's verdict sentences, all drawn from `stats.compare`'s tables (numbers live in stats.py,
reading and writing them in compare.py); nothing here computes a statistic."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.results import DATASET_TITLES, RunFolder, ok_runs, relative_link, save_png  # noqa: E402
from bench.results import ordered_datasets as _datasets, ordered_models as _models  # noqa: E402
from bench.stats import ALPHA, BOOTSTRAP_SEED, METRICS, MCNEMAR_EXACT_BELOW, seed_warning  # noqa: E402

# ---------------------------------------------------------------- plots


def plot_seed_distributions(runs: pd.DataFrame, dataset: str, path: Path, title: str | None = None) -> None:
    """One point per seed over a box, per model, for test accuracy and the overfitting gap."""
    ok = ok_runs(runs)
    ok = ok[ok["dataset"] == dataset]
    models = _models(ok)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in zip(axes, ("test_acc", "gap_acc")):
        values = [ok.loc[ok["model"] == m, metric].dropna().to_numpy(dtype=float) * 100 for m in models]
        ax.boxplot(values, positions=range(len(models)), widths=0.5, showfliers=False,
                   patch_artist=True, boxprops={"facecolor": "lightgrey"}, medianprops={"color": "grey"})
        for k, v in enumerate(values):
            ax.scatter(np.full(len(v), k), v, color="black", s=22, zorder=3)
        ax.set_xticks(range(len(models)), models)
        ax.set_ylabel(f"{METRICS[metric][0]} (%)")
        ax.set_xlabel("")
        ax.set_title(METRICS[metric][0])
    fig.suptitle(f"{title or DATASET_TITLES.get(dataset, dataset)}: per-seed results (dots: seeds; box: quartiles)")
    fig.tight_layout()
    save_png(fig, path)


def plot_forest(table: pd.DataFrame, dataset: str, path: Path, title: str | None = None) -> None:
    """Paired differences A − B (percentage points) with their 95% t-intervals, one row per comparison."""
    sub = table[table["dataset"] == dataset].iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(sub) + 1.2))
    y = np.arange(len(sub))
    mean = sub["mean_diff"].to_numpy(dtype=float) * 100
    lo, hi = sub["ci_low"].to_numpy(dtype=float) * 100, sub["ci_high"].to_numpy(dtype=float) * 100
    ax.errorbar(mean, y, xerr=[np.nan_to_num(mean - lo), np.nan_to_num(hi - mean)], fmt="o", color="black",
                capsize=3)
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.set_yticks(y, [f"{r.model_a} − {r.model_b}: {r.metric}" for r in sub.itertuples()])
    ax.set_xlabel("paired difference (percentage points), mean and 95% CI over seeds")
    ax.set_title(f"{title or DATASET_TITLES.get(dataset, dataset)}: paired differences")
    fig.tight_layout()
    save_png(fig, path)


def plot_length_bins(summary: pd.DataFrame, dataset: str, path: Path, title: str | None = None) -> None:
    """Test accuracy per length bin and model: mean over seeds with 95% t-interval."""
    sub = summary[summary["dataset"] == dataset]
    models = _models(sub)
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(models))
    for k, model in enumerate(models):
        m = sub[sub["model"] == model].sort_values("bin")
        x = m["bin"].to_numpy() + (k - (len(models) - 1) / 2) * width
        mean = m["mean_acc"].to_numpy(dtype=float) * 100
        lo, hi = m["ci_low"].to_numpy(dtype=float) * 100, m["ci_high"].to_numpy(dtype=float) * 100
        ax.errorbar(x, mean, yerr=[np.nan_to_num(mean - lo), np.nan_to_num(hi - mean)], fmt="o-", capsize=3,
                    label=model)
    bins = sub.drop_duplicates("bin").sort_values("bin")
    ax.set_xticks(bins["bin"], [f"{r.length_lo:g}–{r.length_hi:g}\n(n={r.n_examples})" for r in bins.itertuples()])
    ax.set_xlabel("test text length in tokens (quantile bins)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    ax.set_title(f"{title or DATASET_TITLES.get(dataset, dataset)}: accuracy by input length (mean, 95% CI over seeds)")
    fig.tight_layout()
    save_png(fig, path)


# ---------------------------------------------------------------- markdown


def _pct(v: float, digits: int = 2) -> str:
    return "–" if not np.isfinite(v) else f"{v * 100:.{digits}f}"


def _pp(v: float, digits: int = 2) -> str:
    return "–" if not np.isfinite(v) else f"{v * 100:+.{digits}f}"


def _num(v: float, fmt: str = ".2f") -> str:
    if v is None or pd.isna(v):
        return "–"
    if np.isinf(v):
        return "∞" if v > 0 else "−∞"
    return format(float(v), fmt)


def _p(v: float) -> str:
    if not np.isfinite(v):
        return "–"
    return "<0.0001" if v < 1e-4 else f"{v:.4f}"


def _summary_table(summary: pd.DataFrame) -> str:
    rows = ["| model | metric | seeds | mean % | sd | median | min – max | 95% CI of mean | CI method |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in summary.itertuples():
        rows.append(f"| {r.model} | {r.metric} | {r.n} | {_pct(r.mean)} | {_pct(r.std)} | {_pct(r.median)} "
                    f"| {_pct(r.min)} – {_pct(r.max)} | [{_pct(r.ci_low)}, {_pct(r.ci_high)}] | {r.ci_method} |")
    return "\n".join(rows)


def _pair_table(table: pd.DataFrame) -> str:
    rows = ["| A − B | metric | n | mean diff (pp) | 95% CI (pp) | t p | Wilcoxon p | Shapiro p | primary "
            "| p (Holm) | d_z | Cliff's δ | ε_min (A better) | McNemar sig. seeds (A/B) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in table.itertuples():
        mcn = ("–" if pd.isna(r.mcnemar_seeds) else
               f"{r.mcnemar_sig_a_better}/{r.mcnemar_sig_b_better} of {r.mcnemar_seeds}")
        rows.append(f"| {r.model_a} − {r.model_b} | {r.metric} | {r.n} | {_pp(r.mean_diff)} "
                    f"| [{_pp(r.ci_low)}, {_pp(r.ci_high)}] | {_p(r.t_p)} | {_p(r.wilcoxon_p)} | {_p(r.shapiro_p)} "
                    f"| {r.primary_test} | {_p(r.p_holm)} | {_num(r.d_z)} | {_num(r.cliffs_delta)} "
                    f"| {_num(r.aso_eps)} | {mcn} |")
    return "\n".join(rows)


def claim_verdict(row: pd.Series, claim: str) -> str:
    """One sentence on one claim, from the paired difference, its CI, the Holm p and ε_min."""
    higher = METRICS.get(row["metric"], ("", True))[1]
    label = METRICS.get(row["metric"], (row["metric"], True))[0]
    diff, lo, hi, p = row["mean_diff"], row["ci_low"], row["ci_high"], row["p_holm"]
    wins = int(row["wins_a"])
    better = "higher" if higher else "lower"
    facts = (f"{row['model_a']} − {row['model_b']} {label}: {_pp(diff)} pp (95% CI [{_pp(lo)}, {_pp(hi)}]), "
             f"{row['model_a']} {better} in {wins} of {row['n']} seeds; {row['primary_test']} p = {_p(row['p_primary'])}, "
             f"Holm-adjusted p = {_p(p)}; d_z = {_num(row['d_z'])}, ε_min = {_num(row['aso_eps'])} "
             f"({row['aso_reading']})")
    favours = (diff > 0) == higher and diff != 0
    if np.isfinite(p) and p < ALPHA:
        word = "**supported**" if favours else "**contradicted** (significant in the opposite direction)"
    elif np.isfinite(lo) and np.isfinite(hi) and (lo > 0 or hi < 0):
        word = ("**suggested but not established**: the CI excludes zero but the difference is not "
                "significant after Holm correction")
    else:
        word = "**not established**: the data are compatible with no difference"
    caveat = ""
    if row["primary_test"] == "wilcoxon" and row["wilcoxon_min_p"] >= ALPHA:
        caveat = (f" With {row['n']} seeds the primary Wilcoxon test cannot reach p < {ALPHA:g} whatever the data; "
                  f"{row['seeds_needed']} or more seeds are needed.")
    return f"- {claim}: {word}. {facts}.{caveat}"


def _claim_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The comparisons of the claim's pair: attn_rnn against rnn."""
    return table[(table["model_a"] == "attn_rnn") & (table["model_b"] == "rnn")]


def claim_lines(table: pd.DataFrame, dataset: str) -> list[str]:
    """The two halves of the claim (accuracy, overfitting) on one dataset, one bullet each."""
    sub = _claim_rows(table)
    sub = sub[sub["dataset"] == dataset]
    lines = []
    for metric, claim in (("best_val_acc", "Attention lifts validation accuracy (the claim's own wording)"),
                          ("test_acc", "Attention lifts test accuracy"),
                          ("gap_acc", "Attention reduces overfitting (smaller train − val accuracy gap)")):
        row = sub[sub["metric"] == metric]
        if not row.empty:
            lines.append(claim_verdict(row.iloc[0], claim))
    if not lines:
        lines.append("- attn_rnn and rnn were not both run with paired seeds here, so the claims are not tested.")
    return lines


def tests_claim(table: pd.DataFrame) -> bool:
    """Whether a run's comparison table holds the claim's pair (attn_rnn against rnn)."""
    return not _claim_rows(table).empty


def _method_paragraph(n_comparisons: int) -> str:
    """What every number in the section is and how it was computed."""
    return ("Seeds are paired (seed *k* gives every model the same split, data order and initialisation stream), "
            "so models are compared on per-seed differences A − B. Per model: mean with a 95% CI of the mean "
            f"(scipy BCa bootstrap, fixed seed {BOOTSTRAP_SEED}; a t-interval when n < 3 or the bootstrap "
            "degenerates). Per pair: the mean difference with a 95% t-interval; the paired t-test and the Wilcoxon "
            "signed-rank test (exact when possible), the primary one chosen by Shapiro–Wilk on the differences "
            f"(t-test unless normality is rejected at {ALPHA:g}); Holm–Bonferroni adjustment over all "
            f"{n_comparisons} comparisons of the run; Cohen's d_z and Cliff's δ; ε_min of Almost Stochastic Order "
            "(Dror et al. 2019; ε < 0.5: A almost dominates B, < 0.2: strongly; Bonferroni-adjusted confidence, "
            "lower gap counts as better); McNemar on the test predictions per seed (exact binomial when fewer "
            f"than {MCNEMAR_EXACT_BELOW} discordant examples), counted as seeds significant at {ALPHA:g} for A / "
            "for B. Every number is in comparisons.csv, model_summary.csv and length_bins.csv next to runs.csv.")


def _dataset_tables(t: pd.DataFrame, s: pd.DataFrame) -> list[str]:
    """One dataset's summary and pair tables, with the seed-count warnings that apply to them."""
    out = [_summary_table(s), ""]
    if t.empty:
        return out
    out += [_pair_table(t), ""]
    tested = t[t["n"] >= 2]
    warning = seed_warning(int(tested["n"].min())) if len(tested) else None
    if warning:
        out += [f"> **Warning:** {warning}", ""]
    if len(tested) < len(t):
        out += ["> Rows with a single paired seed are listed but not tested (no p-value, outside the "
                "Holm family).", ""]
    return out


def _dataset_plots(runs: pd.DataFrame, table: pd.DataFrame, lengths: pd.DataFrame, dataset: str, title: str,
                   plots: Path, report_dir: Path) -> list[str]:
    """Draw one dataset's per-seed, forest and length-bin plots; their markdown image links."""
    dist, forest, bins = (plots / f"{dataset}_seeds.png", plots / f"{dataset}_forest.png",
                          plots / f"{dataset}_length.png")
    plot_seed_distributions(runs, dataset, dist, title)
    out = [f"![{title} per-seed results]({relative_link(dist, report_dir)})", ""]
    if (table["dataset"] == dataset).any():
        plot_forest(table, dataset, forest, title)
        out += [f"![{title} paired differences]({relative_link(forest, report_dir)})", ""]
    if (lengths["dataset"] == dataset).any():
        plot_length_bins(lengths, dataset, bins, title)
        out += [f"![{title} accuracy by input length]({relative_link(bins, report_dir)})", ""]
    return out


def statistics_section(run_dir: Path, report_dir: Path, table: pd.DataFrame) -> str:
    """The "Statistical comparison" markdown for REPORT.md, and its PNG plots.

    `table` is the run's comparisons (`compare.analyse(run_dir).comparisons`); model_summary.csv
    and length_bins.csv must already be in the folder (`compare.write_tables`).
    """
    folder = RunFolder(run_dir)
    runs = folder.read_runs(required=tuple(METRICS))
    summary = pd.read_csv(folder.model_summary_csv)
    lengths = pd.read_csv(folder.length_bins_csv)
    out = ["## Statistical comparison", "", _method_paragraph(len(table)), ""]
    for dataset in _datasets(ok_runs(runs)):
        title = folder.dataset_title(dataset)
        out += [f"### {title}: statistics", ""]
        out += _dataset_tables(table[table["dataset"] == dataset], summary[summary["dataset"] == dataset])
        out += _dataset_plots(runs, table, lengths, dataset, title, folder.plots, report_dir)
        out += [f"#### Verdict on {title} (from the statistics above)", "", *claim_lines(table, dataset), ""]
    return "\n".join(out)
