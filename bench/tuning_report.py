"""The tuning part of REPORT.md, from `<run>/tuning.json` and `<run>/trials.csv` alone: per study
the best configuration, trial counts, the optimisation history, fANOVA importances, and the
expected best validation accuracy as a function of the number of trials (Dodge et al., 2019),
with and without the pruned trials, also written to expected_best.csv."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.config import Config
from bench.paired import t_interval
from bench.results import RunFolder, atomic_write_csv, ok_runs, relative_link, save_png
from bench.search_space import TRIAL_SEED, apply_params

CURVE_POINTS = (1, 2, 3, 5, 8, 12, 20, 30, 50, 75, 100, 150, 200)  # up to the study's trials
FLAT_PP = 0.25  # the expected best rising less than this over the last doubling-or-more of trials: flat
EXPECTED_BEST_COLUMNS = ["study", "trials", "completed_n", "completed_mean", "completed_sd", "with_pruned_n",
                         "with_pruned_mean", "with_pruned_sd"]


def expected_max(values, n: int) -> tuple[float, float]:
    """(mean, sd) of the best of `n` trials drawn with replacement from the observed `values`.

    Dodge et al. (2019), "Show Your Work": with the sorted values v_1 ≤ … ≤ v_N and the empirical
    CDF, P(max = v_i) = (i/N)^n − ((i−1)/N)^n. It answers "how much does tuning budget matter":
    a curve still rising at the last point means more trials would likely have found better."""
    v = np.sort(np.asarray(values, dtype=float))
    if v.size == 0 or n < 1:
        raise ValueError("expected_max needs at least one value and n >= 1")
    i = np.arange(1, v.size + 1)
    p = (i / v.size) ** n - ((i - 1) / v.size) ** n
    mean = float(p @ v)
    return mean, float(np.sqrt(max(0.0, p @ (v - mean) ** 2)))


def plot_history(frame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = frame[frame["state"] == "COMPLETE"].sort_values("number")
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    if not done.empty:
        ax.scatter(done["number"], done["value"] * 100, s=14, color="tab:blue", alpha=0.7, label="trial", zorder=3)
        ax.step(done["number"], np.maximum.accumulate(done["value"].to_numpy()) * 100, where="post",
                color="tab:red", label="best so far")
    pruned = frame[frame["state"] == "PRUNED"]
    for x in pruned["number"]:
        ax.axvline(x, color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel("trial number (grey lines: pruned)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.legend(loc="lower right", fontsize=8)
    save_png(fig, path)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 0.01 or abs(v) >= 1000 else f"{v:.4g}"
    return str(v)


_REPORTED = re.compile(r"val acc ([0-9.]+)\)")


def trial_values(frame) -> tuple[np.ndarray, np.ndarray]:
    """(completed trials' values, completed + pruned trials' values), the pruned ones at the last
    validation accuracy they reported (`last_value`; in trials.csv files older than that column, read
    from the pruning reason). Trials pruned before training (parameter cap) reported nothing and
    stay out of both."""
    done = frame.loc[frame["state"] == "COMPLETE", "value"].to_numpy(dtype=float)
    pruned = frame[frame["state"] == "PRUNED"]
    if "last_value" in pruned:
        last = pruned["last_value"].to_numpy(dtype=float)
    else:
        found = pruned["reason"].fillna("").str.extract(_REPORTED)[0]
        last = pd.to_numeric(found, errors="coerce").to_numpy(dtype=float)
    return done, np.concatenate([done, last[np.isfinite(last)]])


def expected_best_curve(frame, key: str) -> "pd.DataFrame":
    """The expected-best-of-n curve of one study, both ways: over completed trials only (pruned
    trials dropped, which inflates its low-n end: the poor configurations are the ones pruned) and
    over completed + pruned trials at their last reported value (which understates what a pruned
    configuration would have reached). Written to expected_best.csv."""
    done, with_pruned = trial_values(frame)
    rows = []
    for n in CURVE_POINTS:
        if n > max(len(done), len(with_pruned)):
            break
        m1, s1 = expected_max(done, n) if len(done) else (np.nan, np.nan)
        m2, s2 = expected_max(with_pruned, n) if len(with_pruned) else (np.nan, np.nan)
        rows.append({"study": key, "trials": n, "completed_n": len(done), "completed_mean": m1, "completed_sd": s1,
                     "with_pruned_n": len(with_pruned), "with_pruned_mean": m2, "with_pruned_sd": s2})
    return pd.DataFrame(rows, columns=EXPECTED_BEST_COLUMNS)


def expected_max_table(curve) -> list[str]:
    """Markdown rows of one study's expected-best curve, both ways."""
    if len(curve) < 2:
        return []
    done_n, all_n = int(curve["completed_n"].iloc[0]), int(curve["with_pruned_n"].iloc[0])
    out = ["Expected best validation accuracy after *n* trials (Dodge et al. 2019; mean ± sd over draws with "
           f"replacement). Two curves: over the {done_n} completed trials only — which leaves out the pruned, poor "
           "configurations and so flatters the low-*n* end — and over those plus the pruned trials at the last "
           f"value they reported ({all_n} trials), which understates the pruned ones. TPE's trials are not "
           "independent draws, so read both as a guide to whether more trials would help (expected_best.csv):", "",
           "| trials | " + " | ".join(str(n) for n in curve["trials"]) + " |", "|---|" + "---:|" * len(curve)]
    for label, col in (("completed only", "completed"), ("with pruned at last value", "with_pruned")):
        cells = ["–" if not np.isfinite(m) else f"{m * 100:.2f} ± {s * 100:.2f}"
                 for m, s in zip(curve[f"{col}_mean"], curve[f"{col}_sd"])]
        out.append(f"| {label}: expected best val acc % | " + " | ".join(cells) + " |")
    flat = flattening_words(curve)
    return out + (["", flat] if flat else []) + [""]


def curve_rise(curve) -> tuple[int, int, dict[str, float]] | None:
    """(n at half, last n, rise in pp both ways) of an expected-best curve from the last point at or below
    half its trials to its last point; None when the curve is too short to say."""
    if curve.empty:
        return None
    last = curve.iloc[-1]
    earlier = curve[curve["trials"] <= last["trials"] / 2]
    if earlier.empty or not np.isfinite(last["completed_mean"]) or not np.isfinite(last["with_pruned_mean"]):
        return None
    half = earlier.iloc[-1]
    rise = {col: (last[f"{col}_mean"] - half[f"{col}_mean"]) * 100 for col in ("completed", "with_pruned")}
    return int(half["trials"]), int(last["trials"]), rise


def is_flat(rise: dict[str, float]) -> bool:
    """Both curves rose less than FLAT_PP: more trials of this search would likely add little."""
    return all(r < FLAT_PP for r in rise.values())


def flattening_words(curve) -> str:
    """Whether the curve has flattened: its rise from the last point at or below half the trials to
    the last point, both ways; under FLAT_PP on both, more trials of this search would add little."""
    found = curve_rise(curve)
    if found is None:
        return ""
    half, last, rise = found
    flat = is_flat(rise)
    return (f"From {half} to {last} trials the expected best rises "
            f"{rise['completed']:+.2f} pp (completed only) and {rise['with_pruned']:+.2f} pp (with pruned): "
            + (f"**flat** (both under {FLAT_PP} pp), so more trials of this search would likely add little."
               if flat else f"**still rising** (not both under {FLAT_PP} pp), so more trials could still help."))


def study_outlook(run_dir: Path, dataset: str, model: str) -> str:
    """How the study that tuned this arm in this folder ended, in a few words for the arms section: its
    trials, whether its expected-best curve has flattened, and which chosen values sit at a range edge;
    '' when the folder did not tune the arm."""
    folder = RunFolder(run_dir)
    if not folder.tuning_json.is_file() or not folder.trials_csv.is_file():
        return ""
    s = folder.tuning().get(f"{dataset}/{model}")
    if not s:
        return ""
    frame = folder.trials()
    f = frame[frame["study"] == s["study"]]
    words = f"tuned, {len(f)} trials"
    found = curve_rise(expected_best_curve(f, s["study"]))
    if found:
        half, last, rise = found
        shape = "flat" if is_flat(rise) else "**still rising**"
        words += (f"; expected best {shape} from {half} to {last} trials "
                  f"({rise['completed']:+.2f} / {rise['with_pruned']:+.2f} pp)")
    edges = edge_params(s)
    if edges:
        words += f"; chosen {', '.join(edges)} at a range edge"
    return words


def _study_lines(s: dict[str, Any], f) -> list[str]:
    """The study's bullet points: trial counts by outcome, workers and time, cap, pruner and data."""
    counts = f["state"].value_counts()
    reasons = f["reason"].fillna("")
    capped = int(reasons.str.contains("exceed the cap|under the floor").sum())
    floor = s.get("param_floor") or 0  # absent in studies made before the floor existed
    stale = int(((f["state"] == "FAIL") & reasons.str.startswith("worker stopped")).sum())
    surplus = int(reasons.str.startswith("surplus").sum())
    failed = int(counts.get("FAIL", 0)) - stale - surplus
    subset = (f"a stratified subset of **{s['train_rows']:,} of the {s['train_rows_full']:,}** training texts"
              if s["train_rows"] < s["train_rows_full"] else f"all {s['train_rows_full']:,} training texts")
    workers = f["worker"].dropna().nunique()
    hours = f["duration_s"].sum() / 3600
    counted = int(counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)) + failed
    short = (f" (the study stopped at its time budget after {counted})"
             if counted < s["trials_requested"] else "")
    return [f"### {s['dataset']} / {s['model']}", "",
            f"- Study `{s['study']}`: {s['trials_requested']} trials requested{short}; "
            f"{int(counts.get('COMPLETE', 0))} complete, {int(counts.get('PRUNED', 0))} pruned "
            f"({capped} {'outside the parameter band' if floor else 'over the parameter cap'} before training), "
            f"{failed} failed"
            + (f", {stale} lost to a stopped worker and retried" if stale else "")
            + f"; {workers} worker process{'es' if workers != 1 else ''}, {hours:.2f} h of trial time.",
            f"- Parameter cap **{s['param_cap']:,}** trainable parameters"
            + (f", floor **{floor:,}** (a tuned arm stays within that band)" if floor else "")
            + f"; {s['pruner']} pruner on "
            f"validation accuracy after each epoch; at most {s['epochs']} epochs per trial; tuning used "
            f"{subset}, texts cut to {s['max_length']} tokens (fixed, not tuned); "
            + trial_seed_words(s) + ".", ""]


def trial_seed_words(s: dict[str, Any]) -> str:
    """How a study's trials were seeded, for its bullet points."""
    k = s.get("seeds_per_trial") or 1
    if k > 1:
        return (f"each trial's value is its mean over {k} seeds ("
                + ("its own" if s.get("trial_seed") == "per_trial" else f"{TRIAL_SEED} to {TRIAL_SEED + k - 1}")
                + "), the pruner fed by the first seed's epochs")
    return ("each trial trained with a seed of its own" if s.get("trial_seed") == "per_trial"
            else f"every trial trained with seed {TRIAL_SEED}")


def _rerank_chose(s: dict[str, Any]) -> bool:
    """Whether the study's best entry is a re-ranking's choice (every candidate has all its seeds)."""
    rows = (s.get("rerank") or {}).get("rows")
    return bool(rows) and all(r["complete"] for r in rows)


def _best_lines(s: dict[str, Any]) -> list[str]:
    """The best trial's value and parameters beside the range each was searched in."""
    best = s.get("best")
    if not best:
        return ["No trial completed.", ""]
    out = [(f"Chosen trial {best['number']} (re-ranked, below): its own seed's" if _rerank_chose(s)
            else f"Best trial {best['number']}:")
           + f" validation accuracy **{best['value']:.2%}**"
           + (f", {best['params_count']:,} parameters" if best.get("params_count") else "") + ".", "",
           "| parameter | best value | searched |", "|---|---|---|"]
    for p, v in sorted(best["params"].items()):
        spec = s["search_space"].get(p, {})
        searched = (", ".join(map(str, spec["choices"])) if spec.get("type") == "categorical" else
                    f"{_fmt(spec.get('low'))} – {_fmt(spec.get('high'))}{' (log)' if spec.get('log') else ''}")
        out.append(f"| {p} | {_fmt(v)} | {searched}{_edge_words(v, spec)} |")
    out.append("")
    edges = edge_params(s)
    if edges:
        out += [f"{', '.join(edges)} ended within {EDGE:.0%} of a bound of the range searched: the best "
                "configuration may lie outside it, so a wider range could find a better one.", ""]
    return out


EDGE = 0.05  # a best value in the outer 5% of its (log-)range is flagged: the range may cut the optimum off


def _edge_words(value: Any, spec: dict[str, Any]) -> str:
    """' — at the top of its range' (or bottom) when a float or int best lies within `EDGE` of a bound."""
    if spec.get("type") not in ("float", "int") or not isinstance(value, (int, float)):
        return ""
    low, high, v = float(spec["low"]), float(spec["high"]), float(value)
    if spec.get("log") and low > 0 and v > 0:
        low, high, v = np.log(low), np.log(high), np.log(v)
    if high <= low:
        return ""
    where = (v - low) / (high - low)
    return (" — **near the top of its range**" if where >= 1 - EDGE else
            " — **near the bottom of its range**" if where <= EDGE else "")


def edge_params(s: dict[str, Any]) -> list[str]:
    """The parameters of a study's best trial that lie within `EDGE` of a bound of the range searched."""
    params = (s.get("best") or {}).get("params", {})
    return [p for p, v in sorted(params.items()) if _edge_words(v, s["search_space"].get(p, {}))]


def _rerank_lines(s: dict[str, Any]) -> list[str]:
    """The re-ranking of the best trials over more seeds (`bench.rerank`), when the study had one."""
    rr = s.get("rerank")
    if not rr:
        return []
    seeds = [str(x) for x in rr["seeds"]]
    complete = _rerank_chose(s)
    chosen = s["best"]["number"] if s.get("best") else None
    out = [f"**Re-ranked over more seeds.** The {len(rr['rows'])} best trials were trained again, unchanged, with "
           f"seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)} (validation split only); the seed stage takes "
           "the best mean over the trial's own seed and these"
           + ("." if complete else " — **not complete**: until every candidate has all its seeds, the plain best "
              "trial stands.") + "", "",
           "| trial | trial seed val % | " + " | ".join(f"seed {x} val %" for x in seeds) + " | mean % | chosen |",
           "|---:|---:|" + "---:|" * len(seeds) + "---:|---|"]
    for r in rr["rows"]:
        vals = [f"{r['seed_values'][x] * 100:.2f}" if x in r["seed_values"] else "–" for x in seeds]
        mean = f"{r['mean'] * 100:.2f}" if r["mean"] is not None else ("diverged" if r["complete"] else "–")
        out.append(f"| {r['number']} | {r['value'] * 100:.2f} | " + " | ".join(vals)
                   + f" | {mean} | {'**yes**' if r['number'] == chosen and complete else ''} |")
    return out + [""]


def trial_own_seeds(best: dict[str, Any]) -> list[int]:
    """The seeds a study's best trial trained with, first the one that fed the pruner (TRIAL_SEED in
    studies from before the seed was recorded)."""
    return best.get("seeds") or [TRIAL_SEED if best.get("seed") is None else int(best["seed"])]


def seed_stage(folder: RunFolder) -> tuple[Config | None, pd.DataFrame | None]:
    """The folder's stored config and ok runs once its seed stage has run, else (None, None)."""
    if not (folder.runs_csv.is_file() and folder.config_json.is_file()):
        return None, None
    return folder.stored_config(), ok_runs(pd.read_csv(folder.runs_csv))


def reseeded(s: dict[str, Any], cfg: Config | None, runs: pd.DataFrame | None) -> pd.DataFrame | None:
    """The seed stage's ok runs of the study's chosen configuration (`runs`: the folder's ok runs, `cfg`
    its stored config; None before the seed stage); None when fewer than 2, or when the trials trained
    otherwise than the seed stage (fewer epochs, a subset), so that their values are not comparable."""
    best = s.get("best")
    if not best or runs is None or cfg is None:
        return None
    if s["epochs"] != cfg.train.epochs or s["train_rows"] < s["train_rows_full"]:
        return None
    want = apply_params(cfg, s["model"], best["params"]).unit_hash(s["model"])
    rows = runs[(runs["dataset"] == s["dataset"]) & (runs["model"] == s["model"]) & (runs["config_hash"] == want)]
    return rows if len(rows) >= 2 else None


def _reseeded_lines(s: dict[str, Any], cfg: Config | None, runs: pd.DataFrame | None) -> list[str]:
    """The best trial against the seed stage's runs of the same configuration (`reseeded`): every trial
    trained with one seed, so the best of many trials is partly the best of that seed's luck; the other
    seeds show how much. Empty when the seed stage has no comparable runs of exactly this configuration."""
    rows = reseeded(s, cfg, runs)
    if rows is None:
        return []
    best = s["best"]
    vals = rows["best_val_acc"].to_numpy(float)
    lo, hi = t_interval(vals)
    seed = trial_own_seeds(best)[0]
    rerun_of = (best.get("seed_values") or [best["value"]])[0]  # the value that seed gave in the trial
    per_trial = s.get("trial_seed") == "per_trial"
    whose = "the seed this trial trained with" if per_trial else "the seed every trial trained with"
    seed0 = rows[rows["seed"] == seed]
    on_gpu = any(str(d).startswith("cuda") for d in rows.get("device", []))
    again = "" if seed0.empty else (
        f" Seed {seed}, {whose}, gives {seed0['best_val_acc'].iloc[0]:.2%} here"
        + (" (the trial, re-run)" if abs(seed0["best_val_acc"].iloc[0] - rerun_of) < 5e-5 else
           " (the re-run is not bit-identical" + (" on a GPU)" if on_gpu else ")")) + "; on test accuracy, "
        f"which no trial read, seed {seed} has {seed0['test_acc'].iloc[0]:.2%} "
        f"and the other seeds {rows.loc[rows['seed'] != seed, 'test_acc'].mean():.2%} on average.")
    if per_trial and seed0.empty:
        again = (f" Every trial trained with a seed of its own (this one with seed {seed}), none of them a seed "
                 "of the seed stage, so no seed stage run repeats a trial the study selected on.")
    diff = (best["value"] - vals.mean()) * 100
    which = "chosen" if _rerank_chose(s) else "best"
    ranks_on = ("one seed per configuration (a different one each)" if per_trial else "one seed")
    return [f"**The best trial, re-seeded.** The seed stage trained this configuration with {len(rows)} seeds: "
            f"validation accuracy **{vals.mean():.2%}** [{lo:.2%}, {hi:.2%}] (95% t-interval), "
            f"{abs(diff):.2f} pp {'under' if diff >= 0 else 'over'} the {which} trial's {best['value']:.2%}.{again} "
            f"A study ranks its configurations on {ranks_on} and one validation split, so its best value is "
            "partly that seed's luck (the winner's curse): the seeds' mean is the fairer estimate of what the "
            "configuration does, and test accuracy, in the tables above, the headline.", ""]


def optimism_rows(folders: list[Path]) -> pd.DataFrame:
    """One row per tuning study whose chosen configuration the seed stage retrained (`reseeded`): the
    chosen trial's validation accuracy, its re-ranked mean when the study was re-ranked, and the seed
    stage's mean on the same validation split over its other seeds (a fixed-seed study's trial is re-run as
    the seed stage's seed 0: left out, it would count its own luck twice). value − mean is how far
    selection on the trial's own seed flattered the configuration (the winner's curse)."""
    out = []
    for path in folders:
        folder = RunFolder(path)
        cfg, runs = seed_stage(folder)
        if runs is None:
            continue
        info = folder.datasets_info()
        frame = folder.trials() if folder.trials_csv.is_file() else None
        for s in folder.tuning().values():
            rows = reseeded(s, cfg, runs)
            if rows is None:
                continue
            rows = rows[~rows["seed"].isin(trial_own_seeds(s["best"]))]  # not the trial itself, re-run
            if len(rows) < 2:
                continue
            vals = rows["best_val_acc"].to_numpy(float)
            lo, hi = t_interval(vals)
            chosen = [r for r in (s.get("rerank") or {}).get("rows", []) if r["number"] == s["best"]["number"]]
            out.append({"folder": Path(path), "dataset": s["dataset"], "model": s["model"],
                        "trial_seed": s.get("trial_seed", "fixed"),
                        # the trials the study ran (as study_outlook counts them), not the budget it was given
                        "trials": (int((frame["study"] == s["study"]).sum()) if frame is not None
                                   else s["trials_requested"]),
                        "value": s["best"]["value"], "rerank_mean": chosen[0]["mean"] if chosen else None,
                        "n": len(vals), "mean": vals.mean(), "ci_low": lo, "ci_high": hi,
                        "optimism": s["best"]["value"] - vals.mean(),
                        "val_texts": info.get(s["dataset"], {}).get("val"), "val_groups": cfg.data.val_groups})
    return pd.DataFrame(out, columns=["folder", "dataset", "model", "trial_seed", "trials", "value", "rerank_mean",
                                      "n", "mean", "ci_low", "ci_high", "optimism", "val_texts", "val_groups"])


def optimism_table(folders: list[Path], report_dir: Path) -> list[str]:
    """The `optimism_rows` of every tuned folder as a table, with the mean optimism per trial-seed policy."""
    rows = optimism_rows(folders)
    if rows.empty:
        return []
    out = ["### How much of each study's best was its seed's luck?", "",
           "_Each study chose the configuration whose trial (one seed, one validation split) scored best, re-ranked "
           "over a few more seeds where marked; the seed stage then trained it with its own seeds. The chosen "
           "value minus the seed stage's validation mean is how far the selection flattered the configuration "
           "(the winner's curse); the seed stage's mean leaves out the trial's own seed where the seed stage re-ran "
           "it. With a fixed trial seed the sampler can also climb configurations that are "
           "lucky for that seed; a seed of its own per trial leaves it noise. The gap holds the split fixed, so it "
           "leaves out the validation split's own sampling error, whose size the last column gives (the binomial "
           "standard error of the seed stage's mean accuracy on that many texts): a study that ranks many "
           "configurations on so few texts also fits the split, and only test accuracy shows how much._", "",
           "| folder | dataset | arm | trial seeds | trials | chosen trial val % | re-ranked mean % "
           "| seed stage val %, other seeds (95% CI) | chosen − seed stage (pp) | val texts (SE, pp) |",
           "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for _, r in rows.iterrows():
        rerank = "–" if pd.isna(r["rerank_mean"]) else f"{r['rerank_mean'] * 100:.2f}"
        out.append(f"| [`{relative_link(r['folder'], Path.cwd())}`]({relative_link(r['folder'], report_dir)}) "
                   f"| {r['dataset']} | {r['model']} | {'own per trial' if r['trial_seed'] == 'per_trial' else 'fixed'} "
                   f"| {r['trials']} | {r['value'] * 100:.2f} | {rerank} | {r['mean'] * 100:.2f} "
                   f"[{r['ci_low'] * 100:.2f}, {r['ci_high'] * 100:.2f}] (n={r['n']}) | {r['optimism'] * 100:+.2f} | "
                   + ("–" if pd.isna(r["val_texts"]) else
                      f"{int(r['val_texts']):,} ({math.sqrt(r['mean'] * (1 - r['mean']) / r['val_texts']) * 100:.2f}"
                      + (f"; whole {r['val_groups']}s, so at least this" if r["val_groups"] else "") + ")")
                   + " |")
    means = [f"{len(g)} {'per-trial-seed' if policy == 'per_trial' else 'fixed-seed'} "
             f"stud{'y' if len(g) == 1 else 'ies'} {g['optimism'].mean() * 100:+.2f} pp "
             f"(range {g['optimism'].min() * 100:+.2f} to {g['optimism'].max() * 100:+.2f})"
             for policy, g in rows.groupby("trial_seed", sort=True)]
    return out + ["", "Mean chosen − seed stage: " + "; ".join(means) + ". The studies differ in dataset, budget, "
                  "space and trial count as well, so set policies side by side only where those match.", ""]


def _importance_lines(s: dict[str, Any]) -> list[str]:
    if not s.get("importances"):
        return []
    out = ["Hyper-parameter importances (fANOVA, seed 0):", "", "| parameter | importance |", "|---|---|"]
    out += [f"| {p} | {v:.3f} |" for p, v in sorted(s["importances"].items(), key=lambda kv: (-kv[1], kv[0]))]
    return out + [""]


def tuning_section(run_dir: Path, report_dir: Path) -> str:
    """Markdown for REPORT.md from `<run_dir>/tuning.json` and `trials.csv` ('' when not tuned); the
    expected-best curves go to `<run_dir>/expected_best.csv`."""
    folder, report_dir = RunFolder(run_dir), Path(report_dir)
    if not folder.tuning_json.is_file() or not folder.trials_csv.is_file():
        return ""
    info = folder.tuning()
    frame = folder.trials()
    out = ["## Hyper-parameter tuning", "",
           "Each model was tuned separately with Optuna (TPE sampler with a fixed seed) on the **validation** "
           "split; the test split was not read. The seed stage retrains each model's best configuration.", ""]
    curves = []
    cfg, runs = seed_stage(folder)
    for key in sorted(info):
        s = info[key]
        f = frame[frame["study"] == s["study"]]
        curve = expected_best_curve(f, s["study"])
        curves.append(curve)
        out += (_study_lines(s, f) + _best_lines(s) + _rerank_lines(s) + _reseeded_lines(s, cfg, runs)
                + _importance_lines(s)) + expected_max_table(curve)
        if not f.empty:
            png = folder.plots / f"tuning_{s['dataset']}_{s['model']}.png"
            plot_history(f, png, f"{s['dataset']} / {s['model']}: optimisation history")
            out += [f"![{s['dataset']} {s['model']} optimisation history]({relative_link(png, report_dir)})", ""]
    atomic_write_csv(folder.expected_best_csv, pd.concat(curves, ignore_index=True) if curves else
                     pd.DataFrame(columns=EXPECTED_BEST_COLUMNS))
    return "\n".join(out)
