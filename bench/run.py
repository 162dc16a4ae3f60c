"""The main CLI: `python -m bench.run` plans (dataset × seed × model) units, tunes the models
when asked, runs the unfinished units, rebuilds the result tables after each, and regenerates
REPORT.md.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bench import cli
from bench.config import (MODEL_NAMES, RUN_LABELS, UNIT_LISTS, BenchError, Config, DataConfig, ModelConfig,
                          TrainConfig, budget_path, late_defaults, load, validate)
from bench.results import (LOCK_HOLDER_NAME, LOCK_NAME, TMP_PATTERN, RunFolder, UnitRecord, atomic_write_json,
                           default_run_dir, load_manifest)
from bench.units import UNITS_PER_GPU, UnitJob, assign, auto_jobs, devices_for, run_units, threads_per_job

log = logging.getLogger("bench")
REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_MANIFEST = REPO_DIR / "configs" / "report.toml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.OneLineParser(
        prog="python -m bench.run",
        description="Train and compare rnn / attn_rnn / transformer text classifiers over several "
                    "seeds, write CSV results and regenerate REPORT.md.")
    p.add_argument("--models", default=None,
                   help="'all' or a comma list of model names from the config (rnn, attn_rnn, transformer); "
                        "default: the config's list")
    p.add_argument("--dataset", default=None,
                   help="comma list of datasets: imdb, ag_news, a [dataset.NAME] table's NAME, a CSV / JSONL / "
                        "parquet file or folder (or a DatasetDict saved to disk), or a Hugging Face hub id such "
                        "as stanfordnlp/sst2; default: the config's list")
    p.add_argument("--text-column", default=None,
                   help="the text column of the --dataset files or hub dataset (default: the table's, else 'text')")
    p.add_argument("--label-column", default=None,
                   help="the label column of the --dataset files or hub dataset (default: the table's, else 'label')")
    cli.add_compute_options(p, "auto")
    p.add_argument("--seeds", default=None, help="comma list of integer seeds, e.g. 0,1,2; default: the config's")
    p.add_argument("--budget", default="quick",
                   help="named config under configs/: quick (2-core CPU, ~20 min) or full (400 tokens, ≤10 epochs: 10–40 min per IMDB unit on one CPU core, minutes on a GPU); default quick")
    p.add_argument("--config", default=None, help="a TOML config file (overrides --budget)")
    cli.add_data_options(p)
    p.add_argument("--out", default=None, help="results folder for this run (default: results/<budget>)")
    p.add_argument("--report", default=None,
                   help="also write the report here, besides <out>/REPORT.md ('none': only <out>/REPORT.md). "
                        "Default: when --out is a folder of the report manifest (--manifest), the repository's "
                        "report is rebuilt from the manifest; any other run writes only <out>/REPORT.md")
    p.add_argument("--manifest", default=None,
                   help="the report manifest naming the folders of the repository's report "
                        "(default configs/report.toml)")
    p.add_argument("--wait", action="store_true",
                   help="if another run holds --out's lock, wait for it instead of stopping")
    p.add_argument("--fresh", action="store_true",
                   help="start a new run in --out, first moving existing results there to <out>.oldN")
    p.add_argument("--epochs", type=int, default=None, help="override the config's maximum epochs (quick runs)")
    p.add_argument("--vary", default=None,
                   help="comma list of the random sources each seed varies: init, order, split (default: the "
                        "config's 'vary')")
    p.add_argument("--tune", action="store_true",
                   help="tune each model with Optuna on the validation split first, then run the seeds "
                        "with its best configuration (default --out results/<budget>-tuned)")
    p.add_argument("--skip-tune", action="store_true",
                   help="run the seed stage with the best trials already in --storage (tuned by workers)")
    p.add_argument("--trials", type=int, default=None, help="trials per study (default: configs/search.toml)")
    p.add_argument("--tune-timeout", type=float, default=None, help="seconds per study (default: search.toml)")
    p.add_argument("--rerank", type=int, default=0, metavar="TOP",
                   help="with --tune: train each study's TOP best trials again with --rerank-seeds more seeds "
                        "(validation only) and run the seed stage with the best on average (default 0: off)")
    p.add_argument("--rerank-seeds", type=int, default=2, help="extra seeds per re-ranked trial (default 2)")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL, e.g. postgresql://user@host/db (default: sqlite <out>/optuna.db)")
    p.add_argument("--search", default=None, help="search-space TOML (default configs/search.toml)")
    p.add_argument("--jobs", default=None,
                   help="units trained at once in worker processes: a number or 'auto' (one per CPU core, "
                        f"or {UNITS_PER_GPU} per GPU); default: the config's 'jobs' (0 = auto in the shipped configs)")
    p.add_argument("--cluster", default=None,
                   help="run units on an existing Dask scheduler, e.g. tcp://HOST:8786 (needs the 'cluster' extra)")
    p.add_argument("--track", default="none", help="experiment tracker: none or mlflow (the 'track' extra); "
                   "each unit becomes a run in an experiment named after --out")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking server or store (default: sqlite <out>/mlflow.db, artifacts in <out>)")
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
    if args.dataset is not None:  # an empty value (an unset shell variable) is an error, not "the config's list"
        from bench.config import use_dataset

        cfg.datasets = [use_dataset(cfg, d) for d in _csv_list(args.dataset, "--dataset")]
    from bench.config import set_columns

    set_columns(cfg, args.text_column, args.label_column)
    if args.models is not None and args.models != "all":
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
    if args.vary is not None:
        cfg.vary = _csv_list(args.vary, "--vary")
    if args.jobs is not None:
        if args.jobs == "auto":
            cfg.jobs = 0
        else:
            try:
                cfg.jobs = int(args.jobs)
            except ValueError:
                raise BenchError(f"malformed --jobs '{args.jobs}' (expected a number or auto)") from None
            if cfg.jobs < 1:
                raise BenchError(f"--jobs must be at least 1 (or auto), got {args.jobs}")
    if args.epochs is not None:
        if args.epochs < 1:
            raise BenchError(f"--epochs must be at least 1, got {args.epochs}")
        cfg.train.epochs = args.epochs
    return validate(cfg)


def git_sha(repo: Path = REPO_DIR) -> str:
    """HEAD's SHA, with "-dirty" when tracked files outside results/ differ from it: a run writing into
    a committed results folder changes tracked files there, which says nothing about the code."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results"], cwd=repo, capture_output=True, text=True).stdout.strip()
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
        env["gpu_count"] = torch.cuda.device_count()
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
    return env


def _settings(cfg_dict: dict[str, Any], models_with_units: set[str]) -> dict[str, Any]:
    """The part of a config that must match for results to share a folder (not the unit lists).
    A key that a folder made before it existed lacks reads as its default (`vary`: init and order,
    today's behaviour; `claim`: none declared; a late data, train or model key such as
    `data.val_groups`, `decay_all` or `attention_dropout`: its default), so such a folder still
    resumes under the defaults, while a declared or changed claim, or a late key set since, on an
    existing folder is refused like any other change. Only the sections of models with finished units in the folder count: a model
    with none there has no results a changed section could mix with (its first unit stores its
    section, `record_unit_in_config`)."""
    settings = {k: v for k, v in cfg_dict.items()
                if k not in (*UNIT_LISTS, *RUN_LABELS)}
    merged = {"vary": Config().vary, "claim": None, **settings}
    merged["vary"] = sorted(merged["vary"])  # a set of sources: order does not matter
    if isinstance(merged.get("train"), dict):
        merged["train"] = {**late_defaults(TrainConfig), **merged["train"]}
    if isinstance(merged.get("data"), dict):
        merged["data"] = {**late_defaults(DataConfig), **merged["data"]}
    if isinstance(merged.get("model"), dict):
        late = late_defaults(ModelConfig)
        merged["model"] = {name: {**late, **section} if isinstance(section, dict) else section
                           for name, section in merged["model"].items() if name in models_with_units}
    return merged


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


def check_dir_path(path: Path, what: str) -> None:
    """A folder the run will create or write into: not a file, not below a file, writable."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise BenchError(f"{what} {path} is a file, not a folder")
        probe = path
    else:
        probe = path.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise BenchError(f"{what} {path} lies below {probe}, which is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BenchError(f"{what} {path}: {probe} is not writable")


# what marks a folder as the harness's own: a run's config or units, or a tuning worker's files
HARNESS_MARKERS = ("config.json", "units", "runs.csv", "optuna.db", "trials.csv", "tuning.json")


def check_out_dir(folder: RunFolder, cfg: Config) -> dict[str, Any] | None:
    """Read-only checks of --out before anything is written: a folder (or creatable), not another
    program's non-empty folder, and, if it holds results, made with the same settings and readable
    unit records. Returns the stored config (None for a new folder)."""
    out = folder.path
    check_dir_path(out, "--out")
    if not out.exists():
        return None
    foreign = [p for p in out.iterdir() if p.name not in (LOCK_NAME, LOCK_HOLDER_NAME)]
    if foreign and not any((out / m).exists() for m in HARNESS_MARKERS):
        raise BenchError(f"--out {out} is a non-empty folder that holds no bench results; give a new or empty folder")
    if not folder.config_json.exists():
        return None
    # a corrupt or stray file in units/ stops the run here, before any training
    models_with_units = {record.run.model for record in folder.finished_units()}
    try:
        old = json.loads(folder.config_json.read_text())
        diff = _first_difference(_settings(old, models_with_units), _settings(cfg.to_dict(), models_with_units))
    except (OSError, ValueError, TypeError, AttributeError):
        raise BenchError(f"{folder.config_json} is unreadable; use another --out, or --fresh to move it aside") from None
    if diff:
        raise BenchError(f"{out} holds results made with a different config ('{diff}' differs); "
                         f"use another --out, or --fresh to move the old results aside")
    return old


def prepare_out_dir(folder: RunFolder, cfg: Config) -> None:
    """In the locked folder: check it again (another run may have just finished in it), remove the
    harness's own interrupted temporary files, and write config.json for a new folder. An existing
    folder's config.json gains this run's datasets, models and seeds only as its units finish
    (`record_unit_in_config`), so a run that fails before training leaves it unchanged."""
    old = check_out_dir(folder, cfg)
    folder.path.mkdir(parents=True, exist_ok=True)
    for stale in folder.path.rglob(TMP_PATTERN):
        stale.unlink(missing_ok=True)  # a write of this harness interrupted by kill -9; its target is intact
    if old is None:
        atomic_write_json(folder.config_json, cfg.to_dict())
        return
    new = cfg.to_dict()
    updated = {**old, **{k: new[k] for k in RUN_LABELS}}  # not part of the results
    if updated != old:
        atomic_write_json(folder.config_json, updated)


def record_unit_in_config(folder: RunFolder, cfg: Config, record: UnitRecord) -> None:
    """Add a finished unit's dataset, model (with its section) and seed to config.json. The first
    unit of a model writes that model's section as this run has it: a section stored when the folder
    was made, before the model had any unit there, may lack a key added since (which resuming allows),
    and config.json must describe the units the folder holds."""
    stored = json.loads(folder.config_json.read_text())
    run = record.run
    before = json.dumps(stored, sort_keys=True)
    first_of_model = run.model not in stored.get("models", [])
    for key, value in (("datasets", run.dataset), ("models", run.model), ("seeds", run.seed)):
        if value not in stored.setdefault(key, []):
            stored[key].append(value)
    sections = stored.setdefault("model", {})
    if (first_of_model or run.model not in sections) and run.model in cfg.model:
        sections[run.model] = dataclasses.asdict(cfg.model[run.model])
    if json.dumps(stored, sort_keys=True) != before:
        atomic_write_json(folder.config_json, stored)


DATA_IDENTITY = ("train", "val", "test", "vocab_size", "source")


def _same_data_value(key: str, old: Any, new: Any) -> bool:
    """Equal, or for a local source the same folder however it was spelled (relative or absolute)."""
    if old == new:
        return True
    if key == "source" and not str(old).startswith("hub:") and not str(new).startswith("hub:"):
        return Path(str(old)).resolve() == Path(str(new)).resolve()
    return False


def record_dataset(folder: RunFolder, data) -> None:
    """Add this dataset's sizes and source to <out>/datasets.json (read by the report). A folder whose
    results of this dataset came from other data (another source, other split sizes or vocabulary)
    is refused before anything is trained or written."""
    info = folder.datasets_info()
    new = {"train": len(data.train), "val": len(data.val), "test": len(data.test),
           "vocab_size": data.vocab_size, "source": data.source,
           "truncated_fraction": float((data.test.lengths >= data.max_length).mean()),
           "mean_test_tokens": float(data.test.lengths.mean()),
           "num_classes": data.num_classes, "label_names": list(data.label_names)}
    if data.title:
        new["title"] = data.title
    old = info.get(data.dataset)
    if old is not None:
        differs = [k for k in DATA_IDENTITY if k in old and not _same_data_value(k, old[k], new[k])]
        if differs:
            k = differs[0]
            raise BenchError(f"{folder.path} holds {data.dataset} results made from other data ({k}: {old[k]} "
                             f"there, {new[k]} now); use another --out, or --fresh to move the old results aside")
        if all(old.get(k) == v for k, v in new.items()):
            return
    info[data.dataset] = new
    atomic_write_json(folder.datasets_json, info)


# ----------------------------------------------------------------------------- the pipeline

@dataclass
class Plan:
    """What one invocation will do: the resolved config, where results go, and how to tune."""
    cfg: Config
    folder: RunFolder
    device: Any
    data_dir: Path | None
    cache_dir: Path | None
    tune: bool            # tune here before the seed stage
    skip_tune: bool       # seed stage with the best trials already in the storage
    storage: str          # the Optuna storage URL (tuned runs)
    search: Any = None    # the search space (tuned runs)
    trials: int | None = None         # trials per study (None: the search file's)
    tune_timeout: float | None = None  # seconds per study (None: the search file's)
    rerank_top: int = 0   # re-rank this many best trials over more seeds after tuning (bench.rerank)
    rerank_seeds: int = 2
    sha: str = ""         # git SHA recorded with every unit
    threads: int | None = None        # --threads (None: the config's, or shared out between workers)
    cluster: str | None = None        # a Dask scheduler address
    deterministic: bool = False
    units_run: int = 0
    track: str = "none"
    tracking_uri: str | None = None
    tracker: Any = None   # bench.tracking.Tracker, made when the run starts
    env: dict[str, Any] | None = None  # this invocation's environment.json, written with its first result

    def write_environment(self) -> None:
        """Write this invocation's environment.json with its first result, carrying over the earlier
        invocations' records (`record_invocation` adds this one's when it ends; one stopped before that
        leaves the earlier ones intact)."""
        if self.env is not None:
            earlier = []
            if self.folder.environment_json.is_file():
                try:
                    old = self.folder.environment()
                except (BenchError, OSError):
                    old = {}  # an unreadable environment.json holds no record to keep
                earlier = old.get("invocations", [])
                if old and "units_run" not in old:  # its invocation never recorded itself: stopped before its
                    # end (a signal, a device budget), or older than these records; keep which machine and code
                    # made its units
                    earlier = [*earlier, {**{k: old[k] for k in UNRECORDED_KEYS if k in old},
                                          "unrecorded": "stopped before its end, or older than these records: "
                                                        "no wall time or unit count"}]
            if earlier:
                self.env["invocations"] = earlier
            atomic_write_json(self.folder.environment_json, self.env)
            self.env = None

    @property
    def tuned(self) -> bool:
        return self.tune or self.skip_tune


def check_options(args: argparse.Namespace) -> None:
    """Values that would otherwise fall back silently: an empty path or list (an unset shell
    variable), --trials / --tune-timeout that are not positive."""
    for opt in ("config", "out", "report", "manifest", "cache_dir", "storage", "search", "tracking_uri", "cluster",
                "seeds", "vary", "jobs"):
        value = getattr(args, opt, None)
        if value is not None and not str(value).strip():
            raise BenchError(f"--{opt.replace('_', '-')} is empty (an unset shell variable?)")
    if args.data_dir is not None and not args.data_dir.strip() and os.environ.get(cli.DATA_DIR_ENV) != args.data_dir:
        raise BenchError("--data-dir is empty (an unset shell variable?)")
    if args.trials is not None and args.trials < 1:
        raise BenchError(f"--trials must be at least 1, got {args.trials}")
    if args.tune_timeout is not None and not 0 < args.tune_timeout < float("inf"):
        raise BenchError(f"--tune-timeout must be a positive number of seconds, got {args.tune_timeout}")
    if (args.trials is not None or args.tune_timeout is not None or args.search) and not (args.tune or args.skip_tune):
        raise BenchError("--trials, --tune-timeout and --search apply only with --tune or --skip-tune")
    from bench.rerank import check_options

    check_options(args.rerank, args.rerank_seeds)
    if args.rerank and not args.tune:
        raise BenchError("--rerank applies only with --tune (--skip-tune uses a re-ranking already in the storage)")


def check_write_paths(args: argparse.Namespace, folder: RunFolder) -> None:
    """Every place the run will write, checked before anything is trained: --out, --cache-dir,
    --report, and a SQLite --storage the user named (whose folder must already exist: the harness
    creates folders only inside --out)."""
    check_dir_path(folder.path, "--out")
    if args.cache_dir:
        check_dir_path(Path(args.cache_dir), "--cache-dir")
    if args.report and args.report.lower() != "none":
        report = Path(args.report)
        if report.is_dir():
            raise BenchError(f"--report {report} is a folder; give the path of the markdown file")
        check_dir_path(report.parent, "--report's folder")
    if args.report is None:  # a broken manifest is found now, not after training
        manifest = load_manifest(Path(args.manifest) if args.manifest else DEFAULT_MANIFEST,
                                 required=args.manifest is not None)
        if manifest is not None and manifest.names(folder.path):
            if manifest.output.is_dir():
                raise BenchError(f"the report manifest's output {manifest.output} is a folder")
            check_dir_path(manifest.output.parent, "the report manifest's output folder")
    elif args.manifest is not None:
        raise BenchError("--manifest applies only without --report (--report writes the run's own report there)")
    if args.storage and args.storage.startswith("sqlite:///"):
        db = Path(args.storage[len("sqlite:///"):])
        if db.is_dir():
            raise BenchError(f"--storage {db} is a folder, not an Optuna SQLite file")
        if not db.parent.is_dir():
            raise BenchError(f"--storage {args.storage}: folder {db.parent} does not exist (create it first; the "
                             "harness creates folders only inside --out)")


def make_plan(args: argparse.Namespace) -> Plan:
    """Resolve the config, device and results folder; set threads and determinism."""
    check_options(args)
    cfg = resolve_config(args)
    from bench.train import resolve_device

    device = resolve_device(args.device)
    from bench.units import configure_process

    cli.set_threads(args.threads, cfg.train.threads)
    configure_process(device, 0, cfg.train.flush_denormal, args.deterministic)
    if args.tune and args.skip_tune:
        raise BenchError("--tune and --skip-tune exclude each other")
    from bench.tracking import TRACKERS

    if args.track not in TRACKERS:
        raise BenchError(f"unknown tracker '{args.track}' (choose from {', '.join(TRACKERS)})")
    if args.tracking_uri and args.track == "none":
        raise BenchError("--tracking-uri needs --track mlflow")
    tuned = args.tune or args.skip_tune
    folder = RunFolder(args.out if args.out else default_run_dir(cfg.budget, tuned))
    check_write_paths(args, folder)
    search = None
    if tuned:
        from bench import search_space

        search = search_space.load_search(args.search)
    return Plan(cfg=cfg, folder=folder, device=device, data_dir=cli.data_dir(args), cache_dir=cli.cache_dir(args),
                tune=args.tune, skip_tune=args.skip_tune, storage=args.storage or folder.sqlite_url(),
                search=search, trials=args.trials, tune_timeout=args.tune_timeout, rerank_top=args.rerank,
                rerank_seeds=args.rerank_seeds, threads=args.threads,
                cluster=args.cluster, deterministic=args.deterministic, track=args.track,
                tracking_uri=args.tracking_uri)


def start_run(plan: Plan) -> None:
    """Check or create the (locked) results folder and note the environment (written with the
    first result, so a run that stops before training leaves an existing folder unchanged)."""
    prepare_out_dir(plan.folder, plan.cfg)
    if plan.cfg.description:
        log.info("budget '%s': %s", plan.cfg.budget, plan.cfg.description)
    env = environment(plan.device)
    env["flush_denormal"] = plan.cfg.train.flush_denormal and plan.device.type == "cpu"
    plan.sha = env["git_sha"]
    plan.env = env
    from bench.tracking import make_tracker

    plan.tracker = make_tracker(plan.track, plan.folder, plan.tracking_uri, plan.cfg, env)
    log.info("device %s, torch %s, %d threads; results in %s", plan.device, env["torch"], env["torch_threads"],
             plan.folder.path)


def data_loader(plan: Plan, dataset: str) -> Callable[[], Any]:
    """Prepare a dataset at most once, and only when a stage needs it."""
    cached = []

    def load_data():
        if not cached:
            from bench.data import prepare

            t0 = time.perf_counter()
            d = prepare(dataset, plan.cfg, plan.data_dir, plan.cache_dir)
            log.info("%s: %d train / %d val / %d test texts, vocabulary %d (%s, %.1fs%s)", dataset, len(d.train),
                     len(d.val), len(d.test), d.vocab_size, d.source, time.perf_counter() - t0,
                     ", cache hit" if d.cache_hit else "")
            record_dataset(plan.folder, d)
            cached.append(d)
        return cached[0]

    return load_data


def tune_stage(plan: Plan, dataset: str, load_data: Callable[[], Any]) -> dict[str, Config]:
    """Each model's config for the seed stage: the run's own, or its tuned best (tuned here with
    Optuna, or read from the storage's finished studies with --skip-tune)."""
    cfg = plan.cfg
    model_cfgs = {name: cfg for name in cfg.models}
    if not plan.tuned:
        return model_cfgs
    from bench import tune

    data = load_data()
    plan.write_environment()
    for name in cfg.models:
        if cfg.model[name].kind == "tfidf":
            continue  # the linear floor has nothing to tune
        workers = cfg.jobs or auto_jobs(plan.device.type, plan.trials or plan.search.settings.trials)
        if plan.tune and workers > 1:  # several Optuna workers on the same storage
            model_cfgs[name] = tune.tune_in_processes(
                cfg, dataset, name, plan.folder.path, storage_url=plan.storage, trials=plan.trials,
                timeout=plan.tune_timeout, device=plan.device, search=plan.search, workers=workers,
                data_dir=plan.data_dir, cache_dir=plan.cache_dir,
                threads=threads_per_job(plan.threads, cfg.train.threads, workers), rerank_top=plan.rerank_top,
                rerank_seeds=plan.rerank_seeds)
        elif plan.tune:
            model_cfgs[name] = tune.tune_model(cfg, data, name, plan.folder.path, storage_url=plan.storage,
                                               trials=plan.trials, timeout=plan.tune_timeout, device=plan.device,
                                               search=plan.search, rerank_top=plan.rerank_top,
                                               rerank_seeds=plan.rerank_seeds)
        else:
            model_cfgs[name] = tune.best_config(plan.storage, dataset, name, cfg, search=plan.search)
        if plan.tune:
            track_study(plan, dataset, name, tune.study_name(cfg, dataset, name, plan.search))
    return model_cfgs


def track_study(plan: Plan, dataset: str, model: str, study: str) -> None:
    """Hand a finished study's trials (as trials.csv has them) to the tracker."""
    if plan.folder.trials_csv.is_file():
        trials = plan.folder.trials()
        plan.tracker.study_finished(dataset, model, trials[trials["study"] == study])


def units_to_run(plan: Plan, dataset: str, model_cfgs: dict[str, Config]) -> list[tuple[int, str]]:
    """The (seed, model) units not finished yet. A finished unit made with another config is an error,
    except in a tuned run, where it is the best of fewer trials: more trials found another best, so the
    old unit is set aside (superseded/, never deleted) and the seed runs again with the new best."""
    todo = []
    for seed in plan.cfg.seeds:
        for name in plan.cfg.models:
            done = plan.folder.load_unit(dataset, name, seed)
            want = model_cfgs[name].unit_hash(name)
            if done is not None and done.run.config_hash != want and plan.tuned:
                moved = plan.folder.set_aside_unit(dataset, name, seed, done.run.config_hash)
                log.info("%s/%s/seed%d: made with an earlier best configuration (hash %s, now %s); set aside in "
                         "%s, to run again", dataset, name, seed, done.run.config_hash, want, moved)
                done = None
            if done is None:
                todo.append((seed, name))
            elif done.run.config_hash != want:
                raise BenchError(f"{plan.folder.path}: {dataset}/{name}/seed{seed} was made with another "
                                 f"configuration (hash {done.run.config_hash}, now {want}); use another --out, "
                                 "or --fresh to move the old results aside")
            else:
                log.info("%s/%s/seed%d: already finished, skipped", dataset, name, seed)
    return todo


def seed_stage(plan: Plan, dataset: str, model_cfgs: dict[str, Config], load_data: Callable[[], Any]) -> None:
    """Run every unfinished unit (here, in worker processes or on a cluster); each finished unit is
    saved by this process as it arrives, then the tables are rebuilt."""
    todo = units_to_run(plan, dataset, model_cfgs)
    if not todo:
        return
    data = load_data()  # encodes and caches once; workers read the cache
    cfg = plan.cfg
    workers = cfg.jobs or auto_jobs(plan.device.type, len(todo))
    workers = 1 if plan.cluster else min(workers, len(todo))
    threads = threads_per_job(plan.threads, cfg.train.threads, workers)
    jobs = assign([UnitJob(cfg=model_cfgs[name], dataset=dataset, model=name, seed=seed, out=plan.folder.path,
                           data_dir=plan.data_dir, cache_dir=plan.cache_dir, threads=threads,
                           deterministic=plan.deterministic, sha=plan.sha)
                   for seed, name in todo], devices_for(plan.device, workers))
    if workers > 1 or plan.cluster:
        where = f"Dask scheduler {plan.cluster}" if plan.cluster else f"{workers} worker processes"
        log.info("%s: %d units on %s, %d torch thread(s) each", dataset, len(jobs), where, threads)

    def save(record: UnitRecord) -> None:
        plan.write_environment()
        plan.folder.save_unit(record)
        record_unit_in_config(plan.folder, cfg, record)
        plan.folder.rebuild_tables()
        plan.units_run += 1
        plan.tracker.unit_finished(record)  # after the unit is on disk; a tracking failure loses nothing

    run_units(jobs, save, workers=workers, cluster=plan.cluster, data=data)


UNRECORDED_KEYS = ("git_sha", "device", "gpu", "torch", "platform", "cpu_count", "torch_threads")  # what an unrecorded
# invocation's environment.json said of it, carried into the next one's list of invocations


def record_invocation(plan: Plan, wall_seconds: float) -> None:
    """Add this invocation's wall time and parallelism to environment.json. An invocation that did
    nothing (every unit already finished, no tuning) leaves it alone: it describes the machines that made
    the results, and a no-op rerun elsewhere (a GPU folder resumed on a CPU) must not replace that record."""
    if plan.units_run == 0 and plan.env is not None and plan.folder.environment_json.is_file():
        return
    plan.write_environment()
    env = plan.folder.environment()
    this = {"wall_seconds": round(wall_seconds, 1), "units_run": plan.units_run, "jobs": plan.cfg.jobs or "auto",
            "cluster": plan.cluster or "", "git_sha": env.get("git_sha", "")}
    env.update(this)  # the latest invocation, and below every invocation that ran units, in order
    env["invocations"] = [*env.get("invocations", []), this] if plan.units_run else env.get("invocations", [])
    atomic_write_json(plan.folder.environment_json, env)


def execute(args: argparse.Namespace) -> int:
    """Plan → lock --out → per dataset: tune stage → seed stage → report."""
    plan = make_plan(args)
    folder = plan.folder
    if args.fresh and folder.path.exists():
        check_dir_path(folder.path, "--out")
        with folder.lock(wait=args.wait, command="bench.run --fresh"):
            pass  # nobody is using the old results
        log.info("--fresh: previous results moved to %s", set_aside(folder.path))
    else:
        check_out_dir(folder, plan.cfg)  # refuse before creating or locking anything
    created = not folder.path.exists()
    try:
        with folder.lock(wait=args.wait, command=" ".join(["python -m bench.run", *sys.argv[1:]])):
            return run_locked(plan, args)
    finally:
        if created and plan.units_run == 0:
            _remove_if_untouched(folder)


def _remove_if_untouched(folder: RunFolder) -> None:
    """A folder this invocation created and left without results (it stopped before training):
    remove what it wrote, so a failed first run leaves nothing behind."""
    ours = {folder.config_json.name, folder.environment_json.name, folder.datasets_json.name, LOCK_NAME,
            LOCK_HOLDER_NAME}
    if folder.path.is_dir() and {p.name for p in folder.path.iterdir()} <= ours:
        for name in ours:
            (folder.path / name).unlink(missing_ok=True)
        folder.path.rmdir()


def run_locked(plan: Plan, args: argparse.Namespace) -> int:
    start_run(plan)
    started = time.perf_counter()
    for dataset in plan.cfg.datasets:
        load_data = data_loader(plan, dataset)
        model_cfgs = tune_stage(plan, dataset, load_data)
        seed_stage(plan, dataset, model_cfgs, load_data)
    plan.folder.rebuild_tables()
    wall = time.perf_counter() - started
    log.info("all units finished in %.0fs", wall)
    record_invocation(plan, wall)
    try:
        written = write_reports(plan.folder, args.report, args.manifest)
    except (ValueError, EOFError) as exc:  # a corrupt file in a folder the report reads; the units are safe
        raise BenchError(f"every unit finished, but the report could not be built: {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]}") from None
    plan.tracker.close(written)
    return 0


def write_reports(folder: RunFolder, report: str | None, manifest_path: str | None) -> list[Path]:
    """<out>/REPORT.md always; a copy at --report when given; without --report, the repository's
    report is rebuilt from the manifest when --out is one of its folders (and every folder it names
    holds results), else the run says where its report is."""
    from bench.report import write_manifest_report, write_report

    extra = None if report is None or report.lower() == "none" else Path(report)
    written = write_report(folder.path, extra)
    if report is None:
        manifest = load_manifest(Path(manifest_path) if manifest_path else DEFAULT_MANIFEST,
                                 required=manifest_path is not None)
        if manifest is not None and manifest.names(folder.path):
            missing = [str(p) for p in manifest.folders() if not RunFolder(p).is_run()]
            if missing:
                log.info("%s is in the report manifest %s, but %s holds no results yet: %s not rebuilt", folder.path,
                         manifest.source, missing[0], manifest.output)
            else:
                written += write_manifest_report(manifest)
        else:
            log.info("--out is not a folder of the report manifest: its report is %s (the repository's report "
                     "is left as it is)", folder.report_md)
    log.info("report written: %s", ", ".join(str(p) for p in written))
    return written


def main(argv: list[str] | None = None) -> int:
    return cli.cli_main(parse_args, execute, argv, "finished units are saved; rerun the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
