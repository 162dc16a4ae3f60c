"""The attention part of REPORT.md: a heat-map of per-token weights and the most-attended words
per class, drawn from `attention/<unit>.json` alone (written by `bench.attention.collect`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.data import CLASS_NAMES
from bench.results import RunFolder, relative_link, save_png

MAX_SHOWN_TOKENS = 60


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

    folder = RunFolder(run_dir)
    files = sorted(folder.attention.glob(f"{dataset}__*.json"),
                   key=lambda p: (p.stem.split("__")[1], int(p.stem.rsplit("seed", 1)[1])))
    if not files:
        return ""
    path = files[0]
    record = json.loads(path.read_text())
    examples = record["examples"]
    # class names: datasets.json (any dataset), else the built-in list (folders made before it held them)
    names = list(folder.datasets_info().get(dataset, {}).get("label_names") or CLASS_NAMES.get(dataset, []))
    k = max([int(c) + 1 for c in record["top_words"]] + [max(e["label"], e["pred"]) + 1 for e in examples] + [0])
    names += [str(i) for i in range(len(names), k)]
    fig, axes = plt.subplots(len(examples), 1, figsize=(11, 1.9 * len(examples)), squeeze=False)
    for ax, ex in zip(axes[:, 0], examples):
        _heatmap(ex, names, ax)
    fig.suptitle(f"{path.stem}: attention weight per token (darker = more weight; first "
                 f"{MAX_SHOWN_TOKENS} tokens)", fontsize=10)
    fig.tight_layout()
    png = folder.plots / f"{dataset}_attention.png"
    save_png(fig, png)
    rel = relative_link(png, report_dir)
    lines = [f"### What attention looks at ({path.stem})", "",
             f"![attention heat-map]({rel})", "",
             "Most-attended word (the token with the largest weight in each test text), counted per true class:",
             "", "| class | most-attended words (count) |", "|---|---|"]
    for c, words in record["top_words"].items():
        lines.append(f"| {names[int(c)]} | {', '.join(f'{w} ({n})' for w, n in words)} |")
    return "\n".join(lines) + "\n"
