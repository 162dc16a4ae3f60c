"""Shared fixtures: a tiny synthetic keyword dataset in the real on-disk layout, and a tiny config."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

torch.set_num_threads(1)  # tiny models: one thread is fastest and never oversubscribes the CPU

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

TINY_CONFIG = """
budget = "tiny"
description = "test budget"
datasets = ["imdb"]
models = ["rnn", "attn_rnn", "transformer"]
seeds = [0, 1]

[data]
vocab_size = 200
max_length = 48
min_frequency = 1
train_eval_size = 200

[train]
threads = 1
epochs = 2
batch_size = 32
eval_batch_size = 128
lr = 5e-3
patience = 2

[model.rnn]
kind = "rnn"
embed_dim = 16
hidden_dim = 24
pooling = "last"
dropout = 0.0

[model.attn_rnn]
kind = "rnn"
embed_dim = 16
hidden_dim = 24
pooling = "attention"
dropout = 0.0

[model.tfidf]
kind = "tfidf"

[model.transformer]
kind = "transformer"
embed_dim = 16
hidden_dim = 32
heads = 2
dropout = 0.0
"""


def keyword_texts(n: int, seed: int, min_len: int = 8, max_len: int = 40) -> pd.DataFrame:
    """Label 1 iff the text contains 'good', else it contains 'bad'; the keyword sits anywhere."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = int(i % 2)
        words = [f"w{k}" for k in rng.integers(0, 60, size=rng.integers(min_len, max_len))]
        words.insert(int(rng.integers(0, len(words) + 1)), "good" if label else "bad")
        rows.append((" ".join(words), label))
    return pd.DataFrame(rows, columns=["text", "label"])


def write_dataset(root: Path, name: str, train: pd.DataFrame, test: pd.DataFrame) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    train.to_parquet(folder / "train.parquet")
    test.to_parquet(folder / "test.parquet")
    return root


@pytest.fixture(scope="session")
def keyword_dir(tmp_path_factory) -> Path:
    """A data folder laid out like ../shared/data, holding a synthetic binary 'imdb'."""
    root = tmp_path_factory.mktemp("data")
    return write_dataset(root, "imdb", keyword_texts(1200, 0), keyword_texts(400, 1))


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_CONFIG)
    return path


def run_cli(*args: str, module: str = "bench.run", env: dict | None = None, cwd: Path | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a bench CLI in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=cli_env(env), cwd=cwd or REPO, timeout=timeout)


def default_sigint() -> None:
    """preexec_fn for a CLI that a test stops with SIGINT: a shell started in the background (`cmd &`)
    ignores SIGINT and its children inherit that, so Python would install no Ctrl-C handler at all."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli_env(extra: dict | None = None) -> dict:
    """The environment a CLI subprocess gets: this one, minus BENCH_DATA_DIR, plus the repo on the path."""
    env = {k: v for k, v in os.environ.items() if k != "BENCH_DATA_DIR"}
    env.update({"PYTHONPATH": str(REPO), **(extra or {})})
    return env
