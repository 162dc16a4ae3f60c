"""Load, validate, split, tokenize, cache and batch the text-classification datasets.

The built-in datasets (imdb, ag_news) come from the Hugging Face hub (`datasets.load_dataset`)
or, offline, from a folder holding `<dataset>/train.parquet` and `<dataset>/test.parquet`. Any
other dataset ([dataset.NAME] in a config, or `--dataset FILE_OR_HUB_ID`) is read and checked by
`bench.sources` into the same train / test texts and labels, with its label names. Validation is
always carved from train (stratified, `data.val_fraction`, per seed when `vary` includes "split");
with `data.val_groups = "movie"` (IMDB) it is carved by movie: IMDB's test reviews are about movies
no training review is about, while a validation split drawn text by text shares its movies with
the training part, so it rewards memorising movie-specific words that test never pays for.

The vocabulary is trained on the training part only (never on validation or test). Encoded ids
are cached on disk, keyed by the CONTENT of the source (a SHA-256 of the local files; a hub
dataset's own fingerprint) and every setting that changes them, so a second run skips
tokenization and a changed file is never served from a stale cache.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from bench.cli import CACHE_DIR_ENV
from bench.config import BenchError, Config, DataConfig, hashed_fields, head_tokens, is_local_source
from bench.sources import Source, file_digest, hub_digest, load_hub, read_splits

log = logging.getLogger("bench")

HUB_NAMES = {"imdb": "stanfordnlp/imdb", "ag_news": "fancyzhx/ag_news"}
NUM_CLASSES = {"imdb": 2, "ag_news": 4}
CLASS_NAMES = {"imdb": ["negative", "positive"], "ag_news": ["World", "Sports", "Business", "Sci/Tech"]}
PAD_ID, UNK_ID = 0, 1
SPECIAL_TOKENS = ["[PAD]", "[UNK]"]
CACHE_FORMAT = 2
# the group of each training text, by the SHA-256 of its text (scripts/imdb_movies.py built it from the
# original dataset's urls_*.txt): what data.val_groups = "movie" keeps on one side of the split
MOVIE_FILES = {"imdb": Path(__file__).with_name("imdb_train_movies.tsv.gz")}


@dataclass
class Split:
    """One encoded split: right-padded ids, true lengths, labels and source row numbers."""
    ids: np.ndarray      # [N, max_length] int32, PAD_ID after each text's length
    lengths: np.ndarray  # [N] int64, at least 1
    labels: np.ndarray   # [N] int64
    rows: np.ndarray     # [N] int64, row number in the source split (train or test)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> "Split":
        return Split(self.ids[idx], self.lengths[idx], self.labels[idx], self.rows[idx])

    @staticmethod
    def union(a: "Split", b: "Split") -> "Split":
        """Both splits' examples in one, ordered by source row (so the result does not depend on
        how the rows were divided between `a` and `b`)."""
        rows = np.concatenate([a.rows, b.rows])
        order = np.argsort(rows, kind="stable")
        return Split(np.concatenate([a.ids, b.ids])[order], np.concatenate([a.lengths, b.lengths])[order],
                     np.concatenate([a.labels, b.labels])[order], rows[order])


@dataclass
class EncodedData:
    """One dataset, ready for training: the splits, and what a model built for it must know."""
    dataset: str
    num_classes: int
    vocab_size: int
    max_length: int      # every text is cut to this many tokens (a Transformer's position table size)
    train: Split
    val: Split
    test: Split
    train_eval: Split    # fixed subset of train, evaluated in eval mode to measure the gap
    tokenizer_json: str
    cache_hit: bool
    source: str
    split_seed: int | None = None  # the seed of the train/val split held here (None: data.split_seed, as prepared)
    label_names: list[str] = field(default_factory=list)  # class names by label id
    title: str = ""      # the dataset's display name in the report ("" = the built-in title, or its name)
    train_groups: np.ndarray | None = None  # group id of every source train row (data.val_groups), else None


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "bench")


def _local_files(dataset: str, data_dir: Path) -> dict[str, Path]:
    if not data_dir.is_dir():
        raise BenchError(f"data folder not found: {data_dir} (expected {data_dir}/{dataset}/train.parquet)")
    files = {split: data_dir / dataset / f"{split}.parquet" for split in ("train", "test")}
    for split, path in files.items():
        if not path.is_file():
            raise BenchError(f"missing {split} split: {path} (the data folder needs "
                             f"<dataset>/train.parquet and <dataset>/test.parquet)")
    return files


def _source_fingerprint(dataset: str, data_dir: Path | None) -> str:
    """The content key of a built-in dataset's source: the hub dataset's fingerprint, or the
    SHA-256 of the local parquet files (not their path, size or time: a moved or touched copy hits
    the cache; a changed one never does)."""
    if data_dir is None:
        return f"hub:{HUB_NAMES[dataset]}:" + hub_digest(load_hub(dataset, HUB_NAMES[dataset], ""))
    files = _local_files(dataset, data_dir)
    return "local:" + json.dumps({k: file_digest(p) for k, p in files.items()}, sort_keys=True)


def _check_parquet(dataset: str, split: str, path: Path) -> None:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_metadata(path).num_rows
    except Exception:
        raise BenchError(f"{path} is not a readable parquet file (expected columns text, label)") from None
    if rows == 0:
        raise BenchError(f"{dataset}/{split}: the split is empty ({path})")


def load_raw(dataset: str, data_dir: Path | None) -> dict[str, tuple[list[str], np.ndarray]]:
    """Return {"train": (texts, labels), "test": (texts, labels)} from local parquet or the hub."""
    import datasets

    datasets.disable_progress_bars()
    if data_dir is not None:
        dd = {}
        for split, path in _local_files(dataset, data_dir).items():
            _check_parquet(dataset, split, path)
            try:  # one split at a time, so each file's own schema is checked, not a cast to the other's
                dd[split] = datasets.load_dataset("parquet", data_files={split: str(path)}, split=split)
            except Exception as exc:  # pyarrow / datasets raise many types for a bad file
                first = str(exc).splitlines()[0] if str(exc) else ""
                raise BenchError(f"cannot read parquet file {path}: {type(exc).__name__}: {first}") from None
    else:
        dd = load_hub(dataset, HUB_NAMES[dataset], "")
    out = {}
    for split in ("train", "test"):
        if split not in dd:
            raise BenchError(f"{dataset}: no '{split}' split in the source")
        out[split] = _validate(dataset, split, dd[split])
    return out


def _validate(dataset: str, split: str, ds) -> tuple[list[str], np.ndarray]:
    cols = set(ds.column_names)
    if not {"text", "label"} <= cols:
        raise BenchError(f"{dataset}/{split}: expected columns 'text' and 'label', found {sorted(cols)}")
    if len(ds) == 0:
        raise BenchError(f"{dataset}/{split}: the split is empty")
    texts = ds["text"]
    texts = list(texts) if not isinstance(texts, list) else texts
    labels_raw = list(ds["label"])
    bad = [i for i, y in enumerate(labels_raw) if isinstance(y, bool) or not isinstance(y, (int, np.integer))]
    if bad:
        raise BenchError(f"{dataset}/{split}: label must be an integer, row {bad[0]} has {labels_raw[bad[0]]!r}")
    labels = np.asarray(labels_raw, dtype=np.int64)
    k = NUM_CLASSES[dataset]
    out_of_range = np.flatnonzero((labels < 0) | (labels >= k))
    if out_of_range.size:
        i = int(out_of_range[0])
        raise BenchError(f"{dataset}/{split}: labels must be in 0..{k - 1}, row {i} has {labels[i]} "
                         f"({out_of_range.size} rows out of range)")
    empty = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if empty:
        raise BenchError(f"{dataset}/{split}: {len(empty)} empty or non-string texts (first at row {empty[0]})")
    return texts, labels


def train_tokenizer(texts: list[str], cfg: DataConfig):
    """A word-level vocabulary (HF tokenizers) trained on the given texts only."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    steps = [normalizers.Replace("<br />", " "), normalizers.NFKC()]
    if cfg.lowercase:
        steps.append(normalizers.Lowercase())
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                        special_tokens=SPECIAL_TOKENS, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def keep_tokens(ids: list[int], max_length: int, truncate: str = "head") -> list[int]:
    """The max_length tokens a longer text keeps (`data.truncate`): its first, its last, or its first
    quarter and last three quarters. A review tends to state its verdict at the end, which head
    truncation cuts away (Sun et al. 2019, "How to Fine-Tune BERT for Text Classification": on IMDB,
    head + tail beat head alone)."""
    if len(ids) <= max_length:
        return ids
    head = head_tokens(max_length, truncate)
    return ids[:head] + ids[len(ids) - (max_length - head):]


def encode(tok, texts: list[str], max_length: int, truncate: str = "head") -> tuple[np.ndarray, np.ndarray]:
    """Right-padded int32 id matrix (cut to max_length as `truncate` says) and true lengths."""
    tok.no_padding()
    if truncate == "head":  # the tokenizer stops at max_length: the quickest way to the first tokens
        tok.enable_truncation(max_length)
    else:
        tok.no_truncation()
    encs = tok.encode_batch(texts)
    ids = np.full((len(texts), max_length), PAD_ID, dtype=np.int32)
    lengths = np.empty(len(texts), dtype=np.int64)
    for i, enc in enumerate(encs):
        row = keep_tokens(enc.ids, max_length, truncate) or [UNK_ID]  # a text of only unknown symbols: one token
        ids[i, : len(row)] = row
        lengths[i] = len(row)
    return ids, lengths


def stratified_sample(rows: np.ndarray, labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` of `rows` (labels[i] belongs to rows[i]) with the class proportions kept, in draw order."""
    from sklearn.model_selection import train_test_split

    sample, _ = train_test_split(rows, train_size=size, stratify=labels, random_state=seed)
    return sample


def eval_sample(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted positions of the fixed eval-mode train subset that measures the overfitting gap."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(size, n), replace=False))


def text_groups(dataset: str, texts: list[str], how: str) -> np.ndarray | None:
    """Group id (int) of each training text under `data.val_groups = how`, or None when ungrouped.
    Texts are matched by content, so any copy of the dataset in any row order finds its groups."""
    if not how:
        return None
    if dataset not in MOVIE_FILES:
        raise BenchError(f"data.val_groups = '{how}' needs each text's movie, known for "
                         f"{', '.join(MOVIE_FILES)} only, not '{dataset}'")
    import gzip

    lines = gzip.decompress(MOVIE_FILES[dataset].read_bytes()).decode().splitlines()[1:]
    movie_of = dict(line.split("\t") for line in lines)
    movies = [movie_of.get(hashlib.sha256(t.encode("utf-8")).hexdigest()[:16]) for t in texts]
    missing = sum(m is None for m in movies)
    if missing:
        raise BenchError(f"{missing:,} of {len(texts):,} {dataset} training texts have no movie in "
                         f"{MOVIE_FILES[dataset].name}: not the original dataset's texts")
    _, ids = np.unique(np.array(movies), return_inverse=True)
    return ids.astype(np.int64)


def carve_val(rows: np.ndarray, labels: np.ndarray, groups: np.ndarray | None, fraction: float,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) of `rows` (labels[i] and groups[i] belong to rows[i]), sorted: stratified by
    label, `fraction` of the rows in val; with groups, whole groups go to one side (the first fold
    of sklearn's StratifiedGroupKFold with round(1 / fraction) folds, so val is about `fraction`)."""
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    try:
        if groups is None:
            tr, va = train_test_split(rows, test_size=fraction, stratify=labels, random_state=seed)
        else:
            folds = StratifiedGroupKFold(n_splits=round(1 / fraction), shuffle=True, random_state=seed)
            tr_pos, va_pos = next(folds.split(rows, labels, groups))
            tr, va = rows[tr_pos], rows[va_pos]
    except ValueError as exc:
        raise BenchError(f"cannot carve a stratified validation split with split seed {seed}: {exc}") from None
    return np.sort(tr), np.sort(va)


def split_train(labels: np.ndarray, cfg: DataConfig,
                groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified (train, val) row indices (whole groups to one side when `groups` is given) and a
    fixed train-eval subset, all from split_seed."""
    rows = np.arange(len(labels))
    if cfg.train_subset and cfg.train_subset < len(rows):
        rows = stratified_sample(rows, labels, cfg.train_subset, cfg.split_seed)
    tr, va = carve_val(rows, labels[rows], None if groups is None else groups[rows], cfg.val_fraction,
                       cfg.split_seed)
    return tr, va, eval_sample(len(tr), cfg.train_eval_size, cfg.split_seed)


def subsample_train(data: EncodedData, size: int, seed: int = 0) -> EncodedData:
    """`data` whose train part is a stratified `size`-row sample (0 or more than there is: unchanged),
    e.g. for cheaper tuning trials. Validation and test are untouched; the eval-mode train subset is
    re-drawn from the sample, as large as before."""
    n = len(data.train)
    if not size or size >= n:
        return data
    train = data.train.subset(np.sort(stratified_sample(np.arange(n), data.train.labels, size, seed)))
    ev = eval_sample(len(train), len(data.train_eval), seed)
    return replace(data, train=train, train_eval=train.subset(ev))


def resplit(data: EncodedData, cfg: DataConfig, split_seed: int) -> EncodedData:
    """`data` with train / val / train_eval re-carved from its training pool (train ∪ val) by
    `split_seed`: stratified (whole groups to one side where `data` has groups), `cfg.val_fraction` of
    the pool, the eval-mode train subset re-drawn with the same seed. The test split is untouched.
    Unchanged (the same object) when `data` already holds that split; `prepare`'s data holds
    `cfg.split_seed`'s.

    Leakage: the vocabulary (and the encoded ids) come from `prepare`, which trained the tokenizer on
    the training part of the `cfg.split_seed` split. Under another split some of those texts are
    validation texts, so which words have an id (at least `min_frequency` occurrences) was decided
    partly by validation text. Only vocabulary membership leaks — no label, no weight — and test
    texts never contribute; a per-split vocabulary would remove it at the cost of re-encoding the
    dataset for every seed. With `data.train_subset`, the subset itself stays the one drawn at
    `cfg.split_seed`; only its division into train and validation varies.
    """
    current = data.split_seed if data.split_seed is not None else cfg.split_seed
    if split_seed == current:
        return data
    pool = Split.union(data.train, data.val)
    groups = None if data.train_groups is None else data.train_groups[pool.rows]
    tr, va = carve_val(np.arange(len(pool)), pool.labels, groups, cfg.val_fraction, split_seed)
    train = pool.subset(tr)
    ev = eval_sample(len(train), cfg.train_eval_size, split_seed)
    return replace(data, train=train, val=pool.subset(va), train_eval=train.subset(ev), split_seed=split_seed)


def split_for_seed(data: EncodedData, cfg: Config, seed: int) -> EncodedData:
    """The data one unit trains on: unchanged unless `cfg.vary` includes "split", in which case
    seed k draws its own stratified validation split (`resplit` with split seed k), the same for
    every model at that seed, so results stay paired. Call it on the data `prepare` returned;
    calling it again on its own result for the same seed changes nothing."""
    return resplit(data, cfg.data, cfg.unit_seeds(seed).split)


def _cache_file(dataset: str, cfg: DataConfig, data_dir: Path | None, cache_dir: Path,
                source: Source | None = None) -> Path:
    """The cache file for these encodings: a hash of the source's content fingerprint, how it is read
    (a non-built-in dataset's columns, splits and label names; not where its files are) and every
    data setting."""
    if source is None:
        key = {"format": CACHE_FORMAT, "dataset": dataset, "source": _source_fingerprint(dataset, data_dir),
               "data": hashed_fields(cfg)}
    else:
        read = {k: v for k, v in asdict(source.spec).items() if k not in ("source", "title")}
        key = {"format": CACHE_FORMAT, "dataset": dataset, "source": source.fingerprint(), "data": hashed_fields(cfg),
               "read": read}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / f"{dataset}-{digest}.npz"


def _save_cache(path: Path, arrays: dict[str, np.ndarray], tokenizer_json: str, source: str,
                label_names: list[str] | None = None) -> None:
    from bench.results import atomic_write_bytes

    buf = io.BytesIO()
    meta = {"tokenizer": tokenizer_json, "source": source}
    if label_names is not None:  # a non-built-in dataset (a built-in one's cache stays as it always was)
        meta["label_names"] = label_names
    meta = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(buf, meta=meta, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _load_cache(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("meta").tobytes().decode())
    for name in ("train", "test"):
        n = len(arrays[f"{name}_labels"])
        if arrays[f"{name}_ids"].shape[0] != n or arrays[f"{name}_lengths"].shape[0] != n:
            raise ValueError(f"inconsistent cached arrays for {name}")
    if not {"tokenizer", "source"} <= set(meta):
        raise ValueError("cache metadata lacks the tokenizer or the source")
    return arrays, meta


def prepare(dataset: str, cfg: Config | DataConfig, data_dir: Path | None = None,
            cache_dir: Path | None = None) -> EncodedData:
    """Everything a training run needs for one dataset, from the cache when possible. `cfg` is the
    run's Config (whose [dataset.NAME] tables say how to read a dataset that is not built in) or,
    for a built-in dataset, its DataConfig alone."""
    spec = None
    if isinstance(cfg, Config):  # (getattr: a Config pickled by a process started before [dataset.NAME] existed)
        spec, cfg = getattr(cfg, "dataset", {}).get(dataset), cfg.data
    if spec is None and dataset not in HUB_NAMES:
        raise BenchError(f"unknown dataset '{dataset}' (built in: {', '.join(HUB_NAMES)}; any other needs a "
                         f"[dataset.{dataset}] table in the config, or --dataset FILE_OR_HUB_ID)")
    data_dir = Path(data_dir) if data_dir is not None else None
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    src = Source(dataset, spec, data_dir) if spec is not None else None
    path = _cache_file(dataset, cfg, data_dir, cache_dir, src)
    arrays, cache_hit = None, False
    if path.exists():
        try:
            arrays, meta = _load_cache(path)
            cache_hit = True
            log.info("%s: encoded data loaded from cache %s", dataset, path)
        except Exception as exc:  # corrupted or truncated cache: rebuild it
            log.warning("%s: cache %s is unreadable (%s); rebuilding it", dataset, path, type(exc).__name__)
            arrays = None
    if arrays is None:
        arrays, meta = _encode_and_cache(dataset, cfg, data_dir, src, path)
    tokenizer_json, source = meta["tokenizer"], _describe(dataset, data_dir, src)  # where it is now read from
    label_names = meta.get("label_names") or CLASS_NAMES[dataset]
    train_all = Split(arrays["train_ids"], arrays["train_lengths"], arrays["train_labels"],
                      np.arange(len(arrays["train_labels"])))
    test = Split(arrays["test_ids"], arrays["test_lengths"], arrays["test_labels"],
                 np.arange(len(arrays["test_labels"])))
    tr, va, ev = arrays["split_train"], arrays["split_val"], arrays["split_train_eval"]
    train = train_all.subset(tr)
    from tokenizers import Tokenizer

    vocab_size = Tokenizer.from_str(tokenizer_json).get_vocab_size()
    title = "" if spec is None else spec.title or (dataset if is_local_source(spec.source) else spec.source)
    return EncodedData(dataset=dataset, num_classes=len(label_names), vocab_size=vocab_size,
                       max_length=cfg.max_length, train=train, val=train_all.subset(va), test=test, train_eval=train.subset(ev),
                       tokenizer_json=tokenizer_json, cache_hit=cache_hit, source=source,
                       label_names=list(label_names), title=title, train_groups=arrays.get("train_groups"))


def _describe(dataset: str, data_dir: Path | None, src: Source | None) -> str:
    """Where the data is read from (the cache is keyed on content, so a hit may come from a copy elsewhere)."""
    if src is not None:
        return src.describe()
    return str(data_dir / dataset) if data_dir is not None else f"hub:{HUB_NAMES[dataset]}"


def _encode_and_cache(dataset: str, cfg: DataConfig, data_dir: Path | None, src: Source | None,
                      path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and check the source, carve the splits, train the vocabulary, encode, and cache."""
    if src is None:
        raw, label_names = load_raw(dataset, data_dir), None
    else:
        raw, label_names = read_splits(dataset, src.spec, src.splits())
    source = _describe(dataset, data_dir, src)
    train_texts, train_labels = raw["train"]
    groups = text_groups(dataset, train_texts, cfg.val_groups)
    tr, va, ev = split_train(train_labels, cfg, groups)
    log.info("%s: training a %d-word vocabulary on %d training texts", dataset, cfg.vocab_size, len(tr))
    tok = train_tokenizer([train_texts[i] for i in tr], cfg)
    tokenizer_json = tok.to_str()
    arrays = {"split_train": tr, "split_val": va, "split_train_eval": ev}
    if groups is not None:
        arrays["train_groups"] = groups
    for name, (texts, labels) in raw.items():
        ids, lengths = encode(tok, texts, cfg.max_length, cfg.truncate)
        arrays.update({f"{name}_ids": ids, f"{name}_lengths": lengths, f"{name}_labels": labels})
    _save_cache(path, arrays, tokenizer_json, source, label_names)
    log.info("%s: encoded and cached in %s", dataset, path)
    meta = {"tokenizer": tokenizer_json, "source": source}
    if label_names is not None:
        meta["label_names"] = label_names
    return arrays, meta


def iterate_batches(split: Split, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                    chunk: int = 50, pad_multiple: int = 0
                    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Length-bucketed batches: (ids[B, L], lengths, labels, positions in split).

    Training: a seeded shuffle, then each chunk of `chunk` batches is sorted by length, cut
    into batches, and the batch order is shuffled again, so batches stay random but hold texts
    of similar length. Evaluation: one global length sort (padding is nearly zero).
    `pad_multiple` > 1 rounds each batch's width up to a multiple of it (at most the encoded
    width), so a split meets a few dozen shapes instead of one per distinct length.
    """
    n = len(split)
    if shuffle:
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(n)
        span = batch_size * chunk
        order = np.concatenate([c[np.argsort(split.lengths[c], kind="stable")]
                                for c in np.array_split(order, range(span, n, span))])
    else:
        order = np.argsort(split.lengths, kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    for idx in batches:
        longest = int(split.lengths[idx].max())
        if pad_multiple > 1:
            longest = min(-(-longest // pad_multiple) * pad_multiple, split.ids.shape[1])
        yield split.ids[idx, :longest], split.lengths[idx], split.labels[idx], idx
