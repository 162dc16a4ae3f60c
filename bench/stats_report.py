"""The statistics part of REPORT.md: the claim, the confirmatory and exploratory tables, the
verdict sentences with their power, and the per-seed, forest, matched-epoch gap and length-bin
plots — all drawn from `stats.compare`'s tables (numbers live in stats.py / paired.py, reading and
writing them in compare.py); nothing here computes a statistic."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.config import ClaimConfig  # noqa: E402
from bench.paired import BCA_FROM, BOOTSTRAP_SEED, MIN_EFFECT, P_BETTER_MEANINGFUL, POWER  # noqa: E402
from bench.results import DATASET_TITLES, RunFolder, ok_runs, relative_link, save_png  # noqa: E402
from bench.results import ordered_datasets as _datasets, ordered_models as _models  # noqa: E402
from bench.stats import CONFIRMATORY, EXPLORATORY, MCNEMAR_EXACT_BELOW, METRICS, RUN_METRICS  # noqa: E402

FOREST_METRICS = ("test_acc", "gap_matched")

# ---------------------------------------------------------------- plots


def plot_seed_distributions(runs: pd.DataFrame, dataset: str, path: Path, title: str | None = None) -> None:
    """One point per seed over a box, per model: test accuracy (the headline) beside validation
    accuracy at the selected epoch (the selection metric, optimistic)."""
    ok = ok_runs(runs)
    ok = ok[ok["dataset"] == dataset]
    models = _models(ok)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (metric, label) in zip(axes, (("test_acc", "test accuracy (headline)"),
                                          ("best_val_acc", "validation accuracy (selection metric, optimistic)"))):
        values = [ok.loc[ok["model"] == m, metric].dropna().to_numpy(dtype=float) * 100 for m in models]
        ax.boxplot(values, positions=range(len(models)), widths=0.5, showfliers=False,
                   patch_artist=True, boxprops={"facecolor": "lightgrey"}, medianprops={"color": "grey"})
        for k, v in enumerate(values):
            ax.scatter(np.full(len(v), k), v, color="black", s=22, zorder=3)
        ax.set_xticks(range(len(models)), models)
        ax.set_ylabel("%")
        ax.set_title(label, fontsize=10)
    fig.suptitle(f"{title or DATASET_TITLES.get(dataset, dataset)}: per-seed results (dots: seeds; box: quartiles)")
    fig.tight_layout()
    save_png(fig, path)


def _sign_label(r) -> str:
    return "+ favours A" if r.better_when == "higher" else "− favours A"


def plot_forest(table: pd.DataFrame, dataset: str, path: Path, title: str | None = None) -> None:
    """Paired differences A − B (percentage points) with their 95% t-intervals for test accuracy and
    the matched-epoch gap; each row says its family and which sign favours A."""
    sub = table[(table["dataset"] == dataset) & table["metric"].isin(FOREST_METRICS) & (table["n"] >= 2)]
    sub = sub.iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(sub) + 1.4))
    y = np.arange(len(sub))
    mean = sub["mean_diff"].to_numpy(dtype=float) * 100
    lo, hi = sub["ci_low"].to_numpy(dtype=float) * 100, sub["ci_high"].to_numpy(dtype=float) * 100
    colors = ["tab:red" if f == CONFIRMATORY else "black" for f in sub["family"]]
    for k, color in enumerate(colors):
        ax.errorbar(mean[k], y[k], xerr=[[np.nan_to_num(mean[k] - lo[k])], [np.nan_to_num(hi[k] - mean[k])]],
                    fmt="o", color=color, capsize=3)
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.set_yticks(y, [f"{'[C] ' if r.family == CONFIRMATORY else ''}{r.model_a} − {r.model_b}: {r.metric} "
                      f"({_sign_label(r)})" for r in sub.itertuples()])
    ax.set_xlabel("paired difference A − B (percentage points), mean and 95% t-interval over seeds")
    ax.set_title(f"{title or DATASET_TITLES.get(dataset, dataset)}: paired differences ([C], red: confirmatory)")
    fig.tight_layout()
    save_png(fig, path)


def plot_matched_gap(gaps: pd.DataFrame, dataset: str, model_a: str, model_b: str, path: Path,
                     title: str | None = None) -> None:
    """The train − val accuracy gap per epoch for A and B (mean over the seeds where both ran that
    epoch, 95% t-interval bands), and their paired difference per epoch with its band."""
    sub = gaps[(gaps["dataset"] == dataset) & (gaps["model_a"] == model_a) & (gaps["model_b"] == model_b)]
    sub = sub.sort_values("epoch")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    x = sub["epoch"].to_numpy()
    for model, key, color in ((model_a, "a", "tab:orange"), (model_b, "b", "tab:blue")):
        mean = sub[f"mean_{key}"].to_numpy(dtype=float) * 100
        axes[0].plot(x, mean, "o-", color=color, label=model)
        axes[0].fill_between(x, sub[f"{key}_ci_low"].to_numpy(dtype=float) * 100,
                             sub[f"{key}_ci_high"].to_numpy(dtype=float) * 100, color=color, alpha=0.2)
    axes[0].set_ylabel("train − val accuracy (pp)")
    axes[0].set_title("gap per epoch (band: 95% t-interval)", fontsize=10)
    axes[0].legend()
    axes[1].plot(x, sub["mean_diff"].to_numpy(dtype=float) * 100, "o-", color="black")
    axes[1].fill_between(x, sub["ci_low"].to_numpy(dtype=float) * 100, sub["ci_high"].to_numpy(dtype=float) * 100,
                         color="grey", alpha=0.3)
    axes[1].axhline(0, color="grey", lw=0.8, ls="--")
    axes[1].set_ylabel(f"{model_a} − {model_b} (pp)")
    axes[1].set_title(f"paired difference per epoch (below 0: {model_a} overfits less)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.suptitle(f"{title or DATASET_TITLES.get(dataset, dataset)}: overfitting gap at matched epochs")
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
    kind = sub["length_kind"].iloc[0] if "length_kind" in sub and len(sub) else "truncated"
    ax.set_xlabel(f"test text length in tokens ({kind}; quantile bins)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    ax.set_title(f"{title or DATASET_TITLES.get(dataset, dataset)}: accuracy by input length (mean, 95% CI over seeds)")
    fig.tight_layout()
    save_png(fig, path)


# ---------------------------------------------------------------- formatting


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


def _seeds(v: float) -> str:
    if v is None or pd.isna(v):
        return "–"
    return f"> {100_000:,}" if np.isinf(v) else f"{int(v)}"


# ---------------------------------------------------------------- the claim


def run_claim(run_dir: Path) -> tuple[ClaimConfig, bool]:
    """The claim a run's statistics used, and whether the run declared it (else: the default claim)."""
    folder = RunFolder(run_dir)
    if not folder.config_json.exists():
        return ClaimConfig(), False
    cfg = folder.stored_config()
    return cfg.effective_claim(), cfg.claim is not None


def hypothesis_words(metric: str, direction: str, a: str, b: str) -> str:
    """One hypothesis of a claim in words."""
    if metric == "test_acc":
        return f"{a} has {'higher' if direction == 'higher' else 'lower'} test accuracy than {b}"
    if metric in ("gap_matched", "gap_common"):
        where = "at matched epochs" if metric == "gap_matched" else "at a common epoch"
        return (f"{a} overfits {'less' if direction == 'lower' else 'more'} than {b} "
                f"(train − val accuracy gap {where})")
    return f"{a}'s {METRICS.get(metric, (metric,))[0]} is {direction} than {b}'s"


def claim_paragraph(run_dir: Path, runs: pd.DataFrame) -> str:
    """The claim under test, where it is recorded, and what its verdicts mean."""
    claim, declared = run_claim(run_dir)
    hyps = "; ".join(hypothesis_words(m, d, claim.model_a, claim.model_b) for m, d in claim.metrics.items())
    head = (f"**The claim** — *{claim.statement}* — as {len(claim.metrics)} confirmatory hypothesis(es) per "
            f"dataset: {hyps}; family-wise α = {claim.alpha:g} (Holm within the claim's family, across the datasets "
            "of the run). ")
    if not declared:
        return head + ("**This run stored no claim** (its config.json predates `[claim]`, or declared none): the "
                       "default claim above was applied after the results existed, so these verdicts are "
                       "confirmatory in form only — not pre-registered.")
    hashes = runs["claim_hash"].dropna().astype(str) if "claim_hash" in runs else pd.Series(dtype=str)
    recorded = int((hashes == claim.hash()).sum())
    where = (f"its hash `{claim.hash()}` is in {recorded} of {len(runs)} unit records (runs.csv `claim_hash`)"
             if recorded else f"its hash is `{claim.hash()}`; the unit records carry no claim hash")
    return head + (f"It is declared in the run's `config.json` (`[claim]`, stored before the first unit ran; a "
                   f"changed claim on an existing folder is refused) and {where}.")


def verdict_line(row: pd.Series) -> str:
    """One confirmatory hypothesis: verdict, effect with CI, wins, the paired t and its Holm p, the
    sensitivity checks, P(A > B), and power."""
    a, b = row["model_a"], row["model_b"]
    claim = hypothesis_words(row["metric"], row["better_when"], a, b)
    if row["n"] < 2:
        return f"- {claim}: **not tested** ({row['n']} paired seed(s){'' if row['n'] else ' or no epochs table'})."
    word = {"supported": "**supported**", "contradicted": "**contradicted** (significant in the opposite direction)",
            }.get(row["verdict"], "**not established**")
    if row["verdict"] == "not established" and (row["ci_low"] > 0 or row["ci_high"] < 0):
        word += " (the 95% CI excludes zero, but not after Holm within the claim's family)"
    label = METRICS.get(row["metric"], (row["metric"], True))[0]
    at = f" (epoch {int(row['at_epoch'])})" if pd.notna(row["at_epoch"]) else ""
    facts = (f"{a} − {b} {label}{at}: {_pp(row['mean_diff'])} pp (95% t-interval [{_pp(row['ci_low'])}, "
             f"{_pp(row['ci_high'])}]; {_sign_label(row)}), {a} better in {int(row['wins_a'])} of {row['n']} seeds; "
             f"paired t p = {_p(row['t_p'])}, Holm p = {_p(row['p_holm'])} (family of {row['family_size']}); "
             f"sensitivity: sign-flip p = {_p(row['perm_p'])}, Wilcoxon p = {_p(row['wilcoxon_p'])}; "
             f"P({a} better) = {_num(row['p_a_better'])} [{_num(row['p_a_better_low'])}, "
             f"{_num(row['p_a_better_high'])}] — {row['p_a_better_reading']}")
    power = (f"  Power: sd of the paired differences {_num(row['sd_diff'] * 100)} pp; 80% power (paired t at "
             f"α/{row['family_size']}) needs {_seeds(row['seeds_80_observed'])} seeds for the observed effect and "
             f"{_seeds(row['seeds_80_min_effect'])} for a {MIN_EFFECT * 100:g} pp effect.")
    if row["underpowered"]:
        power += f" **Under-powered:** {row['n']} seeds are fewer than the observed effect needs."
    return f"- {claim}: {word}. {facts}.\n{power}"


def claim_lines(table: pd.DataFrame, dataset: str) -> list[str]:
    """The confirmatory verdicts on one dataset, one bullet (and a power line) each."""
    sub = table[(table["family"] == CONFIRMATORY) & (table["dataset"] == dataset)]
    if sub.empty:
        return ["- The claim's two models were not both run with paired seeds here, so the claim is not tested."]
    return [verdict_line(row) for _, row in sub.iterrows()]


def claim_glance(tests: list[tuple[str, str, pd.DataFrame]]) -> list[str]:
    """Every confirmatory verdict of every (run label, dataset title, comparison table) in one
    table, then a tally per hypothesis: what the claim's answer is across budgets and datasets
    before the detail. [] when no table tests the claim."""
    rows = []
    order = {"test_acc": 0}  # the accuracy hypothesis first, as the claim states it
    for label, title, table in tests:
        claim = table[(table["family"] == CONFIRMATORY) & (table["n"] >= 1)]
        claim = claim.assign(_order=claim["metric"].map(order).fillna(1)).sort_values("_order", kind="stable")
        rows += [(label, title, r) for _, r in claim.iterrows()]
    if not rows:
        return []
    out = ["| run | dataset | seeds | hypothesis | A − B (pp, 95% t-interval) | Holm p | verdict |",
           "|---|---|---:|---|---:|---:|---|"]
    tally: dict[str, list[str]] = {}
    for label, title, r in rows:
        words = hypothesis_words(r["metric"], r["better_when"], r["model_a"], r["model_b"])
        out.append(f"| {label} | {title} | {int(r['n'])} | {words} | {_pp(r['mean_diff'])} [{_pp(r['ci_low'])}, "
                   f"{_pp(r['ci_high'])}] | {_p(r['p_holm'])} | **{r['verdict']}** |")
        tally.setdefault(words, []).append(r["verdict"])
    out.append("")
    for words, verdicts in tally.items():
        counts = pd.Series(verdicts).value_counts()
        parts = [f"{verdict} in {n} of {len(verdicts)}" for verdict, n in counts.items()]
        out.append(f"- *{words}*: " + ", ".join(parts) + ".")
    return out + [""]


def tests_claim(table: pd.DataFrame) -> bool:
    """Whether a run's comparison table holds the claim's family (both of its models ran)."""
    return bool(((table["family"] == CONFIRMATORY) & (table["n"] >= 1)).any())


def validation_note(table: pd.DataFrame, claim: ClaimConfig) -> str:
    """Why the claim's "lifts validation accuracy" is answered on test accuracy, with this run's
    own measure of the optimism (exploratory row val_optimism)."""
    rows = table[(table["metric"] == "val_optimism") & (table["model_a"] == claim.model_a)
                 & (table["model_b"] == claim.model_b) & (table["n"] >= 2)]
    measured = "; ".join(f"{DATASET_TITLES.get(r.dataset, r.dataset)}: {_pp(r.mean_diff)} pp "
                         f"[{_pp(r.ci_low)}, {_pp(r.ci_high)}]" for r in rows.itertuples())
    return ("**Test accuracy is the headline.** The claim was first worded as \"lifts *validation* accuracy\"; it is "
            "answered on test accuracy, because validation accuracy chose each run's stopping epoch (and, in tuned "
            "runs, its hyper-parameters) on the same split, so it is biased upward — and more so for the model whose "
            "validation curve is noisier or that stops earlier, which biases the *difference* too. Validation "
            "accuracy stays in the tables as the selection metric (optimistic)."
            + (f" Here the selected-validation-minus-test excess of {claim.model_a} relative to {claim.model_b} "
               f"(exploratory row `val_optimism`, positive: {claim.model_a}'s validation figure is the more "
               f"inflated) is {measured}." if measured else ""))


def overfitting_paragraph() -> str:
    """The one definition of the overfitting measure the verdict uses."""
    return ("**Overfitting, without the stopping confound.** The gap is eval-mode accuracy on a fixed subset of the "
            "training data minus validation accuracy, measured after every epoch. Taken at each model's own "
            "selected epoch (`gap_acc`) it mostly records *when* training stopped: a model that stops an epoch "
            "earlier has had less time to overfit. The verdict therefore uses the gap **at matched epochs** "
            "(`gap_matched`): for each seed, the gap of A and of B at every epoch both ran (epochs 1 … the shorter "
            "run's last), averaged over those epochs, then compared across seeds with the paired t-test. The gap "
            "at one fixed common epoch — the last every unit of both models reached (`gap_common`) — and at the "
            "selected epoch are shown as exploratory rows; the per-epoch curves with 95% bands are in "
            "gap_by_epoch.csv and the plots below.")


def method_paragraph(table: pd.DataFrame) -> str:
    """What every number in the section is, how it was computed, and how to check it with scipy."""
    conf = table[table["family"] == CONFIRMATORY]
    expl = table[table["family"] == EXPLORATORY]
    size = lambda t: int(t["family_size"].iloc[0]) if len(t) else 0  # noqa: E731
    return ("Seeds are paired (seed *k* gives every model the same random sources), so models are compared on "
            "per-seed differences A − B. **One primary test, fixed in advance: the paired t-test** on those "
            "differences, with its 95% t-interval. An exact sign-flip permutation test (all 2ⁿ sign patterns) and "
            "the Wilcoxon signed-rank test are sensitivity checks shown beside it; they never replace it (with n "
            "seeds neither can go below p = 2/2ⁿ). Two families: the **confirmatory** family is the claim's "
            f"hypotheses on each dataset ({size(conf)} tests), Holm-adjusted within it at the claim's α — verdicts "
            f"come from it alone, and adding models to a folder does not change it; every other row is "
            f"**exploratory** ({size(expl)} tests), Holm-adjusted at 0.05 in its own family and labelled so. "
            "Per model: mean with a 95% t-interval (a BCa bootstrap interval, scipy, fixed seed "
            f"{BOOTSTRAP_SEED}, is added from {BCA_FROM} seeds on). Effect sizes: Cohen's d_z and Cliff's δ, both "
            "on A − B, so their sign follows the row's label (for a gap, lower is better: a negative value "
            "favours A); P(A better) is the share of seeds on which A beats B (ties half) with a percentile "
            "bootstrap CI — Bouthillier et al. (2021) read A as better when the CI's lower bound is above 0.5, "
            f"and the difference as meaningful when P > {P_BETTER_MEANINGFUL:g}; ε_min of Almost Stochastic Order "
            "(Dror et al. 2019; below 0.5: A almost dominates B; 0.5 or more: no evidence of that — not evidence "
            f"that B dominates A). Power (statsmodels `TTestPower`): the seeds a paired t-test needs for {POWER:.0%} "
            f"power at α / family size, for the observed effect and for {MIN_EFFECT * 100:g} pp. McNemar per seed on "
            f"the test predictions (exact binomial below {MCNEMAR_EXACT_BELOW} discordant examples). **To check a "
            "verdict with scipy alone:** take the rows of comparisons.csv with `family == confirmatory`; for "
            "`test_acc`, pivot runs.csv (`status == ok`) by seed and call `scipy.stats.ttest_rel(A, B)`; for "
            "`gap_matched`, average epochs.csv `gap_acc` per seed over the epochs both models ran, then "
            "`ttest_rel`; adjust the family's `t_p` values with Holm (`statsmodels.stats.multitest.multipletests"
            "(p, method='holm')`). Every number is in comparisons.csv, model_summary.csv, gap_by_epoch.csv and "
            "length_bins.csv next to runs.csv.")


# ---------------------------------------------------------------- tables


def _summary_table(summary: pd.DataFrame) -> str:
    rows = ["| model | metric | seeds | mean % | sd | median | min – max | 95% CI of mean (t) | BCa (≥ 10 seeds) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    names = {"test_acc": "test acc (headline)", "best_val_acc": "val acc (selection metric, optimistic)",
             "gap_acc": "gap at selected epoch (confounded)"}
    for r in summary.itertuples():
        note = " — deterministic: one value repeated" if getattr(r, "deterministic", False) is True else ""
        bca = f"[{_pct(r.bca_low)}, {_pct(r.bca_high)}]" if np.isfinite(getattr(r, "bca_low", np.nan)) else "–"
        rows.append(f"| {r.model} | {names.get(r.metric, r.metric)} | {r.n}{note} | {_pct(r.mean)} | {_pct(r.std)} "
                    f"| {_pct(r.median)} | {_pct(r.min)} – {_pct(r.max)} | [{_pct(r.ci_low)}, {_pct(r.ci_high)}] "
                    f"| {bca} |")
    return "\n".join(rows)


def _pair_table(table: pd.DataFrame) -> str:
    rows = ["| family | A − B | metric (sign) | n | mean diff (pp) | 95% t-interval (pp) | paired t p | Holm p "
            "| verdict | sign-flip p | Wilcoxon p | d_z | Cliff's δ | P(A better) [CI] | ε_min (A better) "
            "| seeds for 80% power (obs. / 0.5 pp) | McNemar sig. seeds (A/B) |",
            "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table.itertuples():
        mcn = ("–" if pd.isna(r.mcnemar_seeds) else
               f"{r.mcnemar_sig_a_better}/{r.mcnemar_sig_b_better} of {r.mcnemar_seeds}")
        at = f" @ epoch {int(r.at_epoch)}" if pd.notna(r.at_epoch) else ""
        rows.append(f"| {r.family} | {r.model_a} − {r.model_b} | {r.metric}{at} ({_sign_label(r)}) | {r.n} "
                    f"| {_pp(r.mean_diff)} | [{_pp(r.ci_low)}, {_pp(r.ci_high)}] | {_p(r.t_p)} | {_p(r.p_holm)} "
                    f"| {r.verdict} | {_p(r.perm_p)} | {_p(r.wilcoxon_p)} | {_num(r.d_z)} | {_num(r.cliffs_delta)} "
                    f"| {_num(r.p_a_better)} [{_num(r.p_a_better_low)}, {_num(r.p_a_better_high)}] "
                    f"| {_num(r.aso_eps)} | {_seeds(r.seeds_80_observed)} / {_seeds(r.seeds_80_min_effect)} | {mcn} |")
    return "\n".join(rows)


def _length_note(lengths: pd.DataFrame, dataset: str, has_predictions: bool) -> list[str]:
    sub = lengths[lengths["dataset"] == dataset]
    if sub.empty:
        if not has_predictions:
            return []
        return ["Accuracy by input length is not shown: the prediction files record each text's length *after* "
                "truncation to max_length, the untruncated length is not stored, and so many texts are cut at the "
                "cap that the length quantiles collapse into a single bin — one bin compares nothing.", ""]
    if (sub["length_kind"] == "truncated").any():
        return ["Lengths below are token counts *after* truncation to max_length (the untruncated length is not "
                "stored in the prediction files): the last bin holds every text cut at the cap, however long.", ""]
    return []


def _dataset_tables(t: pd.DataFrame, s: pd.DataFrame) -> list[str]:
    """One dataset's summary table, then its confirmatory and exploratory rows."""
    out = [_summary_table(s), ""]
    if (s.get("deterministic", pd.Series(dtype=bool)) == True).any():  # noqa: E712
        det = ", ".join(sorted(set(s.loc[s["deterministic"] == True, "model"])))  # noqa: E712
        out += [f"> {det}: every seed gave the same value — the model is deterministic given the split, so its "
                "seeds are one measurement repeated, not a sample; comparisons against it test the other model's "
                "seed-to-seed spread only.", ""]
    if t.empty:
        return out
    conf, expl = t[t["family"] == CONFIRMATORY], t[t["family"] == EXPLORATORY]
    if len(conf):
        out += ["Confirmatory (the claim):", "", _pair_table(conf), ""]
    if len(expl):
        out += ["Exploratory (everything else; Holm within this family; not verdicts):", "", _pair_table(expl), ""]
    if (t["n"] == 1).any():
        out += ["> Rows with a single paired seed are listed but not tested (no p-value, outside the Holm family).",
                ""]
    return out


def _dataset_plots(runs: pd.DataFrame, table: pd.DataFrame, lengths: pd.DataFrame, gaps: pd.DataFrame, dataset: str,
                   title: str, plots: Path, report_dir: Path) -> list[str]:
    """Draw one dataset's per-seed, forest, matched-gap and length-bin plots; their markdown image links."""
    dist, forest, bins = (plots / f"{dataset}_seeds.png", plots / f"{dataset}_forest.png",
                          plots / f"{dataset}_length.png")
    plot_seed_distributions(runs, dataset, dist, title)
    out = [f"![{title} per-seed results]({relative_link(dist, report_dir)})", ""]
    sub = table[(table["dataset"] == dataset) & table["metric"].isin(FOREST_METRICS) & (table["n"] >= 2)]
    if len(sub):
        plot_forest(table, dataset, forest, title)
        out += [f"![{title} paired differences]({relative_link(forest, report_dir)})", ""]
    conf = table[(table["dataset"] == dataset) & (table["family"] == CONFIRMATORY)]
    if len(conf):
        a, b = conf["model_a"].iloc[0], conf["model_b"].iloc[0]
        if ((gaps["dataset"] == dataset) & (gaps["model_a"] == a) & (gaps["model_b"] == b)).any():
            png = plots / f"{dataset}_gap_matched.png"
            plot_matched_gap(gaps, dataset, a, b, png, title)
            out += [f"![{title} overfitting gap at matched epochs]({relative_link(png, report_dir)})", ""]
    if (lengths["dataset"] == dataset).any():
        plot_length_bins(lengths, dataset, bins, title)
        out += [f"![{title} accuracy by input length]({relative_link(bins, report_dir)})", ""]
    return out


def statistics_section(run_dir: Path, report_dir: Path, table: pd.DataFrame) -> str:
    """The "Statistical comparison" markdown for REPORT.md, and its PNG plots.

    `table` is the run's comparisons (`compare.analyse(run_dir).comparisons`); model_summary.csv,
    length_bins.csv and gap_by_epoch.csv must already be in the folder (`compare.write_tables`).
    """
    folder = RunFolder(run_dir)
    runs = folder.read_runs(required=RUN_METRICS)
    summary = pd.read_csv(folder.model_summary_csv)
    lengths = pd.read_csv(folder.length_bins_csv)
    gaps = pd.read_csv(folder.gap_by_epoch_csv) if folder.gap_by_epoch_csv.is_file() else pd.DataFrame(
        columns=["dataset", "model_a", "model_b"])
    claim, _ = run_claim(run_dir)
    out = ["## Statistical comparison", "", claim_paragraph(run_dir, runs), "", method_paragraph(table), "",
           validation_note(table, claim), "", overfitting_paragraph(), ""]
    for dataset in _datasets(ok_runs(runs)):
        title = folder.dataset_title(dataset)
        out += [f"### {title}: statistics", ""]
        out += _dataset_tables(table[table["dataset"] == dataset], summary[summary["dataset"] == dataset])
        out += _dataset_plots(runs, table, lengths, gaps, dataset, title, folder.plots, report_dir)
        out += _length_note(lengths, dataset, folder.predictions.is_dir())
        out += [f"#### Verdict on {title} (confirmatory family)", "", *claim_lines(table, dataset), ""]
    return "\n".join(out)
