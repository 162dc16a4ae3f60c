"""bench.paired and bench.stats against reference values: scipy / statsmodels on fixed arrays, brute-force
enumeration, textbook McNemar, hand-computed effect sizes and Holm, deepsig 1.2.8's ASO; the two families
and the matched-epoch gap on a tiny run folder (bench.compare reads and writes it, bench.stats only measures)."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from bench import compare, paired, stats, stats_report
from bench.compare import main as compare_main
from bench.config import ClaimConfig
from bench.results import (EPOCH_COLUMNS, RUN_COLUMNS, EpochRecord, RunFolder, RunRecord, UnitRecord, atomic_write_csv,
                           atomic_write_json)

EPOCH_FIELDS = [f for f in EPOCH_COLUMNS if f not in ("dataset", "model", "seed")]

A = np.array([0.861, 0.874, 0.869, 0.880, 0.858, 0.871, 0.866])
B = np.array([0.850, 0.866, 0.870, 0.861, 0.852, 0.8605, 0.859])


# ---------------------------------------------------------------- one pair


def test_primary_paired_t_and_sensitivity_checks_match_scipy():
    res = paired.paired_comparison(A, B)
    t = sps.ttest_rel(A, B)
    assert res["t_p"] == pytest.approx(t.pvalue, rel=1e-12) and res["t_stat"] == pytest.approx(t.statistic, rel=1e-12)
    lo, hi = sps.t.interval(0.95, len(A) - 1, loc=(A - B).mean(), scale=sps.sem(A - B))
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((lo, hi), rel=1e-12)
    w = sps.wilcoxon(A - B, method="exact")  # differences have no ties or zeros
    assert res["wilcoxon_p"] == pytest.approx(w.pvalue, rel=1e-12) and res["wilcoxon_method"] == "exact"
    assert res["wins_a"] == 6 and "shapiro_p" not in res and "primary_test" not in res


def test_sign_flip_test_is_exact_enumeration():
    d = np.round(A - B, 12)
    flips = np.array(list(itertools.product([1, -1], repeat=len(d))))
    null = np.abs((flips * d).mean(axis=1))
    expected = np.mean(null >= abs(d.mean()) - 1e-12)
    assert paired.sign_flip_test(d) == pytest.approx(expected, abs=1e-12)
    assert paired.sign_flip_test([0.01] * 5) == pytest.approx(2 / 32)  # the floor 2/2^n
    assert paired.sign_flip_test([0.0, 0.0, 0.0]) == 1.0 and math.isnan(paired.sign_flip_test([0.1]))


def test_non_normal_differences_never_switch_the_primary_test():
    b = np.zeros(8)
    a = np.array([0.001, 0.002, 0.001, 0.002, 0.001, 0.003, 0.002, 0.2])  # one huge outlier
    res = paired.paired_comparison(a, b)
    assert sps.shapiro(a - b).pvalue < 0.05  # a pre-test would have switched to Wilcoxon
    assert res["t_p"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert res["wilcoxon_p"] < res["t_p"]  # shown beside it, but the verdict uses t_p


def test_wilcoxon_floor_and_ties():
    assert paired.wilcoxon_test([0.01, 0.02, 0.03, 0.04, 0.05])[1] == pytest.approx(0.0625)
    _, p, method = paired.wilcoxon_test([0.01, 0.01, 0.02, -0.01, 0.03])  # 8 of 32 sign patterns have T- <= 2
    assert method.startswith("exact") and p == pytest.approx(0.25)
    assert paired.wilcoxon_min_p(5) == pytest.approx(sps.wilcoxon(np.arange(1, 6), method="exact").pvalue)


def test_mcnemar_textbook_chi_square_and_exact():
    # Agresti: 794/150/86/570; with continuity correction (|150 − 86| − 1)² / 236
    a = np.array([1] * 794 + [1] * 150 + [0] * 86 + [0] * 570, dtype=bool)
    b = np.array([1] * 794 + [0] * 150 + [1] * 86 + [0] * 570, dtype=bool)
    res = stats.mcnemar_test(a, b)
    assert res["method"].startswith("chi-square") and res["statistic"] == pytest.approx(63 ** 2 / 236)
    assert res["p"] == pytest.approx(sps.chi2.sf(63 ** 2 / 236, 1)) and (res["n_a_only"], res["n_b_only"]) == (150, 86)
    a = np.array([1] * 50 + [1] * 1 + [0] * 9 + [0] * 40, dtype=bool)  # 1 vs 9 discordant: 2 · 11 / 2^10
    b = np.array([1] * 50 + [0] * 1 + [1] * 9 + [0] * 40, dtype=bool)
    assert stats.mcnemar_test(a, b)["p"] == pytest.approx(22 / 1024)


def test_effect_sizes_and_holm_by_hand():
    assert paired.cohens_dz([3, 5, 7, 9], [1, 4, 4, 6]) == pytest.approx(2.25 / math.sqrt(2.75 / 3))
    assert paired.cliffs_delta([1, 2, 3], [2, 2, 4]) == pytest.approx(-1 / 3)
    adjusted = paired.holm([0.01, 0.04, 0.03, 0.005, float("nan")])
    np.testing.assert_allclose(adjusted[:4], [0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])


@pytest.mark.parametrize("a, b, expected", [
    # reference values from deepsig 1.2.8: aso(a, b, seed=1234, show_progress=False)
    ([0.90, 0.91, 0.92, 0.905, 0.915], [0.80, 0.81, 0.82, 0.805, 0.815], 0.0),
    ([0.8, 0.82, 0.81, 0.83, 0.79], [0.8, 0.82, 0.81, 0.83, 0.79], 1.0),
    ([0.85, 0.86, 0.84, 0.87, 0.83, 0.855], [0.84, 0.85, 0.86, 0.83, 0.82, 0.845], 0.4079959920009104),
])
def test_aso_matches_deepsig(a, b, expected):
    assert paired.aso_epsilon(a, b, seed=1234) == pytest.approx(expected, abs=1e-12)


def test_aso_bonferroni_reverse_and_reading():
    a, b = [0.85, 0.86, 0.84, 0.87, 0.83, 0.855], [0.84, 0.85, 0.86, 0.83, 0.82, 0.845]
    assert paired.aso_epsilon(a, b, seed=1234, num_comparisons=3) == pytest.approx(0.45489143156856554, abs=1e-12)
    good, bad = [0.90, 0.91, 0.92, 0.905, 0.915], [0.80, 0.81, 0.82, 0.805, 0.815]
    assert paired.aso_epsilon(bad, good, seed=1234) == pytest.approx(0.995656264119509, abs=1e-12)
    assert paired.aso_reading(0.1, "a", "b") == "a strongly dominates b"
    assert paired.aso_reading(0.3, "a", "b") == "a almost dominates b"
    assert paired.aso_reading(0.97, "a", "b") == "no evidence that a dominates b"  # not "b dominates a"


def test_per_model_intervals_are_t_below_ten_seeds_with_bca_beside_from_ten():
    x = [0.81, 0.83, 0.80, 0.84, 0.82]
    d = paired.describe(x)
    assert d["ci_method"] == "t" and math.isnan(d["bca_low"])
    assert (d["ci_low"], d["ci_high"]) == pytest.approx(sps.t.interval(0.95, 4, loc=np.mean(x), scale=sps.sem(x)))
    ten = np.linspace(0.80, 0.84, 10) + np.array([0, 1, -1, 2, 0, -2, 1, 0, 3, -1]) * 1e-3
    d10 = paired.describe(ten)
    ref = sps.bootstrap((ten,), np.mean, method="BCa", rng=np.random.default_rng(paired.BOOTSTRAP_SEED))
    assert (d10["bca_low"], d10["bca_high"]) == pytest.approx((ref.confidence_interval.low,
                                                               ref.confidence_interval.high))
    assert paired.describe([0.8, 0.8, 0.8])["deterministic"] and not d["deterministic"]


def test_probability_of_outperforming_and_its_reading():
    a, b = np.array([1, 2, 3, 4, 5.0]), np.array([0, 3, 2, 3, 5.0])  # wins, loss, win, win, tie
    p, lo, hi = paired.probability_better(a, b)
    assert p == pytest.approx(3.5 / 5) and lo <= p <= hi
    ref = sps.bootstrap((np.array([1, 0, 1, 1, 0.5]),), np.mean, method="percentile",
                        rng=np.random.default_rng(paired.BOOTSTRAP_SEED))
    assert (lo, hi) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
    assert paired.probability_better(a, b, higher_is_better=False)[0] == pytest.approx(1.5 / 5)
    assert paired.probability_reading(0.9, 0.6, 1.0, 20, "x", "y") == "x better (meaningful: P > 0.75)"
    assert paired.probability_reading(0.7, 0.55, 0.85, 20, "x", "y").startswith("x better but not meaningfully")
    assert paired.probability_reading(0.1, 0.0, 0.3, 20, "x", "y") == "y better (meaningful: P < 0.25)"
    assert paired.probability_reading(0.6, 0.3, 0.9, 5, "x", "y").endswith("too few for a reliable bootstrap CI")


def test_power_matches_statsmodels():
    for effect, sd in ((0.007, 0.005), (0.005, 0.004), (0.002, 0.006)):
        n = paired.seeds_for_power(effect, sd, alpha=0.05)
        assert n == math.ceil(TTestPower().solve_power(effect_size=effect / sd, alpha=0.05, power=0.8))
    assert paired.seeds_for_power(0.0, 0.01) == math.inf
    res = paired.paired_comparison(A, B, family_size=4)
    es = abs((A - B).mean()) / (A - B).std(ddof=1)
    assert res["seeds_80_observed"] == math.ceil(TTestPower().solve_power(effect_size=es, alpha=0.05 / 4, power=0.8))
    assert res["underpowered"] == (len(A) < res["seeds_80_observed"])


def test_sd_interval_is_the_chi_square_interval():
    x = np.array([0.1, 0.3, 0.2, 0.5, 0.4])
    s2, n = x.var(ddof=1), len(x)
    lo, hi = paired.sd_interval(x)
    assert lo == pytest.approx(math.sqrt((n - 1) * s2 / sps.chi2.ppf(0.975, n - 1)))
    assert hi == pytest.approx(math.sqrt((n - 1) * s2 / sps.chi2.ppf(0.025, n - 1)))


def test_length_bins_and_a_collapsed_dataset_is_skipped():
    edges = stats.length_bin_edges(np.arange(1, 9), 4)
    np.testing.assert_allclose(edges, [1, 2.75, 4.5, 6.25, 8])
    np.testing.assert_array_equal(stats.assign_length_bins(np.arange(1, 9), edges), [0, 0, 1, 1, 2, 2, 3, 3])
    tied = stats.length_bin_edges([5, 6, 10, 10, 10, 10, 10, 10], 4)
    np.testing.assert_allclose(tied, [5, 9, 10])
    runs = pd.DataFrame({"dataset": ["imdb"], "model": ["rnn"], "seed": [0], "status": ["ok"]})
    cut = pd.DataFrame({"row": range(8), "label": 0, "pred": 0, "length": [3, 128, 128, 128, 128, 128, 128, 128]})
    assert stats.accuracy_by_length(runs, lambda d, m, s: cut).empty  # one bin: nothing to compare
    full = cut.assign(full_length=[3, 130, 200, 300, 400, 500, 600, 700])
    per_seed = stats.accuracy_by_length(runs, lambda d, m, s: full)
    assert per_seed["bin"].nunique() == 4 and (per_seed["length_kind"] == "untruncated").all()


# ---------------------------------------------------------------- a run folder

MODEL_SKILL = {"rnn": 0.70, "attn_rnn": 0.80, "transformer": 0.78}
SEEDS = [0, 1, 2, 3, 4]


def make_run(run_dir: Path, n_test: int = 300, models: dict[str, float] = MODEL_SKILL,
             claim: bool = False) -> tuple[pd.DataFrame, dict[tuple[str, str, int], pd.DataFrame]]:
    """A tiny run folder in the real layout (config.json only when `claim`), and the runs table and
    predictions it holds; accuracy falls with length for rnn only; attn_rnn stops after 2 of 3 epochs
    and its gap grows faster per epoch. Metrics are rounded to 6 decimals so that the CSVs store them exactly."""
    folder = RunFolder(run_dir)
    predictions = {}
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, n_test)
    lengths = rng.integers(5, 200, n_test)
    rows, epoch_rows = [], []
    for seed in SEEDS:
        for model, skill in models.items():
            r = np.random.default_rng(100 * seed + len(model))
            p_right = skill - (0.15 * (lengths > 120) if model == "rnn" else 0)
            right = r.random(n_test) < p_right
            pred = np.where(right, labels, 1 - labels)
            prob1 = np.round(np.where(pred == 1, 0.8, 0.2), 5)
            frame = pd.DataFrame({"row": np.arange(n_test), "label": labels, "pred": pred, "length": lengths,
                                  "prob_0": np.round(1 - prob1, 5), "prob_1": prob1})
            atomic_write_csv(folder.predictions_path("imdb", model, seed), frame)
            predictions[("imdb", model, seed)] = frame
            n_epochs = 2 if model == "attn_rnn" else 3
            slope = {"rnn": 0.03, "attn_rnn": 0.04}.get(model, 0.035)
            gaps = [round(slope * e + r.normal(0, 0.003), 6) for e in range(1, n_epochs + 1)]
            for e, g in enumerate(gaps, start=1):
                epoch_rows.append({"dataset": "imdb", "model": model, "seed": seed, "epoch": e, "gap_acc": g})
            val = round(skill + r.normal(0, 0.01), 6)
            rows.append({"dataset": "imdb", "model": model, "seed": seed, "status": "ok", "reason": "",
                         "params": 1000, "best_epoch": n_epochs, "epochs_run": n_epochs, "best_val_acc": val,
                         "best_val_loss": 0.4, "test_acc": round(float(right.mean()), 6), "test_loss": 0.4,
                         "train_acc": round(val + gaps[-1], 6), "train_eval_acc": round(val + gaps[-1], 6),
                         "gap_acc": gaps[-1], "gap_loss": 0.1, "train_seconds": 1.0, "wall_seconds": 1.2,
                         "train_tokens_per_s": 1e4, "device": "cpu", "config_hash": "x", "git_sha": "y"})
    rows.append({**rows[0], "model": "transformer", "seed": 9, "status": "failed", "reason": "diverged",
                 "test_acc": float("nan")})
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    atomic_write_csv(folder.runs_csv, runs)
    atomic_write_csv(folder.epochs_csv, pd.DataFrame(epoch_rows).reindex(columns=EPOCH_COLUMNS))
    for row in rows:  # the unit records the tables are checked against (bench.compare / bench.report)
        run = RunRecord(**{k: v for k, v in row.items() if not (isinstance(v, float) and np.isnan(v))})
        epochs = [EpochRecord(**{f: e.get(f, float("nan")) for f in EPOCH_FIELDS}) for e in epoch_rows
                  if (e["model"], e["seed"]) == (run.model, run.seed)]
        folder.save_unit(UnitRecord(run=run, epochs=epochs))
    folder.environment_json.write_text(json.dumps({"device": "cpu"}))
    folder.datasets_json.write_text(json.dumps({"imdb": {"train": 10, "val": 2, "test": n_test}}))
    if claim:
        from bench import config

        cfg = config.from_dict({"models": list(models), "datasets": ["imdb"], "seeds": SEEDS,
                                "model": {m: {"pooling": "attention" if m == "attn_rnn" else ""} for m in models},
                                "claim": {"metrics": {"test_acc": "higher", "gap_matched": "lower"}}})
        atomic_write_json(folder.config_json, cfg.to_dict())
    return runs, predictions


def folder_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_compare_and_section_end_to_end(tmp_path, capsys):
    run_dir = tmp_path / "results" / "tiny"
    runs, _ = make_run(run_dir)
    assert compare_main([str(run_dir)]) == 0  # the CLI: computes, writes the CSVs, prints the table
    out = capsys.readouterr().out
    assert "the default claim" in out and "CONF" in out and "attn_rnn - rnn" in out
    for name in ("comparisons.csv", "model_summary.csv", "length_bins.csv", "length_bins_by_seed.csv",
                 "gap_by_epoch.csv"):
        assert (run_dir / name).is_file()
    table = pd.read_csv(run_dir / "comparisons.csv")
    assert list(table.columns) == stats.COMPARISON_COLUMNS
    conf = table[table["family"] == "confirmatory"]
    assert list(zip(conf["metric"], conf["model_a"], conf["model_b"])) == [
        ("test_acc", "attn_rnn", "rnn"), ("gap_matched", "attn_rnn", "rnn")]
    assert (conf["family_size"] == 2).all()
    # Holm within the family
    np.testing.assert_allclose(conf["p_holm"], multipletests(conf["t_p"], method="holm")[1], rtol=1e-5)
    expl = table[table["family"] == "exploratory"]
    assert len(expl) == 3 * len(stats.METRICS) - 2  # three pairs × every metric, minus the claim's two rows
    np.testing.assert_allclose(expl["p_holm"], multipletests(expl["t_p"], method="holm")[1], rtol=1e-5)
    assert set(expl["verdict"]) <= {"no difference shown", "attn_rnn better", "rnn better", "transformer better"}

    row = conf[conf["metric"] == "test_acc"].iloc[0]
    pv = stats.paired_values(pd.read_csv(run_dir / "runs.csv"), "imdb", "test_acc", "attn_rnn", "rnn")
    assert row["mean_diff"] == pytest.approx((pv["a"] - pv["b"]).mean(), rel=1e-5)
    assert row["t_p"] == pytest.approx(sps.ttest_rel(pv["a"], pv["b"]).pvalue, rel=1e-5)
    assert row["mcnemar_seeds"] == 5 and row["mcnemar_sig_a_better"] >= 3
    assert row["positive_favours"] == "attn_rnn" and row["better_when"] == "higher"

    summary = pd.read_csv(run_dir / "model_summary.csv")
    assert list(summary.columns) == stats.SUMMARY_COLUMNS
    tr = summary[(summary["model"] == "transformer") & (summary["metric"] == "test_acc")].iloc[0]
    assert tr["n"] == 5 and tr["ci_method"] == "t"  # the failed seed is left out
    bins = pd.read_csv(run_dir / "length_bins.csv")
    assert bins["bin"].nunique() == 4 and (bins["n_seeds"] == 5).all() and (bins["length_kind"] == "truncated").all()

    tables = compare.analyse(run_dir)
    md = stats_report.statistics_section(run_dir, tmp_path, tables.comparisons)
    assert md.startswith("## Statistical comparison")
    assert "This run stored no claim" in md and "One primary test, fixed in advance" in md
    assert "Confirmatory (the claim):" in md and "Exploratory (everything else" in md
    assert "attn_rnn has higher test accuracy than rnn" in md and "attn_rnn overfits less than rnn" in md
    assert "Power: sd of the paired differences" in md and "(− favours A)" in md and "(+ favours A)" in md
    assert "Test accuracy is the headline" in md and "Overfitting, without the stopping confound" in md
    assert "count *after* truncation" in md or "*after* truncation" in md
    pngs = {}
    for png in ("imdb_seeds.png", "imdb_forest.png", "imdb_gap_matched.png", "imdb_length.png"):
        pngs[png] = (run_dir / "plots" / png).read_bytes()
        assert f"](results/tiny/plots/{png})" in md
    assert stats_report.statistics_section(run_dir, tmp_path, tables.comparisons) == md  # deterministic, plots too
    assert all((run_dir / "plots" / png).read_bytes() == data for png, data in pngs.items())


def test_matched_epoch_gap_by_hand(tmp_path):
    """attn_rnn stops after 2 epochs, rnn runs 3: matched = each seed's mean over epochs 1–2; the common
    epoch is 2; the selected-epoch gap compares attn_rnn's epoch 2 with rnn's epoch 3."""
    run_dir = tmp_path / "run"
    runs, _ = make_run(run_dir)
    epochs = pd.read_csv(run_dir / "epochs.csv")
    tables = stats.compare(runs, lambda d, m, s: None, epochs=epochs)
    t = tables.comparisons
    wide = epochs.pivot_table(index=["seed", "epoch"], columns="model", values="gap_acc")
    first_two = wide[wide.index.get_level_values("epoch") <= 2]
    a = first_two["attn_rnn"].groupby("seed").mean().to_numpy()
    b = first_two["rnn"].groupby("seed").mean().to_numpy()
    row = t[(t["metric"] == "gap_matched") & (t["model_a"] == "attn_rnn")].iloc[0]
    assert row["mean_diff"] == pytest.approx((a - b).mean())
    assert row["t_p"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert row["mean_diff"] > 0 and row["verdict"] != "supported"  # attention's gap is larger at matched epochs
    common = t[(t["metric"] == "gap_common") & (t["model_a"] == "attn_rnn")].iloc[0]
    assert common["at_epoch"] == 2
    at2 = wide.xs(2, level="epoch")
    assert common["mean_diff"] == pytest.approx((at2["attn_rnn"] - at2["rnn"]).mean())
    selected = t[(t["metric"] == "gap_acc") & (t["model_a"] == "attn_rnn")].iloc[0]
    assert selected["mean_diff"] < 0  # the stopping confound: at the selected epochs attention looks better
    per_epoch = tables.gap_by_epoch
    e1 = per_epoch[(per_epoch["model_a"] == "attn_rnn") & (per_epoch["epoch"] == 1)].iloc[0]
    d1 = (wide.xs(1, level="epoch")["attn_rnn"] - wide.xs(1, level="epoch")["rnn"]).to_numpy()
    assert e1["n"] == 5 and (e1["ci_low"], e1["ci_high"]) == pytest.approx(paired.t_interval(d1))
    assert set(per_epoch.loc[per_epoch["model_a"] == "attn_rnn", "epoch"]) == {1, 2}


def test_the_confirmatory_family_does_not_grow_when_models_are_added(tmp_path):
    small_runs, _ = make_run(tmp_path / "small", models={"rnn": 0.7, "attn_rnn": 0.8})
    big_runs, big_preds = make_run(tmp_path / "big", models={"rnn": 0.7, "attn_rnn": 0.8, "transformer": 0.78,
                                                              "lstm": 0.72, "rnn_max": 0.71})
    small = stats.compare(small_runs, lambda d, m, s: None, epochs=pd.read_csv(tmp_path / "small" / "epochs.csv"))
    big = stats.compare(big_runs, lambda d, m, s: None, epochs=pd.read_csv(tmp_path / "big" / "epochs.csv"))
    cols = ["metric", "n", "mean_diff", "t_p", "family_size", "p_holm", "verdict"]
    conf = lambda t: t.comparisons[t.comparisons["family"] == "confirmatory"][cols].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(conf(small), conf(big))  # same rows, same Holm p, same verdicts
    assert (conf(big)["family_size"] == 2).all()
    assert len(big.comparisons) > 3 * len(small.comparisons)  # the exploratory family grew instead
    ablation = stats.compare(big_runs, lambda d, m, s: None, reference="rnn",
                             epochs=pd.read_csv(tmp_path / "big" / "epochs.csv"))
    pd.testing.assert_frame_equal(conf(small), conf(ablation))  # and under a reference model too


def test_a_declared_claim_is_used_and_a_custom_claim_changes_the_family(tmp_path):
    run_dir = tmp_path / "run"
    runs, _ = make_run(run_dir, claim=True)
    tables = compare.analyse(run_dir)
    assert tables.claim_declared and tables.claim.metrics == {"test_acc": "higher", "gap_matched": "lower"}
    md = stats_report.claim_paragraph(run_dir, runs)
    assert "declared in the run's `config.json`" in md and "the unit records carry no claim hash" in md
    custom = ClaimConfig(model_a="transformer", model_b="rnn", metrics={"test_acc": "higher"}, alpha=0.01)
    t = stats.compare(runs, lambda d, m, s: None, claim=custom).comparisons
    conf = t[t["family"] == "confirmatory"]
    assert list(zip(conf["model_a"], conf["metric"])) == [("transformer", "test_acc")] and (conf["alpha"] == 0.01).all()
    assert not ((t["family"] == "exploratory") & (t["model_a"] == "transformer") & (t["model_b"] == "rnn")
                & (t["metric"] == "test_acc")).any()  # the claim's row is not tested twice


def test_a_model_with_one_seed_is_listed_but_not_tested(tmp_path):
    run_dir = tmp_path / "results" / "tiny"
    runs, _ = make_run(run_dir)
    runs = runs[(runs["model"] != "transformer") | (runs["seed"] == SEEDS[0])]
    atomic_write_csv(run_dir / "runs.csv", runs)
    tables = compare.analyse(run_dir)
    compare.write_tables(run_dir, tables)
    table = tables.comparisons
    single = table[table["model_a"] == "transformer"]
    assert len(single) and (single["n"] == 1).all() and single["t_p"].isna().all() and single["p_holm"].isna().all()
    expl = table[(table["family"] == "exploratory") & (table["n"] >= 2)]
    assert (expl["family_size"] == len(expl)).all()  # only the testable rows count in Holm's m
    md = stats_report.statistics_section(run_dir, tmp_path, table)
    assert "not tested (no p-value, outside the Holm family)" in md


def test_compare_cli_bad_folder(tmp_path, capsys):
    assert compare_main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert compare_main([str(tmp_path)]) == 2


def test_stats_measure_in_memory_as_compare_reads_the_folder(tmp_path):
    run_dir = tmp_path / "results" / "tiny"
    runs, predictions = make_run(run_dir)
    before = folder_files(tmp_path)
    from_folder = compare.analyse(run_dir)
    assert folder_files(tmp_path) == before  # measuring writes nothing
    loads = []

    def loader(dataset: str, model: str, seed: int) -> pd.DataFrame | None:
        loads.append((dataset, model, seed))
        return predictions.get((dataset, model, seed))

    in_memory = stats.compare(runs, loader, epochs=pd.read_csv(run_dir / "epochs.csv"))
    assert loads and all(isinstance(seed, int) for _, _, seed in loads)
    assert ("imdb", "transformer", 9) not in loads  # a failed unit's predictions are never asked for
    for name in ("comparisons", "model_summary", "length_bins", "length_bins_by_seed", "gap_by_epoch"):
        pd.testing.assert_frame_equal(getattr(in_memory, name), getattr(from_folder, name), check_exact=True)
    ablation = stats.compare(runs, loader, reference="rnn").comparisons
    expl = ablation[ablation["family"] == "exploratory"]
    assert set(zip(expl["model_a"], expl["model_b"])) == {("attn_rnn", "rnn"), ("transformer", "rnn")}
    none = stats.compare(runs, lambda d, m, s: None)
    assert none.comparisons["mcnemar_seeds"].eq(0).all() and none.length_bins.empty
    no_epochs = none.comparisons[none.comparisons["family"] == "confirmatory"]
    assert (no_epochs.loc[no_epochs["metric"] == "gap_matched", "n"] == 0).all()  # kept, not tested


def test_variance_by_source(tmp_path):
    runs, _ = make_run(tmp_path / "a", models={"rnn": 0.7, "attn_rnn": 0.8})
    other = runs.assign(test_acc=runs["test_acc"] * 0.5)
    table = stats.variance_by_source({"init": runs, "split": other}, pair=("attn_rnn", "rnn"))
    assert set(table["source"]) == {"init", "split"} and "attn_rnn − rnn" in set(table["model"])
    ok = runs[runs["status"] == "ok"]
    r = table[(table["source"] == "init") & (table["model"] == "rnn")].iloc[0]
    x = ok.loc[ok["model"] == "rnn", "test_acc"].to_numpy()
    assert r["sd"] == pytest.approx(x.std(ddof=1)) and (r["sd_ci_low"], r["sd_ci_high"]) == pytest.approx(
        paired.sd_interval(x))
    s = table[(table["source"] == "split") & (table["model"] == "rnn")].iloc[0]
    assert s["sd"] == pytest.approx(r["sd"] * 0.5)


def test_variance_section_from_one_folder_per_source(tmp_path):
    from bench import variance_report
    from bench.config import BenchError

    folders = []
    for k, source in enumerate(("init", "order", "split")):
        run_dir = tmp_path / f"variance-{source}"
        runs, _ = make_run(run_dir, models={"rnn": 0.7, "attn_rnn": 0.8}, claim=True)
        raw = json.loads((run_dir / "config.json").read_text())
        raw["vary"] = [source]
        atomic_write_json(run_dir / "config.json", raw)
        atomic_write_csv(run_dir / "runs.csv", runs.assign(test_acc=0.8 + (runs["test_acc"] - 0.8) * (k + 1)))
        folders.append(run_dir)
    main = tmp_path / "main"
    md = variance_report.variance_section(folders, main, tmp_path)
    assert md.startswith("## Variance by source") and "initialisation (and dropout) varied" in md
    assert "| attn_rnn − rnn |" in md and "](main/plots/imdb_variance.png)" in md
    table = pd.read_csv(main / "variance_by_source.csv")
    rnn = table[table["model"] == "rnn"].set_index("source")["sd"]
    assert rnn["order"] == pytest.approx(2 * rnn["init"], rel=1e-4) and rnn["split"] == pytest.approx(3 * rnn["init"],
                                                                                                       rel=1e-4)
    with pytest.raises(BenchError, match="both vary 'init'"):
        variance_report.variance_section([folders[0], folders[0]], main, tmp_path)
