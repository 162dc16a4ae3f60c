"""Plain dataclass configuration, loaded from TOML and validated strictly.

Unknown keys, wrong types and impossible values are errors that name the key, so a typo in
a config file can never silently fall back to a default.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
MODEL_NAMES = ("rnn", "attn_rnn", "transformer")
DATASETS = ("imdb", "ag_news")
# the random sources a seed can drive (`vary`): initialisation (and dropout) stream, batch order,
# and the stratified validation split carved from train
SOURCES = ("init", "order", "split")
# config keys that decide no unit's result: which units a folder holds, and labels of the run that made them
UNIT_LISTS = ("datasets", "models", "seeds")
RUN_LABELS = ("description", "reference", "jobs")
DEFAULT_VARY = ["init", "order"]   # today's behaviour: the split stays at data.split_seed
FIXED_SEED = 0                     # the init / order seed of every unit when that source is not varied
# what a pre-registered claim may name: unbiased measures only (test accuracy; the overfitting gap at
# matched epochs, or at the last epoch every unit of both models reached)
CLAIM_METRICS = ("test_acc", "gap_matched", "gap_common")
BIASED_METRICS = {
    "best_val_acc": "validation accuracy selected the stopping epoch (and any tuning), so it is optimistic; "
                    "declare test_acc",
    "gap_acc": "the gap at each model's own stopping epoch mostly measures when training stopped; "
               "declare gap_matched",
}


class BenchError(Exception):
    """A known, user-fixable problem: the CLI prints its message on one line and exits 2."""


DEFAULT_POOLING = {"transformer": "mean"}  # every other kind reads "last" when pooling is unset


@dataclass
class DataConfig:
    vocab_size: int = 20000      # word-level vocabulary, trained on the train split only
    max_length: int = 256        # tokens kept per text, taken as `truncate` says
    min_frequency: int = 2       # a word must occur this often in train to get an id
    lowercase: bool = True
    val_fraction: float = 0.1    # stratified validation split carved from train
    split_seed: int = 0          # the validation split is the same for every model and seed
    train_subset: int = 0        # use only this many training rows (0 = all), for quick budgets
    train_eval_size: int = 2000  # eval-mode train subset that measures the overfitting gap
    val_groups: str = ""         # "" = texts drawn at random; "movie" (IMDB): every review of a movie on one side
                                 # of the split, as test's movies are all unseen in train (see bench/data.py)
    truncate: str = "head"       # which max_length tokens a longer text keeps: "head" (its first), "tail" (its
                                 # last: a review's verdict tends to close it) or "head_tail" (the first quarter
                                 # and the last three quarters, as Sun et al. 2019 found best for IMDB)


@dataclass
class DatasetConfig:
    """How to read a dataset that is not built in: [dataset.NAME] in a config (NAME is its name in
    file names and the report), or made by `--dataset FILE_OR_HUB_ID` (see `use_dataset`)."""
    source: str = ""             # hub id (org/name), a .csv / .jsonl / .parquet file, a folder of <split>.<ext>
                                 # files, or a DatasetDict.save_to_disk folder ("" = NAME, as a hub id)
    subset: str = ""             # the hub dataset's configuration, when it has several (e.g. nyu-mll/glue's "sst2")
    text_column: str = "text"
    label_column: str = "label"
    train_split: str = "train"   # a single file is this split
    test_split: str = ""         # "" = the source's "test" split, else one carved from train (test_fraction)
    test_fraction: float = 0.2   # share of train carved (stratified, fixed seed) when there is no test split
    label_names: list[str] = field(default_factory=list)  # by label id ([] = the ClassLabel names, else "0", "1", ...);
                                 # string labels are mapped to their position here
    title: str = ""              # the report's name for it ("" = the hub id, or NAME for local files)


DATASET_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")    # org/name


def is_local_source(source: str) -> bool:
    """Whether a dataset source names a local file or folder (else a Hugging Face hub id)."""
    return (Path(source).expanduser().exists() or source.lower().endswith(DATASET_SUFFIXES)
            or source.startswith(("/", ".", "~")))


def dataset_name(source: str) -> str:
    """The name a hub id or a path runs under (file names, report): 'org/name' → 'org--name', a
    file → its stem, a folder → its name; made safe for file names (`check_name`): other characters
    become '_', at most 64."""
    if is_local_source(source):
        path = Path(source).expanduser().resolve()
        base = path.stem if path.suffix.lower() in DATASET_SUFFIXES else path.name
    else:
        base = source.replace("/", "--")
    name = re.sub(r"_{2,}", "_", re.sub(r"[^A-Za-z0-9_-]", "_", base)).strip("_-")
    return name[:64].rstrip("_-") or "dataset"


def use_dataset(cfg: "Config", value: str) -> str:
    """The name `value` (a --dataset item or a `datasets` entry) runs under: a built-in name or a
    [dataset.NAME] table's NAME as is; a local path or an org/name hub id gets a [dataset.NAME]
    entry (named by `dataset_name`, the path made absolute), so how to read it travels with the
    config (config.json, worker processes)."""
    if value in DATASETS or value in cfg.dataset:
        return value
    local = is_local_source(value)
    if not local and not HUB_ID.fullmatch(value):
        raise BenchError(f"unknown dataset '{value}' (built in: {', '.join(DATASETS)}; else a CSV / JSONL / parquet "
                         f"file or folder, a hub id such as stanfordnlp/sst2, or a [dataset.{value}] table)")
    source = str(Path(value).expanduser().resolve()) if local else value
    name = dataset_name(value)
    if name in DATASETS or name in cfg.dataset and cfg.dataset[name].source != source:
        raise BenchError(f"dataset '{value}' would run as '{name}', a name already taken; describe it in a "
                         "[dataset.NAME] table with another NAME")
    cfg.dataset.setdefault(name, DatasetConfig(source=source))
    return name


def set_columns(cfg: "Config", text_column: str | None, label_column: str | None) -> None:
    """--text-column / --label-column: set on every non-built-in dataset of the run."""
    if not text_column and not label_column:
        return
    names = [d for d in cfg.datasets if d in cfg.dataset]
    if not names:
        raise BenchError("--text-column / --label-column need a --dataset that is a file or a hub dataset "
                         f"(the built-in {', '.join(DATASETS)} have their own columns)")
    for name in names:
        spec = cfg.dataset[name]
        spec.text_column = text_column or spec.text_column
        spec.label_column = label_column or spec.label_column


@dataclass
class ModelConfig:
    kind: str = "rnn"            # "rnn", "transformer", or "tfidf" (the linear reference floor)
    embed_dim: int = 96
    hidden_dim: int = 128        # RNN hidden size per direction; Transformer feed-forward width
    layers: int = 1
    dropout: float = 0.2
    pooling: str = ""            # rnn: last | mean | max | attention; transformer: mean | cls | max | attention
                                 # ("" = last / mean)
    cell: str = "gru"            # rnn only: gru | lstm
    bidirectional: bool = False  # rnn only
    attn_dim: int = 8            # additive-attention width (pooling = "attention")
    heads: int = 4               # transformer only
    lr: float = 0.0              # learning rate for this model; 0 = use train.lr
    lr_schedule: str = ""        # this model's none | linear | cosine; "" = use train.lr_schedule
    warmup_fraction: float = 0.0  # this model's warm-up share of the steps; 0 = use train.warmup_fraction
    embed_dropout: float = 0.0   # drop whole word types from the embedding matrix per batch (AWD-LSTM); 0 = off
    norm_first: bool = False     # transformer only: pre-LayerNorm layers (False = post-LN, PyTorch's default)
    positions: str = "learned"   # transformer only: learned | sinusoidal (fixed sin/cos table, no parameters)
    attention_dropout: float = -1.0  # transformer only: dropout on the attention weights; -1 = `dropout` (PyTorch's way)
    embed_init: float = 1.0      # std of the token (and learned position) embeddings at initialisation: PyTorch's
                                 # N(0, 1) draw scaled, so every other weight draws as before (BERT / GPT: 0.02)

    def __post_init__(self) -> None:
        # the pooling default depends on the kind, so it is resolved here, once, when the section is built
        self.pooling = self.pooling or DEFAULT_POOLING.get(self.kind, "last")

    def learning_rate(self, train: "TrainConfig") -> float:
        """This model's own learning rate, else the shared one."""
        return self.lr or train.lr

    def train_config(self, train: "TrainConfig") -> "TrainConfig":
        """`train` with this model's own lr, lr_schedule and warmup_fraction where it sets them: the
        one place the per-model overrides are resolved, so a Transformer can warm up and decay while
        the GRUs keep the shared schedule."""
        return dataclasses.replace(train, lr=self.learning_rate(train),
                                   lr_schedule=self.lr_schedule or train.lr_schedule,
                                   warmup_fraction=self.warmup_fraction or train.warmup_fraction)


@dataclass
class TrainConfig:
    epochs: int = 3
    batch_size: int = 64
    eval_batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    lr_schedule: str = "none"    # none | linear | cosine (with warmup_fraction warm-up)
    warmup_fraction: float = 0.05
    patience: int = 2            # early stopping: epochs without a better select_on value before stopping
    bucket_chunk: int = 50       # batches per length-sorted chunk (bigger = less padding)
    amp: bool = True             # CUDA only: bf16 autocast where supported, else fp16 + scaler
    threads: int = 0             # CPU threads for torch (0 = torch's default)
    flush_denormal: bool = True  # CPU: flush subnormal floats to zero (last-state GRU gradients decay into them)
    decay_all: bool = True       # weight decay on every parameter; False: only matrices and embeddings (ndim >= 2),
                                 # not biases or LayerNorm weights (nanoGPT's rule)
    select_on: str = "val_loss"  # the validation metric early stopping and the kept epoch follow: val_loss (lowest)
                                 # or val_acc (highest; ties keep the earlier epoch)
    pad_multiple: int = 0        # round each batch's length up to a multiple of this many tokens (0 = the longest
                                 # text in it): fewer distinct shapes for kernels that plan per shape (CUDA attention)


SELECT_ON = {"val_loss": "validation loss", "val_acc": "validation accuracy"}  # train.select_on's choices, in words


@dataclass
class ClaimConfig:
    """A pre-registered claim: model A against model B, one hypothesis per metric, each with the
    direction in which A is claimed better. Verdicts come from this family alone (Holm within it,
    across the run's datasets); every other comparison is exploratory."""
    statement: str = "Adding attention pooling to a GRU lifts accuracy and reduces overfitting."
    model_a: str = "attn_rnn"    # the challenger
    model_b: str = "rnn"         # the baseline
    metrics: dict[str, str] = field(default_factory=lambda: {"test_acc": "higher", "gap_matched": "lower"})
    alpha: float = 0.05          # family-wise error rate of the confirmatory family (Holm)

    def hash(self) -> str:
        """A short hash of the claim as declared, stored in every unit record."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class UnitSeeds:
    """The seeds of one unit's random sources (see `unit_seeds`)."""
    init: int    # model initialisation and the dropout stream (bench.models.build_for_unit)
    order: int   # batch order (bench.train.fit's order_seed)
    split: int   # the stratified validation split (bench.data.split_for_seed)


def unit_seeds(vary: list[str] | tuple[str, ...], seed: int, split_seed: int = 0) -> UnitSeeds:
    """Map a unit's seed to the seed of each random source: a varied source takes the unit's seed,
    a fixed one a constant — FIXED_SEED for init and order, `split_seed` (data.split_seed) for the
    split. The fixed values are constants, not "the config's first seed", so that every invocation
    writing into one folder (with --seeds lists that differ) agrees on them."""
    return UnitSeeds(init=seed if "init" in vary else FIXED_SEED,
                     order=seed if "order" in vary else FIXED_SEED,
                     split=seed if "split" in vary else split_seed)


@dataclass
class Config:
    budget: str = "quick"
    description: str = ""        # printed at the start of a run (e.g. the expected wall time)
    datasets: list[str] = field(default_factory=lambda: ["imdb"])
    models: list[str] = field(default_factory=lambda: list(MODEL_NAMES))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    reference: str = ""          # if set, statistics compare every model with this one (ablations)
    jobs: int = 1                # units trained at once in worker processes (0 = auto: from cores / GPUs)
    vary: list[str] = field(default_factory=lambda: list(DEFAULT_VARY))  # sources each seed varies (SOURCES)
    claim: ClaimConfig | None = None  # the pre-registered claim ([claim]); None: the default claim, not declared
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model: dict[str, ModelConfig] = field(default_factory=dict)
    dataset: dict[str, DatasetConfig] = field(default_factory=dict)  # [dataset.NAME]: datasets not built in

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if not out["dataset"]:  # no such table: config.json stays as it was before [dataset.NAME] existed
            del out["dataset"]
        return out

    def unit_hash(self, model_name: str) -> str:
        """Hash of everything that decides one model's result except the seed and dataset."""
        blob = {"data": hashed_fields(self.data), "train": hashed_fields(self.train),
                "model": hashed_fields(self.model[model_name])}
        if sorted(self.vary) != sorted(DEFAULT_VARY):  # only then, so hashes made before `vary` existed hold
            blob["vary"] = sorted(self.vary)
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]

    def unit_seeds(self, seed: int) -> UnitSeeds:
        """The init, order and split seeds of the unit with this seed (see `unit_seeds`)."""
        return unit_seeds(self.vary, seed, self.data.split_seed)

    def claim_hash(self) -> str | None:
        """The declared claim's hash (None when the config declares none)."""
        return self.claim.hash() if self.claim is not None else None

    def effective_claim(self) -> ClaimConfig:
        """The declared claim, else the default one."""
        return self.claim if self.claim is not None else ClaimConfig()


# data.val_groups' choices, each with the datasets whose texts' groups bench knows (bench.data.MOVIE_FILES)
VAL_GROUPS = {"": (), "movie": ("imdb",)}

# data.truncate's choices, in words: which of a longer text's tokens are kept (bench.data.keep_tokens)
TRUNCATE = {"head": "the first {n}", "tail": "the last {n}", "head_tail": "the first {h} and the last {t}"}


def truncation_words(data: DataConfig) -> str:
    """Which tokens a longer text keeps, for the report: "the first 128", "the first 32 and the last 96"."""
    head = head_tokens(data.max_length, data.truncate)
    return TRUNCATE[data.truncate].format(n=data.max_length, h=head, t=data.max_length - head)


def cut_words(data: DataConfig) -> str:
    """A text's token budget in words: "128 tokens", or with a truncation other than the head's,
    "128 tokens (the first 32 and the last 96)"."""
    return f"{data.max_length} tokens" + ("" if data.truncate == "head" else f" ({truncation_words(data)})")


def head_tokens(max_length: int, truncate: str) -> int:
    """How many of the kept tokens come from a longer text's start (the rest come from its end)."""
    return {"head": max_length, "tail": 0, "head_tail": max_length // 4}[truncate]

# fields added after results were committed, per section: left out of hashes while at their default,
# so the hashes of units (and tuning studies) made before they existed hold, as `vary` does
LATE_FIELDS = {ModelConfig: ("lr_schedule", "warmup_fraction", "embed_dropout", "norm_first", "positions",
                            "attention_dropout", "embed_init"),
               TrainConfig: ("decay_all", "select_on", "pad_multiple"),
               DataConfig: ("val_groups", "truncate")}


def dotted(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as one flat dict with dotted keys (`train.lr`, `model.rnn.dropout`)."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, sub in value.items():
        out.update(dotted(sub, f"{prefix}.{key}" if prefix else str(key)))
    return out


def late_defaults(cls: type) -> dict[str, Any]:
    """A section class's late fields with their defaults: what a section stored before they existed meant."""
    default = cls()
    return {k: getattr(default, k) for k in LATE_FIELDS[cls]}


def hashed_fields(section: ModelConfig | TrainConfig | DataConfig) -> dict[str, Any]:
    """A section's fields as hashed: asdict, less any late field still at its default."""
    late = late_defaults(type(section))
    return {k: v for k, v in dataclasses.asdict(section).items() if k not in late or v != late[k]}


def _check_type(value: Any, hint: Any, key: str) -> Any:
    origin = get_origin(hint)
    if origin is list:
        (item,) = get_args(hint)
        if not isinstance(value, list):
            raise BenchError(f"config key '{key}' must be a list, got {value!r}")
        return [_check_type(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = get_args(hint)
        if not isinstance(value, dict):
            raise BenchError(f"config key '{key}' must be a table, got {value!r}")
        return {k: _check_type(v, item, f"{key}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise BenchError(f"config key '{key}' must be {hint.__name__}, got {value!r}")
    return value


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise BenchError(f"config key '{prefix.rstrip('.')}' must be a table")
    hints = get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        if key not in hints:
            known = ", ".join(hints)
            raise BenchError(f"unknown config key '{prefix}{key}' (known: {known})")
        values[key] = _check_type(value, hints[key], prefix + key)
    return cls(**values)  # built in one call, so __post_init__ sees every key


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise BenchError(f"config key '{key}' must be positive, got {value}")


SAFE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?")
MAX_SEED = 2**32 - 1   # NumPy's seed range
MAX_EPOCHS = 10_000


def check_name(name: Any, what: str) -> None:
    """A name that becomes part of a file or folder name (model, budget): letters, digits, '_' and
    '-', starting and ending with a letter or digit, without '__' (the unit-file separator)."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or "__" in name:
        raise BenchError(f"{what} {name!r} is not a safe name (letters, digits, '_' and '-', at most 64, starting "
                         "and ending with a letter or digit, no '__'): it becomes part of file names")


def _check_finite(cfg: Config) -> None:
    """Every float setting is a finite number (inf / nan in TOML pass every range check otherwise)."""
    sections = [("data.", cfg.data), ("train.", cfg.train), *((f"model.{n}.", m) for n, m in cfg.model.items())]
    if cfg.claim is not None:
        sections.append(("claim.", cfg.claim))
    for prefix, section in sections:
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise BenchError(f"config key '{prefix}{f.name}' must be a finite number, got {value}")


def _no_duplicates(key: str, values: list[Any]) -> None:
    if len(set(values)) != len(values):
        raise BenchError(f"config key '{key}' has duplicates: {values}")


def validate(cfg: Config) -> Config:
    """Reject impossible values with a message naming the key; changes nothing (returns `cfg`)."""
    check_name(cfg.budget, "config key 'budget'")
    for name in cfg.model:
        check_name(name, "model name")
    _check_finite(cfg)
    if not cfg.datasets:
        raise BenchError("config key 'datasets' must list at least one dataset")
    _no_duplicates("datasets", cfg.datasets)
    _no_duplicates("models", cfg.models)
    _validate_datasets(cfg)
    if not cfg.models:
        raise BenchError("config key 'models' must list at least one model")
    for name in cfg.models:
        if name not in cfg.model:
            raise BenchError(f"model '{name}' has no [model.{name}] section in the config "
                             f"(defined: {', '.join(cfg.model) or 'none'})")
    if cfg.reference and cfg.reference not in cfg.models:
        raise BenchError(f"config key 'reference' names '{cfg.reference}', which is not in 'models'")
    if not cfg.seeds:
        raise BenchError("config key 'seeds' must list at least one seed")
    if cfg.jobs < 0:
        raise BenchError(f"config key 'jobs' must be >= 0 (0 = auto), got {cfg.jobs}")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise BenchError(f"config key 'seeds' has duplicates: {cfg.seeds}")
    for seed in cfg.seeds:
        if not 0 <= seed <= MAX_SEED:
            raise BenchError(f"seed {seed} is outside 0…{MAX_SEED} (2**32 − 1)")
    if not 0 <= cfg.data.split_seed <= MAX_SEED:
        raise BenchError(f"config key 'data.split_seed' must be in 0…{MAX_SEED}, got {cfg.data.split_seed}")
    if cfg.train.epochs > MAX_EPOCHS:
        raise BenchError(f"config key 'train.epochs' must be at most {MAX_EPOCHS:,}, got {cfg.train.epochs}")
    _validate_vary(cfg.vary)
    if cfg.claim is not None:
        _validate_claim(cfg.claim, cfg)
    d, t = cfg.data, cfg.train
    for key in ("vocab_size", "max_length", "min_frequency", "train_eval_size"):
        _positive(f"data.{key}", getattr(d, key))
    if d.vocab_size < 10:
        raise BenchError(f"config key 'data.vocab_size' must be at least 10, got {d.vocab_size}")
    if not 0 < d.val_fraction < 0.5:
        raise BenchError(f"config key 'data.val_fraction' must be in (0, 0.5), got {d.val_fraction}")
    if d.train_subset < 0:
        raise BenchError(f"config key 'data.train_subset' must be >= 0, got {d.train_subset}")
    if d.val_groups not in VAL_GROUPS:
        raise BenchError(f"config key 'data.val_groups' must be one of {', '.join(map(repr, VAL_GROUPS))}, "
                         f"got '{d.val_groups}'")
    if d.truncate not in TRUNCATE:
        raise BenchError(f"config key 'data.truncate' must be one of {', '.join(map(repr, TRUNCATE))}, "
                         f"got '{d.truncate}'")
    ungrouped = [name for name in cfg.datasets if d.val_groups and name not in VAL_GROUPS[d.val_groups]]
    if ungrouped:
        raise BenchError(f"data.val_groups = '{d.val_groups}' is known for {', '.join(VAL_GROUPS[d.val_groups])} "
                         f"only, not '{ungrouped[0]}': run that dataset from a config without it")
    for key in ("epochs", "batch_size", "eval_batch_size", "lr", "bucket_chunk"):
        _positive(f"train.{key}", getattr(t, key))
    for key in ("weight_decay", "grad_clip", "patience", "threads", "pad_multiple"):
        if getattr(t, key) < 0:
            raise BenchError(f"config key 'train.{key}' must be >= 0, got {getattr(t, key)}")
    if t.lr_schedule not in ("none", "linear", "cosine"):
        raise BenchError(f"config key 'train.lr_schedule' must be none, linear or cosine, got '{t.lr_schedule}'")
    if not 0 <= t.warmup_fraction < 1:
        raise BenchError(f"config key 'train.warmup_fraction' must be in [0, 1), got {t.warmup_fraction}")
    if t.select_on not in SELECT_ON:
        raise BenchError(f"config key 'train.select_on' must be {' or '.join(SELECT_ON)}, got '{t.select_on}'")
    for name, m in cfg.model.items():
        p = f"model.{name}."
        for key in ("embed_dim", "hidden_dim", "layers", "attn_dim", "heads"):
            _positive(p + key, getattr(m, key))
        if not 0 <= m.dropout < 1:
            raise BenchError(f"config key '{p}dropout' must be in [0, 1), got {m.dropout}")
        if m.lr < 0:
            raise BenchError(f"config key '{p}lr' must be >= 0, got {m.lr}")
        if m.lr_schedule not in ("", "none", "linear", "cosine"):
            raise BenchError(f"config key '{p}lr_schedule' must be none, linear or cosine (or \"\" for "
                             f"train.lr_schedule), got '{m.lr_schedule}'")
        if not 0 <= m.warmup_fraction < 1:
            raise BenchError(f"config key '{p}warmup_fraction' must be in [0, 1) (0 = train.warmup_fraction), "
                             f"got {m.warmup_fraction}")
        if not 0 <= m.embed_dropout < 1:
            raise BenchError(f"config key '{p}embed_dropout' must be in [0, 1), got {m.embed_dropout}")
        if m.attention_dropout != -1 and not 0 <= m.attention_dropout < 1:
            raise BenchError(f"config key '{p}attention_dropout' must be in [0, 1) (or -1 for '{p}dropout'), "
                             f"got {m.attention_dropout}")
        if not m.embed_init > 0:
            raise BenchError(f"config key '{p}embed_init' must be above 0, got {m.embed_init}")
        if m.positions not in ("learned", "sinusoidal"):
            raise BenchError(f"config key '{p}positions' must be learned or sinusoidal, got '{m.positions}'")
        if m.kind == "rnn":
            if m.cell not in ("gru", "lstm"):
                raise BenchError(f"config key '{p}cell' must be gru or lstm, got '{m.cell}'")
            if m.pooling not in ("last", "mean", "max", "attention"):
                raise BenchError(f"config key '{p}pooling' must be last, mean, max or attention, got '{m.pooling}'")
        elif m.kind == "transformer":
            if m.pooling not in ("mean", "cls", "max", "attention"):
                raise BenchError(f"config key '{p}pooling' must be mean, cls, max or attention for a transformer, "
                                 f"got '{m.pooling}'")
            if m.embed_dim % m.heads:
                raise BenchError(f"config key '{p}heads' ({m.heads}) must divide '{p}embed_dim' ({m.embed_dim})")
        elif m.kind != "tfidf":
            raise BenchError(f"config key '{p}kind' must be rnn, transformer or tfidf, got '{m.kind}'")
    return cfg


def _validate_datasets(cfg: Config) -> None:
    for name in cfg.datasets:
        if name not in DATASETS and name not in cfg.dataset:
            raise BenchError(f"unknown dataset '{name}' (built in: {', '.join(DATASETS)}; any other needs a "
                             f"[dataset.{name}] table, or --dataset FILE_OR_HUB_ID)")
    for name, d in cfg.dataset.items():
        p = f"dataset.{name}."
        if name in DATASETS:
            raise BenchError(f"config table 'dataset.{name}': '{name}' is built in; give the table another name")
        check_name(name, "dataset name")
        if not d.source:
            raise BenchError(f"config key '{p}source' must name a hub id, a file or a folder")
        for key in ("text_column", "label_column", "train_split"):
            if not getattr(d, key):
                raise BenchError(f"config key '{p}{key}' must not be empty")
        if d.text_column == d.label_column:
            raise BenchError(f"config keys '{p}text_column' and '{p}label_column' are both '{d.text_column}'")
        if not 0 < d.test_fraction < 1:
            raise BenchError(f"config key '{p}test_fraction' must be in (0, 1), got {d.test_fraction}")
        if d.label_names and (len(d.label_names) < 2 or len(set(d.label_names)) != len(d.label_names)):
            raise BenchError(f"config key '{p}label_names' must list two or more distinct names, got {d.label_names}")


def _validate_vary(vary: list[str]) -> None:
    unknown = [v for v in vary if v not in SOURCES]
    if unknown:
        raise BenchError(f"config key 'vary' names '{unknown[0]}' (choose from {', '.join(SOURCES)})")
    if not vary or len(set(vary)) != len(vary):
        raise BenchError(f"config key 'vary' must list each of {', '.join(SOURCES)} at most once, and at least "
                         f"one, got {vary}")


def _validate_claim(claim: ClaimConfig, cfg: Config) -> None:
    for key in ("model_a", "model_b"):
        name = getattr(claim, key)
        if name not in cfg.model:
            raise BenchError(f"config key 'claim.{key}' names '{name}', which has no [model.{name}] section")
    if claim.model_a == claim.model_b:
        raise BenchError(f"config keys 'claim.model_a' and 'claim.model_b' must differ, both are '{claim.model_a}'")
    if not claim.metrics:
        raise BenchError("config key 'claim.metrics' must name at least one metric, e.g. {test_acc = \"higher\"}")
    for metric, direction in claim.metrics.items():
        if metric in BIASED_METRICS:
            raise BenchError(f"config key 'claim.metrics.{metric}' cannot be confirmatory: {BIASED_METRICS[metric]}")
        if metric not in CLAIM_METRICS:
            raise BenchError(f"config key 'claim.metrics.{metric}': unknown metric (choose from "
                             f"{', '.join(CLAIM_METRICS)})")
        if direction not in ("higher", "lower"):
            raise BenchError(f"config key 'claim.metrics.{metric}' must be \"higher\" or \"lower\" (the direction "
                             f"in which {claim.model_a} is claimed better), got {direction!r}")
    if not 0 < claim.alpha < 1:
        raise BenchError(f"config key 'claim.alpha' must be in (0, 1), got {claim.alpha}")


def from_dict(raw: dict[str, Any]) -> Config:
    """Build a Config from parsed TOML; sections are checked key by key."""
    raw = dict(raw)
    data = _build(DataConfig, raw.pop("data", {}), "data.")
    train = _build(TrainConfig, raw.pop("train", {}), "train.")
    claim = raw.pop("claim", None)  # absent (or null in an old config.json): no claim declared
    claim = _build(ClaimConfig, claim, "claim.") if claim is not None else None
    models = raw.pop("model", {})
    if not isinstance(models, dict):
        raise BenchError("config key 'model' must be a table of [model.<name>] sections")
    tables = raw.pop("dataset", {})
    if not isinstance(tables, dict):
        raise BenchError("config key 'dataset' must be a table of [dataset.<name>] sections")
    cfg = _build(Config, raw, "")
    cfg.data, cfg.train, cfg.claim = data, train, claim
    cfg.model = {name: _build(ModelConfig, m, f"model.{name}.") for name, m in models.items()}
    cfg.dataset = {name: _dataset_table(name, t) for name, t in tables.items()}
    cfg.datasets = [use_dataset(cfg, d) for d in cfg.datasets]  # a hub id or path listed directly
    return cfg


def _dataset_table(name: str, raw: dict[str, Any]) -> DatasetConfig:
    """A [dataset.NAME] table, its defaults resolved: the source is NAME when unset; a local path is
    made absolute (so worker processes and config.json agree on it)."""
    d = _build(DatasetConfig, raw, f"dataset.{name}.")
    d.source = d.source or name
    if is_local_source(d.source):
        d.source = str(Path(d.source).expanduser().resolve())
    return d


def from_json(raw: dict[str, Any]) -> Config:
    """A Config back from the `config.json` a run stored (parsed and validated like a TOML file)."""
    return validate(from_dict(raw))


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Parse a TOML file; a missing or unparsable file is a one-line BenchError naming it."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{what} not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"{what} {path} is not valid TOML: {exc}") from None


def load(path: str | Path) -> Config:
    """Read and validate a TOML config file."""
    return validate(from_dict(read_toml(path)))


def budget_path(budget: str) -> Path:
    path = CONFIG_DIR / f"{budget}.toml"
    if not path.is_file() or not tomllib.loads(path.read_text()).get("budget"):
        names = sorted(p.stem for p in CONFIG_DIR.glob("*.toml") if tomllib.loads(p.read_text()).get("budget"))
        raise BenchError(f"unknown budget '{budget}' (choose from {', '.join(names)})")
    return path
