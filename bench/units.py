"""One unit of work (dataset × model × seed) and where units run: in this process, in worker
processes on this machine (loky), or on a Dask cluster.

Once a dataset is encoded (and cached) every unit is independent of every other, so the parent
plans, prepares the data once, hands out `UnitJob`s, and writes each finished `UnitRecord`
itself, atomically, as it arrives. The tables are rebuilt sorted, so runs.csv and epochs.csv do
not depend on completion order or on the number of workers. A worker writes only its own unit's
prediction and attention files (atomically, keyed by the unit), never a shared table.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from bench.config import BenchError, Config
from bench.results import FAILED, RunFolder, RunRecord, UnitRecord, atomic_write_csv, unit_key

log = logging.getLogger("bench")
UNITS_PER_GPU = 4  # small (~2 M-parameter) models leave a large GPU mostly idle; 4 share one by default


# ----------------------------------------------------------------------------- one unit

def fit_unit(cfg: Config, data, model_name: str, seed: int, device, desc: str):
    """Build and fit one model on the unit's data; returns (fitted, test result, parameter count,
    the model). The seed drives each random source the config varies (`Config.unit_seeds`)."""
    from bench.models import build_for_unit, count_parameters
    from bench.train import evaluate, fit

    seeds = cfg.unit_seeds(seed)
    if cfg.model[model_name].kind == "tfidf":
        from bench.baseline import TfidfClassifier

        model = TfidfClassifier(seeds.init)
        fitted = model.fit(data)
        return fitted, model.evaluate(data.test), model.parameter_count(), model
    model, train_cfg = build_for_unit(cfg, model_name, data, seeds.init)
    log.info("%s: %s parameters", desc, f"{count_parameters(model):,}")
    fitted = fit(model, data, train_cfg, device=device, seed=seeds.init, order_seed=seeds.order, desc=desc)
    test = evaluate(model, data.test, device, cfg.train.eval_batch_size, cfg.train.amp, cfg.train.pad_multiple)
    return fitted, test, count_parameters(model), model


def save_predictions(folder: RunFolder, data, model_name: str, seed: int, probs) -> None:
    """Every test example's label, prediction, length and class probabilities."""
    import numpy as np
    import pandas as pd

    preds = pd.DataFrame({"row": data.test.rows, "label": data.test.labels, "pred": probs.argmax(1),
                          "length": data.test.lengths})
    for k in range(probs.shape[1]):
        preds[f"prob_{k}"] = np.round(probs[:, k], 5)
    atomic_write_csv(folder.predictions_path(data.dataset, model_name, seed), preds)


def run_unit(cfg: Config, data, model_name: str, seed: int, device, folder: RunFolder, sha: str) -> UnitRecord:
    """Train one model with one seed, evaluate it on test once, save predictions; return its record."""
    import torch

    from bench.train import TrainingDiverged

    from bench.data import split_for_seed

    started = time.perf_counter()
    folder = RunFolder(folder)
    data = split_for_seed(data, cfg, seed)  # its own validation split when the config varies "split"
    mcfg = cfg.model[model_name]
    desc = f"{data.dataset}/{model_name}/seed{seed}"
    run = RunRecord(dataset=data.dataset, model=model_name, seed=seed, device=str(device),
                    threads=torch.get_num_threads(), config_hash=cfg.unit_hash(model_name), git_sha=sha,
                    claim_hash=cfg.claim_hash())
    record = UnitRecord(run=run, model_config=dataclasses.asdict(mcfg))
    try:
        fitted, test, params, model = fit_unit(cfg, data, model_name, seed, device, desc)
    except TrainingDiverged as exc:
        log.warning("%s failed: %s", desc, exc)
        run.status, run.reason = FAILED, str(exc)
        return record
    except torch.cuda.OutOfMemoryError:
        raise BenchError(f"{desc}: CUDA out of memory; lower train.batch_size, train.eval_batch_size or "
                         "data.max_length in the config") from None
    best = fitted.best
    run.params, run.best_epoch, run.epochs_run = params, fitted.best_epoch, len(fitted.history)
    run.best_val_acc, run.best_val_loss, run.test_acc, run.test_loss = best.val_acc, best.val_loss, test.acc, test.loss
    run.train_acc, run.train_eval_acc, run.gap_acc, run.gap_loss = (best.train_acc, best.train_eval_acc,
                                                                    best.gap_acc, best.gap_loss)
    run.train_seconds = fitted.train_seconds
    run.train_tokens_per_s = fitted.train_tokens / fitted.train_seconds
    log.info("%s: test acc %.4f (best epoch %d)", desc, test.acc, fitted.best_epoch)
    save_predictions(folder, data, model_name, seed, test.probs)
    if mcfg.kind == "rnn" and mcfg.pooling == "attention":
        from bench.attention import collect

        collect(model, data.test, test.probs, data.tokenizer_json, device, cfg.train.eval_batch_size,
                folder.attention_path(data.dataset, model_name, seed))
    run.wall_seconds = time.perf_counter() - started
    record.epochs = fitted.history
    return record


@dataclass(frozen=True)
class UnitJob:
    """Everything a worker needs to run one unit, picklable: the (possibly tuned) config, the unit,
    where the data and the results live, and the worker's device and threads."""
    cfg: Config
    dataset: str
    model: str
    seed: int
    out: Path
    data_dir: Path | None
    cache_dir: Path | None
    device: str = "cpu"
    threads: int = 0          # torch threads in the worker (0 = leave torch's default)
    deterministic: bool = False
    sha: str = ""

    @property
    def key(self) -> str:
        return unit_key(self.dataset, self.model, self.seed)


def configure_process(device, threads: int, flush_denormal: bool, deterministic: bool) -> None:
    """Per-process numerics: torch threads, subnormal flushing on CPU, deterministic kernels."""
    import torch

    from bench.train import set_deterministic

    if threads:
        torch.set_num_threads(threads)
    if device.type == "cpu":
        torch.set_flush_denormal(flush_denormal)
    if deterministic:
        set_deterministic(device)


def run_job(job: UnitJob, data=None) -> UnitRecord:
    """Run one unit: in a worker (data loaded from the cache the parent filled) or in the parent
    (`data` already loaded)."""
    import torch

    if not logging.getLogger().handlers:  # a fresh worker process: log like the parent
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    device = torch.device(job.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    configure_process(device, job.threads, job.cfg.train.flush_denormal, job.deterministic)
    if data is None:
        from bench.data import prepare

        data = prepare(job.dataset, job.cfg, job.data_dir, job.cache_dir)
    return run_unit(job.cfg, data, job.model, job.seed, device, job.out, job.sha)


# ----------------------------------------------------------------------------- where units run

OnDone = Callable[[UnitRecord], None]


def _died(job: UnitJob) -> BenchError:
    return BenchError(f"a worker process died while running {job.key} (killed, or out of memory?); finished "
                      "units are saved: rerun the same command to resume")


def _deliver(future, job: UnitJob, worker_died: type[BaseException], on_done: OnDone) -> None:
    """Hand a finished unit's record to `on_done`; a dead worker is one line (`worker_died` is the
    executor's own exception for that)."""
    try:
        record = future.result()
    except worker_died:
        raise _died(job) from None
    on_done(record)


def run_here(jobs: list[UnitJob], on_done: OnDone, data) -> None:
    """One after another in this process, on the data the parent already loaded."""
    for job in jobs:
        on_done(run_job(job, data))


def run_in_processes(jobs: list[UnitJob], on_done: OnDone, workers: int) -> None:
    """In `workers` loky processes (spawned, so no state is shared; a dead worker is detected)."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from joblib.externals.loky import get_reusable_executor
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    executor = get_reusable_executor(max_workers=workers, timeout=60, reuse=False)
    pending = {executor.submit(run_job, job): job for job in jobs}
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                _deliver(future, pending.pop(future), TerminatedWorkerError, on_done)
    finally:
        if pending:  # an error or Ctrl-C: stop the units still running, keep what is saved
            for future in pending:
                future.cancel()
            executor.shutdown(wait=False, kill_workers=True)


def run_on_cluster(jobs: list[UnitJob], on_done: OnDone, address: str) -> None:
    """On an existing Dask distributed scheduler: a unit whose worker dies is rescheduled by Dask
    on another worker, and the parent writes each unit once, when its result arrives."""
    try:
        from distributed import Client, as_completed
        from distributed.scheduler import KilledWorker
    except ImportError:
        raise BenchError("--cluster needs Dask distributed: pip install -e '.[cluster]'") from None
    address = address.replace("dask://", "tcp://", 1)
    try:
        client = Client(address, timeout=15)
    except (OSError, TimeoutError) as exc:
        raise BenchError(f"cannot reach the Dask scheduler at {address}: {type(exc).__name__}: {exc}") from None
    try:
        futures = {client.submit(run_job, job, key=f"bench-{job.key}-{time.time_ns()}", pure=False): job
                   for job in jobs}
        for future in as_completed(list(futures)):
            _deliver(future, futures[future], KilledWorker, on_done)
    finally:
        client.close()


def auto_jobs(device_type: str, n_units: int) -> int:
    """Worker processes for `jobs = 0`: UNITS_PER_GPU per GPU, else one per CPU core."""
    if device_type == "cuda":
        import torch

        n = UNITS_PER_GPU * max(1, torch.cuda.device_count())
    else:
        n = os.cpu_count() or 1
    return max(1, min(n, n_units))


def devices_for(device, jobs: int) -> list[str]:
    """The device of each worker slot: every GPU in turn, or the CPU."""
    if device.type != "cuda":
        return ["cpu"]
    import torch

    if device.index is not None:
        return [str(device)]
    return [f"cuda:{i}" for i in range(max(1, torch.cuda.device_count()))]


def threads_per_job(requested: int | None, config_threads: int, jobs: int) -> int:
    """Torch threads in each worker: as asked, else the cores shared out between the workers."""
    if requested:
        return requested
    if jobs == 1:
        return config_threads
    return max(1, (os.cpu_count() or 1) // jobs)


def run_units(jobs: list[UnitJob], on_done: OnDone, *, workers: int, cluster: str | None = None,
              data: Any = None) -> None:
    """Run every job where asked; `on_done` gets each record in the parent as it finishes."""
    if cluster:
        run_on_cluster(jobs, on_done, cluster)
    elif workers > 1 and len(jobs) > 1:
        run_in_processes(jobs, on_done, workers)
    else:
        run_here(jobs, on_done, data)


def assign(jobs: Iterable[UnitJob], devices: list[str]) -> list[UnitJob]:
    """Spread the jobs over the devices in turn."""
    return [dataclasses.replace(job, device=devices[i % len(devices)]) for i, job in enumerate(jobs)]
