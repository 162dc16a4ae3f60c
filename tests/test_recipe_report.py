"""Recipe checks: the settings two folders differ in, and each shared model's paired difference."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench import config, report
from bench.config import BenchError
from bench.recipe_report import recipe_checks_section, setting_differences
from bench.results import (EPOCH_COLUMNS, RUN_COLUMNS, RecipePair, RunFolder, atomic_write_csv, atomic_write_json,
                           load_manifest)

BASE = {"transformer": [0.820, 0.831, 0.826, 0.818, 0.829, 0.824], "tfidf": [0.88] * 6}
CHANGED = {"transformer": [0.829, 0.834, 0.825, 0.827, 0.836, 0.830], "tfidf": [0.88] * 6}


def folder(path: Path, accs: dict[str, list[float]], transformer: dict | None = None, train: dict | None = None,
           vary: list[str] | None = None, seconds: float = 100.0, data: dict | None = None,
           val_over: list[float] | None = None, dataset: str = "ag_news") -> RunFolder:
    """A run folder holding what the recipe section reads: runs.csv (test accuracy, gap, train time) and config.json."""
    f = RunFolder(path)
    rows = [{"dataset": dataset, "model": m, "seed": s, "status": "ok", "reason": "", "params": 1000,
             "test_acc": a, "gap_acc": round(0.1 + a / 10, 6), "train_seconds": seconds,
             "best_val_acc": a + (val_over[s] if val_over else 0.01)}
            for m, values in accs.items() for s, a in enumerate(values)]
    atomic_write_csv(f.runs_csv, pd.DataFrame(rows).reindex(columns=RUN_COLUMNS))
    atomic_write_csv(f.epochs_csv, pd.DataFrame(columns=EPOCH_COLUMNS))
    raw = {"budget": "full", "datasets": [dataset], "models": list(accs), "seeds": list(range(6)),
           "train": train or {}, "data": data or {}, "model": {"transformer": {"kind": "transformer", "dropout": 0.1, **(transformer or {})},
                                           "tfidf": {"kind": "tfidf"}}}
    if vary is not None:
        raw["vary"] = vary
    atomic_write_json(f.config_json, config.from_dict(raw).to_dict())
    return f


def test_the_paired_difference_and_its_interval_match_scipy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder(tmp_path / "base", BASE)
    folder(tmp_path / "run", CHANGED, transformer={"attention_dropout": 0.0}, seconds=60.0)
    text = recipe_checks_section([RecipePair(Path("run"), Path("base"))])
    x, y = np.array(CHANGED["transformer"]), np.array(BASE["transformer"])
    d = (x - y) * 100
    half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    p = sps.ttest_rel(x, y).pvalue
    row = next(line for line in text.splitlines() if line.startswith("| transformer |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "6"
    assert cells[4] == f"{d.mean():+.2f} [{d.mean() - half:+.2f}, {d.mean() + half:+.2f}]"
    assert cells[5] == f"{p:.3g}"
    assert cells[9] == "100 s → 60 s"
    gap = (0.1 + x / 10 - (0.1 + y / 10)) * 100
    assert cells[8].startswith(f"{gap.mean():+.2f} [")
    # the floor ran in both: the same accuracies, a zero difference
    assert "| tfidf | 6 | 88.00 ± 0.00 | 88.00 ± 0.00 | +0.00 [+0.00, +0.00] |" in text
    assert "### `run` against `base`" in text


def test_a_changed_validation_split_shows_how_far_validation_overstates_test_in_each_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    random_over, movie_over = [0.021, 0.010, 0.009, 0.028, 0.008, -0.002], [0.004, 0.000, 0.011, -0.003, 0.006, 0.002]
    folder(tmp_path / "base", BASE, val_over=random_over, dataset="imdb")
    folder(tmp_path / "run", BASE, data={"val_groups": "movie"}, val_over=movie_over, dataset="imdb")
    text = recipe_checks_section([RecipePair(Path("run"), Path("base"))])
    assert "- `data.val_groups`: `''` → `'movie'`" in text and "How far validation overstates test" in text
    d = (np.array(movie_over) - np.array(random_over)) * 100
    half = sps.t.ppf(0.975, 5) * d.std(ddof=1) / np.sqrt(6)
    row = [line for line in text.splitlines() if line.startswith("| transformer |")][-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == f"{np.mean(random_over) * 100:.2f} ± {np.std(random_over, ddof=1) * 100:.2f}"
    assert cells[6] == f"{d.mean():+.2f} [{d.mean() - half:+.2f}, {d.mean() + half:+.2f}]"
    assert cells[7] == f"{sps.ttest_rel(movie_over, random_over).pvalue:.3g}"
    # another change leaves the table out
    folder(tmp_path / "other", CHANGED, transformer={"attention_dropout": 0.0}, dataset="imdb")
    assert "overstates" not in recipe_checks_section([RecipePair(Path("other"), Path("base"))])


def test_the_settings_that_differ_are_named_with_what_a_deferring_value_means(tmp_path):
    base = folder(tmp_path / "base", BASE)
    run = folder(tmp_path / "run", CHANGED, transformer={"attention_dropout": 0.0, "lr": 1e-3})
    diffs = setting_differences(run, base, ["transformer"])
    assert diffs == [("model.transformer.attention_dropout", "`-1.0` (= dropout 0.1)", "`0.0`"),
                     ("model.transformer.lr", "`0.0` (= train.lr 0.002)", "`0.001`")]
    assert setting_differences(base, base, ["transformer"]) == []
    # a model not compared (run in one folder only) does not count, nor do the run lists or the description
    assert setting_differences(run, base, []) == []


def test_tuned_folders_differ_in_their_chosen_trials_parameters(tmp_path):
    base = folder(tmp_path / "base", BASE)
    run = folder(tmp_path / "run", CHANGED)
    study = {"best": {"number": 80, "params": {"lr": 0.0045, "batch_size": 64}}}
    atomic_write_json(base.tuning_json, {"ag_news/transformer": study})
    atomic_write_json(run.tuning_json, {"ag_news/transformer": {"best": {"number": 0,
                                                                         "params": {"lr": 0.0071, "batch_size": 64}}}})
    assert setting_differences(run, base, ["transformer"]) == [("tuned.ag_news/transformer.lr", "`0.0045`", "`0.0071`")]
    # against an untuned folder every chosen parameter is a difference; a model not compared is left out
    assert setting_differences(run, folder(tmp_path / "plain", BASE), ["transformer"]) == [
        ("tuned.ag_news/transformer.batch_size", "–", "`64`"), ("tuned.ag_news/transformer.lr", "–", "`0.0071`")]
    assert setting_differences(run, base, []) == []


def test_a_late_key_a_folder_predates_reads_as_its_default(tmp_path):
    base = folder(tmp_path / "base", BASE)
    run = folder(tmp_path / "run", CHANGED)
    raw = json.loads(base.config_json.read_text())
    del raw["model"]["transformer"]["attention_dropout"], raw["train"]["decay_all"]
    atomic_write_json(base.config_json, raw)
    assert setting_differences(run, base, ["transformer"]) == []


def test_several_changes_and_other_random_sources_are_said(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder(tmp_path / "base", BASE, vary=["init", "order"])
    folder(tmp_path / "run", CHANGED, train={"epochs": 12}, vary=["init", "order", "split"])
    text = recipe_checks_section([RecipePair(Path("run"), Path("base"))])
    assert f"- `train.epochs`: `{config.TrainConfig().epochs}` → `12`" in text
    assert "- `vary`: `['init', 'order']` → `['init', 'order', 'split']`" in text
    assert "paired across them only in the sources both vary" in text
    assert "2 settings changed at once" in text


def test_no_shared_model_compares_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder(tmp_path / "base", {"tfidf": [0.88] * 6})
    folder(tmp_path / "run", {"transformer": CHANGED["transformer"]})
    text = recipe_checks_section([RecipePair(Path("run"), Path("base"))])
    assert "No model was run in both folders" in text and "| transformer |" not in text


def test_the_manifest_and_the_command_carry_recipe_pairs(tmp_path, monkeypatch):
    path = tmp_path / "configs" / "report.toml"
    path.parent.mkdir()
    path.write_text('output = "../R.md"\nmain = "../results/quick"\n'
                    'recipe = [{run = "../results/b", baseline = "../results/a"}]\n')
    m = load_manifest(path)
    res = tmp_path / "results"
    assert m.recipe == [RecipePair(res / "b", res / "a")]
    assert m.folders() == [res / "quick", res / "b", res / "a"]
    monkeypatch.chdir(tmp_path)
    cmd = report.report_command(Path("quick"), recipes=[RecipePair(Path("b"), Path("a"))])
    assert cmd == "python -m bench.report quick --recipe-pair b a"
    assert report.parse_args(cmd.split()[3:]).recipe_pair == [["b", "a"]]


def test_a_recipe_folder_that_is_no_run_folder_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder(tmp_path / "base", BASE)
    with pytest.raises(BenchError, match=r"nothing is not a run folder"):
        report.execute(report.parse_args(["base", "--recipe-pair", "nothing", "base", "--output", "R.md"]))
    assert not (tmp_path / "R.md").exists() and not (tmp_path / "base" / "REPORT.md").exists()


def test_a_pair_limited_to_some_models_compares_those_alone_and_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder(tmp_path / "base", BASE)
    folder(tmp_path / "run", CHANGED, transformer={"attention_dropout": 0.0})
    text = recipe_checks_section([RecipePair(Path("run"), Path("base"), ("tfidf",))])
    assert "### `run` against `base` (tfidf only)" in text
    assert "| tfidf | 6 |" in text and "| transformer |" not in text
    # the transformer's changed setting belongs to a model not compared here: not listed
    assert "attention_dropout" not in text and "settings are the same" in text


def test_units_on_another_device_list_the_device_as_a_difference(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder(tmp_path / "base", BASE)
    run = folder(tmp_path / "run", BASE)
    runs = pd.read_csv(run.runs_csv)
    base = pd.read_csv((tmp_path / "base" / "runs.csv"))
    base["device"] = "cpu"
    runs["device"] = "cuda:0"
    atomic_write_csv(tmp_path / "base" / "runs.csv", base)
    atomic_write_csv(run.runs_csv, runs)
    atomic_write_json(run.path / "environment.json", {"gpu": "NVIDIA H100 80GB HBM3"})
    text = recipe_checks_section([RecipePair(Path("run"), Path("base"))])
    assert "- `device`: `cpu` → `cuda` (NVIDIA H100 80GB HBM3; bf16 autocast, `train.amp`)" in text
    assert "settings are the same" not in text and "changed at once" not in text
    # the same device on both sides is no difference
    runs["device"] = "cpu"
    atomic_write_csv(run.runs_csv, runs)
    assert "`device`" not in recipe_checks_section([RecipePair(Path("run"), Path("base"))])


def test_the_manifest_and_the_command_carry_a_pairs_models(tmp_path, monkeypatch):
    path = tmp_path / "configs" / "report.toml"
    path.parent.mkdir()
    path.write_text('output = "../R.md"\nmain = "../results/quick"\n'
                    'recipe = [{run = "../results/b", baseline = "../results/a", models = ["transformer"]}]\n')
    res = tmp_path / "results"
    assert load_manifest(path).recipe == [RecipePair(res / "b", res / "a", ("transformer",))]
    monkeypatch.chdir(tmp_path)
    cmd = report.report_command(Path("quick"), recipes=[RecipePair(Path("b"), Path("a"), ("transformer", "rnn"))])
    assert cmd == "python -m bench.report quick --recipe-pair b a transformer rnn"
    assert report.parse_args(cmd.split()[3:]).recipe_pair == [["b", "a", "transformer", "rnn"]]
    path.write_text('output = "../R.md"\nmain = "../results/quick"\n'
                    'recipe = [{run = "../results/b", baseline = "../results/a", models = "transformer"}]\n')
    with pytest.raises(BenchError, match=r"'models' must be a list of model names"):
        load_manifest(path)
    with pytest.raises(BenchError, match=r"--recipe-pair needs a run folder and its baseline"):
        report.execute(report.parse_args(["quick", "--recipe-pair", "b"]))
