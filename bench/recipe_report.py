"""Recipe checks: one model in two run folders that differ in a few settings, paired by seed.

A recipe change (say, no dropout on the attention weights) is tried in a folder of its own, beside
the folder it changes. This section names every setting the two folders differ in, read from
their config.json files (and a tuned folder's tuning.json: its chosen trials' parameters), and for
each model run in both gives the paired run − baseline difference in test accuracy (t-interval,
paired t p) and in the overfitting gap, with the training time, so the change's cost or gain is
recomputed from the folders alone. Rows are exploratory: one paired t
per row, not adjusted, not part of the claim's verdicts. Nothing here imports torch.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from bench.config import RUN_LABELS, UNIT_LISTS, dotted
from bench.model_report import mean_sd, paired_diff_cell
from bench.results import (RecipePair, RunFolder, device_words, ok_runs, ordered_datasets, ordered_models,
                           relative_link)

# settings that never change a result: what a folder holds, its labels, and the claim its statistics test
NOT_RESULTS = (*UNIT_LISTS, *RUN_LABELS, "budget", "claim")
# a model key whose value here means "take it from another setting": (that value, the setting)
INHERITED = {"lr": (0.0, "train.lr"), "lr_schedule": ("", "train.lr_schedule"),
             "warmup_fraction": (0.0, "train.warmup_fraction"), "attention_dropout": (-1.0, "dropout")}


def _shown(flat: dict[str, Any], key: str) -> str:
    """A setting's value as the report shows it; a model key that defers to another setting says
    what it resolved to (`-1.0 (= dropout 0.1)`)."""
    if key not in flat:
        return "–"
    value = flat[key]
    text = f"`{value!r}`" if isinstance(value, str) else f"`{value}`"
    parts = key.split(".")
    if parts[0] == "model" and len(parts) == 3 and parts[2] in INHERITED and value == INHERITED[parts[2]][0]:
        source = INHERITED[parts[2]][1]
        resolved = flat.get(source if source.startswith("train.") else f"model.{parts[1]}.{source}")
        text += f" (= {source} {resolved})"
    return text


def setting_differences(run: RunFolder, baseline: RunFolder, models: list[str]) -> list[tuple[str, str, str]]:
    """(key, baseline value, run value) for every result-deciding setting that differs: data, train,
    the varied random sources, the sections of `models`, and, in a tuned folder, the parameters of
    each study's chosen trial (`tuned.<dataset>/<model>.<key>`), which override the sections. Both
    configs pass through the config loader, so a key a folder was made before reads as its default,
    as it does when resuming."""
    sides = []
    for folder in (baseline, run):
        cfg = folder.stored_config()
        d = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_RESULTS and k not in ("model", "vary")}
        d["vary"] = sorted(cfg.vary)
        d["model"] = {m: dataclasses.asdict(cfg.model[m]) for m in models if m in cfg.model}
        d["tuned"] = {key: (study.get("best") or {}).get("params", {}) for key, study in folder.tuning().items()
                      if key.split("/", 1)[-1] in models}  # a tuned folder's units train its chosen trial
        sides.append(dotted(d))
    old, new = sides
    return [(k, _shown(old, k), _shown(new, k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def device_difference(run: RunFolder, baseline: RunFolder, run_ok: pd.DataFrame, base_ok: pd.DataFrame,
                      models: list[str]) -> tuple[str, str, str] | None:
    """("device", baseline's, run's) when the compared units ran on different devices (runs.csv's
    `device`, with the GPU's name from environment.json): no config key says it, and a CUDA unit
    also trains under bf16 autocast (`train.amp`), so it is a difference like any setting."""
    if "device" not in run_ok or "device" not in base_ok:
        return None
    old = device_words(base_ok[base_ok["model"].isin(models)], baseline)
    new = device_words(run_ok[run_ok["model"].isin(models)], run)
    return None if old == new else ("device", old, new)


def _seconds(values: pd.Series) -> str:
    v = values.dropna()
    return f"{v.mean():.0f} s" if len(v) else "–"


def paired_by_model(run_ok: pd.DataFrame,
                    base_ok: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame, pd.DataFrame, list[int]]]:
    """(model, its run rows by seed, its baseline rows by seed, the seeds both ran) per model run in both
    folders with at least one shared seed, in report order: what every paired table walks."""
    for model in ordered_models(run_ok):
        x = run_ok[run_ok["model"] == model].set_index("seed")
        y = base_ok[base_ok["model"] == model].set_index("seed")
        common = sorted(set(x.index) & set(y.index))
        if common:
            yield model, x, y, common


def recipe_rows(run_ok: pd.DataFrame, base_ok: pd.DataFrame) -> list[str]:
    """Per model run in both folders: the shared seeds, each side's test accuracy, the paired
    difference, each side's gap at the selected epoch with its paired difference, and train time."""
    rows = []
    for model, x, y, common in paired_by_model(run_ok, base_ok):
        acc, acc_p = paired_diff_cell(x.loc[common, "test_acc"], y.loc[common, "test_acc"])
        gap, _ = paired_diff_cell(x.loc[common, "gap_acc"], y.loc[common, "gap_acc"])
        rows.append(f"| {model} | {len(common)} | {mean_sd(y.loc[common, 'test_acc'])} "
                    f"| {mean_sd(x.loc[common, 'test_acc'])} | {acc} | {acc_p} "
                    f"| {mean_sd(y.loc[common, 'gap_acc'])} | {mean_sd(x.loc[common, 'gap_acc'])} | {gap} "
                    f"| {_seconds(y.loc[common, 'train_seconds'])} → {_seconds(x.loc[common, 'train_seconds'])} |")
    return rows


def optimism_rows(run_ok: pd.DataFrame, base_ok: pd.DataFrame) -> list[str]:
    """Per model run in both folders: how far validation accuracy at the selected epoch overstates
    test accuracy (val − test, pp) in each folder, and the paired difference: what a change of
    validation split (data.val_groups) does to the number tuning and early stopping steer by."""
    rows = []
    for model, x, y, common in paired_by_model(run_ok, base_ok):
        x_over = x.loc[common, "best_val_acc"] - x.loc[common, "test_acc"]
        y_over = y.loc[common, "best_val_acc"] - y.loc[common, "test_acc"]
        diff, p = paired_diff_cell(x_over, y_over)
        rows.append(f"| {model} | {len(common)} | {mean_sd(y.loc[common, 'best_val_acc'])} | {mean_sd(y_over)} "
                    f"| {mean_sd(x.loc[common, 'best_val_acc'])} | {mean_sd(x_over)} | {diff} | {p} |")
    return rows


def recipe_section(run_dir: Path, baseline_dir: Path, models: tuple[str, ...] = ()) -> str:
    """One recipe check: the settings `run_dir` changes against `baseline_dir` (the device too, when the
    units ran on different ones), then per dataset the paired run − baseline rows of every model run in
    both, or of `models` alone when named."""
    run, baseline = RunFolder(run_dir), RunFolder(baseline_dir)
    runs, _ = run.read_tables()
    base, _ = baseline.read_tables()
    run_ok, base_ok = ok_runs(runs), ok_runs(base)
    shared = [m for m in ordered_models(run_ok) if m in set(base_ok["model"]) and (not models or m in models)]
    run_ok, base_ok = run_ok[run_ok["model"].isin(shared)], base_ok[base_ok["model"].isin(shared)]
    rel_run, rel_base = relative_link(Path(run_dir), Path.cwd()), relative_link(Path(baseline_dir), Path.cwd())
    diffs = setting_differences(run, baseline, shared)
    device = device_difference(run, baseline, run_ok, base_ok, shared)
    diffs += [device] if device else []
    out = [f"### `{rel_run}` against `{rel_base}`" + (f" ({', '.join(models)} only)" if models else ""), ""]
    if diffs:
        out += ["Settings that differ (baseline → this run; from each folder's config.json, a key a folder "
                "predates read as its default, and a tuned folder's tuning.json, its chosen trials; the device "
                "from runs.csv):", ""]
        out += [f"- `{key}`: {old} → {new}" for key, old, new in diffs]
        if any(key == "vary" for key, _, _ in diffs):
            out += ["", "The folders' seeds vary different random sources, so seed *k* is paired across them only in "
                        "the sources both vary; the rest differ by design, and the intervals below count that "
                        "difference as noise."]
        if len(diffs) > 1:
            out += ["", f"{len(diffs)} settings changed at once: a difference below belongs to them together, not "
                        "to any one of them."]
    else:
        out += ["The two folders' result-deciding settings are the same: any difference below is the seeds' and "
                "the machine's, not a recipe's."]
    out.append("")
    if not shared:
        return "\n".join(out + ["No model was run in both folders, so nothing is compared.", ""])
    for dataset in ordered_datasets(run_ok):
        r, b = run_ok[run_ok["dataset"] == dataset], base_ok[base_ok["dataset"] == dataset]
        rows = recipe_rows(r, b)
        if not rows:
            continue
        out += [f"#### {run.dataset_title(dataset)}", "",
                "| model | seeds (shared) | baseline test acc % | this run test acc % | Δ test acc (pp, 95% CI) "
                "| p (paired t) | baseline gap (pp) | this run gap (pp) | Δ gap (pp, 95% CI) | train time / unit |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|", *rows, ""]
        if any(key == "data.val_groups" for key, _, _ in diffs):
            out += ["How far validation overstates test in each folder (validation accuracy at the selected epoch "
                    "minus test accuracy, pp; the number tuning and early stopping steer by, against the one "
                    "reported):", "",
                    "| model | seeds (shared) | baseline val acc % | baseline val − test (pp) | this run val acc % "
                    "| this run val − test (pp) | Δ (pp, 95% CI) | p (paired t) |",
                    "|---|---:|---:|---:|---:|---:|---:|---:|", *optimism_rows(r, b), ""]
    return "\n".join(out)


def recipe_checks_section(pairs: list[RecipePair]) -> str:
    """Every recipe check of the report, under one heading."""
    out = ["## Recipe checks", "",
           "_One model in two folders that differ only in the settings listed, seeds paired across the folders "
           "(seed *k* draws the same validation split and batch order in both when `vary` is the same). Δ is this "
           "run − baseline on the seeds both ran: mean with its 95% t-interval, and the paired t p of that row alone "
           "(exploratory: not Holm-adjusted, no verdict). The gap is train − validation accuracy at each run's "
           "selected epoch (confounded with when training stopped; see the statistics sections). Train time is "
           "the mean seconds of training per unit as each folder recorded it, comparable only when both ran on the "
           "same machine with the same threads._", ""]
    for pair in pairs:
        out.append(recipe_section(pair.run, pair.baseline, pair.models))
    return "\n".join(out)
