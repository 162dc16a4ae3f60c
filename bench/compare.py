"""`python -m bench.compare results/<run>`: paired statistics of a finished (or partial) run.

The file side of `bench.stats`: `analyse` reads a run folder and measures (writing nothing),
`write_tables` writes comparisons.csv, model_summary.csv, length_bins.csv and
length_bins_by_seed.csv into it; the command does both and prints a compact table. The report's
"Statistical comparison" section is drawn from the same tables.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from bench import stats
from bench.cli import OneLineParser, cli_main
from bench.results import RunFolder, atomic_write_csv


def _reference(folder: RunFolder) -> str | None:
    """The run's reference model (an ablation's baseline) from its stored config; a folder without
    config.json has none."""
    if not folder.config_json.exists():
        return None
    return folder.stored_config().reference or None


def analyse(run_dir: str | Path) -> stats.StatsTables:
    """Every statistic of a run folder, from runs.csv, predictions/ and config.json; writes nothing."""
    folder = RunFolder(run_dir)
    runs = folder.read_runs(required=tuple(stats.METRICS))
    return stats.compare(runs, folder.read_predictions, _reference(folder))


def write_tables(run_dir: str | Path, tables: stats.StatsTables) -> None:
    """Write `analyse`'s tables into the run folder, each file atomically."""
    folder = RunFolder(run_dir)
    atomic_write_csv(folder.comparisons_csv, tables.comparisons)
    atomic_write_csv(folder.model_summary_csv, tables.model_summary)
    atomic_write_csv(folder.length_bins_csv, tables.length_bins)
    atomic_write_csv(folder.length_bins_by_seed_csv, tables.length_bins_by_seed)


def _fmt_p(p: float) -> str:
    return "-" if pd.isna(p) else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def compact_table(table: pd.DataFrame) -> str:
    """One line per comparison: difference and CI in percentage points, primary and Holm p, ε_min."""
    header = (f"{'dataset':<9} {'metric':<13} {'A - B':<24} {'n':>2} {'diff pp':>8} {'95% CI pp':>18} "
              f"{'primary':<9} {'p':>8} {'p Holm':>8} {'eps_min':>7} {'McNemar A/B':>11}")
    lines = [header, "-" * len(header)]
    for r in table.itertuples():
        ci = f"[{r.ci_low * 100:+.2f}, {r.ci_high * 100:+.2f}]" if pd.notna(r.ci_low) else "-"
        mcn = "-" if pd.isna(r.mcnemar_seeds) else f"{r.mcnemar_sig_a_better}/{r.mcnemar_sig_b_better} of {r.mcnemar_seeds}"
        eps = "-" if pd.isna(r.aso_eps) else f"{r.aso_eps:.2f}"
        lines.append(f"{r.dataset:<9} {r.metric:<13} {r.model_a + ' - ' + r.model_b:<24} {r.n:>2} "
                     f"{r.mean_diff * 100:>+8.2f} {ci:>18} {r.primary_test:<9} {_fmt_p(r.p_primary):>8} "
                     f"{_fmt_p(r.p_holm):>8} {eps:>7} {mcn:>11}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="python -m bench.compare",
                      description="Paired statistics over seeds (CIs, t / Wilcoxon with Holm, effect sizes, ASO, "
                                  "McNemar, accuracy by length) from a results folder's files alone.")
    p.add_argument("run_dir", help="a results folder holding runs.csv, e.g. results/quick")
    return p.parse_args(argv)


def execute(args: argparse.Namespace) -> int:
    """Measure, write the tables, print them."""
    folder = RunFolder(args.run_dir)
    tables = analyse(folder.path)
    write_tables(folder.path, tables)
    table = tables.comparisons
    if table.empty:
        print("no model pairs with shared seeds to compare")
    else:
        print(compact_table(table))
        warning = stats.seed_warning(int(table["n"].min()))
        if warning:
            print(f"\nwarning: {warning}")
    print(f"\nwrote {folder.comparisons_csv}, {folder.model_summary_csv}, {folder.length_bins_csv}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli_main(parse_args, execute, argv, interrupted="the statistics tables may be incomplete; rerun the command")


if __name__ == "__main__":
    sys.exit(main())
