"""The CLI: `python -m bench.run` plans (dataset × seed × model) units, runs the unfinished
ones, rebuilds the result tables after each, and regenerates REPORT.md.

Known problems (bad options, config, data, device) end with one line on stderr and exit 2;
Ctrl-C exits 130 after the finished units are safely on disk.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.config import MODEL_NAMES, BenchError, Config, OneLineParser, budget_path, cli_main, load, validate
from bench import results

log = logging.getLogger("bench")
REPO_DIR = Path(__file__).resolve().parent.parent



def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(
        prog="python -m bench.run",
        description="Train and compare rnn / attn_rnn / transformer text classifiers over several "
                    "seeds, write CSV results and regenerate REPORT.md.")
    p.add_argument("--models", default=None,
                   help="'all' or a comma list of model names from the config (rnn, attn_rnn, transformer); "
                        "default: the config's list")
    p.add_argument("--dataset", default=None,
                   help="imdb, ag_news, or a comma list of both; default: the config's list")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available); default auto")
    p.add_argument("--seeds", default=None, help="comma list of integer seeds, e.g. 0,1,2; default: the config's")
    p.add_argument("--budget", default="quick",
                   help="named config under configs/: quick (2-core CPU, ~30 min) or full (GPU); default quick")
    p.add_argument("--config", default=None, help="a TOML config file (overrides --budget)")
    p.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR"),
                   help="folder with <dataset>/train.parquet and test.parquet for offline use "
                        "(default: $BENCH_DATA_DIR, else the Hugging Face hub)")
    p.add_argument("--cache-dir", default=None,
                   help="where encoded datasets are cached (default: $BENCH_CACHE_DIR or ~/.cache/bench)")
    p.add_argument("--out", default=None, help="results folder for this run (default: results/<budget>)")
    p.add_argument("--report", default="REPORT.md",
                   help="where to write the generated report besides <out>/REPORT.md ('none' to skip); "
                        "default REPORT.md")
    p.add_argument("--fresh", action="store_true",
                   help="start a new run in --out, first moving existing results there to <out>.oldN")
    p.add_argument("--epochs", type=int, default=None, help="override the config's maximum epochs (quick runs)")
    p.add_argument("--tune", action="store_true",
                   help="tune each model with Optuna on the validation split first, then run the seeds "
                        "with its best configuration (default --out results/<budget>-tuned)")
    p.add_argument("--skip-tune", action="store_true",
                   help="run the seed stage with the best trials already in --storage (tuned by workers)")
    p.add_argument("--trials", type=int, default=None, help="trials per study (default: configs/search.toml)")
    p.add_argument("--tune-timeout", type=float, default=None, help="seconds per study (default: search.toml)")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL, e.g. postgresql://user@host/db (default: sqlite <out>/optuna.db)")
    p.add_argument("--search", default=None, help="search-space TOML (default configs/search.toml)")
    p.add_argument("--deterministic", action="store_true",
                   help="force deterministic kernels (CUDA: slower; CPU results are deterministic anyway)")
    return p.parse_args(argv)


def _csv_list(value: str, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",")]
    if not value.strip() or any(not v for v in items):
        raise BenchError(f"malformed {what} list '{value}' (expected a comma list such as a,b)")
    return items


def resolve_config(args: argparse.Namespace) -> Config:
    cfg = load(args.config if args.config else budget_path(args.budget))
    if args.dataset:
        cfg.datasets = _csv_list(args.dataset, "--dataset")
    if args.models and args.models != "all":
        cfg.models = _csv_list(args.models, "--models")
        unknown = [m for m in cfg.models if m not in cfg.model]
        if unknown:
            raise BenchError(f"unknown model '{unknown[0]}' (choose from all, {', '.join(cfg.model) or ', '.join(MODEL_NAMES)})")
    elif args.models == "all":
        cfg.models = list(cfg.model)
    if args.seeds is not None:
        try:
            cfg.seeds = [int(s) for s in _csv_list(args.seeds, "--seeds")]
        except ValueError:
            raise BenchError(f"malformed --seeds '{args.seeds}' (expected integers such as 0,1,2)") from None
    if args.epochs is not None:
        if args.epochs < 1:
            raise BenchError(f"--epochs must be at least 1, got {args.epochs}")
        cfg.train.epochs = args.epochs
    return validate(cfg)


def git_sha() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_DIR,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment(device) -> dict[str, Any]:
    import datasets
    import numpy
    import tokenizers
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
           "datasets": datasets.__version__, "tokenizers": tokenizers.__version__,
           "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
           "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device),
           "git_sha": git_sha()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


def _settings(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    """The part of a config that must match for results to share a folder (not the unit lists)."""
    return {k: v for k, v in cfg_dict.items() if k not in ("datasets", "models", "seeds", "description", "reference")}


def _first_difference(old: Any, new: Any, prefix: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if key not in old or key not in new:
                if prefix == "model." or prefix.startswith("model."):
                    continue  # a model section one side lacks never produced results there
                return prefix + key
            diff = _first_difference(old[key], new[key], f"{prefix}{key}.")
            if diff:
                return diff
        return None
    return None if old == new else prefix.rstrip(".")


def set_aside(out: Path) -> Path:
    """Move an existing run folder to a new sibling name (never deleting anything)."""
    n = 1
    while (target := out.with_name(f"{out.name}.old{n}")).exists():
        n += 1
    out.rename(target)
    return target


def prepare_out_dir(out: Path, cfg: Config, fresh: bool = False) -> None:
    """Create the run folder, or check that an existing one was made with the same settings."""
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} is a file, not a folder")
    if fresh and out.exists():
        log.info("--fresh: previous results moved to %s", set_aside(out))
    for stale in out.rglob(".*.tmp") if out.exists() else []:
        stale.unlink()  # a write interrupted by kill -9; its target file is intact
    stored_path = out / "config.json"
    new = cfg.to_dict()
    if stored_path.exists():
        try:
            old = json.loads(stored_path.read_text())
        except ValueError:
            raise BenchError(f"{stored_path} is unreadable; use another --out") from None
        diff = _first_difference(_settings(old), _settings(new))
        if diff:
            raise BenchError(f"{out} holds results made with a different config ('{diff}' differs); "
                             f"use another --out, or --fresh to move the old results aside")
        for key in ("datasets", "models", "seeds"):  # the folder holds the union of units
            new[key] = list(dict.fromkeys(old.get(key, []) + new[key]))
        new["model"] = {**old.get("model", {}), **new["model"]}
    out.mkdir(parents=True, exist_ok=True)
    results.atomic_write_json(stored_path, new)


def _fit_unit(cfg: Config, data, model_name: str, seed: int, device, desc: str):
    """Build and fit one model; returns (fitted, test result, parameter count, the model)."""
    from bench.models import build_model, count_parameters
    from bench.train import evaluate, fit, seed_everything

    mcfg = cfg.model[model_name]
    seed_everything(seed)  # same seed → same init stream, dropout stream and data order for every model
    if mcfg.kind == "tfidf":
        from bench.baseline import TfidfClassifier

        model = TfidfClassifier(seed)
        fitted = model.fit(data)
        return fitted, model.evaluate(data.test), model.parameter_count(), model
    model = build_model(mcfg, data.vocab_size, data.num_classes, cfg.data.max_length)
    log.info("%s: %s parameters", desc, f"{count_parameters(model):,}")
    fitted = fit(model, data, cfg.train, lr=mcfg.lr or cfg.train.lr, device=device, seed=seed, desc=desc)
    test = evaluate(model, data.test, device, cfg.train.eval_batch_size, cfg.train.amp)
    return fitted, test, count_parameters(model), model


def run_unit(cfg: Config, data, model_name: str, seed: int, device, out: Path, sha: str) -> dict[str, Any]:
    """Train one model with one seed, evaluate it on test once, save predictions and the record."""
    import numpy as np
    import pandas as pd
    import torch

    from bench.train import TrainingDiverged

    started = time.perf_counter()
    mcfg = cfg.model[model_name]
    desc = f"{data.dataset}/{model_name}/seed{seed}"
    run = {"dataset": data.dataset, "model": model_name, "seed": seed, "status": "ok", "reason": "",
           "device": str(device), "threads": torch.get_num_threads(), "config_hash": cfg.unit_hash(model_name),
           "git_sha": sha}
    try:
        fitted, test, params, model = _fit_unit(cfg, data, model_name, seed, device, desc)
    except TrainingDiverged as exc:
        log.warning("%s failed: %s", desc, exc)
        run.update(status="failed", reason=str(exc))
        return {"run": run, "epochs": [], "model_config": dataclasses.asdict(mcfg)}
    except torch.cuda.OutOfMemoryError:
        raise BenchError(f"{desc}: CUDA out of memory; lower train.batch_size, train.eval_batch_size or "
                         "data.max_length in the config") from None
    best = fitted.history[fitted.best_epoch - 1]
    run.update(params=params, best_epoch=fitted.best_epoch, epochs_run=len(fitted.history),
               best_val_acc=best["val_acc"], best_val_loss=best["val_loss"], test_acc=test.acc,
               test_loss=test.loss, train_acc=best["train_acc"], train_eval_acc=best["train_eval_acc"],
               gap_acc=best["gap_acc"], gap_loss=best["gap_loss"], train_seconds=fitted.train_seconds,
               train_tokens_per_s=fitted.train_tokens / fitted.train_seconds)
    log.info("%s: test acc %.4f (best epoch %d)", desc, test.acc, fitted.best_epoch)
    preds = pd.DataFrame({"row": data.test.rows, "label": data.test.labels, "pred": test.probs.argmax(1),
                          "length": data.test.lengths})
    for k in range(test.probs.shape[1]):
        preds[f"prob_{k}"] = np.round(test.probs[:, k], 5)
    results.atomic_write_csv(results.predictions_path(out, data.dataset, model_name, seed), preds)
    if mcfg.kind == "rnn" and mcfg.pooling == "attention":
        from bench.attention import collect

        collect(model, data.test, test.probs, data.tokenizer_json, device, cfg.train.eval_batch_size,
                out / "attention" / f"{results.unit_key(data.dataset, model_name, seed)}.json")
    run["wall_seconds"] = time.perf_counter() - started
    epochs = [{"dataset": data.dataset, "model": model_name, "seed": seed, **row} for row in fitted.history]
    return {"run": run, "epochs": epochs, "model_config": dataclasses.asdict(mcfg)}


def record_dataset(out: Path, data, max_length: int) -> None:
    """Add this dataset's sizes and source to <out>/datasets.json (read by the report)."""
    path = out / "datasets.json"
    info = json.loads(path.read_text()) if path.exists() else {}
    info[data.dataset] = {"train": len(data.train), "val": len(data.val), "test": len(data.test),
                          "vocab_size": data.vocab_size, "source": data.source,
                          "truncated_fraction": float((data.test.lengths >= max_length).mean()),
                          "mean_test_tokens": float(data.test.lengths.mean())}
    results.atomic_write_json(path, info)


def execute(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    from bench.train import resolve_device, set_deterministic

    device = resolve_device(args.device)
    import torch

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if args.deterministic:
        set_deterministic(device)
    tuned = args.tune or args.skip_tune
    if args.tune and args.skip_tune:
        raise BenchError("--tune and --skip-tune exclude each other")
    out = Path(args.out) if args.out else Path("results") / (cfg.budget + ("-tuned" if tuned else ""))
    data_dir = Path(args.data_dir) if args.data_dir else None
    search = None
    if tuned:
        from bench import search_space, tune

        search = search_space.load_search(args.search)
    prepare_out_dir(out, cfg, fresh=args.fresh)
    if cfg.description:
        log.info("budget '%s': %s", cfg.budget, cfg.description)
    env = environment(device)
    results.atomic_write_json(out / "environment.json", env)
    log.info("device %s, torch %s, %d threads; results in %s", device, env["torch"], env["torch_threads"], out)
    from bench.data import prepare

    started = time.perf_counter()
    for dataset in cfg.datasets:
        data = None

        def load_data():
            t0 = time.perf_counter()
            d = prepare(dataset, cfg.data, data_dir, Path(args.cache_dir) if args.cache_dir else None)
            log.info("%s: %d train / %d val / %d test texts, vocabulary %d (%s, %.1fs%s)", dataset, len(d.train),
                     len(d.val), len(d.test), d.vocab_size, d.source, time.perf_counter() - t0,
                     ", cache hit" if d.cache_hit else "")
            record_dataset(out, d, cfg.data.max_length)
            return d

        model_cfgs = {name: cfg for name in cfg.models}
        if tuned:
            data = load_data()
            for name in cfg.models:
                if cfg.model[name].kind == "tfidf":
                    continue  # the linear floor has nothing to tune
                if args.tune:
                    model_cfgs[name] = tune.tune_model(cfg, data, name, out, storage_url=args.storage,
                                                       trials=args.trials, timeout=args.tune_timeout,
                                                       device=device, search=search)
                else:
                    model_cfgs[name] = tune.best_config(args.storage or tune.sqlite_url(out), dataset, name, cfg,
                                                        search=search)
        todo = []
        for seed in cfg.seeds:
            for name in cfg.models:
                done = results.load_unit(out, dataset, name, seed)
                if done is None:
                    todo.append((seed, name))
                elif done["run"].get("config_hash") != model_cfgs[name].unit_hash(name):
                    raise BenchError(f"{out}: {dataset}/{name}/seed{seed} was made with another configuration "
                                     f"(hash {done['run'].get('config_hash')}, now {model_cfgs[name].unit_hash(name)});"
                                     f" use another --out, or --fresh to move the old results aside")
                else:
                    log.info("%s/%s/seed%d: already finished, skipped", dataset, name, seed)
        if not todo:
            continue
        data = data or load_data()
        for seed, name in todo:
            record = run_unit(model_cfgs[name], data, name, seed, device, out, env["git_sha"])
            results.save_unit(out, record)
            results.rebuild_tables(out)
    results.rebuild_tables(out)
    log.info("all units finished in %.0fs", time.perf_counter() - started)
    from bench.report import write_report

    report = None if args.report.lower() == "none" else Path(args.report)
    written = write_report(out, report)
    log.info("report written: %s", ", ".join(str(p) for p in written))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli_main(parse_args, execute, argv, "finished units are saved; rerun the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
