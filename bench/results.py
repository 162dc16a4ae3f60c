"""Record formats and atomic file writes for a run folder.

A run folder (`results/<run>/`) holds one JSON file per finished unit of work
(dataset × model × seed) under `units/`, and the tables rebuilt from them: `runs.csv`,
`epochs.csv`, plus `predictions/*.csv.gz`, `config.json` and `environment.json`.
Every write goes to a temporary file in the same folder, is fsynced, then renamed, so a
killed process never leaves a half-written file and a rerun can skip finished units.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

RUN_COLUMNS = [
    "dataset", "model", "seed", "status", "reason", "params", "best_epoch", "epochs_run",
    "best_val_acc", "best_val_loss", "test_acc", "test_loss", "train_acc", "train_eval_acc",
    "gap_acc", "gap_loss", "train_seconds", "wall_seconds", "train_tokens_per_s", "device", "threads", "config_hash",
    "git_sha",
]
EPOCH_COLUMNS = [
    "dataset", "model", "seed", "epoch", "train_loss", "train_acc", "train_eval_loss",
    "train_eval_acc", "val_loss", "val_acc", "gap_acc", "gap_loss", "lr", "epoch_seconds",
    "train_tokens_per_s",
]


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


def dataset_title(run_dir: Path, dataset: str) -> str:
    """The dataset's display name, saying so when its training split was only a subset."""
    title = DATASET_TITLES.get(dataset, dataset)
    path = Path(run_dir) / "datasets.json"
    info = json.loads(path.read_text()).get(dataset) if path.exists() else None
    full = FULL_TRAIN_ROWS.get(dataset, 0)
    if info and info["train"] + info["val"] < full:
        title += f" (train: {info['train'] + info['val']:,} of {full:,} rows)"
    return title


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def relative_link(path: str | Path, start: str | Path) -> str:
    """A markdown link target for `path` as seen from the folder `start`."""
    return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()


def unit_key(dataset: str, model: str, seed: int) -> str:
    return f"{dataset}__{model}__seed{seed}"


def unit_path(run_dir: Path, dataset: str, model: str, seed: int) -> Path:
    return Path(run_dir) / "units" / f"{unit_key(dataset, model, seed)}.json"


def predictions_path(run_dir: Path, dataset: str, model: str, seed: int) -> Path:
    return Path(run_dir) / "predictions" / f"{unit_key(dataset, model, seed)}.csv.gz"


def load_unit(run_dir: Path, dataset: str, model: str, seed: int) -> dict[str, Any] | None:
    """A finished unit's record, or None when it has not finished (or its file is unreadable)."""
    path = unit_path(run_dir, dataset, model, seed)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def save_unit(run_dir: Path, record: dict[str, Any]) -> None:
    run = record["run"]
    atomic_write_json(unit_path(run_dir, run["dataset"], run["model"], run["seed"]), record)


def rebuild_tables(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Regenerate runs.csv and epochs.csv from the unit files (sorted, so reruns are stable)."""
    run_dir = Path(run_dir)
    runs, epochs = [], []
    for path in sorted((run_dir / "units").glob("*.json")):
        record = json.loads(path.read_text())
        runs.append(record["run"])
        epochs.extend(record["epochs"])
    runs_df = pd.DataFrame(runs, columns=RUN_COLUMNS)
    epochs_df = pd.DataFrame(epochs, columns=EPOCH_COLUMNS)
    runs_df = runs_df.sort_values(["dataset", "model", "seed"], kind="stable")
    epochs_df = epochs_df.sort_values(["dataset", "model", "seed", "epoch"], kind="stable")
    atomic_write_csv(run_dir / "runs.csv", runs_df)
    atomic_write_csv(run_dir / "epochs.csv", epochs_df)
    return runs_df, epochs_df


def read_tables(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    run_dir = Path(run_dir)
    return pd.read_csv(run_dir / "runs.csv"), pd.read_csv(run_dir / "epochs.csv")
