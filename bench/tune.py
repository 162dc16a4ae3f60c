"""Optuna tuning: per (dataset, model) a study picks the configuration with the best validation
accuracy; the seed stage then retrains that configuration with several seeds.

- Search spaces and tuning settings come from `configs/search.toml` (parsed in `bench.search_space`).
- A sampled configuration over the parameter cap is pruned before training; the pruner sees
  the validation accuracy after every epoch; a diverging trial (NaN/inf loss) fails with its
  reason and the study goes on.
- Storage: SQLite at `<run_dir>/optuna.db` by default, or any RDB URL (PostgreSQL for many
  workers on many machines). A running trial writes heartbeats; one whose worker died is
  failed and retried with the same parameters (RetryHeartbeatStaleTrialCallback), so rerunning the same
  command after kill -9 continues the study up to the requested number of trials. Optuna never
  fails a trial that has no heartbeat yet (its worker died between creating the trial and the
  first beat): `fail_dead_trials` fails and retries those too, once they are older than the grace
  period, or every later worker would wait for them forever.

A study's budget counts *finished* trials: complete, pruned, and cleanly failed (diverged or
crashed with a recorded reason). Trials failed because their worker died (stale heartbeat) are
not counted: they are retried. Every worker waits while other workers' trials are still in
flight, and a trial that finds the budget already used up when it starts ends at once as a
"surplus" FAIL (not counted), so any number of workers stop at exactly N finished trials.

Worker CLI: `python -m bench.tune --storage URL --dataset imdb --model attn_rnn --trials N`.
The REPORT.md section on tuning is in `bench.tuning_report`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from bench import cli
from bench.config import BenchError, Config, hashed_fields
from bench.results import RunFolder, atomic_write_csv, atomic_write_json, default_run_dir
from bench.search_space import (TRIAL_SEED, SearchSpace, TuneSettings, apply_params, load_search, suggest,
                                trial_seeds)

log = logging.getLogger("bench")

TRIALS_COLUMNS = ["study", "dataset", "model", "number", "state", "value", "params", "params_count",
                  "epochs_run", "duration_s", "reason", "worker", "retry_of", "last_value", "seed"]


# ----------------------------------------------------------------------------- storage, study

def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_default_handler()  # through the root logger, whose handlers drop
    optuna.logging.enable_propagation()       # an interrupted trial's traceback (bench.cli)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def masked(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def _driver_url(url: str) -> str:
    """postgresql://... → postgresql+psycopg://... when psycopg2 (SQLAlchemy's default) is absent."""
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _retry_callback():
    """(class, RDBStorage keyword): Optuna >= 4.9 renamed RetryFailedTrialCallback."""
    try:
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        return RetryHeartbeatStaleTrialCallback, "heartbeat_stale_trial_callback"
    except ImportError:  # Optuna < 4.9
        from optuna.storages import RetryFailedTrialCallback

        return RetryFailedTrialCallback, "failed_trial_callback"


def retried_trial_number(trial) -> int | None:
    """The number of the trial this one re-runs after its worker died, else None."""
    return _retry_callback()[0].retried_trial_number(trial)


def make_storage(url: str, settings: TuneSettings | None = None):
    """An RDBStorage with heartbeats and retry of dead workers' trials; a bad URL or an
    unreadable database file is a one-line BenchError."""
    _optuna()
    from optuna.storages import RDBStorage

    retry_cls, retry_kw = _retry_callback()

    st = settings or TuneSettings()
    if not isinstance(url, str) or "://" not in url:
        raise BenchError(f"malformed storage URL '{url}' (expected sqlite:///path or postgresql://user@host/db)")
    url = _driver_url(url)
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if path.exists() and path.is_dir():
            raise BenchError(f"storage {path} is a folder, not an Optuna SQLite file")
        if not path.parent.is_dir():  # never create folders where a URL points (the default lies in --out)
            raise BenchError(f"storage {masked(url)}: folder {path.parent} does not exist (create it first)")
        connect_args = {"timeout": 30}
    elif url.startswith("postgresql"):
        connect_args = {"connect_timeout": 10}
    else:
        connect_args = {}
    for attempt in range(6):
        try:
            return RDBStorage(url, engine_kwargs={"connect_args": connect_args, "pool_pre_ping": True},
                              heartbeat_interval=st.heartbeat_s, grace_period=st.grace_s,
                              **{retry_kw: retry_cls(max_retry=st.max_retry)})
        except Exception as exc:  # sqlalchemy / driver errors: corrupt file, unreachable server, bad URL
            text = f"{type(exc).__name__}: {exc}"
            # workers starting together on an empty database race to create Optuna's tables
            if attempt < 5 and any(k in text for k in ("IntegrityError", "UniqueViolation", "already exists")):
                time.sleep(0.5 * (attempt + 1))
                continue
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise BenchError(f"cannot open Optuna storage {masked(url)}: {type(exc).__name__}: {first}") from None


@contextlib.contextmanager
def opened_storage(url: str, settings: TuneSettings | None = None):
    """`make_storage` whose connection pool is closed on exit: every storage holds its own pool,
    and one left open per call runs a PostgreSQL server out of connections."""
    storage = make_storage(url, settings)
    try:
        yield storage
    finally:
        storage.engine.dispose()


def study_name(cfg: Config, dataset: str, model_name: str, search: SearchSpace) -> str:
    """dataset-model-<hash of everything that defines the objective>, so a changed space,
    data setting or base config starts a new study instead of mixing into the old one."""
    st = dataclasses.asdict(search.settings)
    for key in ("trials", "timeout_s", "heartbeat_s", "grace_s", "max_retry"):
        st.pop(key)  # these bound or run a study; they do not change what a trial measures
    if not st["param_floor"]:
        st.pop("param_floor")  # added later: without a floor, a study keeps the name it had before
    if st["trial_seed"] == "fixed":
        st.pop("trial_seed")  # likewise: a fixed trial seed keeps the old names
    if st["seeds_per_trial"] == 1:
        st.pop("seeds_per_trial")  # and one seed per trial
    blob = {"space": search.space(model_name), "settings": st, "data": hashed_fields(cfg.data),
            "train": hashed_fields(cfg.train), "model": hashed_fields(cfg.model[model_name])}
    digest = hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{dataset}-{model_name}-{digest}"


def _pruner(settings: TuneSettings, epochs: int):
    import optuna

    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, epochs))
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)


def open_study(storage, name: str, settings: TuneSettings, epochs: int, worker: int = 0, create: bool = True):
    optuna = _optuna()
    try:
        if create:
            study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                        pruner=_pruner(settings, epochs), load_if_exists=True)
        else:
            study = optuna.load_study(storage=storage, study_name=name, pruner=_pruner(settings, epochs))
        # fixed seed for a fresh study; a resumed study (or another worker) gets a different but
        # reproducible stream, so its random start-up trials do not repeat earlier configurations
        existing = len(study.get_trials(deepcopy=False))
        study.sampler = optuna.samplers.TPESampler(n_startup_trials=settings.startup_trials,
                                                   seed=settings.sampler_seed + 7919 * worker + 1009 * existing)
        return study
    except KeyError:
        names = optuna.study.get_all_study_names(storage)
        raise BenchError(f"no study '{name}' in storage {masked(storage.url)} "
                         f"(studies there: {', '.join(names) or 'none'})") from None
    except BenchError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise BenchError(f"cannot open study '{name}': {type(exc).__name__}: {first}") from None


def is_counted(trial) -> bool:
    """Does this trial use up one of the study's N trials? (see the module docstring)"""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return (trial.state == TrialState.FAIL and "reason" in trial.user_attrs
            and not trial.user_attrs.get("surplus", False))


def fail_dead_trials(study, grace_s: float) -> None:
    """Fail (and retry, via the storage's stale-trial callback) the trials of dead workers.

    Optuna's `fail_stale_trials` covers trials whose heartbeat stopped. A trial whose worker died
    before its first heartbeat has none, and Optuna leaves it RUNNING for ever; every later worker
    would wait on it. The objective writes a heartbeat and then the `worker` attribute first thing,
    so a RUNNING trial without that attribute, started more than `grace_s` ago, lost its worker
    before the objective began."""
    import copy
    import datetime

    import optuna
    from optuna.trial import TrialState

    optuna.storages.fail_stale_trials(study)
    now = datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = trial.datetime_start
        if "worker" in trial.user_attrs or started is None or (now - started).total_seconds() <= grace_s:
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker failed it first (and retried it)
        log.info("trial %d failed: its worker died before the trial began", trial.number)
        retry = getattr(study._storage, "get_heartbeat_stale_trial_callback", lambda: None)()
        if retry is not None:
            retry(study, copy.deepcopy(study._storage.get_trial(trial._trial_id)))  # as fail_stale_trials does


def count_finished(study) -> tuple[int, int]:
    """(counted finished trials, trials running now) of a study."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    return sum(map(is_counted, trials)), sum(t.state == TrialState.RUNNING for t in trials)


# ----------------------------------------------------------------------------- objective

def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _budget_used_up(trial, n_trials: int) -> bool:
    """Whether the study already had `n_trials` counted or running trials when this one started
    (a race between workers); such a trial is marked surplus and ends at once."""
    import optuna

    earlier = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number]
    in_use = sum(is_counted(t) or t.state == optuna.trial.TrialState.RUNNING for t in earlier)
    if in_use < n_trials:
        return False
    trial.set_user_attr("surplus", True)
    trial.set_user_attr("reason", f"surplus: the study already had {n_trials} trials when it started")
    return True


def _prune(trial, reason: str):
    """Record why, then prune (Optuna's way to end a trial early)."""
    import optuna

    trial.set_user_attr("reason", reason)
    return optuna.TrialPruned(reason)


def make_objective(cfg: Config, data, model_name: str, search: SearchSpace, device, seed: int = TRIAL_SEED,
                   n_trials: int | None = None):
    """The Optuna objective: suggest → build (over the parameter cap: pruned) → train with
    per-epoch report/should_prune → the validation accuracy of the best (early-stopping) epoch.
    Every trial trains with `seed`, or with a seed of its own (settings.trial_seed = "per_trial"); with
    settings.seeds_per_trial = k it trains k times and its value is their mean, the pruner fed by the
    first seed's epochs (a pruner compares trials step by step, so one seed's curve per trial)."""
    import optuna

    import bench.train as train_mod
    from bench.models import build_for_unit, count_parameters

    st = search.settings
    space = search.space(model_name)
    epochs = st.epochs or cfg.train.epochs
    n_trials = n_trials or st.trials

    def objective(trial: optuna.Trial) -> float:
        # a heartbeat before the `worker` mark: a trial that has the mark is one Optuna can fail
        # once its worker dies (see fail_dead_trials)
        if getattr(trial.storage, "get_heartbeat_interval", lambda: None)() is not None:
            trial.storage.record_heartbeat(trial._trial_id)
        trial.set_user_attr("worker", worker_id())
        trial.set_user_attr("epochs_run", 0)
        if _budget_used_up(trial, n_trials):
            return float("nan")
        seeds = trial_seeds(st, trial.number, seed)
        seed_n = seeds[0]
        trial.set_user_attr("seed", seed_n)
        # 1. suggest
        try:
            tcfg = apply_params(cfg, model_name, suggest(trial, space))
        except BenchError as exc:
            raise _prune(trial, f"invalid configuration: {exc}") from None
        tcfg.train.epochs = epochs
        # 2. build; a model over the parameter cap (or under the floor) is pruned before training
        model, train_cfg = build_for_unit(tcfg, model_name, data, seed_n)
        n_params = count_parameters(model)
        trial.set_user_attr("params_count", n_params)
        if n_params > st.param_cap or n_params < st.param_floor:
            exc = _prune(trial, f"{n_params:,} parameters exceed the cap of {st.param_cap:,}" if n_params > st.param_cap
                         else f"{n_params:,} parameters fall under the floor of {st.param_floor:,}")
            log.info("trial %d pruned before training: %s", trial.number, exc)
            raise exc

        # 3. train, reporting validation accuracy after every epoch to the pruner; never pruned after
        # the last epoch: nothing is left to save, and a pruned trial's value would be thrown away
        def on_epoch(epoch: int, record) -> None:
            trial.set_user_attr("epochs_run", epoch)
            trial.report(record.val_acc, epoch)
            if epoch < epochs and trial.should_prune():
                raise _prune(trial, f"pruned by the {st.pruner} pruner after epoch {epoch} "
                                    f"(val acc {record.val_acc:.4f})")

        desc = f"{data.dataset}/{model_name}/trial{trial.number}"
        values = []
        try:
            for i, s in enumerate(seeds):
                if i:  # the first seed's model is built above; the others start from their own weights
                    model, train_cfg = build_for_unit(tcfg, model_name, data, s)
                fitted = train_mod.fit(model, data, train_cfg, device=device, seed=s,
                                       desc=desc if len(seeds) == 1 else f"{desc}/seed{s}",
                                       on_epoch=on_epoch if i == 0 else None)
                values.append(float(fitted.best.val_acc))
        except train_mod.TrainingDiverged as exc:
            trial.set_user_attr("reason", f"diverged: {exc}")
            log.warning("%s failed: %s", desc, exc)
            return float("nan")  # Optuna records a NaN objective as FAIL; the study goes on
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # a crash is recorded with its reason, then stops the worker
            trial.set_user_attr("reason", f"{type(exc).__name__}: {exc}"[:300])
            raise
        # 4. the objective: validation accuracy of the restored epoch (the mean over the trial's seeds)
        value = sum(values) / len(values)
        if len(seeds) > 1:
            trial.set_user_attr("seeds", seeds)
            trial.set_user_attr("seed_values", values)
        log.info("%s: val acc %.4f (%s parameters, %d epochs%s)", desc, value, f"{n_params:,}", len(fitted.history),
                 f", mean of {len(seeds)} seeds" if len(seeds) > 1 else "")
        return float(value)

    return objective


def run_study(study, objective, n_trials: int, timeout: float | None, heartbeat_s: float = 60,
              grace_s: float = 180) -> int:
    """Run trials until the study has `n_trials` counted trials (or the timeout); returns how many
    trials this call started. Waits while other workers' trials are in flight (they may die and
    be retried)."""
    deadline = time.monotonic() + timeout if timeout else math.inf
    started, waiting_logged = 0, False
    while True:
        fail_dead_trials(study, grace_s)  # marks dead workers' trials FAIL and re-queues them
        done, running = count_finished(study)
        if done >= n_trials:
            log.info("study %s: %d of %d trials finished", study.study_name, done, n_trials)
            return started
        if time.monotonic() >= deadline:
            log.info("study %s: time budget used up after %d of %d trials", study.study_name, done, n_trials)
            return started
        if done + running >= n_trials:
            if not waiting_logged:
                log.info("study %s: waiting for %d trial(s) running in other workers", study.study_name, running)
                waiting_logged = True
            time.sleep(min(2.0, heartbeat_s))
            continue
        waiting_logged = False
        study.optimize(objective, n_trials=1, catch=())
        started += 1


def wait_for_running(study, heartbeat_s: float = 60, grace_s: float = 180) -> None:
    """Block while other workers' trials are in flight (a dead worker's are failed once stale), so
    every worker re-ranks the same finished top."""
    logged = False
    while True:
        fail_dead_trials(study, grace_s)
        _, running = count_finished(study)
        if not running:
            return
        if not logged:
            log.info("study %s: waiting for %d trial(s) running in other workers before re-ranking",
                     study.study_name, running)
            logged = True
        time.sleep(min(2.0, heartbeat_s))


# ----------------------------------------------------------------------------- results

def _last_value(trial) -> float:
    """A trial's final value if it completed, else the last validation accuracy it reported before
    being pruned or failing (nan when it reported none, e.g. pruned by the parameter cap)."""
    if trial.state.name == "COMPLETE":
        return float(trial.value)
    steps = trial.intermediate_values
    return float(steps[max(steps)]) if steps else float("nan")


def trials_frame(storage, study_names: list[str]):
    """One row per trial of the named studies (see TRIALS_COLUMNS)."""
    import optuna
    import pandas as pd

    rows = []
    for name in study_names:
        study = optuna.load_study(storage=storage, study_name=name)
        dataset, model = name.split("-")[0], name.split("-")[1]
        trials = study.get_trials(deepcopy=False)
        retried_as = {retried_trial_number(t): t.number for t in trials if retried_trial_number(t) is not None}
        for t in trials:
            reason = t.user_attrs.get("reason", "")
            if t.state.name == "FAIL" and not reason:
                reason = "worker stopped (no heartbeat or interrupted)"
                if t.number in retried_as:
                    reason += f"; retried as trial {retried_as[t.number]}"
            duration = ((t.datetime_complete - t.datetime_start).total_seconds()
                        if t.datetime_complete and t.datetime_start else float("nan"))
            rows.append({"study": name, "dataset": dataset, "model": model, "number": t.number,
                         "state": t.state.name, "value": t.value if t.state.name == "COMPLETE" else float("nan"),
                         "params": json.dumps(t.params, sort_keys=True),
                         "params_count": t.user_attrs.get("params_count"), "epochs_run": t.user_attrs.get("epochs_run"),
                         "duration_s": duration, "reason": reason, "worker": t.user_attrs.get("worker", ""),
                         "retry_of": retried_trial_number(t), "last_value": _last_value(t),
                         "seed": t.user_attrs.get("seed")})
    frame = pd.DataFrame(rows, columns=TRIALS_COLUMNS)
    frame["params_count"] = frame["params_count"].astype("Int64")
    frame["epochs_run"] = frame["epochs_run"].astype("Int64")
    frame["retry_of"] = frame["retry_of"].astype("Int64")
    frame["seed"] = frame["seed"].astype("Int64")
    return frame


@contextlib.contextmanager
def summary_lock(run_dir: Path):
    """Workers sharing a run folder rewrite trials.csv and tuning.json (read, merge their own
    study, write) one at a time, so two finishing together cannot drop each other's study."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(Path(run_dir) / ".summary.lock"))
    try:
        lock.acquire(timeout=300)
    except Timeout:
        raise BenchError(f"{lock.lock_file} was held by another worker for 5 minutes; "
                         "delete it if no worker is running") from None
    try:
        yield
    finally:
        lock.release()


def write_trials_csv(run_dir: Path, storage, study_names: list[str]) -> Path:
    """Replace these studies' rows in `<run_dir>/trials.csv`, keeping other studies' rows."""
    import pandas as pd

    path = RunFolder(run_dir).trials_csv
    new = trials_frame(storage, study_names)
    if path.exists():
        try:
            old = pd.read_csv(path, dtype={"params": str, "reason": str, "worker": str})
            old = old[~old["study"].isin(study_names)]
            if not old.empty:
                new = pd.concat([old.astype(new.dtypes.to_dict(), errors="ignore"), new], ignore_index=True)
        except (OSError, ValueError, KeyError):
            pass
    new = new.sort_values(["dataset", "model", "study", "number"], kind="stable")
    atomic_write_csv(path, new)
    return path


def importances(study) -> dict[str, float]:
    """fANOVA importances (fixed seed, so deterministic); empty when too few trials finished."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}
    try:
        imp = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    except Exception as exc:  # e.g. a single distinct value per parameter
        log.info("importances unavailable for %s: %s", study.study_name, exc)
        return {}
    return {k: float(v) for k, v in imp.items()}


def tuning_summary(study, cfg: Config, data, model_name: str, search: SearchSpace, n_trials: int,
                   storage_url: str, train_rows: int) -> dict[str, Any]:
    """One study's entry of tuning.json (read by `bench.tuning_report`): settings, best trial, importances."""
    from bench import rerank

    st = search.settings
    best = None
    try:
        b = rerank.chosen_trial(study)
        best = {"number": b.number, "value": b.value, "params": b.params,
                "params_count": b.user_attrs.get("params_count"), "seed": b.user_attrs.get("seed"),
                "seeds": b.user_attrs.get("seeds"), "seed_values": b.user_attrs.get("seed_values")}
    except ValueError:
        pass
    rows = rerank.table(study)
    reranked = ({"top": study.user_attrs["rerank_top"], "seeds": rerank.rerank_seeds(study.user_attrs["rerank_seeds"]),
                 "rows": rows} if rows else None)
    return {"study": study.study_name, "storage": masked(storage_url), "dataset": data.dataset, "model": model_name,
            "trials_requested": n_trials, "pruner": st.pruner, "param_cap": st.param_cap,
            "param_floor": st.param_floor,
            "train_subset": st.train_subset, "train_rows": train_rows, "train_rows_full": len(data.train),
            "epochs": st.epochs or cfg.train.epochs, "max_length": cfg.data.max_length,
            "sampler_seed": st.sampler_seed, "trial_seed": st.trial_seed, "seeds_per_trial": st.seeds_per_trial,
            "search_space": search.space(model_name), "best": best,
            "importances": importances(study), "rerank": reranked}


def write_tuning_summary(run_dir: Path, key: str, summary: dict[str, Any]) -> None:
    """Replace one study's entry of `<run_dir>/tuning.json`, keeping the others."""
    path = RunFolder(run_dir).tuning_json
    try:
        info = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        info = {}
    info[key] = summary
    atomic_write_json(path, info)


def best_params(study) -> dict[str, Any]:
    """The seed stage's parameters: the best trial's, or the re-ranked best's (`bench.rerank`)."""
    from bench import rerank

    try:
        return dict(rerank.chosen_trial(study).params)
    except ValueError:
        raise BenchError(f"study '{study.study_name}' has no completed trial yet; run more trials") from None


def tune_model(cfg: Config, data, model_name: str, run_dir: str | Path, *, storage_url: str | None = None,
               trials: int | None = None, timeout: float | None = None, device=None, seed: int = TRIAL_SEED,
               search: SearchSpace | None = None, worker: int = 0, workers: int = 1, rerank_top: int = 0,
               rerank_seeds: int = 2) -> Config:
    """Tune one model on one dataset (validation accuracy) and return `cfg` with the best trial's
    parameters applied (the seed stage's config for this model). Resumes an existing study. With
    `rerank_top`, the best trials are then trained with `rerank_seeds` more seeds (this worker's share,
    `worker` of `workers`) and the best on average is chosen (`bench.rerank`)."""
    import torch

    from bench.data import subsample_train

    search = search or load_search()
    st = search.settings
    n_trials = trials or st.trials
    timeout = st.timeout_s if timeout is None else timeout
    device = device or torch.device("cpu")
    run_dir = Path(run_dir)
    if storage_url is None:
        run_dir.mkdir(parents=True, exist_ok=True)  # the default storage lives in the run folder
    url = storage_url or RunFolder(run_dir).sqlite_url()
    name = study_name(cfg, data.dataset, model_name, search)
    with opened_storage(url, st) as storage:
        study = open_study(storage, name, st, st.epochs or cfg.train.epochs, worker=worker)
        tdata = subsample_train(data, st.train_subset, cfg.data.split_seed)
        log.info("tuning %s/%s: study %s in %s, %d trials, %s pruner, cap %s parameters, %d train rows%s",
                 data.dataset, model_name, name, masked(url), n_trials, st.pruner, f"{st.param_cap:,}",
                 len(tdata.train), f" (subset of {len(data.train)})" if len(tdata.train) < len(data.train) else "")
        objective = make_objective(cfg, tdata, model_name, search, device, seed=seed, n_trials=n_trials)
        run_study(study, objective, n_trials, timeout or None, st.heartbeat_s, st.grace_s)
        if rerank_top:
            from bench import rerank

            wait_for_running(study, st.heartbeat_s, st.grace_s)
            rerank.rerank(study, cfg, tdata, model_name, st.epochs or cfg.train.epochs, device, rerank_top,
                          rerank_seeds, worker, workers)
        run_dir.mkdir(parents=True, exist_ok=True)
        with summary_lock(run_dir):
            write_trials_csv(run_dir, storage, [name])
            write_tuning_summary(run_dir, f"{data.dataset}/{model_name}", tuning_summary(
                study, cfg, data, model_name, search, n_trials, url, len(tdata.train)))
        return apply_params(cfg, model_name, best_params(study))


def best_config(storage_url: str, dataset: str, model_name: str, cfg: Config, *,
                search: SearchSpace | None = None) -> Config:
    """`cfg` with the best trial of an existing study applied (for a seed stage run after
    workers tuned into a shared storage)."""
    search = search or load_search()
    name = study_name(cfg, dataset, model_name, search)
    with opened_storage(storage_url, search.settings) as storage:
        study = open_study(storage, name, search.settings, search.settings.epochs or cfg.train.epochs, create=False)
        return apply_params(cfg, model_name, best_params(study))


def _tune_worker(cfg: Config, dataset: str, model_name: str, run_dir: Path, storage_url: str, trials: int | None,
                 timeout: float | None, device: str, search: SearchSpace, worker: int, data_dir: Path | None,
                 cache_dir: Path | None, threads: int, workers: int = 1, rerank_top: int = 0,
                 rerank_seeds: int = 2) -> None:
    """One Optuna worker in its own process: the cached data, then trials until the study is full."""
    import torch

    from bench.data import prepare
    from bench.units import configure_process

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    dev = torch.device(device)
    configure_process(dev, threads, cfg.train.flush_denormal, deterministic=False)
    data = prepare(dataset, cfg, data_dir, cache_dir)
    tune_model(cfg, data, model_name, run_dir, storage_url=storage_url, trials=trials, timeout=timeout,
               device=dev, search=search, worker=worker, workers=workers, rerank_top=rerank_top,
               rerank_seeds=rerank_seeds)


def tune_in_processes(cfg: Config, dataset: str, model_name: str, run_dir: Path, *, storage_url: str,
                      trials: int | None, timeout: float | None, device, search: SearchSpace, workers: int,
                      data_dir: Path | None, cache_dir: Path | None, threads: int, rerank_top: int = 0,
                      rerank_seeds: int = 2) -> Config:
    """`workers` Optuna workers in loky processes sharing one storage (each with its own sampler
    seed, as `bench.tune --worker K` processes would be); returns `cfg` with the best trial applied.
    The study stops at exactly its trial budget whatever the number of workers (see run_study)."""
    from joblib.externals.loky import get_reusable_executor
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    executor = get_reusable_executor(max_workers=workers, timeout=60, reuse=False)
    futures = [executor.submit(_tune_worker, cfg, dataset, model_name, Path(run_dir), storage_url, trials, timeout,
                               str(device), search, k, data_dir, cache_dir, threads, workers, rerank_top,
                               rerank_seeds) for k in range(workers)]
    try:
        for future in futures:
            future.result()
    except TerminatedWorkerError:
        raise BenchError(f"a tuning worker of {dataset}/{model_name} died (killed, or out of memory?); finished "
                         "trials are in the storage: rerun the same command to continue the study") from None
    finally:
        if not all(f.done() for f in futures):
            executor.shutdown(wait=False, kill_workers=True)
    return best_config(storage_url, dataset, model_name, cfg, search=search)


# ----------------------------------------------------------------------------- worker CLI


def parse_args(argv: list[str] | None):
    p = cli.OneLineParser(prog="python -m bench.tune",
                          description="An Optuna tuning worker: runs trials of one (dataset, model) study in a "
                                      "shared storage until it has the requested number of finished trials.")
    p.add_argument("--storage", default=None,
                   help="storage URL (postgresql://user@host/db, sqlite:///path); default sqlite at <out>/optuna.db")
    p.add_argument("--dataset", required=True, help="imdb or ag_news")
    p.add_argument("--model", required=True, help="rnn, attn_rnn or transformer")
    p.add_argument("--trials", type=int, default=None, help="finished trials the study should reach "
                   "(default: [settings] trials of the search file)")
    p.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    cli.add_data_options(p)
    p.add_argument("--config", default=None, help="a TOML config file (default: --budget)")
    p.add_argument("--budget", default="quick", help="named config under configs/ (default quick)")
    p.add_argument("--search", default=None, help="search space file (default configs/search.toml)")
    p.add_argument("--out", default=None, help="run folder for optuna.db (SQLite default), trials.csv and "
                   "tuning.json (default results/<budget>-tuned, as bench.run --tune)")
    cli.add_compute_options(p, "cpu")
    p.add_argument("--worker", type=int, default=0,
                   help="this worker's index (give each concurrent worker its own): it varies the TPE sampler's "
                        "seed so workers do not sample the same start-up trials (default 0)")
    p.add_argument("--rerank", type=int, default=0, metavar="TOP",
                   help="after the trials, train the TOP best again with --rerank-seeds more seeds and give the "
                        "seed stage the best on average (default 0: off)")
    p.add_argument("--rerank-seeds", type=int, default=2, help="extra seeds per re-ranked trial (default 2)")
    p.add_argument("--workers", type=int, default=1,
                   help="how many workers share the re-ranking: worker I of N (I = 0 .. N-1) takes every N-th "
                        "re-run from the I-th (default 1)")
    return p.parse_args(argv)


def execute(args) -> int:
    from bench.config import budget_path, load
    from bench.data import prepare
    from bench.train import resolve_device
    from bench.units import configure_process

    cfg = load(args.config if args.config else budget_path(args.budget))
    if args.model not in cfg.model:
        raise BenchError(f"unknown model '{args.model}' (choose from {', '.join(cfg.model)})")
    if args.trials is not None and args.trials < 1:
        raise BenchError(f"--trials must be at least 1, got {args.trials}")
    if args.timeout is not None and args.timeout < 0:
        raise BenchError(f"--timeout must be >= 0, got {args.timeout}")
    if args.worker < 0:
        raise BenchError(f"--worker must be >= 0, got {args.worker}")
    from bench.rerank import check_options

    check_options(args.rerank, args.rerank_seeds, args.worker, args.workers)
    search = load_search(args.search)
    search.space(args.model)
    device = resolve_device(args.device)
    cli.set_threads(args.threads, cfg.train.threads)
    configure_process(device, 0, cfg.train.flush_denormal, deterministic=False)
    out = Path(args.out) if args.out else default_run_dir(cfg.budget, tuned=True)  # where bench.run --tune writes
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)  # trials.csv and tuning.json, and the default storage, live in --out
    url = args.storage or RunFolder(out).sqlite_url()
    with opened_storage(url, search.settings):
        pass  # fail fast (one line) on a bad storage before loading data
    data = prepare(args.dataset, cfg, cli.data_dir(args), cli.cache_dir(args))
    tuned = tune_model(cfg, data, args.model, out, storage_url=url, trials=args.trials, timeout=args.timeout,
                       device=device, search=search, worker=args.worker, workers=args.workers,
                       rerank_top=args.rerank, rerank_seeds=args.rerank_seeds)
    m = dataclasses.asdict(tuned.model[args.model])
    log.info("best %s/%s config: model %s, batch %d, weight decay %g", args.dataset, args.model,
             json.dumps(m, sort_keys=True), tuned.train.batch_size, tuned.train.weight_decay)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.cli_main(parse_args, execute, argv,
                        "finished trials are in the storage; rerun the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
