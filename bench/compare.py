"""`python -m bench.compare results/<run>`: paired statistics of a finished (or partial) run.

Writes comparisons.csv, model_summary.csv and length_bins.csv into the run folder and prints a
compact table; the report's "Statistical comparison" section reads the same numbers.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bench.config import BenchError, OneLineParser



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


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m bench.compare",
                      description="Paired statistics over seeds (CIs, t / Wilcoxon with Holm, effect sizes, ASO, "
                                  "McNemar, accuracy by length) from a results folder's files alone.")
    p.add_argument("run_dir", help="a results folder holding runs.csv, e.g. results/quick")
    args = p.parse_args(argv)
    try:
        from bench.stats import compare, seed_warning

        run_dir = Path(args.run_dir)
        table = compare(run_dir)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if table.empty:
        print("no model pairs with shared seeds to compare")
    else:
        print(compact_table(table))
        warning = seed_warning(int(table["n"].min()))
        if warning:
            print(f"\nwarning: {warning}")
    print(f"\nwrote {run_dir / 'comparisons.csv'}, {run_dir / 'model_summary.csv'}, {run_dir / 'length_bins.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
