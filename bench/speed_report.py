"""REPORT.md's "Speed" section, rendered from `speed.csv` alone.

Kept apart from `bench.speed` (which measures) so that rendering a report never imports torch
nor the benchmark: the CSV is the whole interface between the two (columns: SPEED_COLUMNS).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from bench.config import BenchError
from bench.results import SPEED_COLUMNS, relative_link, save_png

MODEL_ORDER = ["rnn", "attn_rnn", "transformer"]
# the issues' targets (2 CPU cores, IMDB, max length 400, default model sizes, medians): training
# tokens/s of the harness over the plain reference loop, per model
TARGET_TRAIN_RATIO = {"rnn": 3.0, "attn_rnn": 1.7, "transformer": 1.5}
TARGET_OTHER_RATIO = 1.7
UNITS_METRICS = ("units_wall_seconds", "jobs_speedup")  # the --jobs comparison: rows about units, not a model
TARGET_PEAK_FRACTION = 0.25
TARGET_EVAL_OVER_TRAIN = 3.0
TARGET_CACHE_HIT_SECONDS = 1.0
TARGET_MAX_LENGTH = 400


# ---------------------------------------------------------------- cells and formats

def _cell(frame: pd.DataFrame, model: str, metric: str, kind: str = "median") -> float:
    """One summary value of one model's metric; NaN when the benchmark did not measure it."""
    hit = frame[(frame["model"] == model) & (frame["metric"] == metric)]
    return float(hit[kind].iloc[0]) if len(hit) else float("nan")


def _fmt_rate(v: float) -> str:
    if not math.isfinite(v):
        return "–"
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.1f} k" if v >= 1e4 else f"{v:,.0f}"


def _spread(frame: pd.DataFrame, model: str, metric: str, fmt: Callable[[float], str] = _fmt_rate) -> str:
    """`median [min–max]`: repeats on a shared machine vary, so the range is shown with the median."""
    med, lo, hi = (_cell(frame, model, metric, k) for k in ("median", "min", "max"))
    if not math.isfinite(med):
        return "–"
    return f"{fmt(med)} [{fmt(lo)}–{fmt(hi)}]"


def _ratio(v: float) -> str:
    return f"{v:.2f}×" if math.isfinite(v) else "–"


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def _models(frame: pd.DataFrame) -> list[str]:
    """The measured models, standard ones first; `all` holds run-wide metrics, not a model."""
    present = set(frame.loc[~frame["metric"].str.startswith(UNITS_METRICS), "model"])
    return [m for m in MODEL_ORDER if m in present] + sorted(present - set(MODEL_ORDER) - {"all"})


# ---------------------------------------------------------------- plot

def plot_speed(frame: pd.DataFrame, path: Path) -> None:
    """Real tokens/s per model: train and eval, reference and harness, median bars with min–max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = _models(frame)
    groups = [("train", "reference"), ("train", "harness"), ("eval", "reference"), ("eval", "harness")]
    colors = {"reference": "#9e9e9e", "harness": "#1f77b4"}
    fig, ax = plt.subplots(figsize=(max(5.0, 2.2 * len(models)), 3.6))
    width = 0.2
    for j, (phase, loop) in enumerate(groups):
        metric = f"{phase}_tokens_per_s_{loop}"
        med = np.array([_cell(frame, m, metric) for m in models])
        lo = np.array([_cell(frame, m, metric, "min") for m in models])
        hi = np.array([_cell(frame, m, metric, "max") for m in models])
        x = np.arange(len(models)) + (j - 1.5) * width
        ax.bar(x, med, width, color=colors[loop], alpha=1.0 if phase == "train" else 0.55,
               hatch=None if phase == "train" else "//", edgecolor="black", linewidth=0.5,
               label=f"{phase} · {loop}")
        ax.errorbar(x, med, yerr=[med - lo, hi - med], fmt="none", ecolor="black", capsize=2, linewidth=0.8)
    ax.set_xticks(np.arange(len(models)), models)
    ax.set_yscale("log")
    ax.set_ylabel("real tokens / s (log)")
    ax.set_title("Throughput: harness vs plain reference loop (median, min–max)")
    ax.legend(fontsize=7, ncol=2)
    save_png(fig, path)


# ---------------------------------------------------------------- the section, phase by phase

def _read_speed_csv(speed_csv: Path) -> pd.DataFrame:
    """The CSV, checked up front, so a stale or foreign file is one clear error, not a KeyError."""
    frame = pd.read_csv(speed_csv)
    missing = set(SPEED_COLUMNS) - set(frame.columns)
    if missing:
        raise BenchError(f"{speed_csv} lacks columns {sorted(missing)}")
    return frame


def _memory_name(env: pd.Series) -> str:
    return "peak RSS" if env["device"] == "cpu" else "peak CUDA memory"


def _header(frame: pd.DataFrame, env: pd.Series, speed_csv: Path, report_dir: Path) -> list[str]:
    """Title, source, and what was measured how: a reader must know the setup to trust a ratio."""
    return ["## Speed", "",
            f"_From `{relative_link(speed_csv, report_dir)}`, written by "
            "`python -m bench.speed`._", "",
            f"Device `{env['device']}`, {int(env['threads'])} torch threads ({int(env['cpu_count'])} CPU cores), "
            f"torch {env['torch']}; dataset {env['dataset']}, texts cut to {int(env['max_length'])} tokens; "
            f"{int(env['examples']):,} training examples (batch {int(env['batch_size'])}) and as many test "
            f"examples (harness eval batch {int(env['eval_batch_size'])}) per measurement; "
            f"{int(frame.loc[frame['model'] == 'all', 'repeats'].max())} alternating repeats (reference, harness, …). "
            "**Harness** = `bench.train.fit` (length-bucketed batches) and `bench.train.evaluate`; "
            "**reference** = a plain tutorial loop over the same model and examples, every batch padded to "
            "max length, shuffled, `loss.item()` each step, evaluation with the training batch size. "
            "Tokens are real (non-padding) tokens; values are medians [min–max]; ratios are harness / "
            "reference within the same repeat.", ""]


def _table(frame: pd.DataFrame, models: list[str], mem_name: str) -> list[str]:
    """Per model: a reference row, a harness row, and their per-repeat ratios."""
    out = [f"| model | loop | train tokens/s | train samples/s | eval tokens/s | eval / train | padding | {mem_name} |",
           "|---|---|---|---|---|---|---|---|"]
    for m in models:
        for loop in ("reference", "harness"):
            pad = _cell(frame, m, f"padding_fraction_{loop}")
            out.append(f"| {m} | {loop} | {_spread(frame, m, f'train_tokens_per_s_{loop}')} | "
                       f"{_spread(frame, m, f'train_samples_per_s_{loop}')} | "
                       f"{_spread(frame, m, f'eval_tokens_per_s_{loop}')} | "
                       f"{_ratio(_cell(frame, m, f'eval_over_train_{loop}'))} | "
                       f"{pad:.0%} | {_cell(frame, m, f'peak_memory_mb_{loop}', 'max'):,.0f} MiB |")
        out.append(f"| {m} | **ratio** | {_spread(frame, m, 'train_tokens_per_s_ratio', _ratio)} | "
                   f"{_spread(frame, m, 'train_samples_per_s_ratio', _ratio)} | "
                   f"{_spread(frame, m, 'eval_tokens_per_s_ratio', _ratio)} | | | |")
    return out


def _subnormal_lines(frame: pd.DataFrame, models: list[str]) -> list[str]:
    """What flushing subnormal floats to zero buys the harness (CPU): the same harness loop with
    flushing off, measured in the same repeats."""
    if not any(math.isfinite(_cell(frame, m, "flush_speedup_ratio")) for m in models):
        return []
    out = ["", "Subnormal floats: with the loss read only at the last state, the gradient flowing back through "
           "hundreds of GRU steps decays into the subnormal range, where x86 float arithmetic is many times slower. "
           "The harness flushes them to zero on CPU (`train.flush_denormal`, recorded in environment.json); the "
           "reference loop, like a tutorial, does not. Same harness, same batches, flushing off vs on:", "",
           "| model | harness train tokens/s, subnormals kept | harness train tokens/s, flushed | speed-up |",
           "|---|---|---|---|"]
    for m in models:
        out.append(f"| {m} | {_spread(frame, m, 'train_tokens_per_s_harness_subnormal')} "
                   f"| {_spread(frame, m, 'train_tokens_per_s_harness')} "
                   f"| {_spread(frame, m, 'flush_speedup_ratio', _ratio)} |")
    return out


def _jobs_lines(frame: pd.DataFrame) -> list[str]:
    """Units in parallel worker processes against one process with every thread, from the same run."""
    rows = frame[frame["metric"].str.startswith(UNITS_METRICS)]
    if rows.empty:
        return []
    label = rows["model"].iloc[0]
    first = rows.iloc[0]
    one = rows[rows["metric"].str.contains("_jobs1_")].iloc[0]
    many = rows[rows["metric"].str.startswith("units_wall_seconds") & ~rows["metric"].str.contains("_jobs1_")].iloc[0]
    speed = rows[rows["metric"] == "jobs_speedup_ratio"].iloc[0]
    sec = lambda r: f"{r['median']:.1f} s [{r['min']:.1f}–{r['max']:.1f}]"  # noqa: E731
    return ["", f"Units in parallel (`bench.run --jobs`): {label} on {first['dataset']} at {int(first['max_length'])} "
            f"tokens ({int(first['examples']):,} training texts; training, validation, test and prediction files, "
            f"as `bench.run` runs them), {int(speed['repeats'])} alternating repeats: "
            f"`{one['metric'].replace('units_wall_seconds_', '')}` {sec(one)}, "
            f"`{many['metric'].replace('units_wall_seconds_', '')}` {sec(many)}: worker processes are "
            f"**{_ratio(speed['median'])}** as fast (per repeat {_ratio(speed['min'])}–{_ratio(speed['max'])})."]


def _plot_block(frame: pd.DataFrame, report_dir: Path, plots_dir: Path) -> list[str]:
    """Writes plots_dir/speed.png and links it from the report's folder."""
    plot = plots_dir / "speed.png"
    plot_speed(frame, plot)
    return ["", f"![Throughput, harness vs reference]({relative_link(plot, report_dir)})", ""]


def _flops_paragraph(frame: pd.DataFrame) -> list[str]:
    """The Transformer's achieved GFLOP/s against the matmul peak measured in the same run."""
    peak = _cell(frame, "all", "matmul_peak_gflops")
    g = _cell(frame, "transformer", "train_gflops_per_s_harness")
    gr = _cell(frame, "transformer", "train_gflops_per_s_reference")
    return [f"Transformer training step: {g:.2f} GFLOP/s achieved by the harness "
            f"({_spread(frame, 'transformer', 'train_gflops_per_s_harness', lambda v: f'{v:.2f}')}), "
            f"{gr:.2f} by the reference, against a measured matmul peak of {peak:.1f} GFLOP/s "
            f"(best of 2048×2048 `torch.matmul`) = **{g / peak:.0%}** of peak. FLOPs are the matmul and "
            "attention FLOPs of forward + backward counted by `FlopCounterMode` on every batch "
            "(real sequence lengths for the harness, padded ones for the reference).", ""]


def _memory_and_cache(frame: pd.DataFrame, mem_name: str) -> list[str]:
    """What the memory column means (and the baseline it sits on), then the cache-hit time."""
    out = []
    base = _cell(frame, "all", "baseline_memory_mb")
    if math.isfinite(base):
        out += [f"Peak memory is the {mem_name} of the benchmark process during each loop (max over repeats); "
                f"before any model ran, with the encoded dataset loaded, it held {base:,.0f} MiB.", ""]
    out.append(f"Second run of the same data preparation (cache hit): "
               f"{_spread(frame, 'all', 'prep_cache_hit_seconds', lambda v: f'{v:.2f} s')}.")
    return out


def _targets(frame: pd.DataFrame, env: pd.Series, models: list[str]) -> list[str]:
    """Each of the issue's targets with its verdict; flagged as indicative off the targets' setup."""
    out = ["", "### Targets", ""]
    cond = env["device"] == "cpu" and int(env["max_length"]) == TARGET_MAX_LENGTH and env["dataset"] == "imdb"
    if not cond:
        out += [f"_The targets are defined for IMDB, max length {TARGET_MAX_LENGTH}, on CPU; this run used "
                f"{env['dataset']}, max length {int(env['max_length'])}, device {env['device']}, so the verdicts "
                "below are indicative only._", ""]
    for m in models:
        r = _cell(frame, m, "train_tokens_per_s_ratio")
        need = TARGET_TRAIN_RATIO.get(m, TARGET_OTHER_RATIO)
        out.append(f"- {m}: training tokens/s ≥ {need:g}× the reference — median {_ratio(r)}: "
                   f"{_verdict(math.isfinite(r) and r >= need)}")
        e = _cell(frame, m, "eval_over_train_harness")
        out.append(f"- {m}: evaluation tokens/s ≥ {TARGET_EVAL_OVER_TRAIN:g}× training tokens/s — median "
                   f"{_ratio(e)}: {_verdict(math.isfinite(e) and e >= TARGET_EVAL_OVER_TRAIN)}")
    if "transformer" in models:
        f = _cell(frame, "transformer", "peak_fraction_harness")
        out.append(f"- transformer: ≥ {TARGET_PEAK_FRACTION:.0%} of the measured matmul peak — median "
                   f"{f:.0%}: {_verdict(math.isfinite(f) and f >= TARGET_PEAK_FRACTION)}")
    hit = _cell(frame, "all", "prep_cache_hit_seconds")
    out.append(f"- data preparation cache hit ≤ {TARGET_CACHE_HIT_SECONDS:g} s — median {hit:.2f} s: "
               f"{_verdict(math.isfinite(hit) and hit <= TARGET_CACHE_HIT_SECONDS)}")
    out.append("- the default `python -m bench.run --models all` wall time is recorded by the run itself "
               "(`wall_seconds` and `jobs` in its environment.json); the CUDA targets are not measured here"
               + (" (no GPU in this run)." if env["device"] == "cpu" else "."))
    return out


def speed_section(speed_csv: Path, report_dir: Path, plots_dir: Path) -> str:
    """Markdown for REPORT.md's "Speed" section, from speed.csv alone; writes plots_dir/speed.png."""
    speed_csv, report_dir, plots_dir = Path(speed_csv), Path(report_dir), Path(plots_dir)
    frame = _read_speed_csv(speed_csv)
    env = frame.iloc[0]  # the environment columns repeat on every row
    models = _models(frame)
    mem_name = _memory_name(env)
    out = _header(frame, env, speed_csv, report_dir) + _table(frame, models, mem_name)
    out += _subnormal_lines(frame, models) + _jobs_lines(frame)
    out += _plot_block(frame, report_dir, plots_dir)
    if "transformer" in models:
        out += _flops_paragraph(frame)
    out += _memory_and_cache(frame, mem_name) + _targets(frame, env, models) + [""]
    return "\n".join(out)
