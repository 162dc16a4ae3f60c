"""Build REPORT.md and its plots from a run folder's files alone (`python -m bench.report DIR`).

Nothing here trains, reads the raw data or imports torch: every number comes from runs.csv,
epochs.csv, the prediction files, config.json, datasets.json and environment.json, so anyone can
recompute it. Output is deterministic: running it twice gives a byte-identical REPORT.md.
The statistics are computed (bench.compare) and written to their CSVs first, then rendered.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from bench import cli
from bench.arms_report import SIZE_TOLERANCE, arms_section, size_spread, tuned_words
from bench.attention_report import attention_section
from bench.compare import analyse, write_tables
from bench.config import SELECT_ON, SOURCES, BenchError, ClaimConfig, Config, cut_words, truncation_words
from bench.model_report import (folder_learning_curves, mean_sd, model_table, paired_diff_cell, plot_ablation,
                                plot_gap, verdict)
from bench.paired import t_interval
from bench.recipe_report import recipe_checks_section
from bench.results import (DATASET_TITLES, FULL_TRAIN_ROWS, RecipePair, ReportManifest, RunFolder, TunedRun,
                           atomic_write_text, device_names, failed_runs, load_manifest, ok_runs, relative_link)
from bench.results import ordered_datasets as _datasets, ordered_models as _models
from bench.speed_report import speed_section
from bench.stats import CONFIRMATORY
from bench.stats_report import claim_glance, claim_lines, hypothesis_words, run_claim, statistics_section, tests_claim
from bench.tuning_report import tuning_section
from bench.variance_report import variance_section


def _threads(runs: pd.DataFrame, env: dict) -> str:
    """Thread counts as recorded per run (older runs without the column: not recorded)."""
    if "threads" not in runs:
        return f"{env.get('torch_threads')} (environment.json)"
    counts = runs["threads"].fillna(-1).astype(int).value_counts().sort_index(ascending=False)
    parts = [f"{'not recorded' if k < 0 else k} ({n} runs)" for k, n in counts.items()]
    return ", ".join(parts) if parts else str(env.get("torch_threads"))


def answer_section(run_dirs: dict[str, Path], tables: dict[Path, pd.DataFrame]) -> list[str]:
    """The claim's verdicts from every run folder, up front (the same sentences as in the
    statistics sections below, where the tests and effect sizes are explained)."""
    out = ["## The answer in brief", "",
           "_The confirmatory verdicts of the statistics sections below, gathered here: per dataset, the claim's "
           "hypotheses on test accuracy and on the overfitting gap at matched epochs, each with its effect, 95% "
           "t-interval, P(A better), Holm p within the claim's family (per run folder) and power. First all of them "
           "at a glance (positive A − B favours A on test accuracy, B on the gap):_", ""]
    ok_by_folder = {run_dir: ok_runs(RunFolder(run_dir).read_tables()[0]) for run_dir in run_dirs.values()}
    out += claim_glance([(label, RunFolder(run_dir).dataset_title(dataset),
                          tables[run_dir][tables[run_dir]["dataset"] == dataset])
                         for label, run_dir in run_dirs.items() for dataset in _datasets(ok_by_folder[run_dir])])
    cfgs = {d: RunFolder(d).stored_config() for d in run_dirs.values()}
    claims = {d: cfgs[d].claim or ClaimConfig() for d in run_dirs.values()}
    repeats = repeated_runs([(relative_link(d, Path.cwd()), ok_by_folder[d], (claims[d].model_a, claims[d].model_b))
                             for d in run_dirs.values()])
    shared = shared_training([(relative_link(d, Path.cwd()), None if RunFolder(d).tuned_models() else cfgs[d],
                               ok_by_folder[d], (claims[d].model_a, claims[d].model_b)) for d in run_dirs.values()])
    sizes = size_confounds([(relative_link(d, Path.cwd()), ok_by_folder[d], (claims[d].model_a, claims[d].model_b),
                             cfgs[d].budget) for d in run_dirs.values()])
    searches = retuned_claims([(relative_link(d, Path.cwd()), ok_by_folder[d], (claims[d].model_a, claims[d].model_b),
                                cfgs[d], RunFolder(d).tuning(), tables[d]) for d in run_dirs.values()])
    notes = [line for line in repeats + shared + sizes + searches if line]
    out += notes + [""] if notes else []
    for label, run_dir in run_dirs.items():
        folder, ok = RunFolder(run_dir), ok_by_folder[run_dir]
        for dataset in _datasets(ok):
            n = ok.loc[ok["dataset"] == dataset, "seed"].nunique()
            out += [f"**{folder.dataset_title(dataset)}, {label}** ({n} paired seed{'s' if n != 1 else ''}, "
                    f"`{relative_link(run_dir, Path.cwd())}`):", "", *claim_lines(tables[run_dir], dataset), ""]
    return out


def repeated_runs(folders: list[tuple[str, pd.DataFrame, tuple[str, str]]]) -> list[str]:
    """A line for each folder whose claim rows repeat an earlier folder's experiment: on a dataset, both
    claim models with the same settings (one unit hash each in runs.csv, the same in both) on shared
    seeds. Seed k then starts from the same split, batch order and initial weights in both, so the two
    verdicts are one experiment run twice (on another device, say), not independent evidence — the
    tally above counts each. `folders`: (name, ok runs, (model A, model B)) in report order."""
    def hashes(ok: pd.DataFrame, dataset: str, model: str) -> frozenset:
        return frozenset(ok.loc[(ok["dataset"] == dataset) & (ok["model"] == model), "config_hash"].dropna())

    def devices(ok: pd.DataFrame, dataset: str, models: tuple[str, str]) -> str:
        return ", ".join(device_names(ok[(ok["dataset"] == dataset) & ok["model"].isin(models)]))

    out = []
    for j, (name, ok, models) in enumerate(folders):
        for earlier, ok_earlier, models_earlier in folders[:j]:
            if models_earlier != models:
                continue
            for dataset in _datasets(ok):
                same = all(len(h := hashes(ok, dataset, m)) == 1 and h == hashes(ok_earlier, dataset, m)
                           for m in models)
                seeds = sorted(set(ok.loc[ok["dataset"] == dataset, "seed"])
                               & set(ok_earlier.loc[ok_earlier["dataset"] == dataset, "seed"]))
                if not (same and seeds):
                    continue
                here, there = devices(ok, dataset, models), devices(ok_earlier, dataset, models)
                where = f"on another device (`{here}`; `{there}` there)" if here != there else "on the same device"
                out.append(f"- `{name}` repeats `{earlier}` on {DATASET_TITLES.get(dataset, dataset)}: the same "
                           f"settings for {models[0]} and {models[1]} (one unit hash each in runs.csv) on "
                           f"{len(seeds)} shared seed{'s' if len(seeds) != 1 else ''}, {where}. Seed *k* starts from "
                           "the same split, batch order and initial weights in both, so their two rows are one "
                           "experiment run twice, not independent evidence; where their verdicts differ, only the "
                           "machines' arithmetic (rounding, nondeterministic kernels) differed between them.")
    return out + [""] if out else []


def claim_sizes(ok: pd.DataFrame, dataset: str, models: tuple[str, str]) -> list[float] | None:
    """The two claim models' parameter counts on a dataset (None when either is missing)."""
    d = ok[ok["dataset"] == dataset]
    size = [pd.to_numeric(d.loc[d["model"] == m, "params"], errors="coerce").max() for m in models]
    return None if any(pd.isna(x) or x <= 0 for x in size) else size


def size_confounds(folders: list[tuple[str, pd.DataFrame, tuple[str, str], str]]) -> list[str]:
    """A line for each folder and dataset where the claim's two models differ in size by more than
    `SIZE_TOLERANCE` (tuned arms each pick their own size): a difference between them is then also
    a difference in parameters. The line names the folders that compare the two within the tolerance
    on that dataset at the same budget. `folders`: (name, ok runs, (model A, model B), budget) in
    report order."""
    sizes: dict[tuple[str, str], tuple[list[float], tuple[str, str], str]] = {}
    for name, ok, models, budget in folders:
        for dataset in _datasets(ok):
            if size := claim_sizes(ok, dataset, models):
                sizes[name, dataset] = size, models, budget
    out = []
    for (name, dataset), (size, models, budget) in sizes.items():
        if size_spread(size) <= SIZE_TOLERANCE:
            continue
        matched = [f"`{other}`" for (other, d), (s, m, b) in sizes.items()
                   if d == dataset and m == models and b == budget and size_spread(s) <= SIZE_TOLERANCE]
        out.append(f"- `{name}` on {DATASET_TITLES.get(dataset, dataset)}: {models[0]} has {int(size[0]):,} "
                   f"parameters, {models[1]} {int(size[1]):,} ({size[0] / size[1] - 1:+.0%}), more than the "
                   f"{SIZE_TOLERANCE:.0%} issue 13 allows between arms: its verdicts compare "
                   f"{models[0]} and {models[1]} at different sizes, not attention alone."
                   + (f" {' and '.join(matched)} compare{'s' if len(matched) == 1 else ''} them within "
                      f"{SIZE_TOLERANCE:.0%} at the same budget." if matched else ""))
    return out


def retuned_claims(folders: list[tuple[str, pd.DataFrame, tuple[str, str], Config, dict, pd.DataFrame]]) -> list[str]:
    """A line for each dataset where two or more folders tune both claim models at the same budget and
    truncation, within `SIZE_TOLERANCE` of each other in size, by different searches (other studies):
    their test-accuracy effects side by side. Each folder's interval holds its chosen configurations
    fixed, so the spread between searches is uncertainty none of them shows; where their verdicts differ,
    the verdict at that budget depends on the search. `folders`: (name, ok runs, (model A, model B),
    stored config, tuning.json contents, comparison table) in report order."""
    groups: dict[tuple, list[tuple[str, pd.Series]]] = {}
    for name, ok, models, cfg, tuning, table in folders:
        for dataset in _datasets(ok):
            studies = [tuning.get(f"{dataset}/{m}", {}).get("study") for m in models]
            size = claim_sizes(ok, dataset, models)
            if None in studies or not size or size_spread(size) > SIZE_TOLERANCE:
                continue
            claim = table[(table["dataset"] == dataset) & (table["metric"] == "test_acc") & (table["n"] >= 1)
                          & (table["model_a"] == models[0]) & (table["model_b"] == models[1])
                          & (table["family"] == CONFIRMATORY)]
            if len(claim):
                key = (dataset, cfg.budget, cut_words(cfg.data), models)
                per_trial = all(tuning[f"{dataset}/{m}"].get("trial_seed") == "per_trial" for m in models)
                label = f"`{name}`" + (", each trial on its own seed" if per_trial else "")
                groups.setdefault(key, []).append((label, tuple(studies), claim.iloc[0]))
    out = []
    for (dataset, budget, tokens, models), rows in groups.items():
        if len({studies for _, studies, _ in rows}) < 2:
            continue
        effects = " and ".join(f"{r['mean_diff'] * 100:+.2f} pp [{r['ci_low'] * 100:+.2f}, {r['ci_high'] * 100:+.2f}] "
                               f"(**{r['verdict']}**, {label})" for label, _, r in rows)
        verdicts = {r["verdict"] for _, _, r in rows}
        out.append(f"- {len(rows)} folders tune {models[0]} and {models[1]} on {DATASET_TITLES.get(dataset, dataset)} "
                   f"at budget {budget} ({tokens}), within {SIZE_TOLERANCE:.0%} of each other in size, "
                   f"by different searches: {models[0]} − {models[1]} test accuracy {effects}. Each interval holds "
                   "its folder's chosen configurations fixed, so the spread between searches is uncertainty none "
                   "of them shows; "
                   + (("their verdicts differ, so the verdict at this budget depends on which search chose the arms "
                       + ("and neither settles it alone." if len(rows) == 2 else "and no one of them settles it alone."))
                      if len(verdicts) > 1 else "their verdicts agree.")
                   + (across_searches([r["mean_diff"] for _, _, r in rows]) if len(rows) >= 3 else ""))
    return out


def across_searches(effects: list[float]) -> str:
    """The folders' effects taken as draws of the search: their mean and a t-interval over them, which
    counts how much the choice of configurations moves the effect (each folder's own interval does not)."""
    lo, hi = t_interval(effects)
    mean = sum(effects) / len(effects)
    word = ("holds across them" if lo > 0 else "is contradicted across them" if hi < 0 else
            "is **not established** across them")
    return (f" Taken as {len(effects)} draws of the search, the effect averages {mean * 100:+.2f} pp, 95% t-interval "
            f"over the searches [{lo * 100:+.2f}, {hi * 100:+.2f}]: with the search's own variation counted, the "
            f"claim {word}. The searches differ in design (space, trial count, trial seeds), so this is a rough "
            "measure of that variation, not an estimate for one search procedure.")


# settings that decide only which epoch is kept and when training stops, not the training up to then
STOPPING_ONLY = {"select_on": "val_loss", "patience": 0, "eval_batch_size": 0, "threads": 0}


def shared_training(folders: list[tuple[str, Config | None, pd.DataFrame, tuple[str, str]]]) -> list[str]:
    """A line for each folder whose claim models train exactly as in an earlier folder (the latest such)
    but stop or keep another epoch (`STOPPING_ONLY` differs: say early stopping on validation accuracy
    instead of loss), or carve validation another way (`data.val_groups`). Seed k's runs are then the
    same run up to the earlier stop, or share their start, batch order and most training texts, so
    the two folders' verdicts are not independent evidence; exact repeats are `repeated_runs`'s.
    `folders`: (name, stored config, or None for a tuned folder, whose units do not train as its
    stored config says; ok runs, (model A, model B)) in report order."""
    def training(cfg: Config, models: tuple[str, str]) -> tuple:
        train = dataclasses.replace(cfg.train, **STOPPING_ONLY)
        data = dataclasses.replace(cfg.data, val_groups="")
        return data, sorted(cfg.vary), train, tuple(cfg.model.get(m) for m in models)

    def hashes(ok: pd.DataFrame, dataset: str, models: tuple[str, str]) -> set:
        return set(ok.loc[(ok["dataset"] == dataset) & ok["model"].isin(models), "config_hash"].dropna())

    out = []
    for j, (name, cfg, ok, models) in enumerate(folders):
        named = set()  # datasets already named for this folder: against the latest matching folder only
        for earlier, cfg_earlier, ok_earlier, models_earlier in reversed(folders[:j]):
            if cfg is None or cfg_earlier is None or models_earlier != models or None in training(cfg, models)[3]:
                continue
            if training(cfg, models) != training(cfg_earlier, models):
                continue
            for dataset in [d for d in _datasets(ok) if d not in named]:
                seeds = sorted(set(ok.loc[ok["dataset"] == dataset, "seed"])
                               & set(ok_earlier.loc[ok_earlier["dataset"] == dataset, "seed"]))
                if not seeds or hashes(ok, dataset, models) == hashes(ok_earlier, dataset, models):
                    continue  # nothing shared, or an exact repeat (named by repeated_runs)
                differ = [f"`train.{k}` {getattr(cfg.train, k)} here, {getattr(cfg_earlier.train, k)} there"
                          for k in STOPPING_ONLY if getattr(cfg.train, k) != getattr(cfg_earlier.train, k)]
                shared = (f"- `{name}` trains {models[0]} and {models[1]} as `{earlier}` does on "
                          f"{DATASET_TITLES.get(dataset, dataset)}, on {len(seeds)} shared seed"
                          f"{'s' if len(seeds) != 1 else ''}, and differs only in ")
                if cfg.data.val_groups != cfg_earlier.data.val_groups:
                    out.append(shared + f"how its validation split is carved (`data.val_groups` "
                               f"{cfg.data.val_groups or 'none'} here, {cfg_earlier.data.val_groups or 'none'} there"
                               f"{'; ' if differ else ''}{'; '.join(differ)}). Seed *k* starts from the same initial "
                               "weights and batch order in both and most of its training texts are the same, so "
                               "their two rows are strongly correlated, not independent evidence.")
                else:
                    out.append(shared + "when training stops and which epoch is kept "
                               f"({'; '.join(differ) or 'no stopping setting'}). Seed *k*'s runs are the same run up "
                               "to the earlier stop, so their two rows are not independent evidence either.")
                named.add(dataset)
    return out + [""] if out else []


Tuned = Path | TunedRun | list[TunedRun] | None


def tuned_runs(tuned: Tuned, run_dir: Path) -> list[TunedRun]:
    """Every tuned run with its untuned folder filled in (`run_dir` where none was given)."""
    items = tuned if isinstance(tuned, list) else [] if tuned is None else [tuned]
    items = [t if isinstance(t, TunedRun) else TunedRun(Path(t)) for t in items]
    return [TunedRun(Path(t.run), Path(t.untuned) if t.untuned else Path(run_dir)) for t in items]


def _same(a: Path, b: Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _answer_sources(run_dir: Path, tables: dict[Path, pd.DataFrame], tuned: Tuned,
                    others: list[Path]) -> dict[str, Path]:
    """Which folders' verdicts open the report, each with its label: this run, each tuned run
    (named by its own budget), and every other run that tests the claim. A label two folders would
    share gets the folder's name."""
    answer_from = {f"budget {RunFolder(run_dir).stored_config().budget}": run_dir}

    def add(label: str, folder: Path) -> None:
        for old, there in list(answer_from.items()):
            if _same(there, folder):  # a folder named twice (its own report naming itself as tuned): one row,
                items = [(label if k == old else k, v) for k, v in answer_from.items()]  # the later label
                answer_from.clear()
                answer_from.update(items)
                return
        answer_from[label if label not in answer_from else f"{label} ({Path(folder).name})"] = folder

    for t in tuned_runs(tuned, run_dir):
        if not tests_claim(tables[t.run]):  # e.g. only the Transformer was tuned
            continue
        tcfg = RunFolder(t.run).stored_config()
        tokens = "" if _same(t.untuned, run_dir) else f", {cut_words(tcfg.data)}"
        add(f"budget {tcfg.budget}{tokens}, {tuned_words(RunFolder(t.run))}", t.run)
    for other in others:
        if tests_claim(tables[other]):
            ocfg, tuned_by = RunFolder(other).stored_config(), RunFolder(other).tuned_models()
            add(f"budget {ocfg.budget}, {cut_words(ocfg.data)}, ≤ {ocfg.train.epochs} epochs"
                + (f", {tuned_words(RunFolder(other))}" if tuned_by else ""), other)
    return answer_from


def _seed_sources(cfg) -> str:
    """Which random sources a seed drives in this run, and where the others are held."""
    d = cfg.data
    words = {"init": "initialisation and dropout stream", "order": "batch order",
             "split": f"stratified validation split ({d.val_fraction:.0%} of train"
                      + (f", whole {d.val_groups}s on one side)" if d.val_groups else ")")}
    varied = [words[s] for s in SOURCES if s in cfg.vary]
    fixed = [f"{words[s]} (held at seed {getattr(cfg.unit_seeds(-1), s)})" for s in SOURCES
             if s not in cfg.vary]
    text = f"seed *k* gives every model the same {', '.join(varied)} (config `vary = {cfg.vary}`)"
    if fixed:
        text += f"; not varied: {', '.join(fixed)}"
    if "split" in cfg.vary:
        text += ("; the vocabulary was built once, on the training part of split seed "
                 f"{d.split_seed}, so under other splits validation texts helped decide which words have an id "
                 "(no labels leak)")
    return text + "."


def rerun_line(folder: RunFolder) -> str:
    """What a reader should expect when rerunning, and the last reproduction check if one was recorded."""
    line = ("- Rerunning: on CPU the same command, commit and software stack reproduce runs.csv and epochs.csv bit for "
            "bit apart from timing columns; on another machine, CPU model, thread count or library build, expect "
            "small moves (floating-point reductions differ), which early stopping can amplify into a different "
            "selected epoch — a fraction of a percentage point of test accuracy for a unit, and a few test texts "
            "even for the TF-IDF floor. `python -m bench.reproduce <run> --units K` reruns K committed units here "
            "and reports which match bit for bit and how far the others moved.")
    if folder.reproduction_csv.is_file():
        rep = pd.read_csv(folder.reproduction_csv)
        moved = rep.loc[~rep["bit_identical"], "test_acc_diff"].abs()
        line += (f" Recorded check (reproduction.csv): {int(rep['bit_identical'].sum())} of {len(rep)} units "
                 "reproduced bit for bit" + (f", the others moved by up to {moved.max() * 100:.2f} pp of test "
                                             "accuracy" if len(moved) else "")
                 + (f"; rerun at commit {str(rep['git_sha_now'].iloc[0])[:12]}, the units were made at "
                    f"{', '.join(sorted({str(s)[:12] for s in rep['git_sha_then']}))}"
                    if (rep["git_sha_now"] != rep["git_sha_then"]).any() else "; same commit") + ".")
    return line


def setup_lines(folder: RunFolder, runs: pd.DataFrame) -> list[str]:
    """How the run was made: budget, seeds, text, training, gap definition, hardware, data sizes."""
    cfg, env, dsets = folder.stored_config(), folder.environment(), folder.datasets_info()
    d, t = cfg.data, cfg.train
    seeds = sorted(int(s) for s in runs["seed"].unique())  # what ran: a run stopped early lists more in config.json
    out = [
        "## Setup",
        "",
        f"- Budget **{cfg.budget}**: {cfg.description} (every setting as this folder's config.json records it; "
        f"the folder holds {len(seeds)} seeds).",
        f"- Seeds {', '.join(str(s) for s in seeds)}, paired: {_seed_sources(cfg)}",
        f"- Text: word-level vocabulary of at most {d.vocab_size:,} words trained on the training part only "
        f"(HF `tokenizers`, lower-cased={d.lowercase}, `<br />` removed), texts cut to "
        f"{truncation_words(d)} tokens.",
        f"- Training: AdamW (lr {t.lr:g} unless a model sets its own, weight decay {t.weight_decay:g}), "
        f"gradient clipping {t.grad_clip:g}, LR schedule {t.lr_schedule}, batch {t.batch_size}, "
        f"at most {t.epochs} epochs, early stopping on {SELECT_ON[t.select_on]} (patience {t.patience}); the best "
        "epoch's weights are restored before the single test evaluation.",
        "- Overfitting gap: accuracy on a fixed eval-mode subset of the training data "
        f"({d.train_eval_size:,} texts) minus validation accuracy, after every epoch (and validation loss minus "
        "that subset's loss); the tables below show it at each model's selected epoch, the verdict uses it at "
        "matched epochs (statistics section).",
        f"- Hardware: {env.get('gpu') or env.get('processor')}, {env.get('cpu_count')} CPU cores, "
        f"torch threads per run: {_threads(runs, env)}, device `{env['device']}`; Python {env['python']}, "
        f"torch {env['torch']}, datasets {env['datasets']}, tokenizers {env['tokenizers']}; "
        f"git {env['git_sha'][:12]}.",
    ]
    out.append(rerun_line(folder))
    wall = runs["wall_seconds"].sum()
    out.append(f"- Compute: {len(runs)} training runs took {wall / 60:.1f} min of wall time in total "
               f"(training, evaluation and test; data preparation not included).")
    for name, info in dsets.items():
        line = (f"- {DATASET_TITLES.get(name) or info.get('title') or name}: {info['train']:,} train / {info['val']:,} validation / "
                f"{info['test']:,} test texts, vocabulary {info['vocab_size']:,}, "
                f"{info['truncated_fraction']:.0%} of test texts truncated; source `{info['source']}`.")
        full_train = info["train"] + info["val"]
        if name == "ag_news" and full_train < FULL_TRAIN_ROWS["ag_news"]:
            line += (f" **AG News was trained on a {full_train:,}-row subset of the {FULL_TRAIN_ROWS['ag_news']:,} "
                     "training rows, so its accuracies are below published full-data numbers.**")
        out.append(line)
    return out


def dataset_lines(folder: RunFolder, report_dir: Path, runs: pd.DataFrame, epochs: pd.DataFrame,
                  dataset: str) -> list[str]:
    """One dataset's section: the model table, failed runs, curves and gap plots, per-seed
    differences, and what attention looks at."""
    title = folder.dataset_title(dataset)
    r = runs[runs["dataset"] == dataset]
    e = epochs[epochs["dataset"] == dataset]
    out = ["", f"## {title}", "", model_table(r), ""]
    for _, row in failed_runs(r).iterrows():
        out.append(f"- failed: {row['model']} seed {row['seed']}: {row['reason']}")
    if not e.empty:
        curves, gap = folder_learning_curves(folder, dataset, e), folder.plots / f"{dataset}_gap.png"
        plot_gap(ok_runs(r), dataset, gap, title)
        out += [f"![{title} learning curves]({relative_link(curves, report_dir)})", "",
                f"![{title} overfitting gap]({relative_link(gap, report_dir)})", ""]
    differences = verdict(r, dataset)
    if differences:
        out += [f"### Per-seed differences on {title}", "", differences, ""]
    attention = attention_section(folder.path, report_dir, dataset)
    if attention:
        out += [attention]
    return out


def _claim_intro(run_dir: Path) -> str:
    """The claim under test, in its own words and as hypotheses; whether the run declared it."""
    claim, declared = run_claim(run_dir)
    hyps = "; ".join(hypothesis_words(m, d, claim.model_a, claim.model_b) for m, d in claim.metrics.items())
    source = ("declared in the run's config before it ran" if declared else
              "the default claim — this run stored none, so it was not pre-registered")
    return (f"The claim under test ({source}): *{claim.statement}* — tested as: {hyps}. (First worded as \"lifts "
            "validation accuracy\"; it is answered on test accuracy, for the reason given in the statistics "
            "section.)")


def floor_sources(tuned_list: list[TunedRun], run_dir: Path, recipes: list[RecipePair] = ()) -> dict[Path, Path]:
    """Where a folder without the TF-IDF floor may borrow it: a tuned run from its untuned run (or the main
    run), a recipe check from its baseline (the first pair that names it); used only when the texts match."""
    floors = {t.run: t.untuned or run_dir for t in tuned_list}
    for r in recipes:
        floors.setdefault(r.run, r.baseline)
    return floors


def render(run_dir: Path, report_dir: Path, tables: dict[Path, pd.DataFrame], command: str | None = None,
           tuned: Tuned = None, others: list[Path] = (), recipes: list[RecipePair] = ()) -> str:
    """The report's markdown, with image links relative to `report_dir`; the verdicts of this run
    (and of each tuned run and each other run that tests the claim) open the report, then how
    strong the arms are in every folder that holds the TF-IDF floor. `tables` holds each folder's
    comparisons table."""
    folder = RunFolder(run_dir)
    runs, epochs = folder.read_tables()
    if runs.empty:
        raise BenchError(f"{run_dir}/runs.csv has no runs yet")
    # 1. title, the claim, and the verdicts in brief
    out = [
        "# Does attention pooling help a GRU? — bench report",
        "",
        f"_Generated by `{command or 'python -m bench.report ' + relative_link(run_dir, Path.cwd())}` from the CSV "
        "and JSON files in the folders it names; not edited by hand._",
        "",
        _claim_intro(run_dir),
        "",
        "`rnn` is a GRU classifier reading the hidden state at each text's last real token; `attn_rnn` is the "
        "same network with masked additive attention pooling over all time steps; `transformer` is a "
        "Transformer encoder with masked mean pooling, at a similar parameter count.",
        "",
        *answer_section(_answer_sources(run_dir, tables, tuned, others), tables),
    ]
    tuned_list = tuned_runs(tuned, run_dir)
    arms = arms_section([run_dir, *(p for t in tuned_list for p in t.folders), *others], report_dir,
                        floors=floor_sources(tuned_list, run_dir, recipes))
    if arms:
        out += [arms, ""]
    # 2. how the run was made
    out += setup_lines(folder, runs)
    # 3. per dataset: tables, plots, per-seed differences, attention
    for dataset in _datasets(runs):
        out += dataset_lines(folder, report_dir, runs, epochs, dataset)
    # 4. statistics, tuning and speed
    out += [statistics_section(run_dir, report_dir, tables[run_dir])]
    tuning = tuning_section(run_dir, report_dir)
    if tuning:
        out += [tuning, ""]
    if folder.speed_csv.exists():
        out += [speed_section(folder.speed_csv, report_dir, folder.plots)]
    return "\n".join(out)


def ablation_section(abl_dir: Path, report_dir: Path, table: pd.DataFrame) -> str:
    """Every variant of an ablation run against its reference (`table`: its `stats.compare`
    result), with parameter counts beside accuracy."""
    folder = RunFolder(abl_dir)
    runs, _ = folder.read_tables()
    cfg = folder.stored_config()
    ref = cfg.reference or "rnn"
    variants = {name: asdict(m) for name, m in cfg.model.items()}
    base = variants.get(ref, {})

    def change(name: str) -> str:
        diff = [f"{k}={v}" for k, v in sorted(variants[name].items()) if base.get(k) != v]
        return ", ".join(diff) if diff else "reference"

    out = ["## Ablation", "",
           f"_From `{relative_link(abl_dir, Path.cwd())}` ({cfg.description}). Every variant is compared with the "
           f"reference `{ref}` on the same seeds (paired t); p-values are Holm-adjusted within each row's family — "
           "the claim's pair is confirmatory, every other variant exploratory — so the claim's verdict does not "
           "depend on how many variants the folder holds; the gap is taken at matched epochs (see the statistics "
           "section); parameter counts sit beside accuracy so that \"better\" cannot be \"bigger\"._", ""]
    for dataset in sorted(set(runs["dataset"])):
        r = ok_runs(runs[runs["dataset"] == dataset])
        title = folder.dataset_title(dataset)
        out += [f"### {title}", "",
                "| variant | change vs reference | params | seeds | test acc % | Δ test acc vs ref (pp, 95% CI) | "
                "p (Holm, family) | d_z | gap at selected epoch (pp) | Δ gap at matched epochs vs ref (pp, 95% CI) "
                "| p (Holm, family) |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for model in _models(r):
            sub = r[r["model"] == model]
            cells = []
            for metric in ("test_acc", "gap_matched"):
                row = table[(table["dataset"] == dataset) & (table["model_a"] == model) & (table["model_b"] == ref)
                            & (table["metric"] == metric)]
                if row.empty:
                    cells.append(("–", "–", "–"))
                    continue
                x = row.iloc[0]
                fam = "C" if x["family"] == "confirmatory" else "E"
                cells.append((f"{x['mean_diff'] * 100:+.2f} [{x['ci_low'] * 100:+.2f}, {x['ci_high'] * 100:+.2f}]",
                              f"{x['p_holm']:.4f} ({fam})", f"{x['d_z']:.2f}"))
            out.append(f"| {model} | {change(model)} | {int(sub['params'].iloc[0]):,} | {len(sub)} "
                       f"| {mean_sd(sub['test_acc'])} | {cells[0][0]} | {cells[0][1]} | {cells[0][2]} "
                       f"| {mean_sd(sub['gap_acc'])} | {cells[1][0]} | {cells[1][1]} |")
        out += ["", "_(C): the claim's confirmatory family; (E): exploratory._"]
        png = folder.plots / f"{dataset}_ablation.png"
        plot_ablation(r, dataset, png, title)
        out += ["", f"![{title} ablation]({relative_link(png, report_dir)})", ""]
    return "\n".join(out)


def _demote(markdown: str) -> str:
    """Push every heading one level down, to nest another run's section inside this report."""
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines())


def _tuned_vs_untuned_rows(ok: pd.DataFrame, base_ok: pd.DataFrame, cfg) -> list[str]:
    """Per model: untuned and tuned test accuracy on the shared seeds, and the paired difference."""
    rows = []
    for model in _models(ok):
        if model in cfg.model and cfg.model[model].kind == "tfidf":
            continue  # not tuned: the same runs in both folders
        x = ok[ok["model"] == model].set_index("seed")
        y = base_ok[base_ok["model"] == model].set_index("seed")
        common = sorted(set(x.index) & set(y.index))
        if not common:
            continue
        ci, p = paired_diff_cell(x.loc[common, "test_acc"], y.loc[common, "test_acc"])
        rows.append(f"| {model} | {len(common)} | {mean_sd(y.loc[common, 'test_acc'])} "
                    f"| {mean_sd(x.loc[common, 'test_acc'])} | {ci} | {p} "
                    f"| {mean_sd(y.loc[common, 'gap_acc'])} | {mean_sd(x.loc[common, 'gap_acc'])} |")
    return rows


def tuned_section(tuned_dir: Path, base_dir: Path, report_dir: Path, table: pd.DataFrame,
                  main_dir: Path | None = None) -> str:
    """A tuned run beside its untuned one (`base_dir`): each model at its own tuned best, the paired
    tuned − untuned difference per model, the tuned run's statistics and its tuning studies. The
    heading names the budget and folder (several tuned runs can stand against the same main run)."""
    folder = RunFolder(tuned_dir)
    runs, _ = folder.read_tables()
    base, _ = RunFolder(base_dir).read_tables()
    cfg = folder.stored_config()
    seeds = sorted(set(runs["seed"]))
    of_main = main_dir is None or _same(base_dir, main_dir)
    rel_tuned, rel_base = relative_link(tuned_dir, Path.cwd()), relative_link(base_dir, Path.cwd())
    untuned = "the untuned run above" if of_main else f"the untuned run `{rel_base}`"
    out = [f"## Tuned models: budget {cfg.budget} (`{rel_tuned}`)", "",  # named: a report can hold several
           f"_From `{rel_tuned}`: the same data and training settings as budget "
           f"**{cfg.budget}** (texts cut to {cut_words(cfg.data)}, at most {cfg.train.epochs} epochs, early "
           f"stopping on validation loss), but the own hyper-parameters of {', '.join(folder.tuned_models()) or 'no model'} "
           "were tuned with Optuna on the validation split (studies below) and the best configuration retrained with seeds "
           f"{', '.join(map(str, seeds))}. TF-IDF is not tuned. Seeds are paired across models and with "
           f"{untuned}._", ""]
    for dataset in _datasets(runs):
        title = folder.dataset_title(dataset)
        r = runs[runs["dataset"] == dataset]
        ok = ok_runs(r)
        out += [f"### {title}: tuned", "", model_table(r), ""]
        gap = folder.plots / f"{dataset}_gap.png"
        plot_gap(ok, dataset, gap, f"{title} (tuned)")
        out += [f"![{title} tuned overfitting gap]({relative_link(gap, report_dir)})", "",
                f"Tuned − untuned test accuracy per model (paired by seed, untuned = `{relative_link(base_dir, Path.cwd())}`):", "",
                "| model | seeds | untuned test acc % | tuned test acc % | Δ (pp, 95% CI) | p (paired t) | "
                "untuned gap (pp) | tuned gap (pp) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        out += _tuned_vs_untuned_rows(ok, ok_runs(base[base["dataset"] == dataset]), cfg)
        differences = verdict(r, dataset)  # '' for a folder of one tuned model: nothing to pair it with
        out += [""] + ([f"#### Per-seed differences on {title} (tuned)", "", differences, ""] if differences else [])
    out += [_demote(statistics_section(tuned_dir, report_dir, table)), ""]
    tuning = tuning_section(tuned_dir, report_dir)
    if tuning:
        out += [_demote(tuning)]
    return "\n".join(out)


def other_run_section(other_dir: Path, report_dir: Path, table: pd.DataFrame) -> str:
    """A further run folder (another budget, e.g. longer texts): its settings, the model table and
    learning curves per dataset, and its statistics when it has paired models to compare."""
    folder = RunFolder(other_dir)
    runs, epochs = folder.read_tables()
    cfg = folder.stored_config()
    d, t = cfg.data, cfg.train
    rel = relative_link(other_dir, Path.cwd())
    out = [f"## Other run: `{rel}` (budget {cfg.budget})", "",
           f"_{cfg.description}. As run: texts cut to {cut_words(d)}, at most {t.epochs} "
           f"epochs (patience {t.patience}, LR schedule {t.lr_schedule}), seeds "
           f"{', '.join(map(str, sorted(set(runs['seed']))))}; everything else as in its `config.json`. "
           f"Full analysis in `{rel}/REPORT.md`._", ""]
    for dataset in _datasets(runs):
        title = folder.dataset_title(dataset)
        out += [f"### {title}", "", model_table(runs[runs["dataset"] == dataset]), ""]
        curves = folder_learning_curves(folder, dataset, epochs)
        if curves is not None:
            out += [f"![{title} learning curves ({cfg.budget})]({relative_link(curves, report_dir)})", ""]
    if len(table):
        out += [_demote(statistics_section(other_dir, report_dir, table)), ""]
    return "\n".join(out)


def statistics_of(folders: list[Path]) -> dict[Path, pd.DataFrame]:
    """Each folder's statistics, computed once and written to its CSVs; returns the comparisons tables."""
    tables = {}
    for folder in folders:
        stats_tables = analyse(folder)
        write_tables(folder, stats_tables)
        tables[folder] = stats_tables.comparisons
    return tables


def report_command(run_dir: Path, tuned: Tuned = None, ablation: Path | None = None, others: list[Path] = (),
                   variance: list[Path] = (), recipes: list[RecipePair] = ()) -> str:
    """The `bench.report` command that makes this report, as its header states it (a tuned run with
    its own untuned folder as `--tuned-pair TUNED UNTUNED`)."""
    def rel(d: Path) -> str:
        return relative_link(Path(d), Path.cwd())

    tuned_flags = [f"--tuned {rel(t.run)}" if _same(t.untuned, run_dir) else
                   f"--tuned-pair {rel(t.run)} {rel(t.untuned)}" for t in tuned_runs(tuned, run_dir)]
    return " ".join(["python -m bench.report", rel(run_dir), *tuned_flags]
                    + [f"--{flag} {rel(d)}" for flag, d in
                       (("ablation", ablation), *(("other", o) for o in others), *(("variance", v) for v in variance))
                       if d is not None]
                    + [" ".join(["--recipe-pair", rel(r.run), rel(r.baseline), *r.models]) for r in recipes])


def write_report(run_dir: Path, extra: Path | None = None, ablation: Path | None = None,
                 tuned: Tuned = None, others: list[Path] = (), variance: list[Path] = (),
                 recipes: list[RecipePair] = ()) -> list[Path]:
    """Write `<run_dir>/REPORT.md` and, if given, a second copy at `extra` (links adjusted). `tuned`:
    a tuned folder (compared with `run_dir`), or TunedRuns each naming its own untuned folder;
    `recipes`: folders each compared with the folder whose settings it changes."""
    run_dir = Path(run_dir)
    if not RunFolder(run_dir).is_run():
        raise BenchError(f"{run_dir} is not a run folder (no runs.csv)")
    written = []
    tuned, ablation = tuned_runs(tuned, run_dir), (Path(ablation) if ablation else None)
    others = [Path(o) for o in others]
    tuned_dirs = [t.run for t in tuned]
    recipe_dirs = [p for r in recipes for p in r.folders]
    for folder in dict.fromkeys(d for d in (run_dir, *(p for t in tuned for p in t.folders), ablation, *others,
                                            *variance, *recipe_dirs) if d is not None):
        RunFolder(folder).verify_tables()  # never render from a runs.csv that disagrees with units/
    for target in [RunFolder(run_dir).report_md] + ([Path(extra)] if extra else []):
        if target.is_dir():
            raise BenchError(f"report path {target} is a folder")
        if target.parent.exists() and not target.parent.is_dir():
            raise BenchError(f"report path {target} lies below a file")
    tables = statistics_of([d for d in (run_dir, *tuned_dirs, ablation, *others) if d is not None])
    command = report_command(run_dir, tuned, ablation, others, variance, recipes)
    for target in [RunFolder(run_dir).report_md] + ([Path(extra)] if extra else []):
        if target.exists() and target.is_dir():
            raise BenchError(f"report path {target} is a folder")
        text = render(run_dir, target.parent, tables, command, tuned, others, recipes)
        for t in tuned:
            text += "\n" + tuned_section(t.run, t.untuned, target.parent, tables[t.run], run_dir)
        if ablation is not None:
            text += "\n" + ablation_section(ablation, target.parent, tables[ablation])
        for other in others:
            text += "\n" + other_run_section(other, target.parent, tables[other])
        if variance:
            text += "\n" + variance_section([Path(v) for v in variance], run_dir, target.parent)
        if recipes:
            text += "\n" + recipe_checks_section(list(recipes))
        atomic_write_text(target, text)
        written.append(target)
    return written


def write_manifest_report(manifest: ReportManifest) -> list[Path]:
    """The repository's report, composed from the folders a report manifest declares."""
    return write_report(manifest.main, manifest.output, manifest.ablation, manifest.tuned, manifest.other,
                        manifest.variance, manifest.recipe)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.OneLineParser(prog="python -m bench.report",
                          description="Regenerate REPORT.md and plots from a results folder's files alone.")
    p.add_argument("run_dir", nargs="?", default=None, help="a results folder, e.g. results/quick")
    p.add_argument("--manifest", default=None,
                   help="compose the report from a report manifest (e.g. configs/report.toml: main, tuned, "
                        "ablation, other, variance, recipe and output) instead of run_dir and the options below")
    p.add_argument("--output", default=None, help="also write the report here (e.g. REPORT.md)")
    p.add_argument("--ablation", default=None, help="an ablation run folder whose variants join the report")
    p.add_argument("--tuned", action="append", default=[],
                   help="a tuned run folder (bench.run --tune) to report beside run_dir, its untuned run; repeatable")
    p.add_argument("--tuned-pair", action="append", dest="tuned", nargs=2, metavar=("TUNED", "UNTUNED"),
                   help="a tuned run folder and the untuned run folder it is compared with (e.g. another budget "
                        "than run_dir's); repeatable")
    p.add_argument("--other", action="append", default=[],
                   help="a further run folder (e.g. another budget) summarised at the end; repeatable")
    p.add_argument("--variance", action="append", default=[],
                   help="a run folder of the variance decomposition (configs/variance.toml with one source in "
                        "`vary`); repeat once per source")
    p.add_argument("--recipe-pair", action="append", default=[], nargs="+", metavar="RUN BASELINE [MODEL",
                   help="a run folder that changes a few settings and the folder it changes them against: each "
                        "model run in both (or only the MODELs named), paired by seed (a recipe check); repeatable")
    return p.parse_args(argv)


def execute(args: argparse.Namespace) -> int:
    if args.manifest is not None:
        if any((args.run_dir, args.output, args.ablation, args.tuned, args.other, args.variance, args.recipe_pair)):
            raise BenchError("--manifest names every folder and the output itself: give no run_dir, --output, "
                             "--tuned, --ablation, --other, --variance or --recipe-pair with it")
        manifest = load_manifest(args.manifest)
        for folder in manifest.folders():
            if not RunFolder(folder).is_run():
                raise BenchError(f"{folder} (named in {args.manifest}) is not a run folder (no runs.csv)")
        for path in write_manifest_report(manifest):
            print(f"wrote {path}")
        return 0
    if not args.run_dir:
        raise BenchError("give a results folder (e.g. results/quick) or --manifest configs/report.toml")
    tuned = [TunedRun(Path(t)) if isinstance(t, str) else TunedRun(Path(t[0]), Path(t[1])) for t in args.tuned]
    if any(len(pair) < 2 for pair in args.recipe_pair):
        raise BenchError("--recipe-pair needs a run folder and its baseline folder (then optionally model names)")
    recipes = [RecipePair(Path(pair[0]), Path(pair[1]), tuple(pair[2:])) for pair in args.recipe_pair]
    for extra_dir in (args.ablation, *(p for t in tuned for p in t.folders), *args.other, *args.variance,
                      *(p for r in recipes for p in r.folders)):
        if extra_dir and not RunFolder(extra_dir).is_run():
            raise BenchError(f"{extra_dir} is not a run folder (no runs.csv)")
    for path in write_report(Path(args.run_dir), Path(args.output) if args.output else None,
                             Path(args.ablation) if args.ablation else None, tuned, [Path(o) for o in args.other],
                             [Path(v) for v in args.variance], recipes):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.cli_main(parse_args, cli.unreadable_files_are_one_line(execute, "cannot build the report"), argv,
                        "nothing half-written: every file is replaced atomically")


if __name__ == "__main__":
    sys.exit(main())
