"""`python -m bench.reproduce results/<run> --units K`: rerun a sample of a run's committed units
here, through the code path `bench.run`'s seed stage uses (bench.data.prepare, split_for_seed, a
bench.units.UnitJob run by run_job → run_unit), into a scratch folder, and report which reproduce
bit for bit and how far the others moved.

"Bit for bit" means every non-timing field of the unit's run record and epoch records is equal
and its predictions file is byte-identical. For the others it reports the test-accuracy change,
how many test predictions changed, the largest probability change and the selected epoch then and
now, and whether the commit differs from the one that made the unit. Writes `reproduction.csv` into
the scratch folder (and, with --record, into the run folder, where the report reads it).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench import cli
from bench.config import BenchError, Config, ModelConfig
from bench.results import EpochRecord, RunFolder, RunRecord, UnitRecord, atomic_write_csv, ok_runs

log = logging.getLogger("bench")

TIMING = {"train_seconds", "wall_seconds", "train_tokens_per_s", "epoch_seconds"}
CONTEXT = {"device", "threads", "git_sha", "claim_hash"}  # where and when, not what was computed
RUN_FIELDS = [f.name for f in dataclasses.fields(RunRecord) if f.name not in TIMING | CONTEXT]
EPOCH_FIELDS = [f.name for f in dataclasses.fields(EpochRecord) if f.name not in TIMING]
COLUMNS = ["dataset", "model", "seed", "bit_identical", "status", "differing_fields", "test_acc_then", "test_acc_now",
           "test_acc_diff", "best_epoch_then", "best_epoch_now", "predictions_changed", "max_prob_diff",
           "git_sha_then", "git_sha_now", "threads_then", "threads_now"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.OneLineParser(prog="python -m bench.reproduce",
                          description="Rerun a sample of a results folder's units here and report which reproduce "
                                      "bit for bit and how far the others moved.")
    p.add_argument("run_dir", help="a results folder holding units/ and config.json, e.g. results/quick")
    p.add_argument("--units", type=int, default=3, help="how many finished units to rerun (default 3)")
    p.add_argument("--sample-seed", type=int, default=0, help="seed of the unit sample (default 0)")
    p.add_argument("--scratch", default=None, help="empty or new folder for the reruns (default: a new temp folder)")
    p.add_argument("--record", action="store_true", help="also write reproduction.csv into the run folder")
    p.add_argument("--deterministic", action="store_true", help="deterministic kernels, as bench.run --deterministic")
    cli.add_compute_options(p, "cpu")
    cli.add_data_options(p)
    return p.parse_args(argv)


def sample_units(runs: pd.DataFrame, k: int, seed: int) -> list[tuple[str, str, int]]:
    """`k` finished units (all when fewer), drawn without replacement with a fixed seed, in file order."""
    if k < 1:
        raise BenchError(f"--units must be at least 1, got {k}")
    units = sorted((d, m, int(s)) for d, m, s in ok_runs(runs)[["dataset", "model", "seed"]].itertuples(index=False))
    if k >= len(units):
        return units
    pick = np.random.default_rng(seed).choice(len(units), size=k, replace=False)
    return [units[i] for i in sorted(pick)]


def unit_config(cfg: Config, record: UnitRecord) -> Config:
    """The run's config with the unit's own model section (a tuned unit records its tuned one); a
    unit whose configuration cannot be rebuilt (e.g. tuned training settings) is an error."""
    ucfg = dataclasses.replace(cfg, model={**cfg.model})
    name = record.run.model
    if record.model_config:
        ucfg.model[name] = ModelConfig(**record.model_config)
    if ucfg.unit_hash(name) != record.run.config_hash:
        raise BenchError(f"configuration hash {ucfg.unit_hash(name)} != the unit's {record.run.config_hash} "
                         "(tuned training settings are not in the unit record)")
    return ucfg


def _predictions_diff(old: pd.DataFrame | None, new: pd.DataFrame | None) -> tuple[float, float]:
    """(test predictions that changed, largest |probability change|); nan when a file is missing."""
    if old is None or new is None or len(old) != len(new):
        return float("nan"), float("nan")
    probs = [c for c in old.columns if c.startswith("prob_")]
    changed = float((old["pred"].to_numpy() != new["pred"].to_numpy()).sum())
    return changed, float(np.abs(old[probs].to_numpy(float) - new[probs].to_numpy(float)).max())


def compare_units(then: UnitRecord, now: UnitRecord, old_preds: Path, new_preds: Path) -> dict:
    """One row of reproduction.csv: equal fields, prediction bytes, and how far the results moved."""
    old_run, new_run = dataclasses.asdict(then.run), dataclasses.asdict(now.run)
    differing = [f for f in RUN_FIELDS if old_run[f] != new_run[f]]
    old_epochs = [{f: e[f] for f in EPOCH_FIELDS} for e in map(dataclasses.asdict, then.epochs)]
    new_epochs = [{f: e[f] for f in EPOCH_FIELDS} for e in map(dataclasses.asdict, now.epochs)]
    if old_epochs != new_epochs:
        differing.append("epochs")
    same_bytes = old_preds.is_file() and new_preds.is_file() and old_preds.read_bytes() == new_preds.read_bytes()
    if not same_bytes:
        differing.append("predictions")
    read = lambda p: pd.read_csv(p) if p.is_file() else None  # noqa: E731
    changed, prob = _predictions_diff(read(old_preds), read(new_preds)) if not same_bytes else (0.0, 0.0)
    diff = (now.run.test_acc - then.run.test_acc
            if now.run.test_acc is not None and then.run.test_acc is not None else float("nan"))
    return {"bit_identical": not differing, "status": now.run.status, "differing_fields": " ".join(differing),
            "test_acc_then": then.run.test_acc, "test_acc_now": now.run.test_acc, "test_acc_diff": diff,
            "best_epoch_then": then.run.best_epoch, "best_epoch_now": now.run.best_epoch,
            "predictions_changed": changed, "max_prob_diff": prob, "git_sha_then": then.run.git_sha,
            "git_sha_now": now.run.git_sha, "threads_then": then.run.threads, "threads_now": now.run.threads}


def scratch_folder(path: str | None) -> RunFolder:
    if path is None:
        return RunFolder(tempfile.mkdtemp(prefix="bench-reproduce-"))
    scratch = Path(path)
    if scratch.exists() and (not scratch.is_dir() or any(scratch.iterdir())):
        raise BenchError(f"--scratch {scratch} must be a new or empty folder")
    scratch.mkdir(parents=True, exist_ok=True)
    return RunFolder(scratch)


def rerun(folder: RunFolder, units: list[tuple[str, str, int]], scratch: RunFolder, device: str, data_dir,
          cache_dir, threads: int | None = None, deterministic: bool = False) -> pd.DataFrame:
    """Rerun each unit as bench.run's seed stage does (prepare → split_for_seed → a UnitJob run by
    bench.units.run_job, which sets the process numerics and calls run_unit) and compare it. Each
    unit runs with the torch threads it recorded unless `threads` is given."""
    from bench.data import prepare, split_for_seed
    from bench.run import git_sha
    from bench.units import UnitJob, run_job

    cfg, sha, rows, prepared = folder.stored_config(), git_sha(), [], {}
    for dataset, model, seed in units:
        then = folder.load_unit(dataset, model, seed)
        if then is None:
            raise BenchError(f"{folder.unit_path(dataset, model, seed)} is missing or unreadable")
        key = {"dataset": dataset, "model": model, "seed": seed}
        try:
            ucfg = unit_config(cfg, then)
        except BenchError as exc:
            rows.append({**key, "bit_identical": False, "status": f"not rerun: {exc}"})
            continue
        if dataset not in prepared:
            prepared[dataset] = prepare(dataset, cfg, data_dir, cache_dir)
        data = split_for_seed(prepared[dataset], ucfg, seed)
        job = UnitJob(cfg=ucfg, dataset=dataset, model=model, seed=seed, out=scratch.path, data_dir=data_dir,
                      cache_dir=cache_dir, device=device, threads=threads if threads is not None else
                      int(then.run.threads or 0), deterministic=deterministic, sha=sha)
        now = run_job(job, data)
        scratch.save_unit(now)
        rows.append({**key, **compare_units(then, now, folder.predictions_path(dataset, model, seed),
                                            scratch.predictions_path(dataset, model, seed))})
    return pd.DataFrame(rows, columns=COLUMNS)


def summary(table: pd.DataFrame) -> str:
    lines = []
    for r in table.itertuples():
        unit = f"{r.dataset}/{r.model}/seed{r.seed}"
        if r.bit_identical:
            lines.append(f"{unit}: bit for bit")
        elif str(r.status).startswith("not rerun"):
            lines.append(f"{unit}: {r.status}")
        else:
            lines.append(f"{unit}: differs ({r.differing_fields}); test acc {r.test_acc_then:.4f} -> "
                         f"{r.test_acc_now:.4f} ({r.test_acc_diff * 100:+.2f} pp), best epoch {r.best_epoch_then} -> "
                         f"{r.best_epoch_now}, {r.predictions_changed:.0f} test predictions changed, max |Δprob| "
                         f"{r.max_prob_diff:.3g}")
    done = table[~table["status"].astype(str).str.startswith("not rerun")]
    lines.append(f"\n{int(done['bit_identical'].sum())} of {len(done)} rerun units reproduced bit for bit"
                 + (f" ({len(table) - len(done)} could not be rerun)" if len(done) < len(table) else ""))
    shas = {str(s) for s in done["git_sha_then"].dropna()}
    now = {str(s) for s in done["git_sha_now"].dropna()}
    if shas and shas != now:
        lines.append(f"the commit differs: units made at {', '.join(sorted(shas))}, rerun at {', '.join(sorted(now))}")
    elif shas:
        lines.append(f"same commit ({', '.join(sorted(now))})")
    return "\n".join(lines)


def execute(args: argparse.Namespace) -> int:
    from bench.train import resolve_device

    folder = RunFolder(args.run_dir)
    runs = folder.read_runs()
    folder.stored_config()  # readable before anything runs
    units = sample_units(runs, args.units, args.sample_seed)
    device = resolve_device(args.device)
    scratch = scratch_folder(args.scratch)
    log.info("rerunning %d unit(s) of %s into %s", len(units), folder.path, scratch.path)
    table = rerun(folder, units, scratch, str(device), cli.data_dir(args), cli.cache_dir(args), args.threads,
                  args.deterministic)
    atomic_write_csv(scratch.reproduction_csv, table)
    if args.record:
        atomic_write_csv(folder.reproduction_csv, table)
    print(summary(table))
    print(f"\nwrote {scratch.reproduction_csv}" + (f" and {folder.reproduction_csv}" if args.record else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.cli_main(parse_args, execute, argv, "the units rerun so far are in the scratch folder")


if __name__ == "__main__":
    sys.exit(main())
