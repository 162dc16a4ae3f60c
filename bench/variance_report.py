"""The variance-decomposition part of REPORT.md: how much each random source (initialisation,
data order, validation split) moves a model's test accuracy, from run folders that each varied
one source (configs/variance.toml run once per source). Files in, a table, a plot and
variance_by_source.csv out; the numbers come from `stats.variance_by_source`; no torch."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.config import BenchError  # noqa: E402
from bench.results import DATASET_TITLES, RunFolder, atomic_write_csv, relative_link, save_png  # noqa: E402
from bench.stats import RUN_METRICS, variance_by_source  # noqa: E402

SOURCE_WORDS = {"init": "initialisation (and dropout)", "order": "data order", "split": "validation split"}


def _source_label(vary: list[str]) -> str:
    return "+".join(sorted(vary))


def load_sources(folders: list[Path]) -> tuple[dict[str, pd.DataFrame], tuple[str, str]]:
    """Each folder's runs table keyed by the sources its config varied, and the claim's pair (A, B)."""
    sources, pair = {}, None
    for path in folders:
        folder = RunFolder(path)
        cfg = folder.stored_config()
        label = _source_label(cfg.vary)
        if label in sources:
            raise BenchError(f"two variance folders both vary '{label}' ({path} and an earlier one)")
        sources[label] = folder.read_runs(required=RUN_METRICS)
        claim = cfg.effective_claim()
        pair = pair or (claim.model_a, claim.model_b)
    return sources, pair


def plot_variance(table: pd.DataFrame, dataset: str, path: Path) -> None:
    """Per model (and the claim pair's difference): the sd of test accuracy each source gives, with
    its 95% chi-square interval."""
    sub = table[table["dataset"] == dataset]
    models = list(dict.fromkeys(sub["model"]))
    sources = list(dict.fromkeys(sub["source"]))
    fig, ax = plt.subplots(figsize=(1.8 * len(models) + 3, 3.8))
    width = 0.8 / max(1, len(sources))
    for k, source in enumerate(sources):
        s = sub[sub["source"] == source].set_index("model").reindex(models)
        x = np.arange(len(models)) + (k - (len(sources) - 1) / 2) * width
        sd = s["sd"].to_numpy(dtype=float) * 100
        lo, hi = s["sd_ci_low"].to_numpy(dtype=float) * 100, s["sd_ci_high"].to_numpy(dtype=float) * 100
        ax.bar(x, sd, width, label=source, alpha=0.7)
        ax.errorbar(x, sd, yerr=[np.nan_to_num(sd - lo), np.nan_to_num(hi - sd)], fmt="none", ecolor="black",
                    capsize=3)
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("sd of test accuracy over seeds (pp)")
    ax.legend(title="source varied")
    ax.set_title(f"{DATASET_TITLES.get(dataset, dataset)}: variance by source (bars: sd; whiskers: 95% CI)")
    fig.tight_layout()
    save_png(fig, path)


def variance_section(folders: list[Path], run_dir: Path, report_dir: Path) -> str:
    """Markdown for the variance decomposition of `folders` (one per source); writes
    `<run_dir>/variance_by_source.csv` and one plot per dataset into `<run_dir>/plots`."""
    sources, pair = load_sources([Path(f) for f in folders])
    table = variance_by_source(sources, pair)
    folder = RunFolder(run_dir)
    atomic_write_csv(folder.variance_csv, table)
    rels = ", ".join(f"`{relative_link(f, Path.cwd())}`" for f in folders)
    out = ["## Variance by source", "",
           f"_From {rels}: the same config run once per random source, each time varying only that source over "
           "the seeds (the others held at fixed seeds; `vary` in each folder's config.json). The sd over seeds is "
           "what that source alone contributes to a single run's test accuracy (Bouthillier et al. 2021); its 95% "
           "interval is the chi-square interval for a standard deviation. The sources need not add up: a run that "
           f"varies all of them sees their joint effect. The `{pair[0]} − {pair[1]}` row is the sd of the paired "
           "difference — what decides how many seeds a comparison needs. Numbers: variance_by_source.csv._", ""]
    for dataset in dict.fromkeys(table["dataset"]):
        sub = table[table["dataset"] == dataset]
        names = list(dict.fromkeys(sub["source"]))
        out += [f"### {DATASET_TITLES.get(dataset, dataset)}", "",
                "| model | " + " | ".join(f"sd, {' + '.join(SOURCE_WORDS.get(p, p) for p in n.split('+'))} varied "
                                         "(pp, 95% CI)" for n in names) + " | seeds |",
                "|---|" + "---:|" * (len(names) + 1)]
        for model in dict.fromkeys(sub["model"]):
            cells, seeds = [], set()
            for name in names:
                r = sub[(sub["source"] == name) & (sub["model"] == model)]
                if r.empty or not np.isfinite(r["sd"].iloc[0]):
                    cells.append("–")
                    continue
                x = r.iloc[0]
                seeds.add(int(x["n"]))
                cells.append(f"{x['sd'] * 100:.2f} [{x['sd_ci_low'] * 100:.2f}, {x['sd_ci_high'] * 100:.2f}]")
            out.append(f"| {model} | " + " | ".join(cells) + f" | {', '.join(map(str, sorted(seeds))) or '–'} |")
        png = folder.plots / f"{dataset}_variance.png"
        plot_variance(table, dataset, png)
        out += ["", f"![{dataset} variance by source]({relative_link(png, report_dir)})", ""]
    return "\n".join(out)
