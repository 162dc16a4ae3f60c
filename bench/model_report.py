"""The building blocks of one run folder's part of REPORT.md: the per-model table, the per-seed
differences in words, and the learning-curve, overfitting-gap and ablation plots. Files in,
markdown and PNGs out; no torch."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench.paired import paired_comparison  # noqa: E402
from bench.results import DATASET_TITLES, RunFolder, failed_runs, ok_runs, save_png  # noqa: E402
from bench.results import ordered_models as _models  # noqa: E402


def _seed_dots(data: pd.DataFrame, col: str, models: list[str], ax, size: int) -> None:
    """One dot per seed; seaborn jitters with NumPy's global generator, so it is seeded here
    (and restored) to keep the PNGs byte-identical between regenerations."""
    import numpy as np

    state = np.random.get_state()
    np.random.seed(0)
    try:
        sns.stripplot(data=data, x="model", y=col, order=models, color="black", size=size, ax=ax)
    finally:
        np.random.set_state(state)


def folder_learning_curves(folder: RunFolder, dataset: str, epochs: pd.DataFrame | None = None,
                           redraw: bool = True) -> Path | None:
    """A run folder's one learning-curve plot for `dataset`, `plots/<dataset>_curves.png`, titled with
    the dataset and the folder's budget wherever a report draws it (its own report, the repository's
    report, the arms section), so every render leaves the same bytes. `redraw=False` keeps a plot
    already drawn; None when the folder has no epochs for the dataset."""
    path = folder.plots / f"{dataset}_curves.png"
    if path.exists() and not redraw:
        return path
    epochs = folder.read_tables()[1] if epochs is None else epochs
    epochs = epochs[epochs["dataset"] == dataset]
    if epochs.empty:
        return None
    title = f"{folder.dataset_title(dataset)} ({folder.stored_config().budget})"
    plot_learning_curves(epochs, dataset, path, title)
    return path


def plot_learning_curves(epochs: pd.DataFrame, dataset: str, path: Path, title: str | None = None) -> None:
    """Train (eval-mode subset) vs validation accuracy and loss per epoch, mean ± sd over seeds."""
    models = _models(epochs)
    fig, axes = plt.subplots(2, len(models), figsize=(4.2 * len(models), 6.4), squeeze=False, sharex=True)
    for j, model in enumerate(models):
        sub = epochs[epochs["model"] == model]
        for i, (metric, label) in enumerate([("acc", "accuracy"), ("loss", "loss")]):
            ax = axes[i][j]
            long = pd.concat([
                pd.DataFrame({"epoch": sub["epoch"], "value": sub[f"train_eval_{metric}"], "split": "train"}),
                pd.DataFrame({"epoch": sub["epoch"], "value": sub[f"val_{metric}"], "split": "validation"}),
            ])
            sns.lineplot(data=long, x="epoch", y="value", hue="split", errorbar="sd", marker="o", ax=ax,
                         legend=(i == 0 and j == 0))
            ax.set_title(f"{model}: {label}")
            ax.set_ylabel(label)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.suptitle(f"{title or DATASET_TITLES.get(dataset, dataset)}: learning curves (mean ± sd over seeds)")
    fig.tight_layout()
    save_png(fig, path)


def plot_gap(runs: pd.DataFrame, dataset: str, path: Path, title: str | None = None) -> None:
    """Overfitting gap (train acc − val acc, at the restored epoch) per model, one point per seed."""
    models = _models(runs)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (col, label) in zip(axes, [("gap_acc", "train acc − val acc"), ("gap_loss", "val loss − train loss")]):
        sns.barplot(data=runs, x="model", y=col, order=models, errorbar="sd", alpha=0.45, ax=ax, color="tab:blue")
        _seed_dots(runs, col, models, ax, size=6)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_ylabel(label)
        ax.set_title(label)
    fig.suptitle(f"{title or DATASET_TITLES.get(dataset, dataset)}: overfitting gap at each model's selected epoch "
                 "(confounded with when it stopped; bar: mean ± sd; dots: seeds)", fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def paired_diff_cell(x: pd.Series, y: pd.Series) -> tuple[str, str]:
    """Paired x − y in pp with its 95% t-interval (the mean alone for one pair), and the paired t p."""
    c = paired_comparison(x, y)
    if len(x) < 2:
        return f"{c['mean_diff'] * 100:+.2f}", "–"
    return (f"{c['mean_diff'] * 100:+.2f} [{c['ci_low'] * 100:+.2f}, {c['ci_high'] * 100:+.2f}]",
            f"{c['t_p']:.3g}" if pd.notna(c["t_p"]) else "–")


def mean_sd(values: pd.Series, pct: bool = True, digits: int = 2) -> str:
    scale = 100 if pct else 1
    v = values.dropna() * scale
    if v.empty:
        return "–"
    if len(v) == 1:
        return f"{v.iloc[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def model_table(runs: pd.DataFrame) -> str:
    rows = ["| model | params | seeds | test acc % (headline) | val acc % (selection metric, optimistic) | "
            "gap at selected epoch: train−val acc (pp) | gap at selected epoch: val−train loss | best epoch "
            "| train time / seed | train tokens/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model in _models(runs):
        sub = ok_runs(runs[runs["model"] == model])
        n_fail = len(failed_runs(runs[runs["model"] == model]))
        counts = pd.to_numeric(sub["params"], errors="coerce").dropna()  # a failed run has none
        params = ", ".join(f"{int(p):,}" for p in sorted(set(counts))) or "–"
        seeds = f"{len(sub)}" + (f" (+{n_fail} failed)" if n_fail else "")
        rows.append(f"| {model} | {params} | {seeds} | {mean_sd(sub['test_acc'])} | {mean_sd(sub['best_val_acc'])} "
                    f"| {mean_sd(sub['gap_acc'])} | {mean_sd(sub['gap_loss'], pct=False, digits=3)} "
                    f"| {mean_sd(sub['best_epoch'], pct=False, digits=1)} "
                    f"| {mean_sd(sub['train_seconds'], pct=False, digits=0)} s "
                    f"| {mean_sd(sub['train_tokens_per_s'], pct=False, digits=0)} |")
    return "\n".join(rows)


def _paired(runs: pd.DataFrame, a: str, b: str, col: str) -> pd.Series:
    """Per-seed difference a − b for seeds where both finished."""
    wide = ok_runs(runs).pivot_table(index="seed", columns="model", values=col)
    if a not in wide or b not in wide:
        return pd.Series(dtype=float)
    return (wide[a] - wide[b]).dropna()


def _describe_diff(d: pd.Series, what: str, unit_scale: float = 100, unit: str = "pp",
                   higher_is: str = "higher") -> str:
    if d.empty:
        return f"{what}: no paired seeds."
    wins = int((d > 0).sum())
    sd = f", sd {d.std(ddof=1) * unit_scale:.2f}" if len(d) > 1 else ""
    return (f"{what}: mean difference {d.mean() * unit_scale:+.2f} {unit}{sd}, range "
            f"[{d.min() * unit_scale:+.2f}, {d.max() * unit_scale:+.2f}]; {higher_is} in {wins} of {len(d)} seeds")


def verdict(runs: pd.DataFrame, dataset: str) -> str:
    """A plain-words, descriptive reading of the paired per-seed differences."""
    lines = []
    models = set(ok_runs(runs)["model"])
    if {"rnn", "attn_rnn"} <= models:
        dv = _paired(runs, "attn_rnn", "rnn", "best_val_acc")
        dt = _paired(runs, "attn_rnn", "rnn", "test_acc")
        dg = _paired(runs, "attn_rnn", "rnn", "gap_acc")
        lines.append("- " + _describe_diff(dt, "Test accuracy (headline), attn_rnn − rnn", higher_is="attention higher"))
        lines.append("- " + _describe_diff(dv, "Validation accuracy (selection metric, optimistic), attn_rnn − rnn",
                                           higher_is="attention higher"))
        lines.append("- " + _describe_diff(dg, "Overfitting gap at each model's selected epoch (confounded with "
                                               "stopping), attn_rnn − rnn", higher_is="attention's gap larger"))
        lift = (not dt.empty) and dt.mean() > 0 and (dt > 0).all()
        lift_word = ("attention lifted test accuracy in every seed" if lift else
                     "attention did not lift test accuracy consistently across seeds")
        lines.append(f"- Reading: on {DATASET_TITLES.get(dataset, dataset)}, {lift_word}; overfitting is judged at "
                     "matched epochs in the statistics section, not from the selected-epoch gap above.")
    if "transformer" in models:
        for other in ("attn_rnn", "rnn"):
            if other in models:
                d = _paired(runs, "transformer", other, "test_acc")
                lines.append("- " + _describe_diff(d, f"Test accuracy, transformer − {other}",
                                                   higher_is="transformer higher"))
    return "\n".join(lines)


def plot_ablation(runs: pd.DataFrame, dataset: str, path: Path, title: str | None = None) -> None:
    """Test accuracy per variant (bar: mean ± sd, dots: seeds), labelled with parameter counts."""
    ok = ok_runs(runs)
    models = _models(ok)
    labels = [f"{m}\n{int(ok.loc[ok['model'] == m, 'params'].iloc[0]) / 1e6:.3f} M" for m in models]
    fig, ax = plt.subplots(figsize=(1.6 * len(models) + 2, 3.8))
    sns.barplot(data=ok, x="model", y="test_acc", order=models, errorbar="sd", alpha=0.45, ax=ax, color="tab:green")
    _seed_dots(ok, "test_acc", models, ax, size=5)
    ax.set_xticks(range(len(models)), labels)
    lo = ok["test_acc"].min()
    ax.set_ylim(max(0.0, lo - 0.05), min(1.0, ok["test_acc"].max() + 0.02))
    ax.set_xlabel("variant (parameters)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{title or DATASET_TITLES.get(dataset, dataset)}: ablation (bar: mean ± sd; dots: seeds)")
    fig.tight_layout()
    save_png(fig, path)
