"""Throughput benchmark: the harness's training and evaluation against a plain PyTorch loop.

`python -m bench.speed --dataset imdb --device cpu` measures, for every model of the config
(default `configs/quick.toml`, with `data.max_length` overridden to 400 as in the issue's
targets), on the same real examples of the dataset:

- **harness**: `bench.train.fit` itself (length-bucketed batches from `iterate_batches`,
  AdamW, gradient clipping, one sync per epoch) for one epoch over a fixed training subset, and
  `bench.train.evaluate` (inference mode, one global length sort, `eval_batch_size`) over a
  test subset of the same size;
- **reference**: the loop a tutorial would write, inside this file: the same model class and
  initialisation, a `DataLoader` over int64 ids padded to max_length, shuffled, no bucketing, no
  packing, `loss.item()` every step; evaluation under `torch.no_grad()` with the training batch
  size, again padded to max_length.

Each repeat runs reference then harness (alternating), from a fresh model with the same
initialisation; tokens are real (non-padding) tokens, so both loops count the same tokens.
The CSV holds medians and min–max over repeats, and per-repeat ratios harness / reference.
Also measured: peak memory per loop (RSS on CPU, `torch.cuda.max_memory_allocated` on CUDA),
the Transformer's achieved training GFLOP/s (matmul/attention FLOPs counted with
`FlopCounterMode` on every batch of the measured epoch) against a matmul peak measured in the
same run, and the seconds of a second, cache-hit run of the data preparation.

CSV format (`results/speed.csv`, tidy, one row per model × metric): `dataset, model, metric,
median, min, max, repeats, unit` followed by the environment, repeated on every row:
`device, torch, threads, cpu_count, max_length, batch_size, eval_batch_size, examples`.
`model` is `all` for run-wide metrics (`matmul_peak_gflops`, `prep_cache_hit_seconds`, and
`baseline_memory_mb`: the process's RSS, or CUDA allocated memory, once the data is loaded).
Metric names end in `_harness`, `_reference` or `_ratio` (harness / reference, computed per
repeat pair, then summarised).

This module only measures; `bench.speed_report` renders the report section from the CSV alone.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from bench import cli
from bench.config import BenchError, Config, budget_path, load
from bench.data import EncodedData, Split, iterate_batches, prepare
from bench.models import build_for_unit
from bench.results import SPEED_COLUMNS, atomic_write_csv
from bench.train import autocast, evaluate, fit, resolve_device

log = logging.getLogger("bench")

DEFAULT_MAX_LENGTH = 400  # the targets are defined at this length
Row = dict[str, object]   # one row of speed.csv, before the environment columns are added
Measurement = dict[str, float]  # one loop's seconds and peak memory (and, for harness_train, tokens)


# ---------------------------------------------------------------- memory and timing helpers

def _proc_status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status in MiB (VmHWM: peak RSS, VmRSS: RSS now); None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_memory(device: torch.device) -> None:
    """Start a loop's peak from now, so each loop's peak is its own, not the process's so far."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return
    try:  # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) of this process
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # elsewhere the peak is the process-wide maximum so far


def _peak_memory_mb(device: torch.device) -> float:
    """Peak since the last reset: allocated tensor memory on CUDA, peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    peak = _proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _current_memory_mb(device: torch.device) -> float:
    """Memory held right now: RSS on CPU (VmRSS), allocated tensor memory on CUDA."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated() / 2**20
    rss = _proc_status_mb("VmRSS")
    return float("nan") if rss is None else rss


def _sync(device: torch.device) -> None:
    """CUDA runs asynchronously: wait for it before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak_gflops(device: torch.device, n: int = 2048, reps: int = 10,
                       dtype: torch.dtype | None = None) -> float:
    """Best-of-`reps` GFLOP/s of torch.matmul on two n×n matrices (float32 unless `dtype`):
    the ceiling the Transformer's achieved FLOP rate is compared with."""
    dtype = dtype or torch.float32
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    for _ in range(2):
        torch.matmul(a, b)
    _sync(device)
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


# ---------------------------------------------------------------- the two loops

def _fresh_model(cfg: Config, name: str, data: EncodedData, device: torch.device,
                 seed: int) -> tuple[torch.nn.Module, Config]:
    """The model exactly as run/tune build it, so both loops start from the same weights, and `cfg`
    with this model's training settings (its own lr, schedule) as run/tune train it."""
    model, train_cfg = build_for_unit(cfg, name, data, seed)
    return model.to(device), dataclasses.replace(cfg, train=train_cfg)


def _padded_loader(split: Split, batch_size: int, generator: torch.Generator | None = None) -> DataLoader:
    """The tutorial's input pipeline: int64 ids padded to max_length; shuffled when given a generator."""
    ds = TensorDataset(torch.from_numpy(split.ids.astype(np.int64)), torch.from_numpy(split.lengths),
                       torch.from_numpy(split.labels))
    return DataLoader(ds, batch_size=batch_size, shuffle=generator is not None, generator=generator)


def reference_train(model: torch.nn.Module, split: Split, cfg: Config, device: torch.device,
                    seed: int) -> Measurement:
    """The tutorial loop: padded to max_length, shuffled DataLoader, .item() every step."""
    loader = _padded_loader(split, cfg.train.batch_size, torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    model.train()
    _reset_peak_memory(device)
    start = time.perf_counter()
    total = 0.0
    for ids, lengths, labels in loader:
        ids, lengths, labels = ids.to(device), lengths.to(device), labels.to(device)
        logits = model(ids, lengths)
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        if cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        total += loss.item()
    _sync(device)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": _peak_memory_mb(device), "loss": total / len(loader)}


def reference_eval(model: torch.nn.Module, split: Split, cfg: Config, device: torch.device) -> Measurement:
    """The tutorial's evaluation: no_grad, the training batch size, padded, loss and probabilities kept."""
    loader = _padded_loader(split, cfg.train.batch_size)
    model.eval()
    _reset_peak_memory(device)
    start = time.perf_counter()
    loss_sum, probs = 0.0, []
    with torch.no_grad():
        for ids, lengths, labels in loader:
            ids, lengths, labels = ids.to(device), lengths.to(device), labels.to(device)
            logits = model(ids, lengths)
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
            probs.append(torch.softmax(logits, dim=-1).cpu())
    _sync(device)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": _peak_memory_mb(device)}


def harness_train(model: torch.nn.Module, split: Split, cfg: Config, device: torch.device,
                  seed: int) -> Measurement:
    """One epoch of bench.train.fit itself; its own clock covers the training loop only."""
    tiny = split.subset(np.arange(min(4, len(split))))  # fit's per-epoch evaluations, outside its clock
    data = EncodedData(dataset="speed", num_classes=int(model.head.out_features), vocab_size=0,
                       max_length=cfg.data.max_length, train=split, val=tiny, test=tiny, train_eval=tiny,
                       tokenizer_json="", cache_hit=True, source="speed")
    tcfg = dataclasses.replace(cfg.train, epochs=1)
    _reset_peak_memory(device)
    result = fit(model, data, tcfg, device=device, seed=seed, desc="speed")
    return {"seconds": result.history[0].epoch_seconds, "peak_mb": _peak_memory_mb(device),
            "tokens": result.train_tokens}


def harness_eval(model: torch.nn.Module, split: Split, cfg: Config, device: torch.device) -> Measurement:
    """bench.train.evaluate as the runs call it (inference mode, length-sorted, eval_batch_size)."""
    model.to(device)
    _reset_peak_memory(device)
    start = time.perf_counter()
    evaluate(model, split, device, cfg.train.eval_batch_size, cfg.train.amp, cfg.train.pad_multiple)
    _sync(device)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": _peak_memory_mb(device)}


LOOPS: dict[str, tuple[Callable[..., Measurement], Callable[..., Measurement]]] = {
    "reference": (reference_train, reference_eval),  # reference first in every repeat
    "harness": (harness_train, harness_eval),
}


def harness_positions(split: Split, cfg: Config, seed: int) -> int:
    """Token positions (real + padding) the harness's training batches hold in fit's first epoch."""
    return sum(ids.size for ids, *_ in iterate_batches(split, cfg.train.batch_size, shuffle=True, seed=seed,
                                                        epoch=1, chunk=cfg.train.bucket_chunk,
                                                        pad_multiple=cfg.train.pad_multiple))


def count_train_flops(model: torch.nn.Module, split: Split, cfg: Config, device: torch.device, *,
                      padded: bool, seed: int) -> float:
    """Matmul/attention FLOPs (forward + backward) of one training epoch over `split`.

    Harness: every length-bucketed batch of fit's first epoch is counted (shapes differ).
    Reference: every batch has shape [batch, max_length], so one full batch is counted and scaled.
    """
    model.train()

    def step(ids: np.ndarray, lengths: np.ndarray, labels: np.ndarray) -> float:
        with FlopCounterMode(display=False) as counter:
            with autocast(device, cfg.train.amp and not padded):
                logits = model(torch.from_numpy(np.ascontiguousarray(ids)).to(device),
                               torch.from_numpy(lengths).to(device))
                loss = F.cross_entropy(logits.float(), torch.from_numpy(labels).to(device))
            loss.backward()
        model.zero_grad(set_to_none=True)
        return float(counter.get_total_flops())

    bs = cfg.train.batch_size
    if padded:
        n = min(bs, len(split))
        per = step(split.ids[:n].astype(np.int64), split.lengths[:n], split.labels[:n])
        return per * len(split) / n
    return sum(step(ids, lengths, labels) for ids, lengths, labels, _ in
               iterate_batches(split, bs, shuffle=True, seed=seed, epoch=1, chunk=cfg.train.bucket_chunk,
                               pad_multiple=cfg.train.pad_multiple))


# ---------------------------------------------------------------- one model

def _summary(values: list[float]) -> tuple[float, float, float]:
    return float(statistics.median(values)), float(min(values)), float(max(values))


def _unit(metric: str) -> str:
    for suffix, unit in (("tokens_per_s", "tokens/s"), ("samples_per_s", "samples/s"), ("gflops_per_s", "GFLOP/s"),
                         ("gflop_per_epoch", "GFLOP"), ("_mb", "MiB"), ("seconds", "s")):
        if suffix in metric:
            return unit if not metric.endswith("_ratio") else "ratio"
    return "ratio" if ("ratio" in metric or "over" in metric) else "fraction"


def _warm_up(cfg: Config, name: str, data: EncodedData, split: Split, device: torch.device, seed: int) -> None:
    """Thread pools, allocator and first-call dispatch warm up on a few batches of each loop, untimed,
    so the first measured repeat is not the slowest for reasons that have nothing to do with the loop."""
    warm = split.subset(np.arange(min(len(split), 2 * cfg.train.batch_size)))
    for train_fn, _ in LOOPS.values():
        model, model_cfg = _fresh_model(cfg, name, data, device, seed)
        train_fn(model, warm, model_cfg, device, seed)


def _flush(device: torch.device, loop: str, cfg: Config) -> None:
    """Subnormal floats per loop (CPU): a tutorial loop leaves them on; the harness flushes them to zero
    as its config says. `harness_subnormal` is the harness with flushing off, to show what it buys."""
    if device.type == "cpu":
        torch.set_flush_denormal(loop == "harness" and cfg.train.flush_denormal)


def _measure_loop(loop: str, cfg: Config, name: str, data: EncodedData, train_split: Split, eval_split: Split,
                  device: torch.device, seed: int, rep: int) -> Measurement:
    """One repeat of one loop from a fresh model: training rates, evaluation rates, peak memory."""
    _flush(device, loop, cfg)
    train_fn, eval_fn = LOOPS["harness" if loop == "harness_subnormal" else loop]
    tokens, eval_tokens = int(train_split.lengths.sum()), int(eval_split.lengths.sum())
    model, model_cfg = _fresh_model(cfg, name, data, device, seed)
    tr = train_fn(model, train_split, model_cfg, device, seed + rep)
    ev = eval_fn(model, eval_split, cfg, device)
    if loop == "harness" and tr["tokens"] != tokens:  # both loops must count the same real tokens
        raise RuntimeError(f"harness counted {tr['tokens']} tokens, expected {tokens}")
    log.info("%s %s repeat %d: train %.0f tok/s (%.1fs), eval %.0f tok/s", name, loop, rep + 1,
             tokens / tr["seconds"], tr["seconds"], eval_tokens / ev["seconds"])
    return {"train_tokens_per_s": tokens / tr["seconds"], "train_samples_per_s": len(train_split) / tr["seconds"],
            "eval_tokens_per_s": eval_tokens / ev["seconds"], "eval_samples_per_s": len(eval_split) / ev["seconds"],
            "train_seconds": tr["seconds"], "peak_memory_mb": max(tr["peak_mb"], ev["peak_mb"])}


def _timed_repeats(cfg: Config, name: str, data: EncodedData, train_split: Split, eval_split: Split,
                   device: torch.device, repeats: int, seed: int) -> dict[str, list[float]]:
    """Per repeat, reference then harness (alternating, so drift hits both); ratios pair the two
    loops within a repeat. Returns every metric's value per repeat."""
    m: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        m.setdefault(key, []).append(value)

    loops = [*LOOPS, "harness_subnormal"] if device.type == "cpu" else list(LOOPS)
    for rep in range(repeats):
        for loop in loops:
            for key, value in _measure_loop(loop, cfg, name, data, train_split, eval_split, device, seed,
                                            rep).items():
                add(f"{key}_{loop}", value)
        for what in ("train_tokens_per_s", "train_samples_per_s", "eval_tokens_per_s", "eval_samples_per_s"):
            add(f"{what}_ratio", m[f"{what}_harness"][-1] / m[f"{what}_reference"][-1])
        if "harness_subnormal" in loops:  # what flushing subnormals buys the harness itself
            add("flush_speedup_ratio", m["train_tokens_per_s_harness"][-1] / m["train_tokens_per_s_harness_subnormal"][-1])
        for loop in ("harness", "reference"):
            add(f"eval_over_train_{loop}", m[f"eval_tokens_per_s_{loop}"][-1] / m[f"train_tokens_per_s_{loop}"][-1])
    return m


def _flop_metrics(m: dict[str, list[float]], cfg: Config, name: str, data: EncodedData, split: Split,
                  device: torch.device, seed: int, matmul_peak: float | None) -> dict[str, float]:
    """Adds achieved GFLOP/s (and the fraction of the matmul peak) per repeat to `m`, from the
    FLOPs of one counted epoch; returns the per-epoch GFLOP of each loop."""
    model, _ = _fresh_model(cfg, name, data, device, seed)
    single = {}
    for loop, padded in (("harness", False), ("reference", True)):
        flops = count_train_flops(model, split, cfg, device, padded=padded, seed=seed)
        m[f"train_gflops_per_s_{loop}"] = [flops / s / 1e9 for s in m[f"train_seconds_{loop}"]]
        single[f"train_gflop_per_epoch_{loop}"] = flops / 1e9
        if matmul_peak:
            m[f"peak_fraction_{loop}"] = [g / matmul_peak for g in m[f"train_gflops_per_s_{loop}"]]
    return single


def measure_model(cfg: Config, name: str, data: EncodedData, train_split: Split, eval_split: Split,
                  device: torch.device, repeats: int, seed: int = 0, matmul_peak: float | None = None) -> list[Row]:
    """All rows for one model: alternating reference / harness repeats, padding, then FLOPs for transformers."""
    _warm_up(cfg, name, data, train_split, device, seed)
    m = _timed_repeats(cfg, name, data, train_split, eval_split, device, repeats, seed)
    tokens = int(train_split.lengths.sum())
    single = {"padding_fraction_reference": 1 - tokens / (len(train_split) * cfg.data.max_length),
              "padding_fraction_harness": 1 - tokens / harness_positions(train_split, cfg, seed)}
    if cfg.model[name].kind == "transformer":
        single.update(_flop_metrics(m, cfg, name, data, train_split, device, seed, matmul_peak))
    rows: list[Row] = []
    for key, values in m.items():
        med, lo, hi = _summary(values)
        rows.append({"model": name, "metric": key, "median": med, "min": lo, "max": hi, "repeats": len(values),
                     "unit": _unit(key)})
    for key, value in single.items():
        rows.append({"model": name, "metric": key, "median": value, "min": value, "max": value, "repeats": 1,
                     "unit": _unit(key)})
    return rows


# ---------------------------------------------------------------- the benchmark

def _prepare_timed(dataset: str, cfg: Config, data_dir: Path | None, cache_dir: Path | None,
                   repeats: int) -> tuple[EncodedData, list[float]]:
    """The data, prepared once (a cache miss at most), then `repeats` more times: those are the timed
    cache hits (the target is that a rerun does not pay for tokenisation again)."""
    t0 = time.perf_counter()
    data = prepare(dataset, cfg, data_dir, cache_dir)
    log.info("%s: data prepared in %.1fs (%s)", dataset, time.perf_counter() - t0,
             "cache hit" if data.cache_hit else "cache miss, now cached")
    hits = []
    for _ in range(max(1, repeats)):
        del data  # one copy in memory at a time
        t0 = time.perf_counter()
        data = prepare(dataset, cfg, data_dir, cache_dir)
        hits.append(time.perf_counter() - t0)
        if not data.cache_hit:
            raise BenchError("the second data preparation did not hit the cache (is the cache folder writable?)")
    return data, hits


def _subsets(data: EncodedData, n: int, seed: int) -> tuple[Split, Split]:
    """A fixed random training subset of (at most) n examples and as many test examples, the same for
    every model and loop, so rates are comparable."""
    rng = np.random.default_rng(seed)
    n = min(len(data.train), n)
    train_split = data.train.subset(np.sort(rng.choice(len(data.train), size=n, replace=False)))
    n_eval = min(len(data.test), n)
    eval_split = data.test.subset(np.sort(rng.choice(len(data.test), size=n_eval, replace=False)))
    return train_split, eval_split


def _peak_dtype(cfg: Config, device: torch.device) -> torch.dtype:
    """The dtype the harness trains in (bf16 under CUDA autocast), so the peak is a fair ceiling."""
    if device.type == "cuda" and cfg.train.amp and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _run_wide_rows(baseline_mb: float, hits: list[float], peak: float) -> list[Row]:
    """The `all` rows: memory before any model, the cache-hit seconds, the matmul peak."""
    med, lo, hi = _summary(hits)
    return [{"model": "all", "metric": "baseline_memory_mb", "median": baseline_mb, "min": baseline_mb,
             "max": baseline_mb, "repeats": 1, "unit": "MiB"},
            {"model": "all", "metric": "prep_cache_hit_seconds", "median": med, "min": lo, "max": hi,
             "repeats": len(hits), "unit": "s"},
            {"model": "all", "metric": "matmul_peak_gflops", "median": peak, "min": peak, "max": peak,
             "repeats": 1, "unit": "GFLOP/s"}]


def _environment(cfg: Config, dataset: str, device: torch.device, examples: int) -> Row:
    """Repeated on every row, so a row read alone still says what it was measured on."""
    return {"dataset": dataset, "device": device.type, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "max_length": cfg.data.max_length, "batch_size": cfg.train.batch_size,
            "eval_batch_size": cfg.train.eval_batch_size, "examples": examples}


def run_benchmark(cfg: Config, dataset: str, device: torch.device, data_dir: Path | None, cache_dir: Path | None,
                  batches: int, repeats: int, models: list[str], seed: int = 0,
                  matmul_size: int = 2048) -> pd.DataFrame:
    """Every row of speed.csv: the run-wide metrics, then each model's, with the environment on each row."""
    data, hits = _prepare_timed(dataset, cfg, data_dir, cache_dir, repeats)
    train_split, eval_split = _subsets(data, batches * cfg.train.batch_size, seed)
    peak_dtype = _peak_dtype(cfg, device)
    peak = matmul_peak_gflops(device, n=matmul_size, dtype=peak_dtype)
    log.info("matmul peak (%s): %.1f GFLOP/s", str(peak_dtype).replace("torch.", ""), peak)
    rows = _run_wide_rows(_current_memory_mb(device), hits, peak)
    for name in models:
        rows += measure_model(cfg, name, data, train_split, eval_split, device, repeats, seed, matmul_peak=peak)
        # the peak again after each model, so a momentarily busy machine does not understate it
        peak_after = matmul_peak_gflops(device, n=matmul_size, dtype=peak_dtype)
        log.info("matmul peak again: %.1f GFLOP/s", peak_after)
        peak = max(peak, peak_after)
    next(r for r in rows if r["metric"] == "matmul_peak_gflops").update(median=peak, max=peak)
    env = _environment(cfg, dataset, device, len(train_split))
    return pd.DataFrame([{**env, **r} for r in rows], columns=SPEED_COLUMNS)


# ---------------------------------------------------------------- units in parallel

def _units_wall_seconds(cfg: Config, dataset: str, data: EncodedData, models: list[str], seeds: list[int],
                        workers: int, threads: int, data_dir: Path | None, cache_dir: Path | None) -> float:
    """Wall seconds of real units (train, validation, test, predictions) through bench.units, as
    `bench.run --jobs` runs them, into a throw-away folder."""
    import tempfile

    from bench.units import UnitJob, run_units

    with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
        jobs = [UnitJob(cfg=cfg, dataset=dataset, model=m, seed=s, out=Path(tmp), data_dir=data_dir,
                        cache_dir=cache_dir, threads=threads) for s in seeds for m in models]
        start = time.perf_counter()
        run_units(jobs, lambda record: None, workers=workers, data=data)
        return time.perf_counter() - start


def measure_jobs(cfg: Config, dataset: str, data_dir: Path | None, cache_dir: Path | None, repeats: int,
                 epochs: int = 1) -> list[Row]:
    """`--jobs N` with 1 thread each against `--jobs 1` with N threads (N = cores), on the same real
    units (rnn and attn_rnn, N seeds, `epochs` epochs, the config's own data settings), alternating."""
    cores = os.cpu_count() or 1
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs))
    models = [m for m in ("rnn", "attn_rnn") if m in cfg.model]
    seeds = list(range(max(2, cores)))
    data = prepare(dataset, cfg, data_dir, cache_dir)  # encoded once; the workers hit the cache
    threads_before = torch.get_num_threads()
    times: dict[str, list[float]] = {"one": [], "many": []}
    try:
        for rep in range(repeats):
            torch.set_num_threads(cores)
            times["one"].append(_units_wall_seconds(cfg, dataset, data, models, seeds, 1, cores, data_dir, cache_dir))
            times["many"].append(_units_wall_seconds(cfg, dataset, data, models, seeds, cores, 1, data_dir,
                                                     cache_dir))
            log.info("units: --jobs 1 × %d threads %.1fs, --jobs %d × 1 thread %.1fs", cores, times["one"][-1],
                     cores, times["many"][-1])
    finally:
        torch.set_num_threads(threads_before)
    env = {"dataset": dataset, "max_length": cfg.data.max_length, "examples": len(data.train), "threads": cores}
    speedup = [a / b for a, b in zip(times["one"], times["many"])]
    rows = []
    for metric, values, unit in ((f"units_wall_seconds_jobs1_threads{cores}", times["one"], "s"),
                                 (f"units_wall_seconds_jobs{cores}_threads1", times["many"], "s"),
                                 ("jobs_speedup_ratio", speedup, "ratio")):
        med, lo, hi = _summary(values)
        rows.append({**env, "model": f"{len(models) * len(seeds)} units ({', '.join(models)}; {epochs} epoch)",
                     "metric": metric, "median": med, "min": lo, "max": hi, "repeats": len(values), "unit": unit})
    return rows


# ---------------------------------------------------------------- CLI

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.OneLineParser(prog="python -m bench.speed",
                          description="Throughput of the harness's training and evaluation against a plain "
                                      "PyTorch loop, per model, on real batches; writes a tidy CSV.")
    p.add_argument("--dataset", default="imdb", help="imdb or ag_news (default imdb)")
    p.add_argument("--config", default=None, help="a TOML config (default configs/quick.toml)")
    p.add_argument("--models", default=None, help="comma list of models (default: the config's list)")
    cli.add_data_options(p)
    cli.add_compute_options(p, "cpu")
    p.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH,
                   help=f"override data.max_length (default {DEFAULT_MAX_LENGTH}, as in the issue's targets; "
                        "0 = the config's)")
    p.add_argument("--batches", type=int, default=50,
                   help="training batches per measurement (examples = batches × batch size; default 50, one "
                        "bucketing chunk)")
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats per loop (default 3)")
    p.add_argument("--matmul-size", type=int, default=2048,
                   help="side of the square float32 matrices timed for the matmul peak (default 2048)")
    p.add_argument("--seed", type=int, default=0, help="model init / subset seed (default 0)")
    p.add_argument("--jobs-dataset", default="ag_news",
                   help="dataset of the --jobs comparison (real units at the config's own length; default "
                        "ag_news); 'none' skips it")
    p.add_argument("--out", default="results/speed.csv", help="CSV to write (default results/speed.csv)")
    return p.parse_args(argv)


def _check_options(args: argparse.Namespace) -> None:
    """Bad options fail in one line before any data is prepared or model built (minutes saved)."""
    if args.max_length < 0:
        raise BenchError(f"--max-length must be >= 0 (0 = the config's), got {args.max_length}")
    for option, most in (("batches", 10_000), ("repeats", 100), ("matmul_size", 16_384), ("max_length", 8_192)):
        value = getattr(args, option)
        if value < (0 if option == "max_length" else 1):
            raise BenchError(f"--{option.replace('_', '-')} must be at least 1, got {value}")
        if value > most:
            raise BenchError(f"--{option.replace('_', '-')} must be at most {most:,}, got {value}")
    if not args.out.strip():
        raise BenchError("--out is empty (an unset shell variable?)")
    out = Path(args.out)
    if out.is_dir():
        raise BenchError(f"--out {args.out} is a folder; give the path of the CSV to write")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise BenchError(f"--out {args.out} lies below {parent}, which is a file")


def _models_to_measure(cfg: Config, requested: str | None) -> list[str]:
    """The requested models, else the config's; TF-IDF has no training loop to compare, so it is never one."""
    neural = [m for m in cfg.models if cfg.model[m].kind != "tfidf"]
    models = neural if not requested else [m.strip() for m in requested.split(",") if m.strip()]
    unknown = [m for m in models if m not in neural]
    if unknown:
        raise BenchError(f"unknown model '{unknown[0]}' (choose from {', '.join(neural)})")
    return models


def _median(frame: pd.DataFrame, model: str, metric: str) -> float:
    hit = frame[(frame["model"] == model) & (frame["metric"] == metric)]
    return float(hit["median"].iloc[0]) if len(hit) else float("nan")


def execute(args: argparse.Namespace) -> int:
    _check_options(args)
    device = resolve_device(args.device)
    cfg = load(args.config or budget_path("quick"))
    if args.max_length:
        cfg.data = dataclasses.replace(cfg.data, max_length=args.max_length)
    models = _models_to_measure(cfg, args.models)
    cli.set_threads(args.threads, cfg.train.threads)
    log.info("speed benchmark: %s on %s, %d threads, torch %s, %s", args.dataset, device,
             torch.get_num_threads(), torch.__version__, platform.processor() or platform.machine())
    frame = run_benchmark(cfg, args.dataset, device, cli.data_dir(args), cli.cache_dir(args), args.batches,
                          args.repeats, models, args.seed, args.matmul_size)
    if args.jobs_dataset != "none" and device.type == "cpu":
        jobs_cfg = load(args.config or budget_path("quick"))  # the budget's own length, as bench.run uses it
        rows = measure_jobs(jobs_cfg, args.jobs_dataset, cli.data_dir(args), cli.cache_dir(args), args.repeats)
        env = frame.iloc[0].to_dict()
        frame = pd.concat([frame, pd.DataFrame([{**env, **r} for r in rows], columns=SPEED_COLUMNS)],
                          ignore_index=True)
    atomic_write_csv(Path(args.out), frame)
    for m in models:
        log.info("%s: train ratio %.2f×, eval ratio %.2f×, eval/train %.2f×", m,
                 _median(frame, m, "train_tokens_per_s_ratio"), _median(frame, m, "eval_tokens_per_s_ratio"),
                 _median(frame, m, "eval_over_train_harness"))
    log.info("wrote %s", args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.cli_main(parse_args, execute, argv, "no speed.csv was written")


if __name__ == "__main__":
    sys.exit(main())
