"""`python -m bench.compare results/<run>`: paired statistics of a finished (or partial) run.

The file side of `bench.stats`: `analyse` reads a run folder (runs.csv, epochs.csv, predictions/,
config.json with its claim) and measures, writing nothing (the command first checks runs.csv and
epochs.csv against units/ and rebuilds a table that disagrees); `write_tables` writes comparisons.csv,
model_summary.csv, length_bins.csv, length_bins_by_seed.csv and gap_by_epoch.csv into it; the
command does both and prints a compact table. The report's "Statistical comparison" section is
drawn from the same tables.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench import stats
from bench.config import ClaimConfig
from bench.cli import OneLineParser, cli_main, unreadable_files_are_one_line
from bench.results import RunFolder, atomic_write_csv


def _stored_settings(folder: RunFolder) -> tuple[str | None, ClaimConfig | None]:
    """The run's reference model (an ablation's baseline) and declared claim from its stored config;
    a folder without config.json has neither."""
    if not folder.config_json.exists():
        return None, None
    cfg = folder.stored_config()
    return cfg.reference or None, cfg.claim


def analyse(run_dir: str | Path) -> stats.StatsTables:
    """Every statistic of a run folder, from runs.csv, epochs.csv, predictions/ and config.json;
    writes nothing. A run that stored no claim is analysed under the default claim (the tables say so)."""
    folder = RunFolder(run_dir)
    runs = folder.read_runs(required=stats.RUN_METRICS)
    epochs = pd.read_csv(folder.epochs_csv) if folder.epochs_csv.is_file() else None
    reference, claim = _stored_settings(folder)
    return stats.compare(runs, folder.read_predictions, reference, epochs=epochs, claim=claim,
                         claim_declared=claim is not None)


def write_tables(run_dir: str | Path, tables: stats.StatsTables) -> None:
    """Write `analyse`'s tables into the run folder, each file atomically."""
    folder = RunFolder(run_dir)
    atomic_write_csv(folder.comparisons_csv, tables.comparisons)
    atomic_write_csv(folder.model_summary_csv, tables.model_summary)
    atomic_write_csv(folder.length_bins_csv, tables.length_bins)
    atomic_write_csv(folder.length_bins_by_seed_csv, tables.length_bins_by_seed)
    atomic_write_csv(folder.gap_by_epoch_csv, tables.gap_by_epoch)


def _fmt_p(p: float) -> str:
    return "-" if pd.isna(p) else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def compact_table(table: pd.DataFrame) -> str:
    """One line per comparison: family, difference and CI in percentage points, the primary paired-t p
    and its Holm p within the family, P(A > B), the seeds 80% power needs, and the verdict."""
    header = (f"{'family':<6} {'dataset':<8} {'metric':<12} {'A - B':<24} {'n':>2} {'diff pp':>8} "
              f"{'95% CI pp':>18} {'t p':>8} {'p Holm':>8} {'P(A>B)':>6} {'n80':>6}  verdict")
    lines = [header, "-" * len(header)]
    for r in table.itertuples():
        ci = f"[{r.ci_low * 100:+.2f}, {r.ci_high * 100:+.2f}]" if pd.notna(r.ci_low) else "-"
        n80 = "-" if pd.isna(r.seeds_80_observed) else ("inf" if np.isinf(r.seeds_80_observed)
                                                        else f"{int(r.seeds_80_observed)}")
        fam = "CONF" if r.family == stats.CONFIRMATORY else "expl"
        pab = "-" if pd.isna(r.p_a_better) else f"{r.p_a_better:.2f}"
        lines.append(f"{fam:<6} {r.dataset:<8} {r.metric:<12} {r.model_a + ' - ' + r.model_b:<24} {r.n:>2} "
                     f"{r.mean_diff * 100:>+8.2f} {ci:>18} {_fmt_p(r.t_p):>8} {_fmt_p(r.p_holm):>8} {pab:>6} "
                     f"{n80:>6}  {r.verdict}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="python -m bench.compare",
                      description="Paired statistics over seeds from a results folder's files alone: the claim's "
                                  "confirmatory family and the exploratory comparisons (paired t with Holm within each "
                                  "family, sign-flip and Wilcoxon checks, effect sizes, P(A > B), power, ASO, McNemar, "
                                  "accuracy by length, the gap at matched epochs).")
    p.add_argument("run_dir", help="a results folder holding runs.csv, e.g. results/quick")
    return p.parse_args(argv)


def execute(args: argparse.Namespace) -> int:
    """Measure, write the tables, print them."""
    folder = RunFolder(args.run_dir)
    folder.verify_tables()  # a runs.csv that disagrees with units/ is rebuilt from them, never trusted
    tables = analyse(folder.path)
    write_tables(folder.path, tables)
    table = tables.comparisons
    if table.empty:
        print("no model pairs with shared seeds to compare")
    else:
        claim = tables.claim
        source = "declared in config.json" if tables.claim_declared else "the default claim: this run stored none"
        print(f"claim ({source}): {claim.statement} [{claim.model_a} vs {claim.model_b}; "
              f"{', '.join(f'{m} {d}' for m, d in claim.metrics.items())}; alpha {claim.alpha:g}]\n")
        print(compact_table(table))
        weak = table[(table["family"] == stats.CONFIRMATORY) & table["underpowered"]]
        if len(weak):
            print(f"\nwarning: {len(weak)} confirmatory hypothesis(es) have fewer seeds than 80% power at the "
                  "observed effect needs (column n80)")
    print(f"\nwrote {folder.comparisons_csv}, {folder.model_summary_csv}, {folder.length_bins_csv}, "
          f"{folder.gap_by_epoch_csv}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli_main(parse_args, unreadable_files_are_one_line(execute, "cannot compute the statistics"), argv,
                    interrupted="the statistics tables may be incomplete; rerun the command")


if __name__ == "__main__":
    sys.exit(main())
