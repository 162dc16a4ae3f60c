"""What the attention pooling looks at, measured: per-token weights on a few real test
examples and the most-attended words per class over the whole test set, saved as JSON once
after a run's test evaluation. `bench.attention_report` draws them from that file alone.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from bench.data import Split, iterate_batches
from bench.results import atomic_write_json

N_EXAMPLES = 4   # kept per run: half correct, half wrong
TOP_WORDS = 12


@torch.inference_mode()
def collect(model: torch.nn.Module, split: Split, probs: np.ndarray, tokenizer_json: str,
            device: torch.device, batch_size: int, path: Path) -> None:
    """Save attention weights of a few test examples and the top-attended words per class."""
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_str(tokenizer_json)
    model.eval()
    preds = probs.argmax(1)
    top = {int(c): Counter() for c in np.unique(split.labels)}
    weights_of: dict[int, np.ndarray] = {}
    correct = np.flatnonzero(preds == split.labels)
    wrong = np.flatnonzero(preds != split.labels)
    rng = np.random.default_rng(0)
    chosen = [int(i) for group in (correct, wrong)
              for i in rng.choice(group, size=min(N_EXAMPLES // 2, len(group)), replace=False)]
    for ids, lengths, labels, idx in iterate_batches(split, batch_size, shuffle=False):
        _, w = model(torch.from_numpy(ids).to(device), torch.from_numpy(lengths).to(device), return_attention=True)
        w = w.float().cpu().numpy()
        best = w.argmax(1)
        for row, pos, label in zip(range(len(idx)), best, labels):
            top[int(label)][int(ids[row, pos])] += 1
        for row, i in enumerate(idx):
            if int(i) in chosen:
                weights_of[int(i)] = w[row, : lengths[row]]
    examples = []
    for i in chosen:
        n = int(split.lengths[i])
        examples.append({"row": int(split.rows[i]), "label": int(split.labels[i]), "pred": int(preds[i]),
                         "tokens": [vocab.id_to_token(int(t)) for t in split.ids[i, :n]],
                         "weights": [round(float(x), 5) for x in weights_of[i]]})
    top_words = {str(c): [[vocab.id_to_token(t), n] for t, n in counts.most_common(TOP_WORDS)]
                 for c, counts in top.items()}
    atomic_write_json(path, {"examples": examples, "top_words": top_words})
