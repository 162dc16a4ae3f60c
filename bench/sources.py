"""Read any text-classification dataset that is not built in: a Hugging Face hub id, a CSV /
JSONL / parquet file (the train split), a folder of `<split>.csv|jsonl|json|parquet` files, or a
`datasets` DatasetDict saved with `save_to_disk` — described by a `DatasetConfig`.

Every source goes through one reader, `read_splits`, so the hub path is exercised by tests on local
files: it picks the text and label columns, takes the label names from the label column's
ClassLabel feature where there is one (else `label_names`, else the ids), maps string labels
through `label_names`, and checks the labels (integers 0..K-1, every class present in train, at
least two classes) with one-line errors.

Splits: the test split is `test_split`, else the source's "test", else carved from train
(stratified, `test_fraction`, the fixed TEST_SEED, so every unit tests on the same rows). A
validation split the source ships is NOT used as the validation split: bench.data carves
validation from train as for the built-ins, so `val_fraction`, `train_subset` and per-seed
splits (`vary` = split) mean the same on every dataset; set `test_split = "validation"` to test on
it (e.g. when a hub test split hides its labels as -1).

Content fingerprints (the cache key): a SHA-256 of the local files' bytes (not their path, size or
mtime), or a hub dataset's own `_fingerprint` per split.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from bench.cli import DATA_DIR_ENV
from bench.config import BenchError, DatasetConfig, is_local_source

log = logging.getLogger("bench")

FILE_FORMATS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}  # the file types read
TEST_SEED = 0  # the seed of a carved test split: fixed, so every unit and seed tests on the same rows


_DIGESTS: dict[tuple, str] = {}  # a file's identity and change stamps -> its content digest, in this process


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes. Hashed again whenever the file may have changed: the memo's key holds
    its inode and ctime, which every write changes (and which, unlike mtime, cannot be set back)."""
    st = path.stat()
    memo = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if memo not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[memo] = h.hexdigest()
    return _DIGESTS[memo]


def content_digest(path: Path) -> str:
    """A file's digest, or a folder's: every file in it (names relative to it, and contents)."""
    if path.is_file():
        return file_digest(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(path).as_posix()}\0{file_digest(p)}\n".encode())
    return h.hexdigest()


def hub_digest(dd) -> str:
    """A hub dataset's own fingerprint (its splits' `_fingerprint`, which change with its files)."""
    return json.dumps({k: getattr(v, "_fingerprint", "") for k, v in dd.items()}, sort_keys=True)


# ----------------------------------------------------------------------------- loading

_HUB: dict[tuple[str, str], Any] = {}  # (hub id, subset) -> DatasetDict, loaded once per process


def load_hub(dataset: str, hub_id: str, subset: str):
    """A hub dataset's DatasetDict (from the local Hugging Face cache when it is there)."""
    import datasets

    if (hub_id, subset) not in _HUB:
        datasets.disable_progress_bars()
        try:
            _HUB[hub_id, subset] = datasets.load_dataset(hub_id, subset or None)
        except Exception as exc:
            why = " ".join(str(exc).split())[:200]
            raise BenchError(f"cannot load '{hub_id}' from the Hugging Face hub ({type(exc).__name__}"
                             f"{': ' + why if why else ''}); offline, point at local files with --data-dir DIR "
                             f"or {DATA_DIR_ENV}=DIR (DIR/{dataset}/train.parquet and test.parquet)") from None
    return _HUB[hub_id, subset]


def _local_source(dataset: str, spec: DatasetConfig, data_dir: Path | None) -> Path | None:
    """Where a dataset's local files are (None: it is read from the hub). A hub dataset is read from
    DATA_DIR/<name>/ instead when --data-dir holds that folder (offline use, as for the built-ins)."""
    if is_local_source(spec.source):
        path = Path(spec.source).expanduser()
        if not path.exists():
            raise BenchError(f"{dataset}: source not found: {path}")
        return path
    if data_dir is not None and (Path(data_dir) / dataset).is_dir():
        return Path(data_dir) / dataset
    return None


def _split_files(dataset: str, folder: Path) -> dict[str, Path]:
    """A folder of `<split>.csv|jsonl|json|parquet` files: {split: file}."""
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in FILE_FORMATS:
            if p.stem in files:
                raise BenchError(f"{dataset}: two files for split '{p.stem}' in {folder} "
                                 f"({files[p.stem].name}, {p.name})")
            files[p.stem] = p
    if not files:
        raise BenchError(f"{dataset}: no CSV, JSONL or parquet files in {folder} (expected <split>.csv, e.g. "
                         f"train.csv and test.csv, or a folder written by DatasetDict.save_to_disk)")
    return files


def _read_file(dataset: str, split: str, path: Path):
    """One CSV / JSONL / JSON / parquet file as an in-memory Dataset. Read directly (pandas, pyarrow),
    not through `load_dataset`'s builder cache, which is keyed on the file's path and mtime: a file
    changed in place must never be read back stale. A parquet file keeps the features `datasets`
    stored in it (a ClassLabel's names)."""
    import datasets
    import pandas as pd
    import pyarrow.parquet as pq
    from datasets.table import InMemoryTable

    suffix = path.suffix.lower()
    if suffix not in FILE_FORMATS:
        raise BenchError(f"{dataset}: cannot read {path} (expected a .csv, .jsonl, .json or .parquet file)")
    try:
        if suffix == ".parquet":
            return datasets.Dataset(InMemoryTable(pq.read_table(path)))
        if suffix == ".csv":
            frame = pd.read_csv(path)
        else:
            try:
                frame = pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
            except ValueError:  # a .json file of JSON lines (or a .jsonl array): try the other layout
                frame = pd.read_json(path, lines=suffix != ".jsonl", dtype=False)
        return datasets.Dataset.from_pandas(frame, preserve_index=False)
    except Exception as exc:  # pandas / pyarrow raise many types for a bad file
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise BenchError(f"{dataset}: cannot read {path}: {type(exc).__name__}: {first}"[:400]) from None


def _load_local(dataset: str, spec: DatasetConfig, path: Path) -> dict[str, Any]:
    """{split: Dataset} from a file (the train split), a folder of split files, or a save_to_disk folder."""
    import datasets

    datasets.disable_progress_bars()
    if path.is_file():
        return {spec.train_split: _read_file(dataset, spec.train_split, path)}
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        try:
            saved = datasets.load_from_disk(str(path))
        except Exception as exc:
            raise BenchError(f"{dataset}: cannot read the saved dataset in {path}: {type(exc).__name__}") from None
        return dict(saved) if isinstance(saved, datasets.DatasetDict) else {spec.train_split: saved}
    return {split: _read_file(dataset, split, p) for split, p in _split_files(dataset, path).items()}


class Source:
    """One non-built-in dataset's source: its content fingerprint (hashing local files without
    reading them, or loading the hub dataset) and its splits, loaded at most once."""

    def __init__(self, dataset: str, spec: DatasetConfig, data_dir: Path | None):
        self.dataset, self.spec = dataset, spec
        self.path = _local_source(dataset, spec, data_dir)
        self._dd: dict[str, Any] | None = None

    def fingerprint(self) -> str:
        if self.path is not None:
            return "local:" + content_digest(self.path)
        return f"hub:{self.spec.source}:{self.spec.subset}:" + hub_digest(self.splits())

    def splits(self) -> dict[str, Any]:
        if self._dd is None:
            self._dd = (_load_local(self.dataset, self.spec, self.path) if self.path is not None
                        else dict(load_hub(self.dataset, self.spec.source, self.spec.subset)))
        return self._dd

    def describe(self) -> str:
        return str(self.path) if self.path is not None else f"hub:{self.spec.source}"


def _class_label_names(ds, column: str) -> list[str] | None:
    import datasets

    feature = ds.features.get(column) if ds.features else None
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def _labels(where: str, values: list, names: list[str]) -> np.ndarray:
    """Integer labels, or strings mapped through `names`; anything else is a one-line error."""
    if names and values and all(isinstance(y, str) for y in values):
        index = {n: i for i, n in enumerate(names)}
        unknown = [i for i, y in enumerate(values) if y not in index]
        if unknown:
            raise BenchError(f"{where}: label {values[unknown[0]]!r} (row {unknown[0]}) is not one of the "
                             f"label_names {names}")
        return np.asarray([index[y] for y in values], dtype=np.int64)
    bad = [i for i, y in enumerate(values) if isinstance(y, bool) or not isinstance(y, (int, np.integer))]
    if bad:
        hint = (" (string labels need label_names in the [dataset.NAME] table)"
                if isinstance(values[bad[0]], str) else "")
        raise BenchError(f"{where}: label must be an integer, row {bad[0]} has {values[bad[0]]!r}{hint}")
    return np.asarray(values, dtype=np.int64)


def _texts_and_labels(where: str, ds, spec: DatasetConfig, names: list[str]) -> tuple[list[str], np.ndarray]:
    cols = list(ds.column_names)
    for key, col in (("text_column", spec.text_column), ("label_column", spec.label_column)):
        if col not in cols:
            raise BenchError(f"{where}: no column '{col}' (found {', '.join(cols)}); set {key} in the "
                             f"[dataset.NAME] table or --{key.replace('_', '-')}")
    if len(ds) == 0:
        raise BenchError(f"{where}: the split is empty")
    texts = ds[spec.text_column]
    texts = list(texts) if not isinstance(texts, list) else texts
    labels = _labels(where, list(ds[spec.label_column]), names)
    empty = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if empty:
        raise BenchError(f"{where}: {len(empty)} empty or non-string texts (first at row {empty[0]})")
    return texts, labels


def _check_classes(dataset: str, spec: DatasetConfig, train: np.ndarray, test: np.ndarray, k: int,
                   test_split: str) -> None:
    """Labels must be 0..K-1 with every class in train, and K >= 2."""
    for split, labels in ((spec.train_split, train), (test_split, test)):
        outside = np.flatnonzero((labels < 0) | (labels >= k))
        if outside.size:
            i = int(outside[0])
            hint = (" (hub test splits often hide their labels as -1: test on another split with test_split "
                    "in the [dataset.NAME] table)" if labels[i] < 0 and split == test_split else "")
            raise BenchError(f"{dataset}/{split}: labels must be integers in 0..{k - 1}, row {i} has {labels[i]} "
                             f"({outside.size} rows out of range){hint}")
    present = np.unique(train)
    if present.size < 2:
        raise BenchError(f"{dataset}/{spec.train_split}: only one class ({int(present[0])}) in the labels; "
                         "a classifier needs at least two")
    missing = sorted(set(range(k)) - set(present.tolist()))
    if missing:
        raise BenchError(f"{dataset}/{spec.train_split}: labels must be contiguous 0..{k - 1}, but class "
                         f"{missing[0]} has no training rows ({len(missing)} of {k} classes missing)")


def _carve_test(dataset: str, texts: list[str], labels: np.ndarray, fraction: float):
    """A stratified test split carved from train with the fixed TEST_SEED: (train, test) pairs."""
    from sklearn.model_selection import train_test_split

    try:
        tr, te = train_test_split(np.arange(len(labels)), test_size=fraction, stratify=labels,
                                  random_state=TEST_SEED)
    except ValueError as exc:
        raise BenchError(f"{dataset}: cannot carve a stratified test split from train: {exc}") from None
    tr, te = np.sort(tr), np.sort(te)
    return ([texts[i] for i in tr], labels[tr]), ([texts[i] for i in te], labels[te])


def read_splits(dataset: str, spec: DatasetConfig, dd: dict[str, Any]):
    """The one reader every non-built-in source goes through (hub, files, saved DatasetDict):
    ({"train": (texts, labels), "test": (texts, labels)}, label names)."""
    found = ", ".join(dd) or "none"
    if spec.train_split not in dd:
        raise BenchError(f"{dataset}: no '{spec.train_split}' split in the source (found: {found}); set "
                         "train_split in the [dataset.NAME] table")
    test_split = spec.test_split or ("test" if "test" in dd else "")
    if test_split and test_split not in dd:
        raise BenchError(f"{dataset}: no '{test_split}' split in the source (found: {found})")
    if test_split == spec.train_split:
        raise BenchError(f"{dataset}: train_split and test_split are both '{test_split}'")
    train_ds = dd[spec.train_split]
    names = list(spec.label_names) or _class_label_names(train_ds, spec.label_column) or []
    train = _texts_and_labels(f"{dataset}/{spec.train_split}", train_ds, spec, names)
    test = _texts_and_labels(f"{dataset}/{test_split}", dd[test_split], spec, names) if test_split else None
    k = len(names) if names else max(int(train[1].max()) + 1, 1)
    _check_classes(dataset, spec, train[1], test[1] if test else train[1][:0], k, test_split)
    if test is None:
        train, test = _carve_test(dataset, *train, spec.test_fraction)
        log.info("%s: no test split in the source; carved %d stratified test rows from train (seed %d)",
                 dataset, len(test[1]), TEST_SEED)
    return {"train": train, "test": test}, names or [str(i) for i in range(k)]
