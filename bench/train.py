"""Fit and evaluate one model on one dataset: epochs, early stopping, per-epoch metrics.

Validation decides early stopping and the restored checkpoint; the test split is never
touched here except through `evaluate`, which the caller runs once, after fitting.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from bench.config import BenchError, TrainConfig
from bench.data import EncodedData, Split, iterate_batches
from bench.results import EpochRecord

log = logging.getLogger("bench")


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the run is recorded as failed with this reason."""


@dataclass
class EvalResult:
    loss: float
    acc: float
    probs: np.ndarray  # [N, classes] in split order


@dataclass
class FitResult:
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    train_seconds: float = 0.0
    train_tokens: int = 0

    @property
    def best(self) -> EpochRecord:
        """The record of the epoch whose weights were restored."""
        return self.history[self.best_epoch - 1]


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda' or 'auto' → a torch.device; asking for CUDA without one is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise BenchError("--device cuda was requested but CUDA is not available here "
                             "(use --device cpu or --device auto)")
        return torch.device("cuda")
    if name == "cpu":
        return torch.device("cpu")
    raise BenchError(f"unknown device '{name}' (choose cpu, cuda or auto)")


def set_deterministic(device: torch.device) -> None:
    """Deterministic kernels (slower on CUDA); CPU kernels used here are deterministic already."""
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cpu")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def autocast(device: torch.device, amp: bool):
    """bf16 autocast on CUDA where supported, else fp16; a no-op on CPU or with amp off."""
    if device.type != "cuda" or not amp:
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t


def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """AdamW's parameter groups: one group, every parameter decayed (`decay_all`, the default), or
    nanoGPT's split — decay for matrices and embeddings (ndim >= 2), none for biases and LayerNorm
    weights, whose decay only pulls them towards an arbitrary zero."""
    params = list(model.parameters())
    if cfg.decay_all:
        return [{"params": params, "weight_decay": cfg.weight_decay}]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    if cfg.lr_schedule == "none":
        return None
    warmup = max(1, int(cfg.warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 1.0 - progress if cfg.lr_schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


@torch.inference_mode()
def evaluate(model: torch.nn.Module, split: Split, device: torch.device, batch_size: int,
             amp: bool = True, pad_multiple: int = 0) -> EvalResult:
    """Mean cross-entropy, accuracy and class probabilities over a whole split."""
    model.eval()
    probs = None
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for ids, lengths, labels, idx in iterate_batches(split, batch_size, shuffle=False, pad_multiple=pad_multiple):
        y = _to_device(labels, device)
        with autocast(device, amp):
            logits = model(_to_device(ids, device), _to_device(lengths, device)).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        p = torch.softmax(logits, dim=-1).cpu().numpy()
        if probs is None:
            probs = np.zeros((len(split), p.shape[1]), dtype=np.float32)
        probs[idx] = p
    acc = float((probs.argmax(1) == split.labels).mean())
    return EvalResult(loss=float(loss_sum.item()) / len(split), acc=acc, probs=probs)


@dataclass
class _EpochTrainer:
    """One model's optimiser, schedule and scaler, and one training pass over the data."""
    model: torch.nn.Module
    data: EncodedData
    cfg: TrainConfig
    device: torch.device
    seed: int
    desc: str
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler

    @classmethod
    def create(cls, model, data, cfg: TrainConfig, device, seed: int, desc: str) -> "_EpochTrainer":
        opt_kwargs = {"fused": True} if device.type == "cuda" else {}
        opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay, **opt_kwargs)
        sched = _schedule(opt, cfg, math.ceil(len(data.train) / cfg.batch_size) * cfg.epochs)
        use_scaler = device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported()
        return cls(model, data, cfg, device, seed, desc, opt, sched, torch.amp.GradScaler("cuda", enabled=use_scaler))

    def run_epoch(self, epoch: int) -> tuple[float, float, int, float]:
        """One pass over the shuffled, length-bucketed training batches:
        (mean train loss, train accuracy, real tokens seen, seconds)."""
        model, cfg, device = self.model, self.cfg, self.device
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        tokens = 0
        start = time.perf_counter()
        batches = iterate_batches(self.data.train, cfg.batch_size, shuffle=True, seed=self.seed, epoch=epoch,
                                  chunk=cfg.bucket_chunk, pad_multiple=cfg.pad_multiple)
        for ids, lengths, labels, _ in tqdm(batches, total=math.ceil(len(self.data.train) / cfg.batch_size),
                                            leave=False, disable=None, desc=f"{self.desc} epoch {epoch}"):
            y = _to_device(labels, device)
            with autocast(device, cfg.amp):
                logits = model(_to_device(ids, device), _to_device(lengths, device))
                loss = F.cross_entropy(logits.float(), y)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                self.scaler.unscale_(self.opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            self.scaler.step(self.opt)
            self.scaler.update()
            if self.sched is not None:
                self.sched.step()
            loss_sum += loss.detach().double() * len(labels)
            correct += (logits.detach().argmax(-1) == y).sum()
            tokens += int(lengths.sum())
        n = len(self.data.train)
        return float(loss_sum.item()) / n, int(correct.item()) / n, tokens, time.perf_counter() - start  # one sync


def fit(model: torch.nn.Module, data: EncodedData, cfg: TrainConfig, *, device: torch.device, seed: int,
        desc: str = "",
        on_epoch: Callable[[int, EpochRecord], None] | None = None, order_seed: int | None = None) -> FitResult:
    """Train with AdamW + clipping, early-stop on `cfg.select_on` (validation loss, or accuracy), and
    restore the best epoch's weights.

    `cfg` is the unit's resolved training settings (`ModelConfig.train_config`), its own lr included.
    `on_epoch(epoch, record)` runs after each epoch's record (tuning reports and prunes
    there; an exception it raises ends the fit). The batch order follows `order_seed` (default: `seed`).
    """
    model.to(device)
    trainer = _EpochTrainer.create(model, data, cfg, device, seed if order_seed is None else order_seed, desc)
    result = FitResult()
    best_score, best_state, since_best = -math.inf, None, 0
    for epoch in range(1, cfg.epochs + 1):
        # 1. train one epoch
        train_loss, train_acc, tokens, seconds = trainer.run_epoch(epoch)
        if not math.isfinite(train_loss):
            raise TrainingDiverged(f"training loss became {train_loss} in epoch {epoch}")
        # 2. measure: validation, and the eval-mode train subset for the overfitting gap
        val = evaluate(model, data.val, device, cfg.eval_batch_size, cfg.amp, cfg.pad_multiple)
        tr_eval = evaluate(model, data.train_eval, device, cfg.eval_batch_size, cfg.amp, cfg.pad_multiple)
        result.train_seconds += seconds
        result.train_tokens += tokens
        record = EpochRecord(epoch=epoch, train_loss=train_loss, train_acc=train_acc, train_eval_loss=tr_eval.loss,
                             train_eval_acc=tr_eval.acc, val_loss=val.loss, val_acc=val.acc,
                             gap_acc=tr_eval.acc - val.acc, gap_loss=val.loss - tr_eval.loss,
                             lr=trainer.opt.param_groups[0]["lr"], epoch_seconds=seconds,
                             train_tokens_per_s=tokens / seconds)
        result.history.append(record)
        log.info("%s epoch %d: train loss %.4f acc %.4f | val loss %.4f acc %.4f | gap %.4f | %.0fs, %.0f tok/s",
                 desc, epoch, train_loss, train_acc, val.loss, val.acc, record.gap_acc,
                 seconds, record.train_tokens_per_s)
        if not math.isfinite(val.loss):
            raise TrainingDiverged(f"validation loss became {val.loss} in epoch {epoch}")
        if on_epoch is not None:
            on_epoch(epoch, record)
        # 3. early stopping on the selection metric, keeping the best weights
        score = val.acc if cfg.select_on == "val_acc" else -val.loss
        if score > best_score:
            best_score, since_best, result.best_epoch = score, 0, epoch
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
            if since_best >= cfg.patience:
                log.info("%s: early stop after epoch %d (best epoch %d)", desc, epoch, result.best_epoch)
                break
    model.load_state_dict(best_state)
    return result
