"""The report's manifest with tuned runs beside their own untuned runs, and the "Are the arms strong
enough?" section (bench.arms_report): its numbers against scipy, its targets at their thresholds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench import arms_report, config, report
from bench.arms_report import arms_section, arms_table, judge, target_for
from bench.config import BenchError
from bench.results import (EPOCH_COLUMNS, RUN_COLUMNS, RecipePair, ReportManifest, RunFolder, TunedRun, atomic_write_csv,
                           atomic_write_json, load_manifest)
from conftest import REPO

KINDS = {"rnn": {"kind": "rnn"}, "attn_rnn": {"kind": "rnn", "pooling": "attention"},
         "transformer": {"kind": "transformer"}, "tfidf": {"kind": "tfidf"}}


def arms_folder(path: Path, budget: str, accs: dict[str, list[float]], dataset: str = "imdb", max_length: int = 400,
                tuned: bool = False, params: int | dict[str, int] = 2_000_000) -> Path:
    """A run folder holding only what the arms section reads: runs.csv, epochs.csv and config.json."""
    folder = RunFolder(path)
    size = params if isinstance(params, dict) else dict.fromkeys(accs, params)
    rows = [{"dataset": dataset, "model": m, "seed": s, "status": "ok", "reason": "", "params": size[m],
             "test_acc": a} for m, values in accs.items() for s, a in enumerate(values)]
    atomic_write_csv(folder.runs_csv, pd.DataFrame(rows).reindex(columns=RUN_COLUMNS))
    atomic_write_csv(folder.epochs_csv, pd.DataFrame(columns=EPOCH_COLUMNS))
    seeds = sorted({s for values in accs.values() for s in range(len(values))})
    cfg = config.from_dict({"budget": budget, "datasets": [dataset], "models": list(accs), "seeds": seeds,
                            "data": {"max_length": max_length}, "train": {"epochs": 7},
                            "model": {m: KINDS[m] for m in accs}})
    atomic_write_json(folder.config_json, cfg.to_dict())
    if tuned:
        atomic_write_json(folder.tuning_json, {f"{dataset}/{m}": {} for m in accs if m != "tfidf"})
    return path


# ----------------------------------------------------------------------------- the manifest

def test_the_manifest_takes_tuned_runs_beside_their_own_untuned_runs(tmp_path):
    path = tmp_path / "configs" / "report.toml"
    path.parent.mkdir()
    path.write_text('output = "../R.md"\nmain = "../results/quick"\n'
                    'tuned = ["../results/quick-tuned", {run = "../results/full-tuned", untuned = "../results/full"}]\n')
    m = load_manifest(path)
    res = tmp_path / "results"
    assert m.tuned == [TunedRun(res / "quick-tuned"), TunedRun(res / "full-tuned", res / "full")]
    assert m.folders() == [res / "quick", res / "quick-tuned", res / "full-tuned", res / "full"]
    assert m.names(res / "full") and m.names(tmp_path / "configs" / ".." / "results" / "full-tuned")
    path.write_text('output = "../R.md"\nmain = "../results/quick"\ntuned = "../results/quick-tuned"\n')
    assert load_manifest(path).tuned == [TunedRun(res / "quick-tuned")]  # a plain string: untuned = main
    path.write_text('output = "../R.md"\nmain = "../results/quick"\n[[tuned]]\nrun = "../results/t"\n')
    assert load_manifest(path).tuned == [TunedRun(res / "t")]
    assert ReportManifest(path, res / "R.md", res / "quick").folders() == [res / "quick"]


@pytest.mark.parametrize("entry, message", [
    ('tuned = [{run = "a", budget = "full"}]', "unknown key 'budget' in a 'tuned' table (known: run, untuned)"),
    ('tuned = [{untuned = "a"}]', "a 'tuned' table needs 'run'"),
    ('tuned = [{run = "a", untuned = 3}]', "'tuned' table key 'untuned' must be a path"),
    ('tuned = [{run = ""}]', "'tuned' table key 'run' must be a path"),
    ("tuned = 3", "'tuned' must be a path or a list of paths and"),
    ('tuned = ["a", 3]', "'tuned' must be a path or a list of paths and"),
    ('recipe = [{run = "a"}]', "a 'recipe' table needs 'baseline' as a path"),
    ('recipe = [{run = "a", baseline = 3}]', "a 'recipe' table needs 'baseline' as a path"),
    ('recipe = [{run = "a", baseline = "b", model = "x"}]',
     "unknown key 'model' in a 'recipe' table (known: run, baseline, models)"),
    ('recipe = ["a"]', "'recipe' must be a list of"),
])
def test_a_bad_tuned_or_recipe_entry_is_one_line(tmp_path, entry, message):
    path = tmp_path / "report.toml"
    path.write_text(f'output = "R.md"\nmain = "m"\n{entry}\n')
    with pytest.raises(BenchError) as err:
        load_manifest(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_untuned_folder_that_is_no_run_folder_is_refused(tmp_path):
    arms_folder(tmp_path / "m", "quick", {"rnn": [0.8], "tfidf": [0.8]})
    arms_folder(tmp_path / "t", "full", {"rnn": [0.8], "tfidf": [0.8]})
    path = tmp_path / "report.toml"
    path.write_text('output = "R.md"\nmain = "m"\ntuned = [{run = "t", untuned = "nothing"}]\n')
    with pytest.raises(BenchError, match=r"nothing \(named in .*\) is not a run folder"):
        report.execute(report.parse_args(["--manifest", str(path)]))
    assert not (tmp_path / "R.md").exists()


def test_the_command_names_each_tuned_run_with_its_untuned_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tuned = [TunedRun(Path("quick-tuned")), TunedRun(Path("full-tuned"), Path("full"))]
    cmd = report.report_command(Path("quick"), tuned, others=[Path("full")])
    assert cmd == "python -m bench.report quick --tuned quick-tuned --tuned-pair full-tuned full --other full"
    assert report.report_command(Path("quick"), Path("quick-tuned")) == "python -m bench.report quick --tuned quick-tuned"
    args = report.parse_args(cmd.split()[3:])  # the command parses back, in order
    assert args.tuned == ["quick-tuned", ["full-tuned", "full"]] and args.other == ["full"]


# ----------------------------------------------------------------------------- the arms section

FULL = {"rnn": [0.884, 0.881, 0.887, 0.886, 0.880, 0.889],
        "attn_rnn": [0.897, 0.894, 0.899, 0.893, 0.896, 0.898],
        "tfidf": [0.8899] * 6}


@pytest.mark.parametrize("attn_params, words", [
    (2_080_000, "Sizes: rnn 2,000,000 to attn_rnn 2,080,000 parameters (+4.0%): within 5% of each other"),
    (2_200_000, "Sizes: rnn 2,000,000 to attn_rnn 2,200,000 parameters (+10.0%): **not within 5%** of each other"),
])
def test_arms_tables_say_whether_the_arms_sizes_are_within_a_few_percent(tmp_path, attn_params, words):
    sizes = {"rnn": 2_000_000, "attn_rnn": attn_params, "tfidf": 200_000}  # the floor's size is not compared
    md = arms_section([arms_folder(tmp_path / "f", "full", FULL, params=sizes)])
    assert words in md and md.count("Sizes: ") == 1


def test_arms_numbers_match_scipy(tmp_path):
    quick = {"rnn": [0.82, 0.83, 0.825], "transformer": [0.80, 0.79, 0.81, 0.805], "tfidf": [0.838, 0.839, 0.8385, 0.84]}
    folders = [arms_folder(tmp_path / "full", "full", FULL),
               arms_folder(tmp_path / "quick", "quick", quick, max_length=128, tuned=True)]
    table = arms_table(folders + [tmp_path / "full"])  # a folder named twice counts once
    # the untuned folder gets rnn, attn_rnn and transformer (a target names all three, run or not); the
    # tuned one only the arms it holds, since its other arms are in its untuned folder
    assert len(table) == 5 and "attn_rnn" not in set(table[table["folder"] == folders[1]]["model"])
    row = table[(table["folder"] == folders[1]) & (table["model"] == "transformer")].iloc[0]
    x, floor = np.array(quick["transformer"]), np.array(quick["tfidf"])
    assert row["mean"] == pytest.approx(x.mean()) and row["n"] == 4
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(sps.t.interval(0.95, 3, loc=x.mean(), scale=sps.sem(x)))
    paired_ci = sps.ttest_rel(x, floor).confidence_interval(0.95)
    assert row["diff_mean"] == pytest.approx((x - floor).mean())
    assert (row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx((paired_ci.low, paired_ci.high))
    assert row["floor_mean"] == pytest.approx(floor.mean()) and not row["floor_deterministic"]
    rnn = table[(table["folder"] == folders[1]) & (table["model"] == "rnn")].iloc[0]
    assert rnn["diff_n"] == 3 and rnn["diff_mean"] == pytest.approx((np.array(quick["rnn"]) - floor[:3]).mean())
    full = table[table["folder"] == folders[0]].set_index("model")
    assert bool(full.loc["attn_rnn", "met"]) and full.loc["attn_rnn", "floor_deterministic"]
    assert full.loc["rnn", "misses"] == ["mean 88.45% < 89.0%", "0.54 pp below the floor's mean"]
    assert full.loc["transformer", "misses"] == ["not run in this folder"] and full.loc["transformer", "n"] == 0

    md = arms_section(folders)
    assert md.startswith("## Are the arms strong enough?")
    assert "#### IMDB, budget full (`" in md and "#### IMDB, budget quick, every neural model tuned (`" in md
    assert "texts cut to 400 tokens, at most 7 epochs, 6 seeds" in md and "texts cut to 128 tokens" in md
    assert "88.99% (deterministic: the same on all 6 seeds)" in md
    assert f"| attn_rnn | 2,000,000 | 6 | {x_ci(FULL['attn_rnn'])} |" in md
    assert "| transformer | – | 0 | not run | – | ≥ 88.0% and ≥ floor | **missed** (not run in this folder) |" in md
    assert "(3 shared seeds)" in md  # rnn paired with the floor on the seeds both ran
    assert "| NBSVM-bi | 91.22 | Wang & Manning 2012" in md and "not rerun here" in md
    assert "1 of 5 arm targets is met." in md and "IMDB at budget full (`" in md
    assert "closest to the NBSVM-bi line (91.22%) is attn_rnn at budget full" in md
    assert f"{91.22 - np.mean(FULL['attn_rnn']) * 100:.2f} pp below it" in md
    assert arms_section([arms_folder(tmp_path / "no-floor", "full", {"rnn": [0.9] * 6})]) == ""


def test_a_tuned_run_without_the_floor_borrows_its_untuned_runs_floor_only_on_the_same_data(tmp_path):
    untuned = arms_folder(tmp_path / "untuned", "full", FULL)
    transformer = [0.871, 0.868, 0.874, 0.869, 0.872, 0.870]
    tuned = arms_folder(tmp_path / "tuned", "full", {"transformer": transformer}, tuned=True)
    assert arms_table([tuned]).empty  # no floor of its own, none named
    table = arms_table([tuned], floors={tuned: untuned})
    row = table.set_index("model").loc["transformer"]
    x, floor = np.array(transformer), np.array(FULL["tfidf"])
    assert row["floor_folder"] == untuned and row["floor_mean"] == pytest.approx(floor.mean())
    assert row["diff_n"] == 6 and row["diff_mean"] == pytest.approx((x - floor).mean())
    assert row["misses"] == ["mean 87.07% < 88.0%", "1.92 pp below the floor's mean"]
    md = arms_section([tuned], floors={tuned: untuned})
    assert "which reads the same texts the same way" in md and "| transformer | 2,000,000 | 6 |" in md
    # other texts (here a different truncation): the untuned floor is no floor for it, so no table
    short = arms_folder(tmp_path / "short", "full", {"transformer": transformer}, max_length=128, tuned=True)
    assert arms_table([short], floors={short: untuned}).empty


def test_the_floor_is_borrowed_along_a_chain_of_folders_that_read_the_same_texts(tmp_path):
    """A GPU-tuned run pairs with an untuned GPU run that did not run TF-IDF either; that run is a recipe
    check of a CPU folder that did. The floor comes from the CPU folder, over the seeds it ran."""
    cpu = arms_folder(tmp_path / "cpu", "full", FULL)
    base = arms_folder(tmp_path / "base", "full", {"transformer": [0.88, 0.881, 0.879, 0.882, 0.88, 0.878, 0.883, 0.881]})
    tuned = arms_folder(tmp_path / "tuned", "full", {"transformer": [0.879] * 8}, tuned=True)
    floors = report.floor_sources([TunedRun(tuned, base)], cpu, [RecipePair(base, cpu, ("transformer",))])
    assert floors == {tuned: base, base: cpu}
    table = arms_table([tuned, base], floors=floors)
    assert list(dict.fromkeys(table["folder"])) == [tuned, base] and set(table["floor_folder"]) == {cpu}
    row = table[(table["folder"] == tuned) & (table["model"] == "transformer")].iloc[0]
    assert (row["n"], row["floor_n"], row["diff_n"]) == (8, 6, 6)
    assert row["diff_mean"] == pytest.approx(0.879 - np.mean(FULL["tfidf"]))
    md = arms_section([tuned, base], floors=floors)
    assert "(6 shared seeds)" in md and md.count("which reads the same texts the same way") == 2
    # a link that reads other texts ends the chain: no floor, no table
    short = arms_folder(tmp_path / "short", "full", {"transformer": [0.88] * 6}, max_length=128)
    assert arms_table([tuned], floors={tuned: short, short: cpu}).empty
    # a cycle of folders without the floor ends too
    assert arms_table([tuned], floors={tuned: base, base: tuned}).empty


def test_a_best_attempt_that_was_not_tuned_names_the_best_tuned_attempt_and_how_its_study_ended():
    """On the committed IMDB Transformer at 400 tokens: the hand-carried configuration (CPU) came closest;
    the search at that budget (GPU) is named beside it, with its trial count and its flat curve."""
    res = REPO / "results"
    carried, tuned, base = (res / "full-imdb-transformer-quick-tuned", res / "full-imdb-transformer-gpu-tuned",
                            res / "full-imdb-transformer-gpu-base")
    table = arms_table([carried, tuned], floors={tuned: base, base: carried})
    attempt = arms_report.best_attempts(table).set_index("model").loc["transformer"]
    assert attempt["best"]["folder"] == carried and attempt["best_tuned"]["folder"] == tuned
    md = "\n".join(arms_report.best_attempt_table(table, REPO))
    row = next(line for line in md.splitlines() if line.startswith("| IMDB | full | transformer |"))
    assert "not tuned in this folder; the best tuned attempt, [`" in row and "results/full-imdb-transformer-gpu-tuned" in row
    assert "(88.10%): tuned, 31 trials; expected best flat" in row


def test_the_best_attempt_per_target_prefers_a_folder_that_met_it_then_enough_seeds(tmp_path):
    met = arms_folder(tmp_path / "met", "full", {"rnn": [0.884] * 6, "attn_rnn": [0.896] * 6, "tfidf": [0.88] * 6})
    few = arms_folder(tmp_path / "few", "full", {"rnn": [0.889] * 5, "attn_rnn": [0.899] * 5, "tfidf": [0.88] * 5})
    quick = arms_folder(tmp_path / "quick", "quick", {"rnn": [0.82] * 6, "tfidf": [0.84] * 6}, max_length=128)
    table = arms_table([met, few, quick])
    attempts = arms_report.best_attempts(table).set_index(["budget", "model"])
    assert list(attempts.index) == [("quick", "rnn"), ("full", "rnn"), ("full", "attn_rnn")]  # quick first; run arms only
    # attn_rnn: met in `met` (6 seeds) though `few` has the higher mean on 5 seeds
    assert attempts.loc[("full", "attn_rnn"), "best"]["folder"] == met
    assert (attempts.loc[("full", "attn_rnn"), "folders"], attempts.loc[("full", "attn_rnn"), "met_in"]) == (2, 1)
    # rnn: met nowhere; the attempt over 6 seeds beats a higher mean over 5
    assert attempts.loc[("full", "rnn"), "best"]["folder"] == met and attempts.loc[("full", "rnn"), "met_in"] == 0
    md = arms_section([met, few, quick], report_dir=tmp_path)
    assert "### Best attempt per target" in md and md.index("### Best attempt per target") < md.index(
        "### Which targets are met")
    assert "| IMDB | full | attn_rnn | ≥ 89.5% and ≥ floor | 2 (1) | [`" in md and "](met) | 89.60 |" in md
    assert "| IMDB | full | rnn | ≥ 89.0% and ≥ floor | 2 (0) |" in md and "not tuned in this folder |" in md
    assert "read its best mean as optimistic" in md
    assert "Best attempt" not in arms_section([met])  # one folder: its table is its best attempt


def test_the_nearest_miss_is_measured_against_each_folders_own_floor(tmp_path):
    """Folders that cut texts differently have different floors: the best unmet attempt is the one nearest its
    own target, not the one with the highest mean."""
    head = arms_folder(tmp_path / "head", "quick", {"transformer": [0.815] * 6, "tfidf": [0.838] * 6}, max_length=128)
    tail = arms_folder(tmp_path / "tail", "quick", {"transformer": [0.838] * 6, "tfidf": [0.871] * 6}, max_length=128)
    table = arms_table([tail, head])
    rows = table[table["model"] == "transformer"].set_index("folder")  # (the arms not run have rows too)
    assert rows.loc[head, "margin"] == pytest.approx(0.815 - (0.838 - 0.01))  # 1.3 pp short
    assert rows.loc[tail, "margin"] == pytest.approx(0.838 - (0.871 - 0.01))  # 2.3 pp short, at a higher mean
    attempts = arms_report.best_attempts(table).set_index("model")
    assert attempts.loc["transformer", "best"]["folder"] == head
    full = arms_table([arms_folder(tmp_path / "full", "full", {"rnn": [0.888] * 6, "tfidf": [0.885] * 6})])
    assert full.set_index("model").loc["rnn", "margin"] == pytest.approx(0.888 - 0.890)  # the minimum binds, not the floor


def x_ci(values: list[float]) -> str:
    x = np.array(values) * 100
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    return f"{x.mean():.2f} [{lo:.2f}, {hi:.2f}]"


def test_targets_at_their_thresholds():
    full_attn, quick, ag = target_for("full", "imdb", "attn_rnn"), target_for("quick", "imdb", "rnn"), \
        target_for("quick", "ag_news", "transformer")
    assert target_for("full", "imdb", "lstm").minimum is None and target_for("full", "imdb", "lstm").floor_margin == 0
    assert target_for("tiny", "imdb", "rnn") is None and target_for("full", "sst2", "rnn") is None
    assert target_for("full", "ag_news", "rnn").floor_margin == 0.02  # AG News: any budget
    floor = 0.8899
    assert judge(full_attn, 6, 0.895, floor, 2e6) == []                         # exactly at 89.5%: met
    assert judge(full_attn, 6, 0.8949, floor, 2e6) == ["mean 89.49% < 89.5%"]
    assert judge(full_attn, 6, 0.9, 0.9001, 2e6) == ["0.01 pp below the floor's mean"]  # below the floor
    assert judge(full_attn, 6, 0.9, 0.9, 2e6) == []                             # at the floor: met
    assert judge(full_attn, 5, 0.9, floor, 2e6) == ["5 seeds < 6"]               # too few seeds: missed
    assert judge(full_attn, 6, 0.9, floor, 2_500_001) == ["2.50 M parameters > 2.5 M"]
    assert judge(full_attn, 6, 0.9, floor, 2_500_000) == []
    assert judge(quick, 6, 0.8284, 0.8384, 2e6) == []                            # exactly 1 pp below: met
    assert judge(quick, 6, 0.8283, 0.8384, 2e6) == ["1.01 pp below the floor's mean"]
    assert judge(ag, 6, 0.86, 0.88, 2e6) == [] and judge(ag, 6, 0.8599, 0.88, 2e6) != []


def test_a_target_met_only_by_too_few_seeds_says_so(tmp_path):
    accs = {m: v[:5] for m, v in FULL.items()}
    md = arms_section([arms_folder(tmp_path / "f", "full", accs)])
    assert "| attn_rnn |" in md and "**missed** (5 seeds < 6; the means alone would meet it)" in md
    assert "**met**" not in md and "0 of 3 arm targets are met." in md
    other = arms_section([arms_folder(tmp_path / "o", "tiny", FULL)])
    assert "| no target |" in other and "for which issue 13 sets a target" in other


def test_how_training_ended_reads_the_best_and_last_epochs():
    cap = 10
    assert arms_report.training_ended(pd.Series([10, 10, 9]), pd.Series([10, 10, 10]), cap) == \
        "still improving at the 10-epoch cap (2 of 3 seeds best at the cap; best val epoch 9.7 of 10)"
    assert arms_report.training_ended(pd.Series([4, 10]), pd.Series([7, 10]), cap).startswith("still improving")
    assert arms_report.training_ended(pd.Series([3, 4, 10]), pd.Series([6, 7, 10]), cap) == \
        "converged: best val epoch 5.7 of 10, early-stopped in 2 of 3 seeds"
    assert arms_report.training_ended(pd.Series([3, 4]), pd.Series([10, 10]), cap) == \
        "peaked before the cap: best val epoch 3.5 of 10, early-stopped in 0 of 2 seeds"
    assert arms_report.training_ended(pd.Series([np.nan]), pd.Series([np.nan]), cap) == "–"


def test_each_folder_table_says_how_training_ended_and_links_its_learning_curves(tmp_path):
    folder = arms_folder(tmp_path / "f", "full", FULL)
    f = RunFolder(folder)
    runs, _ = f.read_tables()
    runs["best_epoch"], runs["epochs_run"] = 7, 7  # every seed best at the 7-epoch cap
    atomic_write_csv(f.runs_csv, runs)
    epochs = pd.DataFrame([{"dataset": "imdb", "model": m, "seed": s, "epoch": e, "train_eval_acc": 0.8 + e / 100,
                            "val_acc": 0.8, "train_eval_loss": 0.5, "val_loss": 0.5}
                           for m in ("rnn", "attn_rnn") for s in range(2) for e in (1, 2)])
    atomic_write_csv(f.epochs_csv, epochs.reindex(columns=EPOCH_COLUMNS))
    md = arms_section([folder], report_dir=tmp_path)
    assert "| verdict | how training ended |" in md
    assert "| still improving at the 7-epoch cap (6 of 6 seeds best at the cap; best val epoch 7.0 of 7) |" in md
    assert "[f/plots/imdb_curves.png](f/plots/imdb_curves.png)" in md and (f.plots / "imdb_curves.png").is_file()


def test_the_reference_lines_live_in_one_cited_constant():
    names = [name for name, _, _ in arms_report.REFERENCE_LINES]
    assert names[-1] == arms_report.STRETCH_LINE and arms_report.reference("NBSVM-bi") == 91.22
    assert all(source for _, _, source in arms_report.REFERENCE_LINES)


# ----------------------------------------------------------------------------- the whole report

def test_a_manifest_tuned_run_at_another_budget_is_reported_against_its_own_untuned_run(tmp_path, monkeypatch):
    from test_stats import make_run

    monkeypatch.chdir(tmp_path)
    skill = {"rnn": 0.70, "attn_rnn": 0.80, "tfidf": 0.75}
    env = {"device": "cpu", "python": "3", "torch": "2", "datasets": "3", "tokenizers": "0", "git_sha": "abc",
           "processor": "cpu", "cpu_count": 2, "torch_threads": 1}
    for name, budget in (("quick", "quick"), ("full", "full"), ("full-tuned", "full")):
        make_run(tmp_path / name, models=skill, claim=True)
        raw = json.loads((tmp_path / name / "config.json").read_text())
        raw["budget"], raw["data"]["max_length"] = budget, 400 if budget == "full" else 128
        raw["model"]["tfidf"] = {**raw["model"]["tfidf"], "kind": "tfidf"}
        atomic_write_json(tmp_path / name / "config.json", raw)
        atomic_write_json(tmp_path / name / "environment.json", env)
        atomic_write_json(tmp_path / name / "datasets.json", {"imdb": {
            "train": 10, "val": 2, "test": 300, "vocab_size": 100, "truncated_fraction": 0.1, "source": "synthetic"}})
    manifest = tmp_path / "report.toml"
    manifest.write_text('output = "REPORT.md"\nmain = "quick"\ntuned = [{run = "full-tuned", untuned = "full"}]\n'
                        'recipe = [{run = "full", baseline = "quick"}]\n')
    assert report.main(["--manifest", str(manifest)]) == 0
    text = (tmp_path / "REPORT.md").read_text()
    assert "python -m bench.report quick --tuned-pair full-tuned full --recipe-pair full quick`" in text.splitlines()[2]
    recipes = text[text.index("## Recipe checks"):]  # the last section: full against quick, 128 -> 400 tokens
    assert "### `full` against `quick`" in recipes and "- `data.max_length`: `128` → `400`" in recipes
    brief, arms = text.index("## The answer in brief"), text.index("## Are the arms strong enough?")
    assert brief < arms < text.index("## Setup")
    assert "budget full, 400 tokens, every neural model tuned** (5 paired seeds," in text[brief:arms]
    for folder in ("quick", "full-tuned", "full"):  # the main run, the tuned run and its untuned run
        assert f"budget {'quick' if folder == 'quick' else 'full'} (`{folder}`)" in text[arms:]
    assert "## Tuned models: budget full (`full-tuned`)" in text and "with the untuned run `full`." in text
    assert "untuned = `full`" in text


# ----------------------------------------------------------------------------- the claim at a glance

def test_the_claim_at_a_glance_lists_every_confirmatory_verdict_and_tallies_them():
    from bench.stats_report import claim_glance

    def table(dataset, gap, acc):
        rows = [{"dataset": dataset, "family": "confirmatory", "metric": m, "model_a": "attn_rnn", "model_b": "rnn",
                 "better_when": w, "n": 6, "mean_diff": d, "ci_low": d - 0.004, "ci_high": d + 0.004, "p_holm": p,
                 "verdict": v} for m, w, (d, p, v) in (("gap_matched", "lower", gap), ("test_acc", "higher", acc))]
        rows.append({**rows[0], "family": "exploratory", "metric": "best_val_acc"})  # not the claim's
        return pd.DataFrame(rows)

    lines = claim_glance([("budget quick", "IMDB", table("imdb", (0.012, 0.01, "contradicted"), (0.006, 1e-5, "supported"))),
                          ("budget full", "AG News", table("ag_news", (0.001, 0.6, "not established"),
                                                           (0.0004, 0.9, "not established")))])
    body = [line for line in lines if line.startswith("| budget")]
    assert len(body) == 4 and "test accuracy" in body[0] and "overfits less" in body[1]  # accuracy first
    assert body[0] == ("| budget quick | IMDB | 6 | attn_rnn has higher test accuracy than rnn | +0.60 [+0.20, +1.00] "
                       "| <0.0001 | **supported** |")
    assert "- *attn_rnn has higher test accuracy than rnn*: supported in 1 of 2, not established in 1 of 2." in lines
    assert ("- *attn_rnn overfits less than rnn (train − val accuracy gap at matched epochs)*: contradicted in 1 of 2, "
            "not established in 1 of 2.") in lines
    assert claim_glance([("x", "IMDB", table("imdb", (0, 1, "x"), (0, 1, "x")).query("family != 'confirmatory'"))]) == []


def test_a_folder_that_repeats_another_experiment_is_named_as_no_independent_evidence():
    from bench.report import repeated_runs

    def runs(device: str, rnn_hash: str = "h-rnn", seeds=range(6), dataset: str = "imdb") -> pd.DataFrame:
        return pd.DataFrame([{"dataset": dataset, "model": m, "seed": s, "config_hash": h, "device": device}
                             for s in seeds for m, h in (("attn_rnn", "h-attn"), ("rnn", rnn_hash),
                                                         ("transformer", f"h-tf-{device}"))])

    claim = ("attn_rnn", "rnn")
    lines = repeated_runs([("results/cpu", runs("cpu"), claim), ("results/gpu", runs("cuda:0"), claim)])
    assert len(lines) == 2 and lines[-1] == ""
    assert lines[0].startswith("- `results/gpu` repeats `results/cpu` on IMDB: the same settings for attn_rnn and "
                               "rnn (one unit hash each in runs.csv) on 6 shared seeds, on another device (`cuda`; "
                               "`cpu` there).")
    assert "not independent evidence" in lines[0]
    # another setting for one claim arm, no shared seed, another dataset or another claim: no repeat
    assert repeated_runs([("a", runs("cpu"), claim), ("b", runs("cpu", rnn_hash="other"), claim)]) == []
    assert repeated_runs([("a", runs("cpu", seeds=[0, 1]), claim), ("b", runs("cpu", seeds=[2, 3]), claim)]) == []
    assert repeated_runs([("a", runs("cpu"), claim), ("b", runs("cpu", dataset="ag_news"), claim)]) == []
    assert repeated_runs([("a", runs("cpu"), claim), ("b", runs("cpu"), ("transformer", "rnn"))]) == []
    same = repeated_runs([("a", runs("cpu", seeds=[0, 1, 2]), claim), ("b", runs("cpu", seeds=[2, 3]), claim)])
    assert "on 1 shared seed, on the same device." in same[0]


def test_folders_whose_searches_tuned_the_claim_arms_differently_are_set_side_by_side():
    from bench.report import retuned_claims
    from bench.stats import CONFIRMATORY

    def runs(attn: int = 1_460_000, rnn: int = 1_457_000) -> pd.DataFrame:
        return pd.DataFrame([{"dataset": "ag_news", "model": m, "seed": s, "params": p}
                             for s in range(6) for m, p in (("attn_rnn", attn), ("rnn", rnn))])

    def table(diff: float, lo: float, hi: float, verdict: str) -> pd.DataFrame:
        return pd.DataFrame([{"dataset": "ag_news", "metric": "test_acc", "n": 6, "model_a": "attn_rnn",
                              "model_b": "rnn", "family": CONFIRMATORY, "mean_diff": diff, "ci_low": lo,
                              "ci_high": hi, "verdict": verdict}])

    def tuning(tag: str) -> dict:
        return {f"ag_news/{m}": {"study": f"ag_news-{m}-{tag}"} for m in ("attn_rnn", "rnn")}

    cfg = config.from_dict({"budget": "quick", "data": {"max_length": 128}})
    claim = ("attn_rnn", "rnn")
    banded = ("a", runs(), claim, cfg, tuning("x"), table(-0.0009, -0.006, 0.0043, "not established"))
    wide = ("b", runs(), claim, cfg, tuning("y"), table(-0.0096, -0.0131, -0.006, "contradicted"))
    (line,) = retuned_claims([banded, wide])
    assert line.startswith("- 2 folders tune attn_rnn and rnn on AG News at budget quick (128 tokens), within 5% "
                           "of each other in size, by different searches: attn_rnn − rnn test accuracy -0.09 pp "
                           "[-0.60, +0.43] (**not established**, `a`) and -0.96 pp [-1.31, -0.60] (**contradicted**, `b`).")
    assert line.endswith("depends on which search chose the arms and neither settles it alone.")
    agree = ("c", runs(), claim, cfg, tuning("z"), table(-0.002, -0.007, 0.003, "not established"))
    assert retuned_claims([banded, agree])[0].endswith("their verdicts agree.")
    assert retuned_claims([banded, ("d", *banded[1:])]) == []  # the same studies: one search, not two
    assert retuned_claims([banded, ("e", runs(attn=2_000_000), *wide[2:])]) == []  # sizes apart: size_confounds'
    untuned = ("f", runs(), claim, cfg, {}, wide[5])
    assert retuned_claims([banded, untuned]) == []  # only tuned folders
    other_budget = ("g", runs(), claim, config.from_dict({"budget": "full", "data": {"max_length": 128}}),
                    tuning("y"), wide[5])
    assert retuned_claims([banded, other_budget]) == []
    varied_tuning = {k: {**v, "trial_seed": "per_trial"} for k, v in tuning("v").items()}
    varied = ("h", runs(), claim, cfg, varied_tuning, table(-0.004, -0.009, 0.001, "not established"))
    (three,) = retuned_claims([banded, wide, varied])
    assert three.startswith("- 3 folders tune") and "(**not established**, `h`, each trial on its own seed)." in three
    assert ("depends on which search chose the arms and no one of them settles it alone. Taken as 3 draws of "
            "the search, the effect averages -0.48 pp, 95% t-interval over the searches [-1.58, +0.61]: with the "
            "search's own variation counted, the claim is **not established** across them.") in three
    lo, hi = sps.t.interval(0.95, 2, loc=-0.0145 / 3, scale=np.std([-0.0009, -0.0096, -0.004], ddof=1) / np.sqrt(3))
    assert f"[{lo * 100:+.2f}, {hi * 100:+.2f}]" == "[-1.58, +0.61]"

def test_claim_arms_of_different_sizes_are_named_in_the_brief():
    from bench.report import size_confounds

    def runs(attn: int, rnn: int, dataset: str = "ag_news") -> pd.DataFrame:
        return pd.DataFrame([{"dataset": dataset, "model": m, "seed": s, "params": p}
                             for s in range(6) for m, p in (("attn_rnn", attn), ("rnn", rnn), ("tfidf", 10))])

    claim = ("attn_rnn", "rnn")
    lines = size_confounds([("a", runs(2_000_000, 1_950_000), claim, "full"),
                            ("b", runs(1_469_796, 971_588), claim, "quick")])
    assert lines == ["- `b` on AG News: attn_rnn has 1,469,796 parameters, rnn 971,588 (+51%), more than the 5% "
                     "issue 13 allows between arms: its verdicts compare attn_rnn and rnn at different sizes, not "
                     "attention alone."]
    assert size_confounds([("c", runs(1_000_000, 1_060_000, "imdb"), claim, "quick")])[0].startswith(
        "- `c` on IMDB: attn_rnn has 1,000,000 parameters, rnn 1,060,000 (-6%)")
    assert size_confounds([("d", runs(2_000_000, 1_000_000).query("model != 'rnn'"), claim, "quick")]) == []
    # a folder that compares them within the tolerance on the same dataset and budget is named (not one at
    # another budget, nor one on another dataset)
    (line,) = size_confounds([("a", runs(2_000_000, 1_950_000), claim, "full"),
                              ("b", runs(1_469_796, 971_588), claim, "quick"),
                              ("e", runs(1_463_588, 1_457_380), claim, "quick"),
                              ("f", runs(1_463_588, 1_457_380, "imdb"), claim, "quick")])
    assert line.endswith("not attention alone. `e` compares them within 5% at the same budget.")


def test_a_folder_that_only_stops_differently_is_named_as_no_independent_evidence():
    from bench.report import shared_training

    def cfg(**train):
        return config.from_dict({"budget": "full", "models": ["rnn", "attn_rnn"], "model": KINDS,
                                 "train": {"epochs": 10, **train}})

    def runs(tag: str, seeds=range(6)) -> pd.DataFrame:
        return pd.DataFrame([{"dataset": "imdb", "model": m, "seed": s, "config_hash": f"{m}-{tag}"}
                             for s in seeds for m in ("attn_rnn", "rnn")])

    claim = ("attn_rnn", "rnn")
    base, valacc = ("results/base", cfg(), runs("loss"), claim), ("results/valacc", cfg(select_on="val_acc"),
                                                                    runs("acc"), claim)
    lines = shared_training([base, valacc])
    assert len(lines) == 2 and lines[-1] == ""
    assert lines[0].startswith("- `results/valacc` trains attn_rnn and rnn as `results/base` does on IMDB, on 6 "
                               "shared seeds, and differs only in when training stops and which epoch is kept "
                               "(`train.select_on` val_acc here, val_loss there).")
    # other training (a learning rate), a tuned folder (None: its units follow its studies), no shared seed, or
    # the very same units (an exact repeat, named elsewhere): nothing
    assert shared_training([base, ("results/lr", cfg(lr=0.01), runs("lr"), claim)]) == []
    assert shared_training([base, ("results/tuned", None, runs("tuned"), claim)]) == []
    assert shared_training([base, ("results/later", cfg(select_on="val_acc"), runs("acc", [7, 8]), claim)]) == []
    assert shared_training([base, ("results/again", cfg(), runs("loss"), claim)]) == []
    # a validation split carved by movie: the same start and batch order, most training texts shared
    movie = cfg()
    movie.data.val_groups = "movie"
    lines = shared_training([base, ("results/movie", movie, runs("movie"), claim)])
    assert lines[0] == ("- `results/movie` trains attn_rnn and rnn as `results/base` does on IMDB, on 6 shared seeds, "
                        "and differs only in how its validation split is carved (`data.val_groups` movie here, none "
                        "there). Seed *k* starts from the same initial weights and batch order in both and most of its "
                        "training texts are the same, so their two rows are strongly correlated, not independent "
                        "evidence.")


def test_a_folder_named_as_its_own_tuned_run_opens_the_report_once(tmp_path):
    folder = RunFolder(tmp_path / "tuned")
    folder.path.mkdir()
    atomic_write_json(folder.config_json, config.from_dict({"budget": "full", "models": ["rnn", "attn_rnn"],
                                                            "model": KINDS}).to_dict())
    table = pd.DataFrame([{"family": "confirmatory", "n": 6}])
    sources = report._answer_sources(folder.path, {folder.path: table}, TunedRun(folder.path, tmp_path / "untuned"), [])
    assert list(sources.values()) == [folder.path]
    assert list(sources) == [f"budget full, {config.DataConfig().max_length} tokens, every neural model tuned"]


def test_a_folder_tuned_within_one_parameter_band_says_so_in_its_label(tmp_path):
    from bench.arms_report import tuned_words

    folder = RunFolder(tmp_path / "banded")
    folder.path.mkdir()
    atomic_write_json(folder.config_json, config.from_dict({"budget": "quick", "models": ["rnn", "attn_rnn"],
                                                            "model": KINDS}).to_dict())
    study = {"param_floor": 1_420_000, "param_cap": 1_490_000}
    atomic_write_json(folder.tuning_json, {f"ag_news/{m}": study for m in ("rnn", "attn_rnn", "transformer")})
    assert folder.param_band() == (1_420_000, 1_490_000)
    assert tuned_words(folder) == "every neural model tuned within 1.42-1.49 M parameters"
    # a cap alone, or studies with different bands, is no band
    atomic_write_json(folder.tuning_json, {"ag_news/rnn": study, "ag_news/attn_rnn": {**study, "param_floor": 0}})
    assert folder.param_band() is None and tuned_words(folder) == "tuned: attn_rnn, rnn"
    atomic_write_json(folder.tuning_json, {"ag_news/rnn": {"param_cap": 2_500_000}})
    assert folder.param_band() is None and tuned_words(folder) == "tuned: rnn"


def test_each_arms_table_says_the_device_its_units_trained_on(tmp_path):
    accs = {"rnn": [0.890] * 6, "tfidf": [0.89] * 6}
    cpu = arms_folder(tmp_path / "cpu", "full", accs)
    gpu = arms_folder(tmp_path / "gpu", "full", accs)
    for path, device in ((cpu, "cpu"), (gpu, "cuda:0")):
        runs = pd.read_csv(RunFolder(path).runs_csv)
        runs["device"] = device
        atomic_write_csv(RunFolder(path).runs_csv, runs)
    atomic_write_json(RunFolder(gpu).path / "environment.json", {"gpu": "NVIDIA H100 80GB HBM3"})
    md = arms_section([cpu, gpu])
    assert "(deterministic: the same on all 6 seeds). Trained on `cpu`._" in md
    assert "seeds). Trained on `cuda` (NVIDIA H100 80GB HBM3; bf16 autocast, `train.amp`)._" in md
