"""Plain dataclass configuration, loaded from TOML and validated strictly.

Unknown keys, wrong types and impossible values are errors that name the key, so a typo in
a config file can never silently fall back to a default.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
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
    max_length: int = 256        # tokens kept per text (head truncation)
    min_frequency: int = 2       # a word must occur this often in train to get an id
    lowercase: bool = True
    val_fraction: float = 0.1    # stratified validation split carved from train
    split_seed: int = 0          # the validation split is the same for every model and seed
    train_subset: int = 0        # use only this many training rows (0 = all), for quick budgets
    train_eval_size: int = 2000  # eval-mode train subset that measures the overfitting gap


@dataclass
class ModelConfig:
    kind: str = "rnn"            # "rnn", "transformer", or "tfidf" (the linear reference floor)
    embed_dim: int = 96
    hidden_dim: int = 128        # RNN hidden size per direction; Transformer feed-forward width
    layers: int = 1
    dropout: float = 0.2
    pooling: str = ""            # rnn: last | mean | max | attention; transformer: mean | cls ("" = last / mean)
    cell: str = "gru"            # rnn only: gru | lstm
    bidirectional: bool = False  # rnn only
    attn_dim: int = 8            # additive-attention width (pooling = "attention")
    heads: int = 4               # transformer only
    lr: float = 0.0              # learning rate for this model; 0 = use train.lr

    def __post_init__(self) -> None:
        # the pooling default depends on the kind, so it is resolved here, once, when the section is built
        self.pooling = self.pooling or DEFAULT_POOLING.get(self.kind, "last")

    def learning_rate(self, train: "TrainConfig") -> float:
        """This model's own learning rate, else the shared one."""
        return self.lr or train.lr


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
    patience: int = 2            # early stopping on validation loss
    bucket_chunk: int = 50       # batches per length-sorted chunk (bigger = less padding)
    amp: bool = True             # CUDA only: bf16 autocast where supported, else fp16 + scaler
    threads: int = 0             # CPU threads for torch (0 = torch's default)
    flush_denormal: bool = True  # CPU: flush subnormal floats to zero (last-state GRU gradients decay into them)


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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def unit_hash(self, model_name: str) -> str:
        """Hash of everything that decides one model's result except the seed and dataset."""
        blob = {"data": dataclasses.asdict(self.data), "train": dataclasses.asdict(self.train),
                "model": dataclasses.asdict(self.model[model_name])}
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


def validate(cfg: Config) -> Config:
    """Reject impossible values with a message naming the key; changes nothing (returns `cfg`)."""
    for name in cfg.datasets:
        if name not in DATASETS:
            raise BenchError(f"unknown dataset '{name}' (choose from {', '.join(DATASETS)})")
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
    for key in ("epochs", "batch_size", "eval_batch_size", "lr", "bucket_chunk"):
        _positive(f"train.{key}", getattr(t, key))
    for key in ("weight_decay", "grad_clip", "patience", "threads"):
        if getattr(t, key) < 0:
            raise BenchError(f"config key 'train.{key}' must be >= 0, got {getattr(t, key)}")
    if t.lr_schedule not in ("none", "linear", "cosine"):
        raise BenchError(f"config key 'train.lr_schedule' must be none, linear or cosine, got '{t.lr_schedule}'")
    if not 0 <= t.warmup_fraction < 1:
        raise BenchError(f"config key 'train.warmup_fraction' must be in [0, 1), got {t.warmup_fraction}")
    for name, m in cfg.model.items():
        p = f"model.{name}."
        for key in ("embed_dim", "hidden_dim", "layers", "attn_dim", "heads"):
            _positive(p + key, getattr(m, key))
        if not 0 <= m.dropout < 1:
            raise BenchError(f"config key '{p}dropout' must be in [0, 1), got {m.dropout}")
        if m.lr < 0:
            raise BenchError(f"config key '{p}lr' must be >= 0, got {m.lr}")
        if m.kind == "rnn":
            if m.cell not in ("gru", "lstm"):
                raise BenchError(f"config key '{p}cell' must be gru or lstm, got '{m.cell}'")
            if m.pooling not in ("last", "mean", "max", "attention"):
                raise BenchError(f"config key '{p}pooling' must be last, mean, max or attention, got '{m.pooling}'")
        elif m.kind == "transformer":
            if m.pooling not in ("mean", "cls"):
                raise BenchError(f"config key '{p}pooling' must be mean or cls for a transformer, got '{m.pooling}'")
            if m.embed_dim % m.heads:
                raise BenchError(f"config key '{p}heads' ({m.heads}) must divide '{p}embed_dim' ({m.embed_dim})")
        elif m.kind != "tfidf":
            raise BenchError(f"config key '{p}kind' must be rnn, transformer or tfidf, got '{m.kind}'")
    return cfg


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
    cfg = _build(Config, raw, "")
    cfg.data, cfg.train, cfg.claim = data, train, claim
    cfg.model = {name: _build(ModelConfig, m, f"model.{name}.") for name, m in models.items()}
    return cfg


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
