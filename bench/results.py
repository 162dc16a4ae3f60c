"""Record formats and atomic file writes for a run folder.

A run folder (`results/<run>/`) holds one JSON file per finished unit of work
(dataset × model × seed) under `units/`, and the tables rebuilt from them: `runs.csv`,
`epochs.csv`, plus `predictions/*.csv.gz`, `config.json` and `environment.json`.
Every write goes to a temporary file in the same folder, is fsynced, then renamed, so a
killed process never leaves a half-written file and a rerun can skip finished units.
"""
from __future__ import annotations

import functools
import io
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from bench.config import BenchError, Config

log = logging.getLogger("bench")
# every temporary file this harness writes is named `.bench-tmp.<target>.<random>.tmp`; the startup
# cleanup removes only names of this shape, never another program's `*.tmp`
TMP_PREFIX = ".bench-tmp."
TMP_PATTERN = TMP_PREFIX + "*.tmp"
LOCK_NAME = ".bench.lock"            # the results-folder lock (bench.run holds it for the whole run)
LOCK_HOLDER_NAME = ".bench.lock.json"  # who holds it: pid, host, command, since

OK, FAILED = "ok", "failed"  # a run's status
UNIT_KEYS = ["dataset", "model", "seed"]


@dataclass
class EpochRecord:
    """One epoch of one fit: running train metrics (with dropout), eval-mode metrics on a fixed
    train subset and on validation, and the overfitting gap between those two."""
    epoch: int
    train_loss: float
    train_acc: float
    train_eval_loss: float
    train_eval_acc: float
    val_loss: float
    val_acc: float
    gap_acc: float            # train-subset acc − val acc
    gap_loss: float           # val loss − train-subset loss
    lr: float
    epoch_seconds: float
    train_tokens_per_s: float


@dataclass
class RunRecord:
    """One finished unit (dataset × model × seed): a row of runs.csv. A failed run keeps its
    status and reason and leaves the metrics empty."""
    dataset: str
    model: str
    seed: int
    status: str = OK
    reason: str = ""
    params: int | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    best_val_acc: float | None = None
    best_val_loss: float | None = None
    test_acc: float | None = None
    test_loss: float | None = None
    train_acc: float | None = None
    train_eval_acc: float | None = None
    gap_acc: float | None = None
    gap_loss: float | None = None
    train_seconds: float | None = None
    wall_seconds: float | None = None
    train_tokens_per_s: float | None = None
    device: str | None = None
    threads: int | None = None
    config_hash: str | None = None
    git_sha: str | None = None
    claim_hash: str | None = None   # the pre-registered claim's hash (ClaimConfig.hash); None: none declared

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass
class UnitRecord:
    """What `units/<dataset>__<model>__seed<k>.json` holds: the run row, its epoch rows and the
    model section it was trained with."""
    run: RunRecord
    epochs: list[EpochRecord] = field(default_factory=list)
    model_config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        keys = {k: getattr(self.run, k) for k in UNIT_KEYS}
        return {"run": asdict(self.run), "epochs": [{**keys, **asdict(e)} for e in self.epochs],
                "model_config": self.model_config}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "UnitRecord":
        return cls(run=_from_row(RunRecord, raw["run"]), epochs=[_from_row(EpochRecord, e) for e in raw["epochs"]],
                   model_config=raw.get("model_config", {}))


def _from_row(cls: type, row: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in row.items() if k in names})


RUN_COLUMNS = [f.name for f in fields(RunRecord)]
EPOCH_COLUMNS = UNIT_KEYS + [f.name for f in fields(EpochRecord)]
SPEED_COLUMNS = ["dataset", "model", "metric", "median", "min", "max", "repeats", "unit", "device", "torch",
                 "threads", "cpu_count", "max_length", "batch_size", "eval_batch_size", "examples"]


def ok_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of a runs table whose unit finished without failing."""
    return runs[runs["status"] == OK]


def failed_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] != OK]


def device_names(runs: pd.DataFrame) -> list[str]:
    """The device types unit rows trained on, from runs.csv's `device` ("cpu", "cuda:0" -> "cuda")."""
    return sorted({str(d).split(":")[0] for d in runs.get("device", pd.Series(dtype=str)).dropna()})


def device_words(runs: pd.DataFrame, folder: "RunFolder") -> str:
    """The devices a set of `folder`'s unit rows trained on, as the reports say it: `cpu`, or `cuda`
    with the GPU's name (its environment.json) and the bf16 autocast CUDA units train under
    (`train.amp`). "" when no row records a device."""
    names = device_names(runs)
    gpu = None
    if "cuda" in names and folder.environment_json.is_file():
        gpu = folder.environment().get("gpu")
    extra = f" ({gpu}; bf16 autocast, `train.amp`)" if gpu else ""
    return ", ".join(f"`{n}`" for n in names) + extra


DATASET_TITLES = {"imdb": "IMDB", "ag_news": "AG News"}
FULL_TRAIN_ROWS = {"imdb": 25_000, "ag_news": 120_000}
MODEL_ORDER = ["rnn", "attn_rnn", "transformer", "tfidf"]


def ordered_models(frame) -> list[str]:
    """The models in a frame, the standard ones in MODEL_ORDER first, then the rest (ablation
    variants) alphabetically — one order for every table, plot and pair."""
    present = set(frame["model"])
    return [m for m in MODEL_ORDER if m in present] + sorted(present - set(MODEL_ORDER))


def ordered_datasets(frame) -> list[str]:
    """The datasets in a frame, IMDB first, unknown names last."""
    present = set(frame["dataset"])
    return [d for d in DATASET_TITLES if d in present] + sorted(present - set(DATASET_TITLES))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_csv(path: str | Path, frame: pd.DataFrame, **kwargs: Any) -> None:
    buf = io.BytesIO()
    compression = "gzip" if str(path).endswith(".gz") else None
    # mtime=0 keeps gzip output byte-identical across reruns
    frame.to_csv(buf, index=False, compression={"method": "gzip", "mtime": 0} if compression else None,
                 float_format="%.6g", **kwargs)
    atomic_write_bytes(path, buf.getvalue())


def save_png(fig, path: str | Path) -> None:
    """Save a matplotlib figure as PNG, byte-identical for identical input (no software stamp),
    atomically, and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A JSON file holding an object; missing, unreadable or another shape is a one-line BenchError."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"{path} is missing or unreadable ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise BenchError(f"{path} does not hold a JSON object")
    return obj


def relative_link(path: str | Path, start: str | Path) -> str:
    """A markdown link target for `path` as seen from the folder `start`."""
    return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()


def unit_key(dataset: str, model: str, seed: int) -> str:
    return f"{dataset}__{model}__seed{seed}"


def default_run_dir(budget: str, tuned: bool = False) -> Path:
    """Where a run of this budget writes when --out is not given (a tuned run: `<budget>-tuned`)."""
    return Path("results") / (budget + ("-tuned" if tuned else ""))


@functools.lru_cache(maxsize=64)
def _read_predictions_file(path: str, mtime_ns: int, size: int) -> pd.DataFrame:
    """Cached by path, mtime and size: McNemar and the length bins read the same files several times."""
    return pd.read_csv(path).sort_values("row", kind="stable").reset_index(drop=True)


class RunFolder:
    """The one object that knows a results folder's layout (`results/<run>/`):

    units/<dataset>__<model>__seed<k>.json   one record per finished unit (the source of truth)
    runs.csv, epochs.csv                     tables rebuilt from units/
    predictions/<unit>.csv.gz                every test example's prediction
    attention/<unit>.json                    attention weights of attention-pooling runs
    config.json, environment.json, datasets.json
    optuna.db, trials.csv, tuning.json       tuned runs
    comparisons.csv, model_summary.csv, length_bins.csv, length_bins_by_seed.csv   statistics
    gap_by_epoch.csv                         the overfitting gap at matched epochs, paired by seed
    expected_best.csv                        tuned runs: the expected-best-of-n-trials curve
    reproduction.csv                         a recorded `bench.reproduce` check (optional)
    variance_by_source.csv                   the report's variance decomposition (from --variance folders)
    plots/, REPORT.md                        the rendered report
    superseded/<hash>/{units,predictions,attention}/   tuned runs: units of an earlier best configuration,
                                             set aside when more trials found another (read by nothing)
    ../speed.csv                             the speed benchmark, shared by the runs beside it
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ------------------------------------------------------------ layout
    units = property(lambda self: self.path / "units")
    predictions = property(lambda self: self.path / "predictions")
    attention = property(lambda self: self.path / "attention")
    plots = property(lambda self: self.path / "plots")
    config_json = property(lambda self: self.path / "config.json")
    environment_json = property(lambda self: self.path / "environment.json")
    datasets_json = property(lambda self: self.path / "datasets.json")
    runs_csv = property(lambda self: self.path / "runs.csv")
    epochs_csv = property(lambda self: self.path / "epochs.csv")
    optuna_db = property(lambda self: self.path / "optuna.db")
    trials_csv = property(lambda self: self.path / "trials.csv")
    tuning_json = property(lambda self: self.path / "tuning.json")
    comparisons_csv = property(lambda self: self.path / "comparisons.csv")
    model_summary_csv = property(lambda self: self.path / "model_summary.csv")
    length_bins_csv = property(lambda self: self.path / "length_bins.csv")
    length_bins_by_seed_csv = property(lambda self: self.path / "length_bins_by_seed.csv")
    gap_by_epoch_csv = property(lambda self: self.path / "gap_by_epoch.csv")
    expected_best_csv = property(lambda self: self.path / "expected_best.csv")
    reproduction_csv = property(lambda self: self.path / "reproduction.csv")
    variance_csv = property(lambda self: self.path / "variance_by_source.csv")
    report_md = property(lambda self: self.path / "REPORT.md")
    speed_csv = property(lambda self: self.path.parent / "speed.csv")

    def tuned_models(self) -> list[str]:
        """The models this folder's tuning studies tuned (tuning.json keys are "dataset/model"), in order."""
        return list(dict.fromkeys(key.split("/", 1)[-1] for key in self.tuning()))

    def tuning(self) -> dict[str, dict]:
        """tuning.json: one entry per study, keyed "dataset/model" (empty for an untuned folder)."""
        return json.loads(self.tuning_json.read_text()) if self.tuning_json.is_file() else {}

    def trials(self) -> pd.DataFrame:
        """trials.csv (one row per trial of every study here), its free-text columns read as text."""
        return pd.read_csv(self.trials_csv, dtype={"params": str, "reason": str, "worker": str})

    def param_band(self) -> tuple[int, int] | None:
        """(floor, cap) of trainable parameters when every tuning study pruned configs outside one band
        (a `param_floor` in the search file), else None: the tuned arms then differ in shape, not size."""
        bands = {(s.get("param_floor") or 0, s.get("param_cap")) for s in self.tuning().values()}
        if len(bands) != 1:
            return None
        ((floor, cap),) = bands
        return (floor, cap) if floor and cap else None

    def unit_path(self, dataset: str, model: str, seed: int) -> Path:
        return self.units / f"{unit_key(dataset, model, seed)}.json"

    def predictions_path(self, dataset: str, model: str, seed: int) -> Path:
        return self.predictions / f"{unit_key(dataset, model, seed)}.csv.gz"

    def attention_path(self, dataset: str, model: str, seed: int) -> Path:
        return self.attention / f"{unit_key(dataset, model, seed)}.json"

    def set_aside_unit(self, dataset: str, model: str, seed: int, config_hash: str) -> Path:
        """Move a finished unit's files (record, predictions, attention) to superseded/<config_hash>/,
        keeping their names: a tuned run's unit of a configuration that is no longer its study's best.
        Nothing is deleted; a file already there (the same unit set aside before) is not overwritten."""
        target = self.path / "superseded" / config_hash
        for path in (self.unit_path(dataset, model, seed), self.predictions_path(dataset, model, seed),
                     self.attention_path(dataset, model, seed)):
            if path.is_file():
                dest = target / path.parent.name / path.name
                if dest.exists():
                    raise BenchError(f"{dest} exists: {path} was set aside before; move one of them by hand")
                dest.parent.mkdir(parents=True, exist_ok=True)
                path.rename(dest)
        return target

    def sqlite_url(self) -> str:
        """The default Optuna storage of a tuned run: SQLite in this folder."""
        return f"sqlite:///{self.optuna_db.resolve()}"

    def is_run(self) -> bool:
        return self.runs_csv.is_file()

    # ------------------------------------------------------------ units
    def load_unit(self, dataset: str, model: str, seed: int) -> UnitRecord | None:
        """A finished unit's record, or None when it has not finished (or its file is unreadable)."""
        try:
            return UnitRecord.from_json(json.loads(self.unit_path(dataset, model, seed).read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save_unit(self, record: UnitRecord) -> None:
        run = record.run
        atomic_write_json(self.unit_path(run.dataset, run.model, run.seed), record.to_json())

    def finished_units(self) -> list[UnitRecord]:
        """Every unit record, in file-name order. A file in units/ that is not a readable unit record
        named after its own unit (corrupt JSON, a stray file) is a one-line BenchError naming it."""
        if self.units.exists() and not self.units.is_dir():
            raise BenchError(f"{self.units} is a file, not the units folder")
        records = []
        for p in sorted(self.units.glob("*")) if self.units.is_dir() else []:
            if p.name.startswith("."):
                continue  # hidden: an interrupted write of ours (removed at the next run's start), .DS_Store, ...
            try:
                if p.suffix != ".json" or not p.is_file():
                    raise ValueError("not a unit record (units/ holds only <dataset>__<model>__seed<k>.json)")
                record = UnitRecord.from_json(json.loads(p.read_text()))
                r = record.run
                if p.stem != unit_key(r.dataset, r.model, int(r.seed)):
                    raise ValueError(f"it holds unit {unit_key(r.dataset, r.model, r.seed)}")
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise BenchError(f"{p} is not a readable unit record ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}); move it out of units/") from None
            records.append(record)
        return records

    # ------------------------------------------------------------ tables
    def _tables_from_units(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        units = [u.to_json() for u in self.finished_units()]
        runs_df = pd.DataFrame([u["run"] for u in units], columns=RUN_COLUMNS)
        epochs_df = pd.DataFrame([e for u in units for e in u["epochs"]], columns=EPOCH_COLUMNS)
        runs_df = runs_df.sort_values(["dataset", "model", "seed"], kind="stable")
        epochs_df = epochs_df.sort_values(["dataset", "model", "seed", "epoch"], kind="stable")
        return runs_df, epochs_df

    def rebuild_tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Regenerate runs.csv and epochs.csv from the unit files (sorted, so reruns are stable)."""
        runs_df, epochs_df = self._tables_from_units()
        atomic_write_csv(self.runs_csv, runs_df)
        atomic_write_csv(self.epochs_csv, epochs_df)
        return runs_df, epochs_df

    def verify_tables(self) -> list[Path]:
        """Check runs.csv and epochs.csv byte for byte against the tables units/ gives, and rewrite
        each one that disagrees (a cut row, a duplicated row, an edited cell) from units/, with a
        warning; returns the rewritten files. A folder without units/ cannot be checked: BenchError."""
        if not self.path.is_dir():
            raise BenchError(f"{self.path} is not a folder")
        if not self.runs_csv.is_file():
            raise BenchError(f"{self.path} is not a run folder (no runs.csv)")
        if not self.units.is_dir():
            raise BenchError(f"{self.path} has no units/ folder, so runs.csv cannot be checked against the unit "
                             "records; refusing to trust it")
        runs_df, epochs_df = self._tables_from_units()
        rewritten = []
        for path, frame in ((self.runs_csv, runs_df), (self.epochs_csv, epochs_df)):
            try:
                stored = path.read_bytes()
            except OSError:
                stored = b""
            # a table written before a column existed lacks it; the units then hold it empty too
            header = stored.split(b"\n", 1)[0].decode("utf-8", "replace").strip().split(",")
            legacy = [c for c in frame.columns if c not in header and frame[c].isna().all()]
            buf = io.BytesIO()
            frame.drop(columns=legacy).to_csv(buf, index=False, float_format="%.6g")
            same = stored == buf.getvalue()
            if not same:
                log.warning("%s disagrees with %s/ (damaged or edited); rebuilt from the unit records", path,
                            self.units)
                atomic_write_bytes(path, buf.getvalue())
                rewritten.append(path)
        return rewritten

    def read_tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        try:
            return pd.read_csv(self.runs_csv), pd.read_csv(self.epochs_csv)
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise BenchError(f"{self.path}: runs.csv or epochs.csv is unreadable ({type(exc).__name__})") from None

    # ------------------------------------------------------------ the folder lock
    def lock(self, wait: bool = False, command: str = ""):
        """Hold the folder's lock (`.bench.lock`, a `filelock` file lock, released by the OS if the
        process dies; the empty file stays, as deleting a lock file others may wait on is unsafe) while the block runs; `.bench.lock.json` beside it names the holder. Held by
        another process: BenchError naming it, or, with `wait`, block until it is free."""
        return _FolderLock(self, wait, command)

    def read_runs(self, required: tuple[str, ...] = ()) -> pd.DataFrame:
        """runs.csv, checked: a folder, a readable table with the unit columns and `required`,
        and at least one finished run; anything else is a one-line BenchError."""
        if not self.path.is_dir():
            raise BenchError(f"{self.path} is not a folder")
        if not self.runs_csv.is_file():
            raise BenchError(f"{self.path} is not a run folder (no runs.csv)")
        try:
            runs = pd.read_csv(self.runs_csv)
        except (ValueError, pd.errors.ParserError) as exc:
            raise BenchError(f"{self.runs_csv} is unreadable: {exc}") from None
        missing = [c for c in (*UNIT_KEYS, "status", *required) if c not in runs.columns]
        if missing:
            raise BenchError(f"{self.runs_csv} lacks column(s) {', '.join(missing)}")
        if ok_runs(runs).empty:
            raise BenchError(f"{self.runs_csv} has no finished runs yet")
        return runs

    def read_predictions(self, dataset: str, model: str, seed: int) -> pd.DataFrame | None:
        """One unit's test predictions sorted by row, or None when the file is missing."""
        path = self.predictions_path(dataset, model, int(seed))
        if not path.is_file():
            return None
        st = path.stat()
        try:
            return _read_predictions_file(str(path.resolve()), st.st_mtime_ns, st.st_size).copy()
        except (OSError, EOFError, ValueError, KeyError, pd.errors.ParserError) as exc:
            raise BenchError(f"{path} is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                             "rerun the unit (move its units/ file aside) or restore the file") from None

    # ------------------------------------------------------------ what the run recorded
    def stored_config(self) -> Config:
        """The run's resolved config, parsed back through the config loader."""
        from bench import config

        return config.from_json(read_json_object(self.config_json))

    def claim_declared(self) -> bool:
        """Whether the run's config.json holds a declared claim (folders made before claims existed,
        or with no [claim] table, hold none: their statistics use the default claim)."""
        try:
            return json.loads(self.config_json.read_text()).get("claim") is not None
        except (OSError, ValueError):
            return False

    def environment(self) -> dict[str, Any]:
        return read_json_object(self.environment_json)

    def datasets_info(self) -> dict[str, dict[str, Any]]:
        """Split sizes, vocabulary and source per dataset ({} before any data was prepared)."""
        return read_json_object(self.datasets_json) if self.datasets_json.exists() else {}

    def dataset_title(self, dataset: str) -> str:
        """The dataset's display name, saying so when its training split was only a subset."""
        info = self.datasets_info().get(dataset)
        title = DATASET_TITLES.get(dataset) or (info or {}).get("title") or dataset
        full = FULL_TRAIN_ROWS.get(dataset, 0)
        if info and info["train"] + info["val"] < full:
            title += f" (train: {info['train'] + info['val']:,} of {full:,} rows)"
        return title


class _FolderLock:
    """See RunFolder.lock. The holder file is written after the lock is taken and removed before it
    is released."""

    def __init__(self, folder: RunFolder, wait: bool, command: str):
        self.folder, self.wait, self.command = folder, wait, command
        self.path = folder.path / LOCK_NAME
        self.holder = folder.path / LOCK_HOLDER_NAME
        self._lock = None

    def holder_text(self) -> str:
        try:
            h = json.loads(self.holder.read_text())
            return (f"pid {h.get('pid')} on {h.get('host')} since {h.get('since')}"
                    + (f" ({h['command']})" if h.get("command") else ""))
        except (OSError, ValueError, AttributeError):
            return "another process (holder unknown)"

    def __enter__(self) -> "_FolderLock":
        import datetime
        import socket

        from filelock import FileLock, Timeout

        self.folder.path.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path), thread_local=False)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            if not self.wait:
                raise BenchError(f"{self.folder.path} is in use by {self.holder_text()}; wait for it to finish, "
                                 "or pass --wait to wait for it") from None
            log.info("%s is in use by %s; waiting (--wait)", self.folder.path, self.holder_text())
            self._lock.acquire()
        atomic_write_json(self.holder, {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                                        "since": datetime.datetime.now().isoformat(timespec="seconds")})
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.holder.unlink(missing_ok=True)
        except OSError:
            pass
        self._lock.release()


# ----------------------------------------------------------------------------- the report manifest

MANIFEST_KEYS = {"output": str, "main": str, "tuned": "tuned", "ablation": str, "other": list, "variance": list,
                 "recipe": "recipe"}
TUNED_KEYS = ("run", "untuned")
RECIPE_KEYS = ("run", "baseline", "models")


@dataclass(frozen=True)
class TunedRun:
    """A tuned run folder and the untuned folder its tuned − untuned differences pair with
    (None: the report's main run), so a tuned run at one budget is never compared with another budget."""
    run: Path
    untuned: Path | None = None

    @property
    def folders(self) -> tuple[Path, ...]:
        """The folders this entry reads: the tuned run, then its untuned run when named."""
        return (self.run,) if self.untuned is None else (self.run, self.untuned)


@dataclass(frozen=True)
class RecipePair:
    """A folder that changes a few settings (`run`) and the folder it changes them against (`baseline`):
    the report's recipe checks compare each model run in both, paired by seed, or only `models` when
    named (a folder that changes one arm's settings against one folder and another arm's against another)."""
    run: Path
    baseline: Path
    models: tuple[str, ...] = ()

    @property
    def folders(self) -> tuple[Path, Path]:
        """The folders this check reads: the changed run, then its baseline."""
        return self.run, self.baseline


@dataclass
class ReportManifest:
    """Which folders make up the repository's report (`configs/report.toml`): the main run, and
    optionally tuned runs (each beside its own untuned run), an ablation, further runs,
    variance-decomposition runs and recipe checks (a folder beside the one it changes settings of),
    plus where the composed report goes. Paths in the file are
    relative to the file's own folder."""
    source: Path
    output: Path
    main: Path
    tuned: list[TunedRun] = field(default_factory=list)
    ablation: Path | None = None
    other: list[Path] = field(default_factory=list)
    variance: list[Path] = field(default_factory=list)
    recipe: list[RecipePair] = field(default_factory=list)

    def folders(self) -> list[Path]:
        tuned = [p for t in self.tuned for p in t.folders]
        recipe = [p for r in self.recipe for p in r.folders]
        return [p for p in (self.main, *tuned, self.ablation, *self.other, *self.variance, *recipe) if p is not None]

    def names(self, folder: str | Path) -> bool:
        """Whether `folder` is one of the manifest's folders (compared as resolved paths)."""
        target = Path(folder).resolve()
        return any(p.resolve() == target for p in self.folders())


def _under(base: Path, relative: str) -> Path:
    """A manifest path, relative to the manifest's folder, as a normalised path."""
    return Path(os.path.normpath(base / relative))


def _known_keys(table: dict[str, Any], known: tuple[str, ...], key: str, path: Path) -> None:
    """A manifest table under `key` names only `known` keys."""
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise BenchError(f"report manifest {path}: unknown key '{unknown[0]}' in a '{key}' table "
                         f"(known: {', '.join(known)})")


def _tuned_runs(value: Any, path: Path, base: Path) -> list[TunedRun]:
    """`tuned` as a path (untuned = main), or a list of paths and `{run = ..., untuned = ...}` tables."""
    shape = ("'tuned' must be a path or a list of paths and {run = \"...\", untuned = \"...\"} tables, "
             f"got {value!r}")
    runs = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str) and item.strip():
            item = {"run": item}
        if not isinstance(item, dict):
            raise BenchError(f"report manifest {path}: {shape}")
        _known_keys(item, TUNED_KEYS, "tuned", path)
        if "run" not in item:
            raise BenchError(f"report manifest {path}: a 'tuned' table needs 'run' (the tuned folder), got {item!r}")
        for key, v in item.items():
            if not (isinstance(v, str) and v.strip()):
                raise BenchError(f"report manifest {path}: 'tuned' table key '{key}' must be a path, got {v!r}")
        untuned = item.get("untuned")
        runs.append(TunedRun(run=_under(base, item["run"]), untuned=_under(base, untuned) if untuned else None))
    return runs


def _recipe_pairs(value: Any, path: Path, base: Path) -> list[RecipePair]:
    """`recipe` as a list of `{run = ..., baseline = ..., models = [...]}` tables (models optional)."""
    shape = f"'recipe' must be a list of {{run = \"...\", baseline = \"...\"}} tables, got {value!r}"
    pairs = []
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, dict):
            raise BenchError(f"report manifest {path}: {shape}")
        _known_keys(item, RECIPE_KEYS, "recipe", path)
        for key in ("run", "baseline"):
            v = item.get(key)
            if not (isinstance(v, str) and v.strip()):
                raise BenchError(f"report manifest {path}: a 'recipe' table needs '{key}' as a path, got {v!r}")
        models = item.get("models", [])
        if not (isinstance(models, list) and all(isinstance(m, str) and m.strip() for m in models)):
            raise BenchError(f"report manifest {path}: a 'recipe' table's 'models' must be a list of model names, "
                             f"got {models!r}")
        pairs.append(RecipePair(run=_under(base, item["run"]), baseline=_under(base, item["baseline"]),
                                models=tuple(models)))
    return pairs


def load_manifest(path: str | Path, required: bool = True) -> ReportManifest | None:
    """Parse a report manifest strictly; a missing file is None unless `required`."""
    from bench.config import read_toml

    path = Path(path)
    if not path.exists() and not required:
        return None
    raw = read_toml(path, "report manifest")
    unknown = sorted(set(raw) - set(MANIFEST_KEYS))
    if unknown:
        raise BenchError(f"report manifest {path}: unknown key '{unknown[0]}' (known: {', '.join(MANIFEST_KEYS)})")
    for key in ("output", "main"):
        if key not in raw:
            raise BenchError(f"report manifest {path}: missing key '{key}'")
    base = path.parent
    values: dict[str, Any] = {}
    for key, kind in MANIFEST_KEYS.items():
        value = raw.get(key)
        if value is None:
            continue
        if kind == "tuned":
            values[key] = _tuned_runs(value, path, base)
            continue
        if kind == "recipe":
            values[key] = _recipe_pairs(value, path, base)
            continue
        items = value if kind is list else [value]
        if not isinstance(value, kind) or not all(isinstance(v, str) and v.strip() for v in items):
            raise BenchError(f"report manifest {path}: '{key}' must be "
                             f"{'a list of paths' if kind is list else 'a path'}, got {value!r}")
        paths = [_under(base, v) for v in items]
        values[key] = paths if kind is list else paths[0]
    return ReportManifest(source=path, **values)
