"""Simulated experiments with a known truth: the intervals cover it at their nominal rate and the
confirmatory family keeps its false-positive rate under a zero difference. Uses the functions
`bench.stats.comparisons` uses (paired.paired_t → paired.holm within the family → paired.verdict),
the t-tests of all experiments in one vectorised call."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench import paired, stats
from bench.config import ClaimConfig

EXPERIMENTS = 2000  # "a few hundred" would do; 2,000 keeps the binomial noise (sd ≈ 0.5%) well inside 93–97%


@pytest.fixture(autouse=True)
def _fast_holm(monkeypatch):
    """statsmodels' Holm calls gc.collect() on every call (a full collection of this process's heap,
    ~30 ms here); thousands of families would take minutes. The arithmetic is untouched."""
    import gc

    monkeypatch.setattr(gc, "collect", lambda *args: 0)


def _experiments(rng: np.random.Generator, true_diff, shape: tuple[int, ...], sd_seed: float = 0.006,
                 sd_pair: float = 0.004) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed scores of A and B (seeds on the last axis): a shared seed effect, which pairing
    removes, plus independent noise; A is higher by `true_diff`."""
    shared = rng.normal(0.85, sd_seed, shape)
    return shared + true_diff + rng.normal(0, sd_pair, shape), shared + rng.normal(0, sd_pair, shape)


@pytest.mark.parametrize("n_seeds", [5, 10])
def test_t_intervals_cover_the_true_difference_at_95_percent(n_seeds):
    truth = 0.005
    a, b = _experiments(np.random.default_rng(2024 + n_seeds), truth, (EXPERIMENTS, n_seeds))
    res = paired.paired_t(a, b)
    coverage = np.mean((res["ci_low"] <= truth) & (truth <= res["ci_high"]))
    assert 0.93 <= coverage <= 0.97
    one = paired.paired_t(a[0], b[0])  # the vectorised call is the per-experiment one
    assert (one["t_p"], one["ci_low"]) == pytest.approx((res["t_p"][0], res["ci_low"][0]))


def test_per_model_t_intervals_cover_the_true_mean():
    rng = np.random.default_rng(7)
    covered = sum(lo <= 0.85 <= hi for lo, hi in (paired.t_interval(rng.normal(0.85, 0.006, 6)) for _ in range(500)))
    assert 0.93 <= covered / 500 <= 0.97


def _family_verdicts(rng: np.random.Generator, diffs: list[float], n_seeds: int, alpha: float = 0.05) -> np.ndarray:
    """Each experiment's confirmatory family (e.g. 2 datasets × 2 metrics): paired t per hypothesis,
    Holm within the family, then the verdict in the claimed direction. (experiments × hypotheses)"""
    a, b = _experiments(rng, np.asarray(diffs)[None, :, None], (EXPERIMENTS, len(diffs), n_seeds))
    p = paired.paired_t(a, b)["t_p"]
    mean = (a - b).mean(axis=-1)
    return np.array([[paired.verdict(ph, m, "higher", alpha) for ph, m in zip(paired.holm(row, alpha), means)]
                     for row, means in zip(p, mean)])


def test_the_confirmatory_family_keeps_its_false_positive_rate_under_no_difference():
    verdicts = _family_verdicts(np.random.default_rng(99), [0.0] * 4, 6)
    any_claim = np.mean((verdicts != "not established").any(axis=1))
    assert any_claim <= 0.06  # family-wise: any hypothesis supported or contradicted
    power = np.mean(_family_verdicts(np.random.default_rng(100), [0.008] * 4, 10) == "supported")
    assert power > 0.8  # and it finds a real difference


def test_the_simulated_family_is_what_stats_comparisons_computes():
    """The same numbers through the real pipeline: a runs table with two datasets, the claim on test_acc."""
    rng = np.random.default_rng(5)
    rows = []
    for dataset in ("imdb", "ag_news"):
        a, b = _experiments(rng, 0.003, (6,))
        for model, values in (("attn_rnn", a), ("rnn", b)):
            rows += [{"dataset": dataset, "model": model, "seed": s, "status": "ok", "test_acc": v,
                      "best_val_acc": v, "gap_acc": 0.0} for s, v in enumerate(values)]
    runs = pd.DataFrame(rows)
    table = stats.comparisons(runs, claim=ClaimConfig(metrics={"test_acc": "higher"}), metrics=("test_acc",))
    conf = table[table["family"] == "confirmatory"].reset_index(drop=True)
    p = [paired.paired_t(*(runs[(runs["dataset"] == d) & (runs["model"] == m)]["test_acc"].to_numpy()
                           for m in ("attn_rnn", "rnn")))["t_p"] for d in ("imdb", "ag_news")]
    np.testing.assert_allclose(conf["p_holm"], paired.holm(p))
    expected = [paired.verdict(ph, d, "higher") for ph, d in zip(conf["p_holm"], conf["mean_diff"])]
    assert list(conf["verdict"]) == expected
