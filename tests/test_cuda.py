"""The CUDA path on a real GPU: bf16 autocast, bf16 against fp32, --deterministic, --jobs on one GPU,
and the one-line out-of-memory message.

Every test here is marked `cuda` and skipped without a CUDA device, so the normal `pytest` run
passes on a CPU machine; on a GPU run them alone with `pytest -m cuda tests/test_cuda.py`
(scripts/gpu_check.sh does). Tiny synthetic data (the keyword task of conftest.py), so the whole
file takes about a minute on one GPU, most of it CLI start-up.

Tolerances (bf16 against fp32, same seed, same initial weights):
- one forward pass of the freshly initialised model: logits within 0.05 absolute, class
  probabilities within 0.02 (bf16 keeps 8 mantissa bits: a relative error near 0.4% per operation);
- after training: both reach > 0.9 test accuracy, the accuracies differ by at most 0.02, and the
  first epoch's mean training loss differs by at most 0.03 (the trajectories drift apart slowly,
  so only the first epoch is compared closely).
On a 2-core CPU, emulating bf16 with CPU autocast, the measured differences were 0.003 (logits),
0.001 (probabilities), 0.0 (accuracy) and 0.0002 (first-epoch loss).
"""
from __future__ import annotations

import math
import os

import pandas as pd
import pytest
import torch

from bench import results
from bench.config import DataConfig, ModelConfig, TrainConfig
from bench.data import prepare
from bench.models import build_model, seed_everything
from bench.train import autocast, evaluate, fit
from conftest import REPO, TINY_CONFIG, run_cli as _run_cli

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

DATA = DataConfig(vocab_size=200, max_length=48, min_frequency=1, train_eval_size=200)
MODELS = {
    "rnn": ModelConfig(kind="rnn", embed_dim=16, hidden_dim=24, pooling="last", dropout=0.0),
    "attn_rnn": ModelConfig(kind="rnn", embed_dim=16, hidden_dim=24, pooling="attention", dropout=0.0),
    "transformer": ModelConfig(kind="transformer", embed_dim=16, hidden_dim=32, heads=2, dropout=0.0),
}
LOGIT_TOL, PROB_TOL = 0.05, 0.02          # one forward pass, bf16 against fp32
ACC_TOL, FIRST_LOSS_TOL = 0.02, 0.03      # after training, bf16 against fp32
# conftest's run_cli sets PYTHONPATH to the repo alone; keep this process's entries too, so a CLI
# finds packages installed with pip --target (scripts/gpu_check.sh carries datasets and optuna so)
CLI_ENV = {"PYTHONPATH": os.pathsep.join(p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p)}
TIMING = ["train_seconds", "wall_seconds", "train_tokens_per_s", "epoch_seconds", "threads"]
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def keyword_data(keyword_dir, tmp_path_factory):
    return prepare("imdb", DATA, keyword_dir, tmp_path_factory.mktemp("cache"))


def _model(data, name: str, seed: int = 0) -> torch.nn.Module:
    seed_everything(seed)
    return build_model(MODELS[name], data.vocab_size, data.num_classes, DATA.max_length)


def _train(data, name: str, amp: bool, seed: int = 0, epochs: int = 6):
    model = _model(data, name, seed)
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=1e-2, patience=epochs, amp=amp)
    fitted = fit(model, data, cfg, device=CUDA, seed=seed, desc=f"{name} amp={amp}")
    return model, fitted, evaluate(model, data.test, CUDA, 128, amp)


def _first_batch(data):
    ids = torch.from_numpy(data.test.ids[:128].astype("int64")).to(CUDA)
    return ids, torch.from_numpy(data.test.lengths[:128]).to(CUDA)


@pytest.mark.parametrize("name", list(MODELS))
def test_bf16_autocast_is_used_and_learns_the_keyword_task(keyword_data, name):
    assert torch.cuda.is_bf16_supported(), "expected a GPU with bf16 (Ampere or newer)"
    model = _model(keyword_data, name).to(CUDA)
    with torch.no_grad(), autocast(CUDA, True):
        assert model(*_first_batch(keyword_data)).dtype == torch.bfloat16  # the head ran in bf16
    _, fitted, test = _train(keyword_data, name, amp=True)
    assert test.acc > 0.9, f"{name} with bf16 reached only {test.acc:.3f} on a task a keyword decides"
    assert fitted.history[-1].train_loss < fitted.history[0].train_loss
    assert all(math.isfinite(r.val_loss) for r in fitted.history)


@pytest.mark.parametrize("name", list(MODELS))
def test_bf16_and_fp32_agree_within_tolerance(keyword_data, name):
    model = _model(keyword_data, name).to(CUDA).eval()
    batch = _first_batch(keyword_data)
    with torch.no_grad():
        fp32 = model(*batch).float()
        with autocast(CUDA, True):
            bf16 = model(*batch).float()
    assert (bf16 - fp32).abs().max().item() <= LOGIT_TOL
    assert (bf16.softmax(-1) - fp32.softmax(-1)).abs().max().item() <= PROB_TOL

    _, fit16, test16 = _train(keyword_data, name, amp=True)
    _, fit32, test32 = _train(keyword_data, name, amp=False)
    assert test16.acc > 0.9 and test32.acc > 0.9
    assert abs(test16.acc - test32.acc) <= ACC_TOL, (test16.acc, test32.acc)
    first16, first32 = fit16.history[0].train_loss, fit32.history[0].train_loss
    assert abs(first16 - first32) <= FIRST_LOSS_TOL, (first16, first32)


# ----------------------------------------------------------------------------- through the CLI

def run_cli(*args):
    return _run_cli(*args, env=CLI_ENV)


def _cli(root, name, cfg, data_dir, *extra):
    args = ["--config", str(cfg), "--data-dir", str(data_dir), "--cache-dir", str(root / "cache"),
            "--out", str(root / name), "--report", "none", "--device", "cuda", "--epochs", "2",
            "--models", "rnn,attn_rnn,transformer", *extra]
    return run_cli(*args)


def _tables(folder):
    runs, epochs = results.RunFolder(folder).read_tables()
    return runs.drop(columns=[c for c in TIMING if c in runs]), epochs.drop(columns=[c for c in TIMING if c in epochs])


def _assert_same(a, b):
    for x, y in zip(_tables(a), _tables(b)):
        pd.testing.assert_frame_equal(x, y)
    for name in ("rnn", "attn_rnn", "transformer"):  # every test probability too
        pd.testing.assert_frame_equal(pd.read_csv(results.RunFolder(a).predictions_path("imdb", name, 1)),
                                      pd.read_csv(results.RunFolder(b).predictions_path("imdb", name, 1)))


@pytest.fixture(scope="module")
def deterministic_run(tmp_path_factory, keyword_dir):
    """One --deterministic CLI run on the GPU (--jobs 1), shared by the tests that compare with it."""
    root = tmp_path_factory.mktemp("det")
    cfg = root / "tiny.toml"
    cfg.write_text(TINY_CONFIG)
    proc = _cli(root, "a", cfg, keyword_dir, "--deterministic", "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    return root, cfg


def test_deterministic_gives_identical_metrics_twice(deterministic_run, keyword_dir):
    root, cfg = deterministic_run
    proc = _cli(root, "b", cfg, keyword_dir, "--deterministic", "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    runs, _ = results.RunFolder(root / "a").read_tables()
    assert len(runs) == 6 and (runs["status"] == "ok").all() and set(runs["device"]) == {"cuda:0"}
    _assert_same(root / "a", root / "b")


def test_jobs_2_on_one_gpu_runs_and_gives_the_rows_of_jobs_1(deterministic_run, keyword_dir):
    root, cfg = deterministic_run
    proc = _cli(root, "two", cfg, keyword_dir, "--deterministic", "--jobs", "2")
    assert proc.returncode == 0, proc.stderr
    assert "6 units on 2 worker processes" in proc.stderr
    runs, _ = results.RunFolder(root / "two").read_tables()
    assert len(runs) == 6 and (runs["status"] == "ok").all() and set(runs["device"]) == {"cuda:0"}
    _assert_same(root / "a", root / "two")


OOM_CONFIG = """
budget = "oom"
datasets = ["imdb"]
models = ["transformer"]
seeds = [0]

[data]
vocab_size = 200
max_length = 48
min_frequency = 1
train_eval_size = 200

[train]
epochs = 1
batch_size = 4096       # every training text in one batch (~1,100 texts x ~40 tokens)
eval_batch_size = 4096

[model.transformer]
kind = "transformer"
embed_dim = 64
heads = 2
hidden_dim = 2097152    # feed-forward width: its activation alone is ~44k tokens x 2M x 2 bytes = 185 GB
dropout = 0.0
"""


def test_cuda_out_of_memory_is_a_one_line_message(tmp_path, keyword_dir):
    cfg = tmp_path / "oom.toml"
    cfg.write_text(OOM_CONFIG)
    proc = run_cli("--config", str(cfg), "--data-dir", str(keyword_dir), "--cache-dir", str(tmp_path / "cache"),
                   "--out", str(tmp_path / "out"), "--report", "none", "--device", "cuda", "--jobs", "1")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: imdb/transformer/seed0: CUDA out of memory; lower train.batch_size"), last
    assert results.RunFolder(tmp_path / "out").load_unit("imdb", "transformer", 0) is None  # nothing recorded
