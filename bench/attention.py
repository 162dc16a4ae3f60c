"""What the attention pooling looks at: per-token weights on real test examples, and the
most-attended words per class over the whole test set. Collected once after a run's test
evaluation (`collect`), drawn later from the saved JSON alone (`attention_section`).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from bench.data import CLASS_NAMES, Split, iterate_batches
from bench.results import atomic_write_json, relative_link, save_png

N_EXAMPLES = 4   # shown per run: half correct, half wrong
MAX_SHOWN_TOKENS = 60
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
        model(torch.from_numpy(ids).to(device), torch.from_numpy(lengths).to(device))
        w = model.last_attention.float().cpu().numpy()
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


def _heatmap(example: dict, class_names: list[str], ax) -> None:
    tokens = example["tokens"][:MAX_SHOWN_TOKENS]
    weights = np.array(example["weights"][:MAX_SHOWN_TOKENS])
    shade = weights / max(weights.max(), 1e-9)
    x, y, line_width = 0.0, 0.0, 0.98
    for tok, s in zip(tokens, shade):
        width = 0.012 * (len(tok) + 1)
        if x + width > line_width:
            x, y = 0.0, y - 0.12
        ax.text(x, y, tok, fontsize=8, va="top", ha="left", family="monospace",
                bbox=dict(facecolor=(1.0, 1 - 0.85 * s, 1 - 0.85 * s), edgecolor="none", pad=0.6))
        x += width
    verdict = "correct" if example["label"] == example["pred"] else "wrong"
    ax.set_title(f"test row {example['row']}: label {class_names[example['label']]}, "
                 f"predicted {class_names[example['pred']]} ({verdict})", fontsize=9, loc="left")
    ax.set_ylim(min(y - 0.15, -1.0), 0.1)
    ax.set_xlim(0, 1)
    ax.axis("off")


def attention_section(run_dir: Path, report_dir: Path, dataset: str) -> str:
    """Markdown + heat-map PNG for one dataset, from the first attention file of its lowest seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = sorted((run_dir / "attention").glob(f"{dataset}__*.json"),
                   key=lambda p: (p.stem.split("__")[1], int(p.stem.rsplit("seed", 1)[1])))
    if not files:
        return ""
    path = files[0]
    record = json.loads(path.read_text())
    names = CLASS_NAMES.get(dataset, [str(i) for i in range(10)])
    examples = record["examples"]
    fig, axes = plt.subplots(len(examples), 1, figsize=(11, 1.9 * len(examples)), squeeze=False)
    for ax, ex in zip(axes[:, 0], examples):
        _heatmap(ex, names, ax)
    fig.suptitle(f"{path.stem}: attention weight per token (darker = more weight; first "
                 f"{MAX_SHOWN_TOKENS} tokens)", fontsize=10)
    fig.tight_layout()
    png = run_dir / "plots" / f"{dataset}_attention.png"
    save_png(fig, png)
    rel = relative_link(png, report_dir)
    lines = [f"### What attention looks at ({path.stem})", "",
             f"![attention heat-map]({rel})", "",
             "Most-attended word (the token with the largest weight in each test text), counted per true class:",
             "", "| class | most-attended words (count) |", "|---|---|"]
    for c, words in record["top_words"].items():
        lines.append(f"| {names[int(c)]} | {', '.join(f'{w} ({n})' for w, n in words)} |")
    return "\n".join(lines) + "\n"
