"""Optuna search spaces: `configs/search.toml` parsed strictly into per-model spaces plus the
tuning settings, a trial's suggestions, and the sampled parameters applied to a Config.

Each key of a model's table is a field of its [model.<name>] section or of [train]; a key both
have is the model's own (`lr`, `lr_schedule`, `warmup_fraction`), so tuning one model's schedule
leaves the others' alone. Tuning never changes data settings (the encoded data is shared by
every trial), so data.max_length is not tunable.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from bench.config import (CONFIG_DIR, MODEL_NAMES, BenchError, Config, ModelConfig, TrainConfig, read_toml,
                          validate)

SEARCH_PATH = CONFIG_DIR / "search.toml"
# Every trial trains with this seed, so trials differ by configuration only; the seed stage's seed 0 of
# the best configuration re-runs the best trial, and its other seeds show how much of the best trial's
# value was that seed's luck.
TRIAL_SEED = 0
# With settings.trial_seed = "per_trial", trial n trains with seed PER_TRIAL_SEED0 + n instead: a fixed seed
# lets the sampler chase configurations that are lucky for that one seed (their luck is shared by
# neighbouring configurations: same initialisation, same batch order), while seeds that vary leave it
# noise it averages out. Far from the seed stage's 0, 1, 2, ... and the re-ranking's 1000, 1001, ...
PER_TRIAL_SEED0 = 10_000
TRIAL_SEEDS = ("fixed", "per_trial")
PRUNERS = ("median", "hyperband")
SPEC_TYPES = ("float", "int", "categorical")
# fields a trial may not change: kind decides the model class, epochs/threads/... are settings
UNTUNABLE = {"kind", "epochs", "threads", "eval_batch_size", "amp", "patience", "select_on"}


@dataclass
class TuneSettings:
    trials: int = 30
    timeout_s: float = 0.0
    pruner: str = "median"
    param_cap: int = 2_500_000
    param_floor: int = 0       # fewer trainable parameters: pruned before training (0: none), so tuned arms stay
                               # within a band of one another instead of only under the cap
    train_subset: int = 0
    epochs: int = 3
    sampler_seed: int = 0
    trial_seed: str = "fixed"  # "fixed": every trial trains with TRIAL_SEED; "per_trial": PER_TRIAL_SEED0 + number
    seeds_per_trial: int = 1   # a trial's value is the mean best-epoch validation accuracy over this many seeds
    startup_trials: int = 5
    heartbeat_s: int = 60
    grace_s: int = 180
    max_retry: int = 2


@dataclass
class SearchSpace:
    settings: TuneSettings = field(default_factory=TuneSettings)
    spaces: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # model -> field -> spec
    source: str = ""

    def space(self, model_name: str) -> dict[str, dict[str, Any]]:
        if model_name not in self.spaces:
            raise BenchError(f"search space file {self.source} has no [{model_name}] table "
                             f"(defined: {', '.join(self.spaces) or 'none'})")
        return self.spaces[model_name]


def _field_hint(key: str) -> tuple[str, Any]:
    """('model' | 'train', type) for a tunable key; ModelConfig wins (so `lr`, `lr_schedule` and
    `warmup_fraction` are the model's own)."""
    m, t = get_type_hints(ModelConfig), get_type_hints(TrainConfig)
    if key in m:
        return "model", m[key]
    if key in t:
        return "train", t[key]
    return "", None


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _validate_spec(key: str, spec: Any) -> dict[str, Any]:
    section, hint = _field_hint(key)
    if key == "max_length":
        raise BenchError(f"search key '{key}' cannot be tuned: data.max_length is fixed because the "
                         "encoded data is shared by every trial")
    if hint is None:
        known = sorted((set(get_type_hints(ModelConfig)) | set(get_type_hints(TrainConfig))) - UNTUNABLE)
        raise BenchError(f"unknown search key '{key}' (known: {', '.join(known)})")
    if key in UNTUNABLE:
        raise BenchError(f"search key '{key}' cannot be tuned (it is fixed by the config or [settings])")
    if not isinstance(spec, dict):
        raise BenchError(f"search key '{key}' must be a table such as "
                         "{type=\"float\", low=1e-4, high=1e-2, log=true}, got " + repr(spec))
    kind = spec.get("type")
    if kind not in SPEC_TYPES:
        raise BenchError(f"search key '{key}': type must be float, int or categorical, got {kind!r}")
    allowed = {"float": {"type", "low", "high", "log", "step"}, "int": {"type", "low", "high", "log", "step"},
               "categorical": {"type", "choices"}}[kind]
    extra = sorted(set(spec) - allowed)
    if extra:
        raise BenchError(f"search key '{key}': unknown spec field '{extra[0]}' for type {kind} "
                         f"(allowed: {', '.join(sorted(allowed))})")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise BenchError(f"search key '{key}': categorical needs a non-empty 'choices' list")
        for c in choices:
            ok = (isinstance(c, bool) if hint is bool else _is_num(c) if hint is float
                  else isinstance(c, int) and not isinstance(c, bool) if hint is int else isinstance(c, hint))
            if not ok:
                raise BenchError(f"search key '{key}': choice {c!r} is not a valid {hint.__name__}")
        if len(set(map(repr, choices))) != len(choices):
            raise BenchError(f"search key '{key}': duplicate choices {choices}")
        return {"type": kind, "choices": [float(c) if hint is float else c for c in choices]}
    if hint not in (int, float) or (kind == "float" and hint is int) or (kind == "int" and hint is float):
        use = "categorical" if hint not in (int, float) else hint.__name__
        raise BenchError(f"search key '{key}' is a {hint.__name__} field: use type=\"{use}\"")
    for bound in ("low", "high"):
        if bound not in spec:
            raise BenchError(f"search key '{key}': missing '{bound}'")
        if not _is_num(spec[bound]) or (kind == "int" and not isinstance(spec[bound], int)):
            raise BenchError(f"search key '{key}': '{bound}' must be a{'n int' if kind == 'int' else ' number'}, "
                             f"got {spec[bound]!r}")
    low, high = spec["low"], spec["high"]
    if not low < high:
        raise BenchError(f"search key '{key}': empty range, low ({low}) must be below high ({high})")
    log_ = spec.get("log", False)
    if not isinstance(log_, bool):
        raise BenchError(f"search key '{key}': 'log' must be true or false, got {log_!r}")
    if log_ and low <= 0:
        raise BenchError(f"search key '{key}': a log range needs low > 0, got {low}")
    out = {"type": kind, "low": low if kind == "int" else float(low), "high": high if kind == "int" else float(high),
           "log": log_}
    if "step" in spec:
        step = spec["step"]
        if not _is_num(step) or step <= 0 or (kind == "int" and not isinstance(step, int)):
            raise BenchError(f"search key '{key}': 'step' must be a positive {kind}, got {step!r}")
        if log_:
            raise BenchError(f"search key '{key}': 'step' cannot be combined with log=true")
        out["step"] = step
    return out


def parse_search(raw: dict[str, Any], source: str = "<search>") -> SearchSpace:
    raw = dict(raw)
    settings_raw = raw.pop("settings", {})
    if not isinstance(settings_raw, dict):
        raise BenchError("search key 'settings' must be a table")
    hints = get_type_hints(TuneSettings)
    st = TuneSettings()
    for key, value in settings_raw.items():
        if key not in hints:
            raise BenchError(f"unknown search key 'settings.{key}' (known: {', '.join(hints)})")
        hint = hints[key]
        if hint is float and _is_num(value):
            value = float(value)
        if (hint is int and (isinstance(value, bool) or not isinstance(value, int))) or not isinstance(value, hint):
            raise BenchError(f"search key 'settings.{key}' must be {hint.__name__}, got {value!r}")
        setattr(st, key, value)
    for key in ("trials", "param_cap", "heartbeat_s", "grace_s", "startup_trials", "seeds_per_trial"):
        if getattr(st, key) <= 0:
            raise BenchError(f"search key 'settings.{key}' must be positive, got {getattr(st, key)}")
    if st.param_floor >= st.param_cap:
        raise BenchError(f"search key 'settings.param_floor' ({st.param_floor:,}) must be below settings.param_cap "
                         f"({st.param_cap:,})")
    for key in ("timeout_s", "param_floor", "train_subset", "epochs", "max_retry", "sampler_seed"):
        if getattr(st, key) < 0:
            raise BenchError(f"search key 'settings.{key}' must be >= 0, got {getattr(st, key)}")
    if st.pruner not in PRUNERS:
        raise BenchError(f"search key 'settings.pruner' must be median or hyperband, got '{st.pruner}'")
    if st.trial_seed not in TRIAL_SEEDS:
        raise BenchError(f"search key 'settings.trial_seed' must be fixed or per_trial, got '{st.trial_seed}'")
    if st.grace_s <= st.heartbeat_s:
        raise BenchError(f"search key 'settings.grace_s' ({st.grace_s}) must exceed settings.heartbeat_s "
                         f"({st.heartbeat_s})")
    spaces: dict[str, dict[str, dict[str, Any]]] = {}
    for name, table in raw.items():
        if name not in MODEL_NAMES:
            raise BenchError(f"unknown search table '[{name}]' (known: settings, {', '.join(MODEL_NAMES)})")
        if not isinstance(table, dict):
            raise BenchError(f"search key '{name}' must be a table of parameter specs")
        if not table:
            raise BenchError(f"search table '[{name}]' is empty: list at least one parameter")
        spaces[name] = {key: _named(name, key, spec) for key, spec in table.items()}
    return SearchSpace(settings=st, spaces=spaces, source=source)


def trial_seeds(settings: TuneSettings, number: int, fixed: int = TRIAL_SEED) -> list[int]:
    """The seeds trial `number` trains with (settings.seeds_per_trial of them): from `fixed` (TRIAL_SEED
    unless the caller picks another) up, or, with settings.trial_seed = "per_trial", seeds of its own."""
    k = settings.seeds_per_trial
    first = PER_TRIAL_SEED0 + number * k if settings.trial_seed == "per_trial" else fixed
    return [first + j for j in range(k)]


def _named(model: str, key: str, spec: Any) -> dict[str, Any]:
    try:
        return _validate_spec(key, spec)
    except BenchError as exc:  # name the table too: "[attn_rnn] search key 'lr': ..."
        raise BenchError(f"[{model}] {exc}") from None


def load_search(path: str | Path | None = None) -> SearchSpace:
    path = Path(path) if path else SEARCH_PATH
    return parse_search(read_toml(path, "search space file"), str(path))


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for key, spec in space.items():
        if spec["type"] == "categorical":
            out[key] = trial.suggest_categorical(key, spec["choices"])
        elif spec["type"] == "int":
            out[key] = trial.suggest_int(key, spec["low"], spec["high"], step=spec.get("step", 1), log=spec["log"])
        else:
            out[key] = trial.suggest_float(key, spec["low"], spec["high"], step=spec.get("step"), log=spec["log"])
    return out


def _typed_param(key: str, value: Any, hint: Any) -> Any:
    """A trial's value (sampled here, or read back from a storage another worker or version wrote)
    checked against the field's type: an int field takes an int (or an integral float), a float
    field a finite number, a bool or str field exactly that type."""
    import math

    if hint is None or key in UNTUNABLE:
        raise BenchError(f"tuned parameter '{key}' is not a tunable field")
    if hint is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if hint is float and _is_num(value):
        value = float(value)
        if not math.isfinite(value):
            raise BenchError(f"tuned parameter '{key}' must be finite, got {value!r}")
    ok = (isinstance(value, bool) if hint is bool else
          isinstance(value, int) and not isinstance(value, bool) if hint is int else isinstance(value, hint))
    if not ok:
        raise BenchError(f"tuned parameter '{key}' must be {hint.__name__}, got {value!r} "
                         f"({type(value).__name__}); was the study made with another search space?")
    return value


def apply_params(cfg: Config, model_name: str, params: dict[str, Any]) -> Config:
    """A validated copy of `cfg` whose model section and train section carry `params`."""
    new = copy.deepcopy(cfg)
    if model_name not in new.model:
        raise BenchError(f"model '{model_name}' has no [model.{model_name}] section in the config")
    for key, value in params.items():
        section, hint = _field_hint(key)
        value = _typed_param(key, value, hint)
        if section == "model":
            setattr(new.model[model_name], key, value)
        elif section == "train":
            setattr(new.train, key, value)
        else:
            raise BenchError(f"unknown tuned parameter '{key}'")
    return validate(new)
