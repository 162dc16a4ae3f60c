""""Are the arms strong enough?": each neural model against the TF-IDF + logistic-regression floor
of its own folder (same data, truncation and seeds) and against the targets of issue 13, with the
published from-scratch IMDB lines beside them. A verdict on attention says little if the arms are
under-trained, so this follows the verdicts. Files in (runs.csv and config.json via RunFolder),
markdown out; every number but the literature constants is computed here, nothing is written; no torch."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import cut_words
from bench.model_report import folder_learning_curves
from bench.paired import paired_t, t_interval
from bench.results import (DATASET_TITLES, RunFolder, device_words, ok_runs, ordered_datasets, ordered_models,
                           relative_link)
from bench.tuning_report import optimism_table, study_outlook

FLOOR = "tfidf"
MIN_SEEDS = 6               # issue 13: targets are means over at least this many seeds
PARAM_CAP = 2_500_000       # issue 13: at most this many parameters per model
SIZE_TOLERANCE = 0.05       # issue 13: neural arms "within a few percent of each other" in size; read as 5%
TOLERANCE = 1e-9            # a mean exactly at a threshold reaches it (float noise aside)
FULL_IMDB_MINIMUM = {"attn_rnn": 0.895, "rnn": 0.890, "transformer": 0.880}  # budget full, mean test accuracy
TARGET_ARMS = ("rnn", "attn_rnn", "transformer")  # where a target applies, each must be in the folder
STRETCH_LINE = "NBSVM-bi"

# Published from-scratch IMDB test accuracy (%, no pretraining): the only numbers here not computed from the CSVs.
REFERENCE_LINES = (
    ("LSTM", 86.5, "Dai & Le 2015, *Semi-supervised sequence learning* (their LSTM baseline)"),
    ("Keras 1-block Transformer example", 87.45, "as stated in issue 13; the example reads 200 tokens per review, and "
     "its `pad_sequences(maxlen=200)` truncates `'pre'` by default: each review's *last* 200"),
    ("Maas et al. word vectors", 88.89, "Maas et al. 2011, *Learning word vectors for sentiment analysis*"),
    ("fastText with bigrams", 89.0, "measured by issue 13's author on this machine; not rerun here"),
    (STRETCH_LINE, 91.22, "Wang & Manning 2012, *Baselines and bigrams*"),
)


def reference(name: str) -> float:
    """A published line's IMDB test accuracy (%)."""
    return next(acc for line, acc, _ in REFERENCE_LINES if line == name)

ROW_COLUMNS = ["folder", "budget", "tuned", "max_length", "tokens", "epochs", "dataset", "seeds", "model", "params", "n",
               "mean", "ci_low", "ci_high", "floor_folder", "floor_n", "floor_mean", "floor_ci_low", "floor_ci_high",
               "floor_deterministic", "diff_n", "diff_mean", "diff_ci_low", "diff_ci_high", "target", "met", "misses",
               "margin", "training", "device"]


@dataclass(frozen=True)
class Target:
    """An issue-13 target for one arm: a mean to reach (None: none) and how far below the floor's
    mean the arm's mean may fall."""
    words: str
    minimum: float | None
    floor_margin: float


def target_for(budget: str, dataset: str, model: str) -> Target | None:
    """The target issue 13 sets for this budget, dataset and arm; None where it sets none."""
    if dataset == "imdb" and budget == "full":
        minimum = FULL_IMDB_MINIMUM.get(model)
        return Target((f"≥ {minimum * 100:.1f}% and " if minimum else "") + "≥ floor", minimum, 0.0)
    if dataset == "imdb" and budget == "quick":
        return Target("≥ floor − 1 pp", None, 0.01)
    if dataset == "ag_news":
        return Target("≥ floor − 2 pp", None, 0.02)
    return None


def margin(target: Target, mean: float, floor_mean: float) -> float:
    """The arm's mean minus the least mean that meets the target (the higher of its minimum and the floor's
    mean less the allowed margin): how near a miss came, comparable across folders whose floors differ."""
    least = floor_mean - target.floor_margin
    return mean - (max(least, target.minimum) if target.minimum is not None else least)


def judge(target: Target, n: int, mean: float, floor_mean: float, params: float) -> list[str]:
    """Why the arm misses its target (empty: met). Means are compared, as the issue states its targets."""
    misses = []
    if target.minimum is not None and mean < target.minimum - TOLERANCE:
        misses.append(f"mean {mean * 100:.2f}% < {target.minimum * 100:.1f}%")
    if mean < floor_mean - target.floor_margin - TOLERANCE:
        misses.append(f"{(floor_mean - mean) * 100:.2f} pp below the floor's mean")
    if params > PARAM_CAP:
        misses.append(f"{params / 1e6:.2f} M parameters > {PARAM_CAP / 1e6:.1f} M")
    if n < MIN_SEEDS:
        misses.append(f"{n} seeds < {MIN_SEEDS}")
    return misses


def _neural(cfg, models: list[str]) -> list[str]:
    """The arms: every model but the floor (and any other TF-IDF model)."""
    return [m for m in models if m != FLOOR and not (m in cfg.model and cfg.model[m].kind == "tfidf")]


def tuned_words(folder: RunFolder) -> str:
    """How a tuned folder's models were tuned, for labels: every neural model, or which ones."""
    tuned = folder.tuned_models()
    cfg = folder.stored_config()
    band = folder.param_band()
    within = f" within {band[0] / 1e6:.2f}-{band[1] / 1e6:.2f} M parameters" if band else ""
    if not tuned or set(_neural(cfg, list(cfg.model))) <= set(tuned):  # no record of the studies: as named
        return f"every neural model tuned{within}"
    return f"tuned{within}: {', '.join(tuned)}"


def training_ended(best_epoch: pd.Series, epochs_run: pd.Series, cap: int) -> str:
    """How an arm's training ended over its seeds, the first clue to why it misses a target: most
    seeds with their best validation epoch at the epoch cap were still improving when stopped (more
    epochs could help); seeds that early stopping ended before the cap had converged for this recipe."""
    best, ran = pd.to_numeric(best_epoch, errors="coerce").dropna(), pd.to_numeric(epochs_run, errors="coerce").dropna()
    if best.empty or ran.empty:
        return "–"
    n, at_cap, early = len(best), int((best >= cap).sum()), int((ran < cap).sum())
    where = f"best val epoch {best.mean():.1f} of {cap}"
    if 2 * at_cap >= n:
        return f"still improving at the {cap}-epoch cap ({at_cap} of {n} seeds best at the cap; {where})"
    if 2 * early > len(ran):
        return f"converged: {where}, early-stopped in {early} of {len(ran)} seeds"
    return f"peaked before the cap: {where}, early-stopped in {early} of {len(ran)} seeds"


def _arm(acc: pd.Series, floor: pd.Series, params: float, target: Target | None) -> dict:
    """One arm's numbers against the floor (per-seed accuracies indexed by seed); no seeds: not run."""
    seeds = sorted(set(acc.index) & set(floor.index))
    lo, hi = t_interval(acc)
    diff = paired_t(acc.loc[seeds], floor.loc[seeds]) if seeds else {"ci_low": np.nan, "ci_high": np.nan}
    if acc.empty:
        misses = ["not run in this folder"]
    else:
        misses = judge(target, len(acc), acc.mean(), floor.mean(), params) if target else []
    return {"params": params, "n": len(acc), "mean": float(acc.mean()) if len(acc) else np.nan, "ci_low": lo,
            "ci_high": hi, "diff_n": len(seeds),
            "diff_mean": float((acc.loc[seeds] - floor.loc[seeds]).mean()) if seeds else np.nan,
            "diff_ci_low": diff["ci_low"], "diff_ci_high": diff["ci_high"], "target": target.words if target else "",
            "met": target is not None and not misses, "misses": misses,
            "margin": margin(target, float(acc.mean()), float(floor.mean())) if target and len(acc) else np.nan}


def _floor(ok: pd.DataFrame, dataset: str) -> pd.Series:
    """The TF-IDF test accuracies among a folder's ok runs on a dataset, indexed by seed (empty: not run)."""
    return ok[(ok["dataset"] == dataset) & (ok["model"] == FLOOR)].set_index("seed")["test_acc"].dropna()


def borrowed_floor(run_dir: Path, dataset: str, borrow: dict[Path, Path]) -> tuple[pd.Series, Path | None]:
    """For a folder that did not run the floor, the floor of the folder `borrow` names for it (resolved path →
    folder: a tuned run's untuned folder, or the folder a recipe check changes settings against), when both
    read the same texts the same way (equal `data` settings and varied sources, so seed k has the same split
    and truncation in both), with the folder that ran it; else (empty, None). When that folder did not run the
    floor either, its own entry is followed (a tuned run on the GPU → its untuned run there → the CPU folder
    with the same data that ran TF-IDF). TF-IDF depends on neither the neural arms' settings nor the device
    (scikit-learn on the CPU)."""
    seen = {Path(run_dir).resolve()}
    floor_dir = borrow.get(Path(run_dir).resolve())
    mine = RunFolder(run_dir).stored_config()
    while floor_dir is not None and Path(floor_dir).resolve() not in seen:
        theirs = RunFolder(floor_dir).stored_config()
        if mine.data != theirs.data or sorted(mine.vary) != sorted(theirs.vary):
            break
        floor = _floor(ok_runs(RunFolder(floor_dir).read_tables()[0]), dataset)
        if not floor.empty:
            return floor, Path(floor_dir)
        seen.add(Path(floor_dir).resolve())
        floor_dir = borrow.get(Path(floor_dir).resolve())
    return pd.Series(dtype=float), None


def arms_rows(run_dir: Path, borrow: dict[Path, Path] | None = None) -> list[dict]:
    """One row per dataset × neural model of a folder holding the floor (or borrowing it along `borrow`; see
    `borrowed_floor`): mean and t-interval over ok seeds, the floor, the paired model − floor difference, and
    the target's verdict. An arm a target names but the folder lacks gets a row too (missed: not run)."""
    folder = RunFolder(run_dir)
    ok = ok_runs(folder.read_tables()[0])
    cfg, tuned = folder.stored_config(), folder.tuned_models()
    rows = []
    for dataset in ordered_datasets(ok):
        d = ok[ok["dataset"] == dataset]
        floor, floor_from = _floor(ok, dataset), ""
        if floor.empty and borrow:
            floor, floor_from = borrowed_floor(run_dir, dataset, borrow)
        if floor.empty:
            continue
        floor_lo, floor_hi = t_interval(floor)
        common = {"folder": run_dir, "floor_folder": floor_from, "budget": cfg.budget,
                  "tuned": tuned_words(folder) if tuned else "",
                  "max_length": cfg.data.max_length, "tokens": cut_words(cfg.data), "epochs": cfg.train.epochs,
                  "dataset": dataset,
                  "seeds": sorted(set(d["seed"])), "floor_n": len(floor), "floor_mean": float(floor.mean()),
                  "floor_ci_low": floor_lo, "floor_ci_high": floor_hi,
                  "floor_deterministic": len(floor) > 1 and np.ptp(floor.to_numpy()) == 0,
                  "device": device_words(d, folder)}
        arms = _neural(cfg, ordered_models(d))
        if target_for(cfg.budget, dataset, "") is not None and not tuned:  # a tuned run's
            # other arms are in its untuned folder
            arms += [m for m in TARGET_ARMS if m not in arms]
        for model in arms:
            sub = d[d["model"] == model].set_index("seed")
            params = float(pd.to_numeric(sub["params"], errors="coerce").max()) if len(sub) else np.nan
            arm = _arm(sub["test_acc"].dropna(), floor, params, target_for(cfg.budget, dataset, model))
            training = training_ended(sub.get("best_epoch", pd.Series(dtype=float)),
                                      sub.get("epochs_run", pd.Series(dtype=float)), cfg.train.epochs)
            rows.append({**common, "model": model, **arm, "training": training})
    return rows


def arms_table(folders: list[Path], floors: dict[Path, Path] | None = None) -> pd.DataFrame:
    """`arms_rows` of every folder that holds the floor, or borrows it (`floors`: a tuned run's folder →
    its untuned folder, a recipe check's folder → its baseline), each folder once, in the order given."""
    seen, rows = set(), []
    borrow = {Path(k).resolve(): Path(v) for k, v in (floors or {}).items()}
    for f in folders:
        if Path(f).resolve() not in seen:
            seen.add(Path(f).resolve())
            rows += arms_rows(Path(f), borrow)
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


def _pct(mean: float, lo: float, hi: float, sign: str = "") -> str:
    """A mean in percent with its interval (none for one value, or when it is a point)."""
    text = f"{mean * 100:{sign}.2f}"
    return text if np.isnan(lo) or lo == hi else f"{text} [{lo * 100:{sign}.2f}, {hi * 100:{sign}.2f}]"


def folder_label(row: pd.Series) -> str:
    """Which budget (and whether tuned) produced a row, and from which folder."""
    tuned = f", {row['tuned']}" if row["tuned"] else ""
    return f"budget {row['budget']}{tuned} (`{relative_link(row['folder'], Path.cwd())}`)"


def _verdict(row: pd.Series) -> str:
    if not row["target"]:
        return "no target"
    if row["met"]:
        return "**met**"
    misses = row["misses"]
    if all(m.endswith(f"seeds < {MIN_SEEDS}") for m in misses):
        return f"**missed** ({misses[0]}; the means alone would meet it)"
    return f"**missed** ({'; '.join(misses)})"


def size_spread(sizes) -> float:
    """How much larger the largest parameter count is than the smallest (0.05: 5% larger)."""
    return max(sizes) / min(sizes) - 1


def size_lines(rows: pd.DataFrame) -> list[str]:
    """How far apart the neural arms' parameter counts are: issue 13 asks for arms within a few percent
    of each other (`SIZE_TOLERANCE`), else a difference between them is also a difference in size."""
    sizes = rows.set_index("model")["params"].dropna()
    if len(sizes) < 2:
        return []
    small, large = sizes.idxmin(), sizes.idxmax()
    spread = size_spread(sizes)
    words = (f"within {SIZE_TOLERANCE:.0%} of each other, as issue 13 asks" if spread <= SIZE_TOLERANCE else
             f"**not within {SIZE_TOLERANCE:.0%}** of each other (issue 13 asks for a few percent): a difference "
             "between these arms is also a difference in size")
    return ["", f"Sizes: {small} {int(sizes.min()):,} to {large} {int(sizes.max()):,} parameters "
                f"({spread:+.1%}): {words}."]


def _folder_table(rows: pd.DataFrame, report_dir: Path) -> list[str]:
    """One folder's table for one dataset, then a link to the learning curves that show why an arm stopped where it did."""
    first = rows.iloc[0]
    seeds, n_floor = first["seeds"], first["floor_n"]
    floor_note = (f"deterministic: the same on all {n_floor} seeds" if first["floor_deterministic"]
                  else f"{n_floor} seed{'s' if n_floor != 1 else ''}")
    floor = _pct(first["floor_mean"], first["floor_ci_low"], first["floor_ci_high"])
    if first["floor_folder"]:
        floor_note += (f"; run in `{relative_link(first['floor_folder'], Path.cwd())}`, which reads the same texts "
                       "the same way (same data settings and seeds): TF-IDF is neither tuned nor trained on a GPU")
    out = [f"#### {RunFolder(first['folder']).dataset_title(first['dataset'])}, {folder_label(first)}", "",
           f"_Budget **{first['budget']}**: texts cut to {first['tokens']}, at most {first['epochs']} "
           f"epochs, {len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))}). TF-IDF floor "
           f"at the same truncation: {floor}% ({floor_note})."
           + (f" Trained on {first['device']}." if first.get("device") else "") + "_", "",
           "| model | params | seeds | test acc % (95% CI) | model − floor (pp, paired, 95% CI) | target (issue 13) "
           "| verdict | how training ended |", "|---|---:|---:|---:|---:|---|---|---|"]
    for _, r in rows.iterrows():
        diff = "–" if r["diff_n"] == 0 else _pct(r["diff_mean"], r["diff_ci_low"], r["diff_ci_high"], "+")
        if 0 < r["diff_n"] < max(r["n"], r["floor_n"]):  # then the means above are over more seeds than this
            diff += f" ({r['diff_n']} shared seeds)"
        acc = _pct(r["mean"], r["ci_low"], r["ci_high"]) if r["n"] else "not run"
        params = f"{int(r['params']):,}" if np.isfinite(r["params"]) else "–"
        out.append(f"| {r['model']} | {params} | {r['n']} | {acc} | {diff} | {r['target'] or '–'} | {_verdict(r)} "
                   f"| {r['training']} |")
    out += size_lines(rows)
    curves = folder_learning_curves(RunFolder(first["folder"]), first["dataset"], redraw=False)
    if curves:
        link = relative_link(curves, report_dir)
        out += ["", f"Learning curves of these runs (train and validation, per epoch): [{link}]({link})."]
    return out + [""]


def _reference_lines(imdb: pd.DataFrame) -> list[str]:
    """The published lines, and each arm's (and the floor's) distance from the stretch line per IMDB folder."""
    out = ["Published from-scratch reference lines (no pretraining), IMDB test accuracy — quoted, not rerun here:", "",
           "| reference | IMDB test acc % | source |", "|---|---:|---|"]
    out += [f"| {name} | {acc:.2f} | {source} |" for name, acc, source in REFERENCE_LINES]
    stretch = reference(STRETCH_LINE)
    models = list(dict.fromkeys(imdb["model"]))
    out += ["", f"Distance from the {STRETCH_LINE} line ({stretch:.2f}%), the stretch goal: mean test accuracy − "
            f"{stretch:.2f} (pp; the floor is the same folder's TF-IDF):", "",
            "| folder | " + " | ".join(models) + " | TF-IDF floor |", "|---|" + "---:|" * (len(models) + 1)]
    for _, rows in imdb.groupby("folder", sort=False):
        by_model = rows.set_index("model")["mean"]
        cells = [f"{(by_model[m] * 100 - stretch):+.2f}" if np.isfinite(by_model.get(m, np.nan)) else "–"
                 for m in models]
        out.append(f"| {folder_label(rows.iloc[0])} | " + " | ".join(cells)
                   + f" | {rows['floor_mean'].iloc[0] * 100 - stretch:+.2f} |")
    return out + [""]


def best_attempts(table: pd.DataFrame) -> pd.DataFrame:
    """One row per target (dataset, budget, arm): how many folders ran it, how many met it, and the best
    attempt (a folder that met it, else the nearest miss over ≥ MIN_SEEDS seeds, else the nearest miss; nearest
    by `margin`, since folders that cut texts differently have different floors; ties: the higher mean), and the
    best attempt among the folders that tuned the arm (None: none did), each with how its study ended
    (`study_outlook`, read once per folder here)."""
    judged = table[(table["target"] != "") & (table["n"] > 0)]
    rows = []
    for (dataset, budget, model), tries in judged.groupby(["dataset", "budget", "model"], sort=False):
        ranked = tries.assign(enough=tries["n"] >= MIN_SEEDS).sort_values(["met", "enough", "margin", "mean"],
                                                                          ascending=False)
        best = ranked.iloc[0]
        outlooks = [study_outlook(f, dataset, model) for f in ranked["folder"]]  # '': not tuned there
        tuned = [i for i, words in enumerate(outlooks) if words]
        rows.append({"dataset": dataset, "budget": budget, "model": model, "target": best["target"],
                     "folders": len(tries), "met_in": int(tries["met"].sum()), "best": best,
                     "best_tuning": outlooks[0], "best_tuned": ranked.iloc[tuned[0]] if tuned else None,
                     "best_tuned_tuning": outlooks[tuned[0]] if tuned else ""})
    frame = pd.DataFrame(rows, columns=["dataset", "budget", "model", "target", "folders", "met_in", "best",
                                        "best_tuning", "best_tuned", "best_tuned_tuning"])
    order = {"dataset": {d: i for i, d in enumerate(ordered_datasets(judged))}, "budget": {"quick": 0, "full": 1},
             "model": {m: i for i, m in enumerate(TARGET_ARMS)}}
    return frame.sort_values(["dataset", "budget", "model"], key=lambda col: col.map(order[col.name]).fillna(99),
                             kind="stable", ignore_index=True)


def best_attempt_table(table: pd.DataFrame, report_dir: Path) -> list[str]:
    """Per target, the best attempt across folders with the first clues to why it stops where it does:
    how its training ended and how its tuning ended (none, a curve still rising, a choice at a range edge)."""
    attempts = best_attempts(table)
    if attempts.empty:
        return []
    out = ["### Best attempt per target", "",
           "_Each target's best attempt across the folders above: a folder that met it, else the nearest miss over "
           f"≥ {MIN_SEEDS} seeds (the smallest shortfall from the mean the target asks for, which depends on each "
           "folder's own floor). Picking among folders by test accuracy is a choice made on the test set, so where "
           "several folders tried a target, read its best mean as optimistic; each folder's own table stands alone. "
           "The last two columns are the evidence for why an arm stops where it does: still improving at the "
           "epoch cap points at the budget; converged, with tuning flat and no chosen value at a range edge, points "
           "at the recipe or the architecture at this size._", "",
           "| dataset | budget | arm | target (issue 13) | folders (met) | best attempt | test acc % (95% CI) "
           "| verdict | how its training ended | its tuning |", "|---|---|---|---|---:|---|---:|---|---|---|"]
    for _, a in attempts.iterrows():
        b = a["best"]
        link = relative_link(b["folder"], report_dir)
        tuning = a["best_tuning"] or "not tuned in this folder"
        t = a["best_tuned"]
        if t is not None and not a["best_tuning"]:  # a hand-set configuration came closer than any tuned one
            tuning += (f"; the best tuned attempt, [`{relative_link(t['folder'], Path.cwd())}`]"
                       f"({relative_link(t['folder'], report_dir)}) ({t['mean'] * 100:.2f}%): "
                       + a["best_tuned_tuning"])
        out.append(f"| {DATASET_TITLES.get(a['dataset'], a['dataset'])} | {a['budget']} | {a['model']} | {a['target']} "
                   f"| {a['folders']} ({a['met_in']}) | [`{relative_link(b['folder'], Path.cwd())}`]({link}) "
                   f"| {_pct(b['mean'], b['ci_low'], b['ci_high'])} | {_verdict(b)} | {b['training']} | {tuning} |")
    return out + [""]


def summary_paragraph(table: pd.DataFrame) -> str:
    """Which targets are met and which missed, per folder and dataset, and the arm closest to the
    stretch line — worded from the rows alone."""
    judged = table[table["target"] != ""]
    if judged.empty:
        text = "No folder here has a budget and dataset for which issue 13 sets a target; the numbers stand alone."
    else:
        n_met = int(judged["met"].sum())
        parts = [f"{n_met} of {len(judged)} arm targets {'is' if n_met == 1 else 'are'} met."]
        for _, rows in judged.groupby(["folder", "dataset"], sort=False):
            first = rows.iloc[0]
            met = [r["model"] for _, r in rows.iterrows() if r["met"]]
            missed = [f"{r['model']} ({'; '.join(r['misses'])})" for _, r in rows.iterrows() if not r["met"]]
            parts.append(f"{DATASET_TITLES.get(first['dataset'], first['dataset'])} at {folder_label(first)}: "
                         f"{len(met)} of {len(rows)} met" + (f" ({', '.join(met)})" if met else "")
                         + (f"; missed: {', '.join(missed)}" if missed else "") + ".")
        text = " ".join(parts)
    imdb = table[(table["dataset"] == "imdb") & (table["n"] > 0)]
    if not imdb.empty:
        stretch = reference(STRETCH_LINE)
        best = imdb.loc[imdb["mean"].idxmax()]
        text += (f" Stretch goal: the neural arm closest to the {STRETCH_LINE} line ({stretch:.2f}%) is {best['model']} "
                 f"at {folder_label(best)}, {stretch - best['mean'] * 100:.2f} pp below it.")
    return text


def arms_section(folders: list[Path], report_dir: Path | None = None, floors: dict[Path, Path] | None = None) -> str:
    """The section's markdown for every folder that holds the TF-IDF floor, or borrows it (`floors`, see
    `arms_table`; '' when none does), with links relative to `report_dir` (default: the working folder)."""
    report_dir = Path.cwd() if report_dir is None else report_dir
    table = arms_table(folders, floors)
    if table.empty:
        return ""
    out = ["## Are the arms strong enough?", "",
           "_Every neural model against the TF-IDF + logistic-regression floor of its own folder (same data, "
           "truncation and seeds; a folder that did not run it borrows the floor of its untuned or baseline folder when that reads the same texts the same way), and against the targets of issue 13: at budget `full` on IMDB, mean test accuracy "
           + ", ".join(f"{m} ≥ {v * 100:.1f}%" for m, v in FULL_IMDB_MINIMUM.items())
           + " and every arm at or above the floor; at budget "
           "`quick` on IMDB, every arm within 1 pp of the floor or above it; on AG News, every arm within 2 pp of it. "
           f"A target is met only on means over ≥ {MIN_SEEDS} seeds with ≤ {PARAM_CAP / 1e6:.1f} M parameters. Means "
           "carry 95% t-intervals over the seeds; model − floor is paired by seed (t-interval). Each table names the "
           "budget and folder that produced its numbers._", ""]
    for dataset in ordered_datasets(table):
        rows = table[table["dataset"] == dataset]
        out += [f"### {DATASET_TITLES.get(dataset, dataset)}", ""]
        for _, folder_rows in rows.groupby("folder", sort=False):
            out += _folder_table(folder_rows, report_dir)
        if dataset == "imdb":
            out += _reference_lines(rows)
    if table["folder"].nunique() > 1:  # one folder's table already is its best attempt
        out += best_attempt_table(table, report_dir)
        out += optimism_table(list(dict.fromkeys(table["folder"])), report_dir)
    out += ["### Which targets are met", "", summary_paragraph(table), ""]
    return "\n".join(out)
