"""bench.stats against reference values: scipy on fixed arrays, textbook McNemar, hand-computed
effect sizes and Holm, deepsig 1.2.8's ASO, and one end-to-end run folder (bench.compare reads
and writes it, bench.stats only measures)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench import compare, stats, stats_report
from bench.compare import main as compare_main
from bench.results import RUN_COLUMNS, RunFolder, atomic_write_csv

A = np.array([0.861, 0.874, 0.869, 0.880, 0.858, 0.871, 0.866])
B = np.array([0.850, 0.866, 0.870, 0.861, 0.852, 0.8605, 0.859])


def test_paired_t_and_wilcoxon_match_scipy():
    res = stats.paired_comparison(A, B)
    t = sps.ttest_rel(A, B)
    w = sps.wilcoxon(A - B, method="exact")  # differences have no ties or zeros
    assert res["t_p"] == pytest.approx(t.pvalue, rel=1e-12)
    assert res["t_stat"] == pytest.approx(t.statistic, rel=1e-12)
    assert res["wilcoxon_p"] == pytest.approx(w.pvalue, rel=1e-12)
    assert res["wilcoxon_method"] == "exact"
    assert res["shapiro_p"] == pytest.approx(sps.shapiro(A - B).pvalue, rel=1e-12)
    assert res["primary_test"] == ("paired t" if res["shapiro_p"] >= 0.05 else "wilcoxon")
    lo, hi = sps.t.interval(0.95, len(A) - 1, loc=(A - B).mean(), scale=sps.sem(A - B))
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((lo, hi), rel=1e-12)
    assert res["wins_a"] == 6


def test_wilcoxon_all_positive_five_pairs_is_0_0625():
    assert stats.wilcoxon_test([0.01, 0.02, 0.03, 0.04, 0.05])[1] == pytest.approx(0.0625)


def test_wilcoxon_ties_use_exact_enumeration():
    d = [0.01, 0.01, 0.02, -0.01, 0.03]  # ranks 2,2,2,4,5; T- = 2; 8 of 32 sign patterns have T- <= 2
    _, p, method = stats.wilcoxon_test(d)
    assert method.startswith("exact")
    assert p == pytest.approx(0.25)


def test_non_normal_differences_make_wilcoxon_primary():
    b = np.zeros(8)
    a = np.array([0.001, 0.002, 0.001, 0.002, 0.001, 0.003, 0.002, 0.2])  # one huge outlier
    res = stats.paired_comparison(a, b)
    assert res["shapiro_p"] < 0.05
    assert res["primary_test"] == "wilcoxon"
    assert res["p_primary"] == res["wilcoxon_p"]


def test_mcnemar_textbook_chi_square():
    # Agresti, An Introduction to Categorical Data Analysis: approval ratings 794/150/86/570,
    # z² = (150 − 86)² / 236 = 17.36; with continuity correction (|150 − 86| − 1)² / 236 = 16.82.
    a = np.array([1] * 794 + [1] * 150 + [0] * 86 + [0] * 570, dtype=bool)
    b = np.array([1] * 794 + [0] * 150 + [1] * 86 + [0] * 570, dtype=bool)
    res = stats.mcnemar_test(a, b)
    assert res["method"].startswith("chi-square")
    assert res["statistic"] == pytest.approx(63 ** 2 / 236)
    assert res["p"] == pytest.approx(sps.chi2.sf(63 ** 2 / 236, 1))
    assert (res["n_a_only"], res["n_b_only"]) == (150, 86)


def test_mcnemar_exact_small_discordant():
    # 1 vs 9 discordant: two-sided binomial p = 2 · (1 + 10) / 2^10
    a = np.array([1] * 50 + [1] * 1 + [0] * 9 + [0] * 40, dtype=bool)
    b = np.array([1] * 50 + [0] * 1 + [1] * 9 + [0] * 40, dtype=bool)
    res = stats.mcnemar_test(a, b)
    assert res["method"] == "exact binomial"
    assert res["p"] == pytest.approx(22 / 1024)


def test_effect_sizes_by_hand():
    # d = [2, 1, 3, 3]: mean 2.25, sd sqrt(2.75 / 3)
    assert stats.cohens_dz([3, 5, 7, 9], [1, 4, 4, 6]) == pytest.approx(2.25 / math.sqrt(2.75 / 3))
    # pairs (a > b, a < b): 1→(0,3) 2→(0,1) 3→(2,1): (2 − 5) / 9
    assert stats.cliffs_delta([1, 2, 3], [2, 2, 4]) == pytest.approx(-1 / 3)
    assert stats.cliffs_delta([5, 6], [1, 2]) == 1.0


def test_holm_known_values():
    # sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 → 0.06 (monotone)
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005, float("nan")])
    np.testing.assert_allclose(adjusted[:4], [0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])


@pytest.mark.parametrize("a, b, expected", [
    # reference values from deepsig 1.2.8: aso(a, b, seed=1234, show_progress=False)
    ([0.90, 0.91, 0.92, 0.905, 0.915], [0.80, 0.81, 0.82, 0.805, 0.815], 0.0),
    ([0.8, 0.82, 0.81, 0.83, 0.79], [0.8, 0.82, 0.81, 0.83, 0.79], 1.0),
    ([0.85, 0.86, 0.84, 0.87, 0.83, 0.855], [0.84, 0.85, 0.86, 0.83, 0.82, 0.845], 0.4079959920009104),
])
def test_aso_matches_deepsig(a, b, expected):
    assert stats.aso_epsilon(a, b, seed=1234) == pytest.approx(expected, abs=1e-12)


def test_aso_bonferroni_matches_deepsig():
    a, b = [0.85, 0.86, 0.84, 0.87, 0.83, 0.855], [0.84, 0.85, 0.86, 0.83, 0.82, 0.845]
    # deepsig 1.2.8: aso(a, b, seed=1234, num_comparisons=3, show_progress=False)
    assert stats.aso_epsilon(a, b, seed=1234, num_comparisons=3) == pytest.approx(0.45489143156856554, abs=1e-12)


def test_aso_reversed_dominance_and_reading():
    good, bad = [0.90, 0.91, 0.92, 0.905, 0.915], [0.80, 0.81, 0.82, 0.805, 0.815]
    # deepsig 1.2.8 gives 0.995656264119509 too (its violation integral skips the first grid point)
    assert stats.aso_epsilon(bad, good, seed=1234) == pytest.approx(0.995656264119509, abs=1e-12)
    assert stats.aso_reading(0.1, "a", "b") == "a strongly dominates b"
    assert stats.aso_reading(0.3, "a", "b") == "a almost dominates b"
    assert stats.aso_reading(0.7, "a", "b") == "no dominance of a over b"


def test_wilcoxon_minimum_p_warning():
    assert stats.wilcoxon_min_p(5) == 0.0625
    assert stats.wilcoxon_min_p(5) == pytest.approx(sps.wilcoxon(np.arange(1, 6), method="exact").pvalue)
    assert stats.seeds_needed(0.05) == 6
    assert "0.0625" in stats.seed_warning(5) and "6" in stats.seed_warning(5)
    assert stats.seed_warning(6) is None


def test_mean_ci_methods():
    lo, hi, method = stats.mean_ci([0.81, 0.83, 0.80, 0.84, 0.82])
    assert method == "bootstrap BCa" and lo < 0.82 < hi
    assert stats.mean_ci([0.81, 0.83, 0.80, 0.84, 0.82]) == (lo, hi, method)  # fixed seed: reproducible
    lo2, hi2, method2 = stats.mean_ci([0.81, 0.83])
    assert method2 == "t"
    assert (lo2, hi2) == pytest.approx(sps.t.interval(0.95, 1, loc=0.82, scale=sps.sem([0.81, 0.83])))
    assert stats.mean_ci([0.8, 0.8, 0.8]) == (pytest.approx(0.8), pytest.approx(0.8), "t")


def test_length_bins():
    edges = stats.length_bin_edges(np.arange(1, 9), 4)
    np.testing.assert_allclose(edges, [1, 2.75, 4.5, 6.25, 8])
    np.testing.assert_array_equal(stats.assign_length_bins(np.arange(1, 9), edges), [0, 0, 1, 1, 2, 2, 3, 3])
    # truncated texts: the 50/75/100% quantiles are all 10 and merge; 25% = 6 + 0.75 · (10 − 6) = 9
    tied = stats.length_bin_edges([5, 6, 10, 10, 10, 10, 10, 10], 4)
    np.testing.assert_allclose(tied, [5, 9, 10])
    np.testing.assert_array_equal(stats.assign_length_bins([5, 6, 10], tied), [0, 0, 1])


# ---------------------------------------------------------------- end to end

MODEL_SKILL = {"rnn": 0.70, "attn_rnn": 0.80, "transformer": 0.78}
SEEDS = [0, 1, 2, 3, 4]


def make_run(run_dir: Path, n_test: int = 300) -> tuple[pd.DataFrame, dict[tuple[str, str, int], pd.DataFrame]]:
    """A tiny run folder in the real layout (no config.json: no reference model), and the runs table
    and predictions it holds; accuracy falls with length for rnn only. Metrics are rounded to 6
    decimals so that runs.csv stores them exactly."""
    folder = RunFolder(run_dir)
    predictions = {}
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, n_test)
    lengths = rng.integers(5, 200, n_test)
    rows = []
    for seed in SEEDS:
        for model, skill in MODEL_SKILL.items():
            r = np.random.default_rng(100 * seed + len(model))
            p_right = skill - (0.15 * (lengths > 120) if model == "rnn" else 0)
            right = r.random(n_test) < p_right
            pred = np.where(right, labels, 1 - labels)
            prob1 = np.round(np.where(pred == 1, 0.8, 0.2), 5)
            frame = pd.DataFrame({"row": np.arange(n_test), "label": labels, "pred": pred, "length": lengths,
                                  "prob_0": np.round(1 - prob1, 5), "prob_1": prob1})
            atomic_write_csv(folder.predictions_path("imdb", model, seed), frame)
            predictions[("imdb", model, seed)] = frame
            test_acc = round(float(right.mean()), 6)
            gap = round({"rnn": 0.08, "attn_rnn": 0.05, "transformer": 0.06}[model] + r.normal(0, 0.01), 6)
            val = round(skill + r.normal(0, 0.01), 6)
            rows.append({"dataset": "imdb", "model": model, "seed": seed, "status": "ok", "reason": "",
                         "params": 1000, "best_epoch": 2, "epochs_run": 3, "best_val_acc": val,
                         "best_val_loss": 0.4, "test_acc": test_acc, "test_loss": 0.4, "train_acc": round(val + gap, 6),
                         "train_eval_acc": round(val + gap, 6), "gap_acc": gap, "gap_loss": 0.1, "train_seconds": 1.0,
                         "wall_seconds": 1.2, "train_tokens_per_s": 1e4, "device": "cpu", "config_hash": "x",
                         "git_sha": "y"})
    rows.append({**rows[0], "model": "transformer", "seed": 9, "status": "failed", "reason": "diverged",
                 "test_acc": float("nan")})
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    atomic_write_csv(folder.runs_csv, runs)
    folder.environment_json.write_text(json.dumps({"device": "cpu"}))
    folder.datasets_json.write_text(json.dumps({"imdb": {"train": 10, "val": 2, "test": n_test}}))
    return runs, predictions


def folder_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_compare_and_section_end_to_end(tmp_path, capsys):
    run_dir = tmp_path / "results" / "tiny"
    runs, _ = make_run(run_dir)
    assert compare_main([str(run_dir)]) == 0  # the CLI: computes, writes the CSVs, prints the table
    out = capsys.readouterr().out
    assert "attn_rnn - rnn" in out and "warning:" in out
    for name in ("comparisons.csv", "model_summary.csv", "length_bins.csv", "length_bins_by_seed.csv"):
        assert (run_dir / name).is_file()
    table = pd.read_csv(run_dir / "comparisons.csv")
    assert list(table.columns) == stats.COMPARISON_COLUMNS
    assert len(table) == 3 * 3  # three pairs × three metrics
    assert set(zip(table["model_a"], table["model_b"])) == {
        ("attn_rnn", "rnn"), ("transformer", "rnn"), ("transformer", "attn_rnn")}
    assert (table["p_holm"] >= table["p_primary"] - 1e-12).all()
    assert (table["n"] == 5).all()

    row = table[(table["metric"] == "test_acc") & (table["model_a"] == "attn_rnn")].iloc[0]
    pv = stats.paired_values(pd.read_csv(run_dir / "runs.csv"), "imdb", "test_acc", "attn_rnn", "rnn")
    assert row["mean_diff"] == pytest.approx((pv["a"] - pv["b"]).mean(), rel=1e-5)
    assert row["t_p"] == pytest.approx(sps.ttest_rel(pv["a"], pv["b"]).pvalue, rel=1e-5)
    assert row["mcnemar_seeds"] == 5 and row["mcnemar_sig_a_better"] >= 3
    assert table.loc[table["metric"] == "gap_acc", "mcnemar_seeds"].isna().all()

    summary = pd.read_csv(run_dir / "model_summary.csv")
    assert list(summary.columns) == stats.SUMMARY_COLUMNS
    tr = summary[(summary["model"] == "transformer") & (summary["metric"] == "test_acc")].iloc[0]
    assert tr["n"] == 5  # the failed seed is left out
    ok = runs[(runs["model"] == "transformer") & (runs["status"] == "ok")]["test_acc"]
    assert tr["mean"] == pytest.approx(ok.mean(), rel=1e-5) and tr["ci_low"] <= tr["mean"] <= tr["ci_high"]

    bins = pd.read_csv(run_dir / "length_bins.csv")
    assert list(bins.columns) == stats.LENGTH_COLUMNS
    assert bins["bin"].nunique() == 4 and (bins["n_seeds"] == 5).all()
    assert (bins.groupby("model")["n_examples"].sum() == 300).all()  # same edges, every example in one bin

    tables = compare.analyse(run_dir)
    md = stats_report.statistics_section(run_dir, tmp_path, tables.comparisons)
    assert md.startswith("## Statistical comparison")
    assert "| model | metric | seeds |" in md and "| A − B | metric | n |" in md
    assert "cannot go below p = 0.0625" in md and "at least 6 seeds" in md
    assert "Attention lifts test accuracy" in md and "Attention reduces overfitting" in md
    pngs = {}
    for png in ("imdb_seeds.png", "imdb_forest.png", "imdb_length.png"):
        pngs[png] = (run_dir / "plots" / png).read_bytes()
        assert f"](results/tiny/plots/{png})" in md
    assert stats_report.statistics_section(run_dir, tmp_path, tables.comparisons) == md  # deterministic, plots too
    assert all((run_dir / "plots" / png).read_bytes() == data for png, data in pngs.items())


def test_a_model_with_one_seed_is_listed_but_not_tested(tmp_path):
    """One pair has no test (its Wilcoxon p would be 1 whatever the data): no p-value, outside
    the Holm family, so it neither dilutes the other comparisons nor triggers the seed warning."""
    run_dir = tmp_path / "results" / "tiny"
    runs, _ = make_run(run_dir)
    runs = runs[(runs["model"] != "transformer") | (runs["seed"] == SEEDS[0])]
    atomic_write_csv(run_dir / "runs.csv", runs)
    tables = compare.analyse(run_dir)
    compare.write_tables(run_dir, tables)
    table = tables.comparisons
    single = table[table["model_a"] == "transformer"]
    assert len(single) == 2 * 3 and (single["n"] == 1).all()
    assert single["p_primary"].isna().all() and single["p_holm"].isna().all()
    assert (single["primary_test"] == "none (n < 2)").all()
    tested = table[table["model_a"] == "attn_rnn"]
    assert tested["p_holm"].to_numpy() == pytest.approx(stats.holm(tested["p_primary"]))  # a family of 3
    md = stats_report.statistics_section(run_dir, tmp_path, table)
    assert "With 1 paired seeds" not in md and "With 5 paired seeds" in md
    assert "not tested (no p-value, outside the Holm family)" in md


def test_compare_cli_bad_folder(tmp_path, capsys):
    assert compare_main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert compare_main([str(tmp_path)]) == 2


def test_stats_measure_in_memory_as_compare_reads_the_folder(tmp_path):
    """stats.compare needs no files: an in-memory runs table and a loader give the numbers that
    compare.analyse reads from the folder, and analyse leaves the folder as it was."""
    run_dir = tmp_path / "results" / "tiny"
    runs, predictions = make_run(run_dir)
    before = folder_files(tmp_path)
    from_folder = compare.analyse(run_dir)
    assert folder_files(tmp_path) == before  # measuring writes nothing

    loads = []

    def loader(dataset: str, model: str, seed: int) -> pd.DataFrame | None:
        loads.append((dataset, model, seed))
        return predictions.get((dataset, model, seed))

    in_memory = stats.compare(runs, loader)
    assert loads and all(isinstance(seed, int) for _, _, seed in loads)
    assert ("imdb", "transformer", 9) not in loads  # a failed unit's predictions are never asked for
    for name in ("comparisons", "model_summary", "length_bins", "length_bins_by_seed"):
        pd.testing.assert_frame_equal(getattr(in_memory, name), getattr(from_folder, name), check_exact=True)
    row = in_memory.comparisons.query("metric == 'test_acc' and model_a == 'attn_rnn'").iloc[0]
    pv = stats.paired_values(runs, "imdb", "test_acc", "attn_rnn", "rnn")
    assert row["t_p"] == sps.ttest_rel(pv["a"], pv["b"]).pvalue
    assert row["mcnemar_seeds"] == 5

    # a reference model (an ablation) keeps only the pairs against it, as config.json's reference does
    ablation = stats.compare(runs, loader, reference="rnn").comparisons
    assert set(zip(ablation["model_a"], ablation["model_b"])) == {("attn_rnn", "rnn"), ("transformer", "rnn")}
    # without predictions there is nothing per example: no McNemar, no length bins
    none = stats.compare(runs, lambda d, m, s: None)
    assert none.comparisons["mcnemar_seeds"].eq(0).all() and none.length_bins.empty
